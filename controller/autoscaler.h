// The autoscaler's decision for one InferenceCluster, as a pure function of time, what it
// observed and what it decided before: recommendations from the capacity model, then
// stabilisation (scale up on the lowest recommendation of the up-window, down on the
// highest of the down-window: a short dip does not shrink a pool), a bounded step, no
// change while a rollout is under way, min/max clamps, and the budget across pools.
// Without a trustworthy observation it holds the current size.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "controller/autoscaling_spec.h"
#include "controller/capacity_model.h"

namespace splitwise::controller {

struct PoolNow {
  int replicas = 0;  // what the Deployment asks for now (the last decision)
  int ready = 0;
  int min_replicas = 1, max_replicas = 1 << 20;
  int gpus_per_worker = 8;
  double cost_per_gpu_hour = 0, kw_per_gpu = 0;
};

struct PoolDecision {
  int recommended = 0;   // capacity model, before stabilisation and limits
  int replicas = 0;      // to apply
  std::string reason;    // why it moved, or why it held
  bool limited = false;  // min/max or the budget stopped it short of the recommendation
  // Why, for ScalingLimited: MaxReplicasReached, BudgetExhausted or ReplicasNotReady.
  std::string limit;
};

struct Decision {
  bool observed = false;                      // false: metrics unusable; every pool held
  std::string observation;                    // what was seen, for the Event and status
  std::map<std::string, PoolDecision> pools;  // "prompt", "token"
  bool limited() const;
  std::string limited_reason;  // when the budget (not min/max) binds, which one
};

// A rollout still unfinished after this long is reported as ScalingLimited.
inline constexpr double kNotReadyLimitSeconds = 300;

class Autoscaler {
 public:
  // `load` is null when the metrics source failed or returned garbage (`error` says how).
  Decision decide(double now_s, const AutoscalingSpec& spec, const LoadObservation* load,
                  const std::string& error, const std::map<std::string, PoolNow>& pools,
                  const MachineModel& prompt, const MachineModel& token,
                  const sim::ModelSpec& model, const CapacityTargets& targets);

 private:
  std::map<std::string, std::deque<std::pair<double, int>>> history_;  // pool -> (t, rec)
  // Scale-down needs a whole window of recommendations: a restarted operator must not
  // shrink a pool on its first, partial look.
  std::map<std::string, double> first_seen_;
  std::map<std::string, double> not_ready_since_;  // pool -> start of an unfinished rollout
};

// NaN, infinite or negative values, or a rate with no lengths: not a usable observation.
bool plausible(const LoadObservation& load, std::string* why);

}  // namespace splitwise::controller
