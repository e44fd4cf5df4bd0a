// One generation request across the cluster: places it (a prompt + token worker pair, or
// a mixed worker), runs the split protocol, and on a worker's loss re-issues the prompt
// plus the tokens generated so far to a new placement, so the caller sees one unbroken
// token stream. Runs on the router's io_context thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "workers/net/http.h"
#include "workers/router/cluster_policy.h"
#include "workers/router/worker_pool.h"

namespace splitwise::router {

struct FlowRequest {
  std::vector<int32_t> prompt;
  int max_new_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;
};

struct FlowCallbacks {
  std::function<void(int32_t token)> on_token;
  // "stop" or "length"; the last call.
  std::function<void(const std::string& finish)> on_finish;
  // Failure before the end; `http_status` for the client (429/503/400...), retry_after_s
  // for 429. The last call.
  std::function<void(int http_status, const std::string& message, int retry_after_s)> on_error;
  // A worker was lost and the request moved (for metrics).
  std::function<void()> on_failover;
};

struct FlowOptions {
  int max_attempts = 4;             // placements per request, first one included
  int prefill_timeout_ms = 300000;  // a long prompt on a busy prompt worker
  int stream_idle_timeout_ms = 60000;
};

class RequestFlow : public std::enable_shared_from_this<RequestFlow> {
 public:
  RequestFlow(WorkerPool& pool, net::HttpClient& client, const PolicyConfig& policy,
              FlowOptions options, FlowRequest request, FlowCallbacks callbacks);

  void start();
  // The client is gone: stop every stream of this request (workers free its KV).
  void cancel();
  int64_t generated() const { return static_cast<int64_t>(generated_.size()); }

 private:
  void attempt();
  void start_split(int prompt, int token);
  void start_mixed(int mixed);
  void on_line(uint64_t attempt, std::string_view line);
  void on_stream_end(uint64_t attempt, int worker, const Status& st);
  void retry(const std::string& why);
  void fail(int status, const std::string& message, int retry_after_s = 0);
  void stop_streams();
  net::HttpRequest work_request(const std::string& path, const std::string& kv_host,
                                int kv_port) const;

  WorkerPool& pool_;
  net::HttpClient& client_;
  PolicyConfig policy_;
  FlowOptions options_;
  FlowRequest request_;
  FlowCallbacks cb_;

  std::vector<int32_t> generated_;
  uint64_t attempt_id_ = 0;  // worker-level request id of the current attempt
  int attempts_ = 0;
  int prompt_worker_ = -1;
  std::string kv_host_;  // the current token worker's KV receiver
  int kv_port_ = 0;
  bool done_ = false;
  int stream_status_ = 0;  // HTTP status of the current attempt's stream
  std::string last_error_;
  // Closes the current token (or mixed) stream; the worker then frees the request's KV.
  // A prefill in flight is left to finish: its KV goes to a reservation that is dropped.
  std::function<void()> cancel_stream_;
};

}  // namespace splitwise::router
