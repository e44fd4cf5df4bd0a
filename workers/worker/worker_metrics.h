// The worker's Prometheus metrics (DESIGN.md naming: splitwise_worker_<what>_<unit>).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "workers/worker/engine_loop.h"

namespace splitwise::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(const std::string& role);

  // Step-level figures, from the engine thread.
  void observe_step(const StepInfo& info, int batch_size);
  // Queue and KV gauges, refreshed from the snapshot when /metrics is scraped.
  void set_snapshot(const EngineSnapshot& s);
  void request_finished(const std::string& outcome);
  // seconds: first KV frame queued to last sent; tail_seconds: the part after the
  // prompt's compute ended, which the layer-wise transfer could not hide.
  void handoff_sent(uint64_t bytes, double seconds, double tail_seconds);
  void handoff_received(uint64_t bytes);
  void handoff_failed();

  // Prometheus text exposition format.
  std::string render() const;
  // For other metric sets of this worker (GPU metrics) to register into.
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* queue_requests_;
  prometheus::Gauge* queue_tokens_;
  prometheus::Gauge* running_requests_;
  prometheus::Gauge* kv_blocks_used_;
  prometheus::Gauge* kv_blocks_total_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* iteration_prefill_;
  prometheus::Histogram* iteration_decode_;
  prometheus::Histogram* iteration_mixed_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* decode_tokens_;
  prometheus::Counter* handoff_sent_bytes_;
  prometheus::Counter* handoff_received_bytes_;
  prometheus::Histogram* handoff_seconds_;
  prometheus::Histogram* handoff_tail_seconds_;
  std::string role_;  // a label on every series, as on the families built with it
  prometheus::Counter* handoff_failures_;
  prometheus::Family<prometheus::Counter>* requests_;
};

}  // namespace splitwise::worker
