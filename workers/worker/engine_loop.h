// The engine's own thread. Other threads never touch the Engine: they post tasks, which
// run between steps; step results go to one callback on this thread. A snapshot of the
// queue and KV state is published after every step for /metrics and the router.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "workers/engine/engine.h"

namespace splitwise::worker {

struct EngineSnapshot {
  int64_t pending_prefill_tokens = 0;
  int64_t waiting = 0;
  int64_t running = 0;
  int64_t reserved = 0;
  int free_kv_blocks = 0;
  int total_kv_blocks = 0;
};

// What one step did, for metrics.
struct StepInfo {
  double seconds = 0;
  int64_t prompt_tokens = 0;  // prefill tokens run in the step
  int64_t decode_tokens = 0;
};

class EngineLoop {
 public:
  using Task = std::function<void(engine::Engine&)>;
  using StepCallback =
      std::function<void(engine::Engine&, const std::vector<engine::StepResult>&, const StepInfo&)>;

  EngineLoop(engine::Engine* engine, StepCallback on_step);
  ~EngineLoop();

  void start();
  void stop();  // finishes the current step, then joins
  void post(Task task);
  EngineSnapshot snapshot() const;

 private:
  void run();
  void publish();

  engine::Engine* engine_;
  StepCallback on_step_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;   // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  EngineSnapshot snapshot_;  // guarded by mu_
};

}  // namespace splitwise::worker
