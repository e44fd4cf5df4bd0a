// A de-duplicating, rate-limited work queue with controller-runtime semantics:
//  - a key waiting in the queue is held once, however often it is added;
//  - a key being processed is never handed to a second worker; re-added meanwhile,
//    it is queued again when done() is called for it;
//  - add_after() delays a key, add_rate_limited() delays it by a per-key exponential
//    backoff that forget() resets.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace splitwise::kube {

struct WorkQueueOptions {
  std::chrono::milliseconds base_delay{5};  // first rate-limited delay, doubled per failure
  std::chrono::milliseconds max_delay{1000 * 1000};
};

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkQueue(WorkQueueOptions options = {});
  ~WorkQueue();  // shuts down and joins the delay thread
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void add(const std::string& key);
  void add_after(const std::string& key, std::chrono::milliseconds delay);
  void add_rate_limited(const std::string& key);
  // Clears the key's failure count (its next add_rate_limited waits base_delay).
  void forget(const std::string& key);
  int num_requeues(const std::string& key) const;
  // The delay the next add_rate_limited(key) would use; bumps nothing.
  std::chrono::milliseconds next_delay(const std::string& key) const;

  // Blocks until a key is ready; nullopt once shut down (keys still queued are dropped).
  std::optional<std::string> get();
  // Marks the key processed; if it was re-added while processing, queues it again.
  void done(const std::string& key);

  void shutdown();
  bool shutting_down() const;
  // Keys ready to be handed out (not counting delayed or processing ones).
  std::size_t len() const;

 private:
  void add_locked(const std::string& key);
  void delay_loop();
  std::chrono::milliseconds delay_for(int failures) const;

  const WorkQueueOptions options_;
  mutable std::mutex mu_;
  std::condition_variable ready_cv_;  // get() waiters
  std::condition_variable delay_cv_;  // the delay thread
  // All below guarded by mu_.
  std::deque<std::string> queue_;
  std::unordered_set<std::string> dirty_;       // waiting to be processed (in queue_ or not)
  std::unordered_set<std::string> processing_;  // handed out, done() not yet called
  std::multimap<Clock::time_point, std::string> delayed_;
  std::unordered_map<std::string, Clock::time_point> delayed_at_;  // earliest per key
  std::unordered_map<std::string, int> failures_;
  bool shutdown_ = false;
  std::thread delay_thread_;
};

}  // namespace splitwise::kube
