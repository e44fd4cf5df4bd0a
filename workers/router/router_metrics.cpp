#include "workers/router/router_metrics.h"

#include <prometheus/text_serializer.h>

namespace splitwise::router {

using prometheus::Histogram;

RouterMetrics::RouterMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  // From a fraction of a millisecond (a decode step of a tiny model) to minutes.
  const Histogram::BucketBoundaries latency{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  ttft_ = &prometheus::BuildHistogram()
               .Name("splitwise_router_ttft_seconds")
               .Help("Time from request arrival to its first token")
               .Register(r)
               .Add({}, latency);
  tbt_ = &prometheus::BuildHistogram()
              .Name("splitwise_router_time_between_tokens_seconds")
              .Help("Time between consecutive tokens of a request")
              .Register(r)
              .Add({}, latency);
  e2e_ = &prometheus::BuildHistogram()
              .Name("splitwise_router_e2e_seconds")
              .Help("Time from request arrival to its last token")
              .Register(r)
              .Add({}, latency);
  // Powers of two up to 128k tokens: fine enough for the planner's length buckets.
  Histogram::BucketBoundaries tokens;
  for (double b = 1; b <= 131072; b *= 2) tokens.push_back(b);
  prompt_tokens_ = &prometheus::BuildHistogram()
                        .Name("splitwise_router_prompt_tokens")
                        .Help("Prompt tokens of each finished request")
                        .Register(r)
                        .Add({}, tokens);
  output_tokens_ = &prometheus::BuildHistogram()
                        .Name("splitwise_router_output_tokens")
                        .Help("Generated tokens of each finished request")
                        .Register(r)
                        .Add({}, tokens);
  requests_ = &prometheus::BuildCounter()
                   .Name("splitwise_router_requests_total")
                   .Help("Requests by outcome")
                   .Register(r);
  failovers_ = &prometheus::BuildCounter()
                    .Name("splitwise_router_failovers_total")
                    .Help("Requests moved to another worker mid-stream")
                    .Register(r)
                    .Add({});
  inflight_ = &prometheus::BuildGauge()
                   .Name("splitwise_router_inflight_requests")
                   .Help("Requests being served")
                   .Register(r)
                   .Add({});
  workers_ = &prometheus::BuildGauge()
                  .Name("splitwise_router_workers")
                  .Help("Workers per pool, healthy and configured")
                  .Register(r);
}

void RouterMetrics::ttft(double s) { ttft_->Observe(s); }
void RouterMetrics::time_between_tokens(double s) { tbt_->Observe(s); }
void RouterMetrics::end_to_end(double s) { e2e_->Observe(s); }
void RouterMetrics::request_tokens(int64_t prompt_tokens, int64_t output_tokens) {
  prompt_tokens_->Observe(static_cast<double>(prompt_tokens));
  output_tokens_->Observe(static_cast<double>(output_tokens));
}
void RouterMetrics::request(const std::string& outcome) {
  requests_->Add({{"outcome", outcome}}).Increment();
}
void RouterMetrics::failover() { failovers_->Increment(); }
void RouterMetrics::inflight(int n) { inflight_->Set(n); }
void RouterMetrics::workers(const std::string& role, int healthy, int total) {
  workers_->Add({{"pool", role}, {"state", "healthy"}}).Set(healthy);
  workers_->Add({{"pool", role}, {"state", "configured"}}).Set(total);
}

std::string RouterMetrics::render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace splitwise::router
