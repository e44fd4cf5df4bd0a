// Runs a callback when a CUDA event completes, on one poller thread. The transports need
// "this layer's GPU work is done" on a CPU thread without blocking the engine or the
// network thread, and without cudaLaunchHostFunc, which would stall the stream behind it
// for the callback's round trip (a bubble between back-to-back layer transfers).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "workers/engine/status.h"

namespace splitwise::transport::nccl {

class EventPoller {
 public:
  using Callback = std::function<void(Status)>;

  EventPoller();
  ~EventPoller();  // stop()s
  EventPoller(const EventPoller&) = delete;
  EventPoller& operator=(const EventPoller&) = delete;

  // `fn` runs on the poller thread once `event` (recorded before this call) has completed,
  // with an error if the query failed. Events of one stream are reported in order.
  void watch(cudaEvent_t event, Callback fn);
  // Waits for every watched event (at most `patience`, then reports the rest as failed)
  // and joins the thread. Later watch() calls run their callback at once, failed.
  void stop(std::chrono::milliseconds patience = std::chrono::seconds(30));

 private:
  struct Item {
    cudaEvent_t event;
    Callback fn;
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> incoming_;                      // guarded by mu_
  bool stopping_ = false;                          // guarded by mu_
  std::chrono::steady_clock::time_point give_up_;  // guarded by mu_, set by stop()
  std::thread thread_;
};

}  // namespace splitwise::transport::nccl
