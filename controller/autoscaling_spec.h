// spec.autoscaling of an InferenceCluster, parsed with defaults and checked field by field.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "controller/api/inference_cluster.h"

namespace splitwise::controller {

struct AutoscalingSpec {
  bool enabled = false;
  double interval_seconds = 30;
  double scale_up_window_seconds = 0;      // react to a rise at once
  double scale_down_window_seconds = 300;  // shrink only after load stayed low this long
  int max_step = 4;                        // replicas added or removed per decision and pool
  double target_utilization = 0.7;         // headroom for bursts and queueing
  // Budgets over all pools (0: none).
  int budget_gpus = 0;
  double budget_cost_per_hour = 0;
  double budget_kw = 0;
  // Where load is observed: a Prometheus server's HTTP API, or else the router's /metrics.
  std::string prometheus_url;
  std::string router_metrics_url;  // default: the cluster's router Service
  // The performance profile (perf_model.csv format) and the model's name in it.
  std::string profile_path;
  std::string profile_model;
};

// Errors name fields as "spec.autoscaling.<field>".
Result<AutoscalingSpec> parse_autoscaling(const Json& autoscaling, std::vector<FieldError>* errors);

}  // namespace splitwise::controller
