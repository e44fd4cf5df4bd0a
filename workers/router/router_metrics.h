// The router's Prometheus metrics: latency as clients see it, outcomes, pool sizes.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace splitwise::router {

class RouterMetrics {
 public:
  RouterMetrics();
  void ttft(double seconds);
  void time_between_tokens(double seconds);
  void end_to_end(double seconds);
  // Per finished request; the autoscaler reads the token-length mix from these.
  void request_tokens(int64_t prompt_tokens, int64_t output_tokens);
  void request(const std::string& outcome);
  void failover();
  void inflight(int n);
  void workers(const std::string& role, int healthy, int total);
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* tbt_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* prompt_tokens_;
  prometheus::Histogram* output_tokens_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Counter* failovers_;
  prometheus::Gauge* inflight_;
  prometheus::Family<prometheus::Gauge>* workers_;
};

}  // namespace splitwise::router
