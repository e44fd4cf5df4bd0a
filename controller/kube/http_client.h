// A small HTTP/1.1 client over Boost.Beast for the Kubernetes API: one connection per
// call (simple and correct; the apiserver is cheap to reach), TLS with the cluster's
// CA, an optional client certificate, SNI and hostname verification, a bearer token,
// deadlines on every step, and a streaming GET that hands over the body line by line
// (watches) and can be cancelled from another thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "controller/kube/cluster_config.h"
#include "workers/engine/status.h"

namespace splitwise::kube {

struct HttpRequest {
  std::string method = "GET";
  std::string target;  // path and query, e.g. "/api/v1/namespaces/a/pods?limit=10"
  std::string body;
  std::string content_type;  // set when body is not empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{0};  // whole exchange; 0: the config's request_timeout
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // The first header of that name (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

// Cancels a call in flight (or before it starts) from any thread.
class CancelToken {
 public:
  void cancel();
  bool cancelled() const;

  // For the client: registers what cancel() must do while a call is in flight; false
  // when already cancelled.
  bool attach(std::function<void()> canceller);
  void detach();

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;           // guarded by mu_
  std::function<void()> canceller_;  // guarded by mu_
};

struct ParsedUrl {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string base_path;  // "" or "/prefix" (no trailing slash)
};
Result<ParsedUrl> parse_server_url(const std::string& server);

// Splits `data` into lines, keeping an incomplete last line in `pending` for the next
// chunk. Returns false as soon as on_line does. "\r\n" and "\n" both end a line; empty
// lines are skipped.
bool feed_lines(std::string& pending, std::string_view data,
                const std::function<bool(std::string_view)>& on_line);

class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> create(const ClusterConfig& config);
  ~HttpClient();

  // A whole exchange. Non-2xx statuses are responses, not errors; the Status carries
  // transport failures only (connect, TLS, timeout, cancelled).
  Result<HttpResponse> request(const HttpRequest& request, CancelToken* cancel = nullptr);

  // Sends the request; on a 2xx response calls on_line per body line until the body
  // ends, on_line returns false, `cancel` fires, or no byte arrives for idle_timeout.
  // The returned response has the status and headers; its body is filled only for
  // non-2xx responses (the error). Ending by on_line or cancel is not an error.
  Result<HttpResponse> stream_lines(const HttpRequest& request,
                                    const std::function<bool(std::string_view)>& on_line,
                                    CancelToken* cancel, std::chrono::milliseconds idle_timeout);

  const ClusterConfig& config() const { return config_; }

 private:
  struct Tls;
  HttpClient(ClusterConfig config, ParsedUrl url, std::unique_ptr<Tls> tls);
  using OnData = std::function<bool(int status, std::string_view chunk)>;
  Result<HttpResponse> exchange(const HttpRequest& request, const OnData& on_data,
                                CancelToken* cancel, std::chrono::milliseconds idle_timeout);

  ClusterConfig config_;
  ParsedUrl url_;
  std::unique_ptr<Tls> tls_;  // null for http://
};

}  // namespace splitwise::kube
