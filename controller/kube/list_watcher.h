// The list-then-watch loop behind an informer. It lists (keeping the list's
// resourceVersion), watches from there with bookmarks and a randomized server timeout
// (so a fleet of watchers does not reconnect in step), follows the resourceVersion of
// every event including BOOKMARKs, re-watches when a watch ends cleanly, and relists
// when the resourceVersion is too old (410, as the watch request's status or as an
// ERROR event). Errors back off with jitter. stop() works from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "controller/kube/backoff.h"
#include "controller/kube/rest_client.h"
#include "controller/kube/watch_event.h"

namespace splitwise::kube {

struct ListWatcherOptions {
  Resource resource;
  std::string ns;  // "" for all namespaces
  std::string label_selector;
  std::string field_selector;
  std::chrono::seconds min_watch_timeout{300};
  std::chrono::seconds max_watch_timeout{600};
  BackoffPolicy backoff{std::chrono::milliseconds(200), std::chrono::milliseconds(30'000), 0.5};
  // A watch that ends cleanly sooner than this without events counts as a failure
  // (backs off) instead of being re-opened at once.
  std::chrono::milliseconds min_healthy_watch{1000};
};

class ListWatcher {
 public:
  // A full list: the items and the list's resourceVersion.
  using OnList = std::function<void(std::vector<json> items, const std::string& rv)>;
  // ADDED / MODIFIED / DELETED only; bookmarks and errors stay inside.
  using OnEvent = std::function<void(const WatchEvent& event)>;

  ListWatcher(ListWatchClient& client, ListWatcherOptions options, OnList on_list,
              OnEvent on_event);

  // Blocks until stop().
  void run();
  void stop();

  std::string resource_version() const;
  int list_count() const { return lists_.load(); }
  int watch_count() const { return watches_.load(); }

 private:
  enum class WatchEnd { kClean, kGone, kError };
  WatchEnd watch_once(std::chrono::milliseconds* retry_after, bool* saw_event);
  bool list_once();
  // Sleeps unless stop() comes first; false when stopped.
  bool sleep_for(std::chrono::milliseconds delay);

  ListWatchClient& client_;
  const ListWatcherOptions options_;
  OnList on_list_;
  OnEvent on_event_;
  Backoff backoff_;
  std::mt19937_64 rng_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;                 // guarded by mu_
  std::shared_ptr<CancelToken> cancel_;  // guarded by mu_: the watch in flight
  std::string rv_;                       // guarded by mu_
  std::atomic<int> lists_{0};
  std::atomic<int> watches_{0};
};

}  // namespace splitwise::kube
