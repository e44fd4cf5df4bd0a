#include "controller/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace splitwise::controller {

bool Decision::limited() const {
  return std::any_of(pools.begin(), pools.end(), [](const auto& kv) { return kv.second.limited; });
}

bool plausible(const LoadObservation& l, std::string* why) {
  auto bad = [&](const char* what, double v) {
    if (std::isfinite(v) && v >= 0) return false;
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s is %g", what, v);
    *why = buf;
    return true;
  };
  if (bad("arrival rate", l.arrival_rate) || bad("mean prompt tokens", l.mean_prompt_tokens) ||
      bad("mean output tokens", l.mean_output_tokens))
    return false;
  if (l.arrival_rate > 0 && (l.mean_prompt_tokens < 1 || l.mean_output_tokens < 1)) {
    *why = "requests arrive but no token lengths were reported";
    return false;
  }
  return true;
}

Decision Autoscaler::decide(double now, const AutoscalingSpec& spec, const LoadObservation* load,
                            const std::string& error, const std::map<std::string, PoolNow>& pools,
                            const MachineModel& prompt, const MachineModel& token,
                            const sim::ModelSpec& model, const CapacityTargets& targets) {
  Decision d;
  std::string why;
  if (load == nullptr || !plausible(*load, &why)) {
    d.observation = "metrics unavailable: " + (load == nullptr ? error : why);
    // The scale-down window starts again once the load is seen: history from before an
    // outage is gone, and one low reading after it must not shrink a pool.
    first_seen_.clear();
    for (const auto& [name, p] : pools) {
      PoolDecision& pd = d.pools[name];
      // Hold what runs now; a pool that somehow has none gets its minimum back, never 0.
      pd.replicas = std::max(p.replicas, std::max(p.min_replicas, 1));
      pd.recommended = pd.replicas;
      pd.reason = "holding " + std::to_string(pd.replicas) + ": " + d.observation;
    }
    return d;
  }
  d.observed = true;
  char obs[200];
  std::snprintf(obs, sizeof obs, "%.2f req/s, mean %.0f prompt / %.0f output tokens",
                load->arrival_rate, load->mean_prompt_tokens, load->mean_output_tokens);
  d.observation = obs;
  const PoolNeed need = needed_machines(*load, prompt, token, model, targets);
  const double keep = std::max(spec.scale_up_window_seconds, spec.scale_down_window_seconds);

  for (const auto& [name, p] : pools) {
    PoolDecision& pd = d.pools[name];
    pd.recommended = name == "prompt" ? need.prompt : name == "token" ? need.token : p.replicas;
    first_seen_.try_emplace(name, now);  // a fresh autoscaler has seen no window yet
    auto& hist = history_[name];
    hist.emplace_back(now, pd.recommended);
    while (!hist.empty() && hist.front().first < now - keep) hist.pop_front();
    int up = pd.recommended, down = pd.recommended;
    for (const auto& [t, r] : hist) {
      if (t >= now - spec.scale_up_window_seconds) up = std::min(up, r);
      if (t >= now - spec.scale_down_window_seconds) down = std::max(down, r);
    }
    const int cur = p.replicas;
    const int lo = std::max(p.min_replicas, 1), hi = std::max(p.max_replicas, lo);
    const int64_t step = spec.max_step;  // int64: cur + step must not overflow
    const bool may_shrink = now - first_seen_[name] >= spec.scale_down_window_seconds;
    int next = cur;
    if (p.ready < cur) {
      // A rollout under way: no growth on top of pods not yet ready (they may be pending
      // for capacity), but shrinking stays allowed, so a pool is never stuck large.
      auto [since, _] = not_ready_since_.try_emplace(name, now);
      pd.reason = "rollout in progress (" + std::to_string(p.ready) + " of " + std::to_string(cur) +
                  " ready)";
      if (down < cur && may_shrink) {
        next = static_cast<int>(std::max<int64_t>(down, cur - step));
        pd.reason += ", load needs " + std::to_string(pd.recommended);
      }
      if (now - since->second >= kNotReadyLimitSeconds) {
        pd.limited = true;
        pd.limit = "ReplicasNotReady";
        pd.reason += " for " + std::to_string(static_cast<int>(now - since->second)) +
                     " s: pods pending or failing";
      }
    } else if (up > cur) {
      not_ready_since_.erase(name);
      next = static_cast<int>(std::min<int64_t>(up, cur + step));
      pd.reason = "load needs " + std::to_string(pd.recommended);
    } else if (down < cur && !hist.empty() && may_shrink) {
      not_ready_since_.erase(name);
      next = static_cast<int>(std::max<int64_t>(down, cur - step));
      pd.reason = "load needs " + std::to_string(pd.recommended) + " for " +
                  std::to_string(static_cast<int>(spec.scale_down_window_seconds)) + " s";
    } else {
      not_ready_since_.erase(name);
      pd.reason = "load needs " + std::to_string(pd.recommended);
    }
    if (next > hi) {
      next = hi;
      // Limited only when the load wants more than the cap, not when the cap was lowered.
      if (pd.recommended > hi) {
        pd.limited = true;
        if (pd.limit.empty()) pd.limit = "MaxReplicasReached";
        pd.reason += ", capped at maxReplicas " + std::to_string(hi);
      }
    }
    if (next < lo) next = lo;
    pd.replicas = next;
  }

  // The budget over all pools: trim increases, the largest first, until it fits.
  auto totals = [&](double* gpus, double* cost, double* kw) {
    *gpus = *cost = *kw = 0;
    for (const auto& [name, p] : pools) {
      const double g = static_cast<double>(d.pools[name].replicas) * p.gpus_per_worker;
      *gpus += g;
      *cost += g * p.cost_per_gpu_hour;
      *kw += g * p.kw_per_gpu;
    }
  };
  auto over = [&](std::string* which) {
    double g, c, k;
    totals(&g, &c, &k);
    char buf[128];
    if (spec.budget_gpus > 0 && g > spec.budget_gpus) {
      std::snprintf(buf, sizeof buf, "GPU budget %d", spec.budget_gpus);
    } else if (spec.budget_cost_per_hour > 0 && c > spec.budget_cost_per_hour + 1e-9) {
      std::snprintf(buf, sizeof buf, "cost budget %.2f $/h", spec.budget_cost_per_hour);
    } else if (spec.budget_kw > 0 && k > spec.budget_kw + 1e-9) {
      std::snprintf(buf, sizeof buf, "power budget %.1f kW", spec.budget_kw);
    } else {
      return false;
    }
    *which = buf;
    return true;
  };
  std::string which;
  while (over(&which)) {
    std::string grow;
    int most = 0;
    for (const auto& [name, p] : pools) {
      // Only growth beyond both the current size and the floor (minReplicas, and never 0)
      // is the budget's to trim.
      const int inc = d.pools[name].replicas - std::max({p.replicas, p.min_replicas, 1});
      if (inc > most) most = inc, grow = name;
    }
    if (grow.empty()) {
      // Over the budget without growing (the budget was lowered): say so, shrink nothing.
      for (auto& [name, pd] : d.pools) {
        if (pd.limited) continue;
        pd.limited = true;
        pd.limit = "BudgetExhausted";
        pd.reason += ", over the " + which + " already";
      }
      d.limited_reason = which;
      break;
    }
    PoolDecision& pd = d.pools[grow];
    --pd.replicas;
    if (pd.limit != "BudgetExhausted") pd.reason += ", limited by the " + which;
    pd.limited = true;
    pd.limit = "BudgetExhausted";
    d.limited_reason = which;
  }
  return d;
}

}  // namespace splitwise::controller
