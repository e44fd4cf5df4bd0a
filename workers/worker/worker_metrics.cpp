#include "workers/worker/worker_metrics.h"

#include <prometheus/text_serializer.h>

namespace splitwise::worker {

namespace {
using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Iteration times from 100 us (a small decode step) to 10 s (a long prefill).
Histogram::BucketBoundaries time_buckets() {
  return {1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 10};
}
}  // namespace

WorkerMetrics::WorkerMetrics(const std::string& role)
    : registry_(std::make_shared<prometheus::Registry>()), role_(role) {
  auto& r = *registry_;
  const prometheus::Labels role_label{{"role", role}};
  queue_requests_ = &BuildGauge()
                         .Name("splitwise_worker_queue_requests")
                         .Help("Requests waiting for their prefill")
                         .Register(r)
                         .Add(role_label);
  queue_tokens_ = &BuildGauge()
                       .Name("splitwise_worker_queue_tokens")
                       .Help("Prompt tokens not yet prefilled")
                       .Register(r)
                       .Add(role_label);
  running_requests_ = &BuildGauge()
                           .Name("splitwise_worker_running_requests")
                           .Help("Requests holding KV blocks in the batch")
                           .Register(r)
                           .Add(role_label);
  auto& kv = BuildGauge().Name("splitwise_worker_kv_blocks").Help("KV cache blocks").Register(r);
  kv_blocks_used_ = &kv.Add({{"role", role}, {"state", "used"}});
  kv_blocks_total_ = &kv.Add({{"role", role}, {"state", "total"}});
  batch_size_ = &BuildHistogram()
                     .Name("splitwise_worker_batch_size_tokens")
                     .Help("Tokens in one engine step")
                     .Register(r)
                     .Add(role_label, Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                                  512, 1024, 2048, 4096});
  auto& iter = BuildHistogram()
                   .Name("splitwise_worker_iteration_seconds")
                   .Help("Engine step time by phase (mixed: prefill and decode in one step)")
                   .Register(r);
  iteration_prefill_ = &iter.Add({{"role", role}, {"phase", "prefill"}}, time_buckets());
  iteration_decode_ = &iter.Add({{"role", role}, {"phase", "decode"}}, time_buckets());
  iteration_mixed_ = &iter.Add({{"role", role}, {"phase", "mixed"}}, time_buckets());
  auto& tokens =
      BuildCounter().Name("splitwise_worker_tokens_total").Help("Tokens processed").Register(r);
  prompt_tokens_ = &tokens.Add({{"role", role}, {"phase", "prefill"}});
  decode_tokens_ = &tokens.Add({{"role", role}, {"phase", "decode"}});
  auto& bytes = BuildCounter()
                    .Name("splitwise_worker_kv_handoff_bytes_total")
                    .Help("KV cache bytes moved between workers")
                    .Register(r);
  handoff_sent_bytes_ = &bytes.Add({{"role", role}, {"direction", "sent"}});
  handoff_received_bytes_ = &bytes.Add({{"role", role}, {"direction", "received"}});
  handoff_seconds_ = &BuildHistogram()
                          .Name("splitwise_worker_kv_handoff_seconds")
                          .Help("From a request's first KV frame queued to its last one sent")
                          .Register(r)
                          .Add(role_label, time_buckets());
  handoff_tail_seconds_ =
      &BuildHistogram()
           .Name("splitwise_worker_kv_handoff_tail_seconds")
           .Help(
               "KV handoff time not hidden behind the prompt's compute: from its first "
               "token to its last KV frame sent")
           .Register(r)
           .Add(role_label, time_buckets());
  handoff_failures_ = &BuildCounter()
                           .Name("splitwise_worker_kv_handoff_failures_total")
                           .Help("KV handoffs that failed or frames rejected")
                           .Register(r)
                           .Add(role_label);
  requests_ = &BuildCounter()
                   .Name("splitwise_worker_requests_total")
                   .Help("Requests by outcome")
                   .Register(r);
}

void WorkerMetrics::observe_step(const StepInfo& info, int batch_size) {
  batch_size_->Observe(batch_size);
  if (info.prompt_tokens > 0 && info.decode_tokens > 0)
    iteration_mixed_->Observe(info.seconds);
  else if (info.prompt_tokens > 0)
    iteration_prefill_->Observe(info.seconds);
  else
    iteration_decode_->Observe(info.seconds);
  prompt_tokens_->Increment(static_cast<double>(info.prompt_tokens));
  decode_tokens_->Increment(static_cast<double>(info.decode_tokens));
}

void WorkerMetrics::set_snapshot(const EngineSnapshot& s) {
  queue_requests_->Set(static_cast<double>(s.waiting));
  queue_tokens_->Set(static_cast<double>(s.pending_prefill_tokens));
  running_requests_->Set(static_cast<double>(s.running));
  kv_blocks_used_->Set(s.total_kv_blocks - s.free_kv_blocks);
  kv_blocks_total_->Set(s.total_kv_blocks);
}

void WorkerMetrics::request_finished(const std::string& outcome) {
  requests_->Add({{"role", role_}, {"outcome", outcome}}).Increment();
}

void WorkerMetrics::handoff_sent(uint64_t bytes, double seconds, double tail_seconds) {
  handoff_sent_bytes_->Increment(static_cast<double>(bytes));
  handoff_seconds_->Observe(seconds);
  handoff_tail_seconds_->Observe(tail_seconds);
}

void WorkerMetrics::handoff_received(uint64_t bytes) {
  handoff_received_bytes_->Increment(static_cast<double>(bytes));
}

void WorkerMetrics::handoff_failed() { handoff_failures_->Increment(); }

std::string WorkerMetrics::render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace splitwise::worker
