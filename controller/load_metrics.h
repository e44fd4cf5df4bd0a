// Where the autoscaler's load observation comes from: the router's own metrics, read
// either through a Prometheus server's HTTP API (rates over all router replicas) or by
// scraping one router's /metrics twice and differencing the counters. Request rate and
// mean token lengths come from the router's splitwise_router_prompt_tokens and
// splitwise_router_output_tokens histograms (one observation per finished request).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "controller/capacity_model.h"
#include "workers/engine/status.h"

namespace splitwise::controller {

struct RouterCounters {
  double prompt_sum = 0, prompt_count = 0;
  double output_sum = 0, output_count = 0;
};

// Reads the counters from Prometheus text exposition; an error when a series is missing
// or a value does not parse.
Result<RouterCounters> parse_router_metrics(std::string_view text);

// The load between two scrapes `seconds` apart. Counters going backwards (a router
// restart) or no time between them is an error, not a negative rate.
Result<LoadObservation> load_between(const RouterCounters& before, const RouterCounters& after,
                                     double seconds);

// The value of a Prometheus instant-query answer holding one sample; an empty vector is
// an error (the query matched no series).
Result<double> parse_instant_query(std::string_view body);

// Observes one cluster's load. Implementations keep what they need between calls.
class LoadSource {
 public:
  virtual ~LoadSource() = default;
  // `key`: "namespace/name"; `now_s`: a monotonic clock in seconds.
  virtual Result<LoadObservation> observe(const std::string& key, const std::string& prometheus_url,
                                          const std::string& router_metrics_url,
                                          const std::string& prometheus_selector, double now_s) = 0;
};

// Over HTTP with the controller's own client (plain http:// or https://).
class HttpLoadSource : public LoadSource {
 public:
  Result<LoadObservation> observe(const std::string& key, const std::string& prometheus_url,
                                  const std::string& router_metrics_url,
                                  const std::string& prometheus_selector, double now_s) override;

 private:
  Result<std::string> get(const std::string& base, const std::string& target);
  std::mutex mu_;
  std::map<std::string, std::pair<double, RouterCounters>> last_;  // key -> (time, counters)
};

}  // namespace splitwise::controller
