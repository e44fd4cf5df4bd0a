#include "workers/worker/engine_loop.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace splitwise::worker {

EngineLoop::EngineLoop(engine::Engine* engine, StepCallback on_step)
    : engine_(engine), on_step_(std::move(on_step)) {
  publish();
}

EngineLoop::~EngineLoop() { stop(); }

void EngineLoop::start() {
  thread_ = std::thread([this] { run(); });
}

void EngineLoop::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::post(Task task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

EngineSnapshot EngineLoop::snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

void EngineLoop::publish() {
  EngineSnapshot s;
  s.pending_prefill_tokens = engine_->pending_prefill_tokens();
  s.waiting = engine_->num_waiting();
  s.running = engine_->num_running();
  s.reserved = engine_->num_reserved();
  s.free_kv_blocks = engine_->num_free_blocks();
  s.total_kv_blocks = engine_->num_kv_blocks();
  std::lock_guard lock(mu_);
  snapshot_ = s;
}

void EngineLoop::run() {
  std::deque<Task> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Sleep only when there is nothing to compute: a busy engine steps back to back and
      // picks up posted tasks between steps.
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty() || !engine_->idle(); });
      if (stopping_) return;
      batch.swap(tasks_);
    }
    for (Task& t : batch) t(*engine_);
    batch.clear();
    if (!engine_->idle()) {
      const engine::EngineStats before = engine_->stats();
      const auto t0 = std::chrono::steady_clock::now();
      auto results = engine_->step();
      StepInfo info;
      info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      info.prompt_tokens = engine_->stats().prompt_tokens - before.prompt_tokens;
      info.decode_tokens = engine_->stats().decode_tokens - before.decode_tokens;
      if (!results.ok()) {
        // Requests were validated on admission, so this is a bug, not bad input.
        spdlog::critical("engine step failed: {}", results.status().message());
        std::abort();
      }
      on_step_(*engine_, *results, info);
    }
    publish();
  }
}

}  // namespace splitwise::worker
