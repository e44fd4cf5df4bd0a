#include "workers/transport/nccl/event_poller.h"

#include <vector>

namespace splitwise::transport::nccl {

EventPoller::EventPoller() : thread_([this] { run(); }) {}

EventPoller::~EventPoller() { stop(); }

void EventPoller::watch(cudaEvent_t event, Callback fn) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      incoming_.push_back({event, std::move(fn)});
      cv_.notify_one();
      return;
    }
  }
  fn(Status::error("event poller stopped"));
}

void EventPoller::stop(std::chrono::milliseconds patience) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    give_up_ = std::chrono::steady_clock::now() + patience;
  }
  cv_.notify_one();
  thread_.join();
}

void EventPoller::run() {
  std::vector<Item> pending;  // poller thread only, oldest first
  while (true) {
    bool stopping;
    std::chrono::steady_clock::time_point give_up;
    {
      std::unique_lock lock(mu_);
      if (pending.empty()) cv_.wait(lock, [&] { return stopping_ || !incoming_.empty(); });
      for (Item& i : incoming_) pending.push_back(std::move(i));
      incoming_.clear();
      stopping = stopping_;
      give_up = give_up_;
    }
    if (pending.empty() && stopping) return;
    const bool late = stopping && std::chrono::steady_clock::now() > give_up;
    size_t kept = 0;
    bool progressed = false;
    for (size_t i = 0; i < pending.size(); ++i) {
      Item& item = pending[i];
      const cudaError_t e = cudaEventQuery(item.event);
      if (e == cudaErrorNotReady && !late) {
        if (kept != i) pending[kept] = std::move(item);
        ++kept;
        continue;
      }
      progressed = true;
      if (e == cudaSuccess) {
        item.fn(Status());
      } else if (e == cudaErrorNotReady) {
        item.fn(Status::error("GPU work still pending when the transport stopped"));
      } else {
        item.fn(Status::error(std::string("CUDA event query: ") + cudaGetErrorString(e)));
      }
    }
    pending.erase(pending.begin() + static_cast<ptrdiff_t>(kept), pending.end());
    // Completion latency only, never throughput: the streams run on without us. A short
    // sleep keeps a waiting poller near idle.
    if (!progressed && !pending.empty()) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

}  // namespace splitwise::transport::nccl
