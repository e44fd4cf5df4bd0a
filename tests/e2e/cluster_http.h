// Blocking HTTP/1.1 for end-to-end tests: plain sockets, one connection per request,
// bounded by a deadline; server-sent events read as they arrive; and a reader for the
// Prometheus text format. Independent of the product's own HTTP code on purpose: a test
// client that shared its bugs would not find them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace splitwise::e2e {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string str() const { return host + ":" + std::to_string(port); }
};

// "127.0.0.1:8080" -> Endpoint; nullopt when it is not host:port.
std::optional<Endpoint> parse_endpoint(std::string_view s);

struct HttpResult {
  int status = 0;                              // 0: no response; `error` says why
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;
};

HttpResult http_get(const Endpoint& ep, const std::string& target, Millis timeout = 10s);
HttpResult http_post(const Endpoint& ep, const std::string& target, const std::string& body,
                     Millis timeout = 10s);

struct SseResult {
  int status = 0;
  std::vector<std::string> events;  // the data of each event, in order ("[DONE]" included)
  bool complete = false;            // the server ended the body
  bool disconnected = false;        // on_event asked to hang up
  std::string body;                 // the whole body when the status was not 200
  std::string error;                // transport error or timeout
};

// POSTs and reads the response as server-sent events. `on_event` sees each event's data
// as it arrives; returning false closes the connection at once.
SseResult http_post_sse(const Endpoint& ep, const std::string& target, const std::string& body,
                        const std::function<bool(const std::string& data)>& on_event = {},
                        Millis timeout = 30s);

using Labels = std::map<std::string, std::string>;

// Sum of the samples named `name` whose labels include all of `labels`; nullopt when no
// sample matches. Reads the Prometheus text exposition format.
std::optional<double> metric(std::string_view text, std::string_view name,
                             const Labels& labels = {});

}  // namespace splitwise::e2e
