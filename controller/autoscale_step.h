// The autoscaler as the reconciler runs it: once per interval and cluster it observes
// the load, asks Autoscaler::decide for each pool's replicas, and remembers the answer;
// every pass in between reuses it. Profiles (perf_model.csv) are loaded once per file,
// model and pool shape. It never talks to the Kubernetes API: the reconciler applies the
// replicas, writes ScalingLimited and records the Events this returns.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "controller/autoscaler.h"
#include "controller/builders.h"
#include "controller/load_metrics.h"
#include "controller/status.h"

namespace splitwise::controller {

struct AutoscaleOutcome {
  bool enabled = false;
  std::map<std::string, int> replicas;  // pool -> replicas to run (prompt, token)
  std::map<std::string, int> previous;  // pool -> replicas before this decision
  Condition scaling_limited;            // set when enabled
  struct Event {
    std::string type, reason, message;
  };
  std::vector<Event> events;     // what changed (or went wrong) in this decision
  double requeue_s = 0;          // when the next decision is due
  bool decided = false;          // a decision was made in this pass (metrics update)
  bool metrics_checked = false;  // the load source was asked (no configuration problem)
  bool metrics_up = false;
  bool disabled_now = false;  // autoscaling was on for this cluster and is off now
  Decision decision;
};

class AutoscaleStep {
 public:
  // `now_s`: a monotonic clock in seconds (tests drive it).
  AutoscaleStep(std::shared_ptr<LoadSource> source, std::function<double()> now_s);

  // `live_replicas` / `ready`: what each pool's Deployment asks for and has ready now.
  AutoscaleOutcome run(const std::string& key, const ClusterRef& ref, const ClusterSpec& spec,
                       const AutoscalingSpec& autoscaling,
                       const std::map<std::string, int>& live_replicas,
                       const std::map<std::string, int>& ready);
  void forget(const std::string& key);

 private:
  struct State {
    std::string uid;  // a recreated cluster starts afresh
    Autoscaler scaler;
    double last = -1;  // time of the last decision; -1: none yet
    std::map<std::string, int> replicas;
    Condition limited;
  };
  Result<MachineModel> machine_model(const AutoscalingSpec& a, const PoolSpec& pool,
                                     sim::ModelSpec* model);

  std::shared_ptr<LoadSource> source_;
  std::function<double()> now_s_;
  std::mutex mu_;
  std::map<std::string, State> states_;  // guarded by mu_
  // Its own lock: parsing a profile must not stall other clusters' decisions.
  std::mutex profiles_mu_;
  std::map<std::string, std::shared_ptr<const sim::PerfModel>> profiles_;  // profiles_mu_
};

// The simulator's machine for a pool's GPU type ("H100" -> h100, "A100" -> a100), or an
// error naming the type.
Result<std::string> machine_for_gpu(const std::string& gpu_type);

}  // namespace splitwise::controller
