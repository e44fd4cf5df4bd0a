// A scripted ListWatchClient for ListWatcher and Informer tests (no apiserver).
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "controller/kube/rest_client.h"

namespace splitwise::kube::testing {

struct WatchScript {
  std::optional<ApiError> error;   // returned instead of streaming
  std::vector<std::string> lines;  // streamed, then the watch ends cleanly
};

class FakeListWatch : public ListWatchClient {
 public:
  void push_list(ApiResult<json> list) {
    std::lock_guard<std::mutex> lock(mu_);
    lists_.push_back(std::move(list));
  }
  void push_watch(WatchScript script) {
    std::lock_guard<std::mutex> lock(mu_);
    watches_.push_back(std::move(script));
  }
  ApiResult<json> list(const Resource&, const std::string&, const ListOptions&) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++list_calls_;
    if (lists_.empty()) return ApiError{503, "ServiceUnavailable", "no scripted list"};
    ApiResult<json> next = lists_.front();
    lists_.pop_front();
    return next;
  }
  ApiStatus watch(const Resource&, const std::string&, const WatchOptions& options,
                  const std::function<bool(std::string_view)>& on_line,
                  CancelToken* cancel) override {
    std::optional<WatchScript> script;
    {
      std::lock_guard<std::mutex> lock(mu_);
      watch_options_.push_back(options);
      if (!watches_.empty()) {
        script = watches_.front();
        watches_.pop_front();
      }
    }
    if (!script) {  // nothing scripted: an idle watch until cancelled
      while (!cancel->cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return Empty{};
    }
    if (script->error) return *script->error;
    for (const auto& line : script->lines) {
      if (!on_line(line)) break;
    }
    return Empty{};
  }
  std::vector<WatchOptions> watch_options() {
    std::lock_guard<std::mutex> lock(mu_);
    return watch_options_;
  }
  int list_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return list_calls_;
  }

 private:
  std::mutex mu_;
  std::deque<ApiResult<json>> lists_;
  std::deque<WatchScript> watches_;
  std::vector<WatchOptions> watch_options_;
  int list_calls_ = 0;
};

inline json make_list(const std::string& rv, std::vector<json> items) {
  return json{{"metadata", {{"resourceVersion", rv}}}, {"items", items}};
}

inline json make_object(const std::string& name, const std::string& rv,
                        const std::string& ns = "ns") {
  return json{{"metadata", {{"name", name}, {"namespace", ns}, {"resourceVersion", rv}}}};
}

inline std::string event_line(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump();
}

// Polls `cond` for up to `timeout`.
template <typename Cond>
bool eventually(Cond cond, std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

}  // namespace splitwise::kube::testing
