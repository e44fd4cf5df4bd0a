#include "controller/kube/work_queue.h"

#include <algorithm>

namespace splitwise::kube {

WorkQueue::WorkQueue(WorkQueueOptions options) : options_(options) {
  delay_thread_ = std::thread([this] { delay_loop(); });
}

WorkQueue::~WorkQueue() {
  shutdown();
  delay_thread_.join();
}

void WorkQueue::add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  add_locked(key);
}

void WorkQueue::add_locked(const std::string& key) {
  if (shutdown_ || dirty_.count(key)) return;
  dirty_.insert(key);
  // A key in processing waits in dirty_ only; done() queues it.
  if (processing_.count(key)) return;
  queue_.push_back(key);
  ready_cv_.notify_one();
}

void WorkQueue::add_after(const std::string& key, std::chrono::milliseconds delay) {
  if (delay <= std::chrono::milliseconds::zero()) {
    add(key);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;
  const Clock::time_point at = Clock::now() + delay;
  auto it = delayed_at_.find(key);
  if (it != delayed_at_.end()) {
    if (it->second <= at) return;  // already due sooner: keep the earlier time
    auto range = delayed_.equal_range(it->second);
    for (auto d = range.first; d != range.second; ++d) {
      if (d->second == key) {
        delayed_.erase(d);
        break;
      }
    }
  }
  delayed_at_[key] = at;
  delayed_.emplace(at, key);
  delay_cv_.notify_one();
}

std::chrono::milliseconds WorkQueue::delay_for(int failures) const {
  // base * 2^failures without overflow: stop doubling once past the cap.
  auto delay = options_.base_delay;
  for (int i = 0; i < failures && delay < options_.max_delay; ++i) delay *= 2;
  return std::min(delay, options_.max_delay);
}

void WorkQueue::add_rate_limited(const std::string& key) {
  std::chrono::milliseconds delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    delay = delay_for(failures_[key]++);
  }
  add_after(key, delay);
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.erase(key);
}

int WorkQueue::num_requeues(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

std::chrono::milliseconds WorkQueue::next_delay(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(key);
  return delay_for(it == failures_.end() ? 0 : it->second);
}

std::optional<std::string> WorkQueue::get() {
  std::unique_lock<std::mutex> lock(mu_);
  ready_cv_.wait(lock, [this] { return shutdown_ || !queue_.empty(); });
  if (shutdown_) return std::nullopt;
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return key;
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  processing_.erase(key);
  if (dirty_.count(key) && !shutdown_) {
    queue_.push_back(key);
    ready_cv_.notify_one();
  }
}

void WorkQueue::shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  ready_cv_.notify_all();
  delay_cv_.notify_all();
}

bool WorkQueue::shutting_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_;
}

std::size_t WorkQueue::len() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void WorkQueue::delay_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    if (delayed_.empty()) {
      delay_cv_.wait(lock);
      continue;
    }
    auto first = delayed_.begin();
    if (first->first > Clock::now()) {
      delay_cv_.wait_until(lock, first->first);
      continue;
    }
    std::string key = first->second;
    delayed_.erase(first);
    delayed_at_.erase(key);
    add_locked(key);
  }
}

}  // namespace splitwise::kube
