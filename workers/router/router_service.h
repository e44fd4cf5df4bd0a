// The router daemon: an OpenAI-compatible HTTP API in front of the worker pools. It
// tokenizes, places each request on a prompt + token worker pair (or a mixed worker),
// streams tokens back as they are generated, and survives the loss of a worker.
// Everything runs on one io_context thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "workers/engine/tokenizer.h"
#include "workers/net/http.h"
#include "workers/router/chat_template.h"
#include "workers/router/cluster_policy.h"
#include "workers/router/request_flow.h"
#include "workers/router/router_metrics.h"
#include "workers/router/worker_pool.h"

namespace splitwise::router {

struct RouterOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: any free port
  std::string model_name = "stories260K";
  int context_length = 0;  // the model's
  std::vector<WorkerAddress> workers;
  PolicyConfig policy;
  FlowOptions flow;
  PoolOptions pool;
  int max_inflight = 256;  // over this, 429 with Retry-After
  size_t max_body_bytes = 1 << 20;
  std::optional<std::string> chat_template;  // Jinja source from tokenizer_config.json
};

class RouterService {
 public:
  // `tokenizer` must outlive the service.
  RouterService(const engine::Tokenizer* tokenizer, RouterOptions options);
  ~RouterService();

  Status start();
  void stop();
  uint16_t port() const { return http_->port(); }

 private:
  struct Call;  // one client request in flight
  void install_routes();
  void handle_completion(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w, bool chat);
  void refresh_pool_metrics();

  const engine::Tokenizer* tokenizer_;
  RouterOptions options_;
  std::optional<ChatTemplate> chat_template_;  // compiled once; none: the plain fallback
  ChatTemplateOptions template_options_;
  boost::asio::io_context io_;
  std::unique_ptr<net::HttpServer> http_;
  std::unique_ptr<net::HttpClient> client_;
  std::unique_ptr<WorkerPool> pool_;
  RouterMetrics metrics_;
  std::thread thread_;
  int inflight_ = 0;  // io thread only
  uint64_t request_counter_ = 0;
};

}  // namespace splitwise::router
