// A shared informer: a thread-safe cache of one resource type (key "namespace/name"),
// kept current by a ListWatcher, with add/update/delete handlers. After a relist the
// cache is replaced and the difference is dispatched, so deletes that happened while
// no watch was open are not lost. Handlers run one at a time (never concurrently) on
// the informer's threads, after the cache reflects the change; they should only
// enqueue work (e.g. a WorkQueue key), never block.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controller/kube/list_watcher.h"
#include "controller/kube/store_diff.h"

namespace splitwise::kube {

struct InformerHandlers {
  std::function<void(const json& object)> on_add;
  std::function<void(const json& old_object, const json& new_object)> on_update;
  std::function<void(const json& last_known)> on_delete;
};

class Informer {
 public:
  // `resync` > 0: every period, on_update(obj, obj) for every cached object (a
  // level-triggered safety net); 0 disables it.
  Informer(ListWatchClient& client, ListWatcherOptions options,
           std::chrono::milliseconds resync = std::chrono::milliseconds(0));
  ~Informer();  // stops

  // Before start().
  void add_handlers(InformerHandlers handlers);
  void start();
  void stop();

  // True once the first list has been loaded into the cache.
  bool synced() const { return synced_.load(); }
  bool wait_for_sync(std::chrono::milliseconds timeout) const;

  std::optional<json> get(const std::string& key) const;
  std::vector<json> list() const;
  std::size_t size() const;
  std::string resource_version() const { return watcher_.resource_version(); }
  int list_count() const { return watcher_.list_count(); }

 private:
  void on_list(std::vector<json> items);
  void on_event(const WatchEvent& event);
  void resync_loop();

  ListWatcher watcher_;
  const std::chrono::milliseconds resync_;
  std::vector<InformerHandlers> handlers_;  // fixed after start()
  std::mutex dispatch_mu_;                  // one handler call at a time

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, json> store_;  // guarded by mu_
  bool stopping_ = false;              // guarded by mu_
  std::atomic<bool> synced_{false};
  std::thread watch_thread_;
  std::thread resync_thread_;
};

}  // namespace splitwise::kube
