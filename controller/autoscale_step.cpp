#include "controller/autoscale_step.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace splitwise::controller {

Result<std::string> machine_for_gpu(const std::string& gpu_type) {
  if (gpu_type == "H100") return std::string("h100");
  if (gpu_type == "A100") return std::string("a100");
  if (gpu_type == "CPU") return std::string("cpu");  // our CPU engine's profiles
  return Status::error("no performance profile for gpuType " +
                       (gpu_type.empty() ? std::string("(none: nodeSelector only)") : gpu_type) +
                       "; autoscaling knows H100, A100 and CPU");
}

AutoscaleStep::AutoscaleStep(std::shared_ptr<LoadSource> source, std::function<double()> now_s)
    : source_(std::move(source)), now_s_(std::move(now_s)) {}

void AutoscaleStep::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  states_.erase(key);
}

Result<MachineModel> AutoscaleStep::machine_model(const AutoscalingSpec& a, const PoolSpec& pool,
                                                  sim::ModelSpec* model) {
  auto name = machine_for_gpu(pool.gpu_type);
  if (!name.ok()) return name.status();
  auto machine = sim::machine_spec(*name);
  if (!machine.ok()) return machine.status();
  auto m = sim::model_spec(a.profile_model);
  if (!m.ok()) return m.status();
  *model = *m;
  // The profile's rows for this pool's tensor-parallel size: one worker is one instance.
  machine->cost_per_hour = machine->cost_per_hour / machine->gpus * pool.gpus_per_worker;
  machine->gpus = pool.gpus_per_worker;
  const std::string key =
      a.profile_path + "|" + a.profile_model + "|" + *name + "|" + std::to_string(machine->gpus);
  std::lock_guard lock(profiles_mu_);
  auto it = profiles_.find(key);
  if (it == profiles_.end()) {
    auto perf = sim::PerfModel::from_csv(a.profile_path, *m, *machine, machine->gpus);
    if (!perf.ok()) return perf.status();
    it = profiles_.emplace(key, std::make_shared<const sim::PerfModel>(std::move(*perf))).first;
  }
  return MachineModel{*machine, it->second};
}

AutoscaleOutcome AutoscaleStep::run(const std::string& key, const ClusterRef& ref,
                                    const ClusterSpec& spec, const AutoscalingSpec& a,
                                    const std::map<std::string, int>& live_replicas,
                                    const std::map<std::string, int>& ready) {
  AutoscaleOutcome out;
  if (!a.enabled) {
    std::lock_guard lock(mu_);
    out.disabled_now = states_.erase(key) > 0;
    return out;
  }
  out.enabled = true;
  const double now = now_s_();
  std::unique_lock lock(mu_);
  State& st = states_[key];
  if (st.uid != ref.uid) {
    st = State();
    st.uid = ref.uid;
  }
  const bool due = st.last < 0 || now - st.last >= a.interval_seconds;
  if (!due) {
    out.replicas = st.replicas;
    out.scaling_limited = st.limited;
    out.requeue_s = st.last + a.interval_seconds - now;
    return out;
  }
  lock.unlock();

  // The pools the autoscaler sizes: prompt and token (a mixed pool keeps its spec size).
  std::map<std::string, PoolNow> pools;
  std::map<std::string, MachineModel> machines;
  sim::ModelSpec model;
  std::string problem;
  for (const char* name : {"prompt", "token"}) {
    auto it = spec.pools.find(name);
    if (it == spec.pools.end()) continue;
    const PoolSpec& p = it->second;
    PoolNow now_pool;
    auto known = st.replicas.find(name);
    auto live = live_replicas.find(name);
    now_pool.replicas = known != st.replicas.end()    ? known->second
                        : live != live_replicas.end() ? live->second
                                                      : p.replicas;
    auto r = ready.find(name);
    now_pool.ready = r == ready.end() ? 0 : r->second;
    now_pool.min_replicas = p.min_replicas.value_or(1);
    now_pool.max_replicas = p.max_replicas.value_or(std::max(p.replicas, 1) * 4);
    now_pool.gpus_per_worker = p.gpus_per_worker;
    auto mm = machine_model(a, p, &model);
    if (!mm.ok()) {
      problem += (problem.empty() ? "" : "; ") + std::string("spec.pools.") + name + ": " +
                 mm.status().message();
    } else {
      now_pool.cost_per_gpu_hour = mm->machine.cost_per_hour / mm->machine.gpus;
      now_pool.kw_per_gpu = mm->machine.gpu_kw;
      machines[name] = *mm;
    }
    pools[name] = now_pool;
  }
  if (pools.size() < 2 && problem.empty())
    problem = "autoscaling sizes a prompt and a token pool; this cluster has " +
              std::to_string(pools.size()) + " of them";
  // Two scrapes of the router Service may reach two different routers, whose counters
  // do not difference into a rate: several routers need Prometheus (or an explicit URL).
  if (problem.empty() && a.prometheus_url.empty() && a.router_metrics_url.empty() &&
      spec.router.replicas > 1)
    problem = "with " + std::to_string(spec.router.replicas) +
              " router replicas set spec.autoscaling.metrics.prometheusURL: scrapes of the "
              "router Service reach one replica at a time";

  Result<LoadObservation> load = Status::error(problem);
  if (problem.empty()) {
    const std::string router_url =
        !a.router_metrics_url.empty() ? a.router_metrics_url
                                      : "http://" + router_name(ref) + "." + ref.ns +
                                            ".svc:" + std::to_string(spec.router.port) + "/metrics";
    const std::string selector =
        "namespace=\"" + ref.ns + "\",service=\"" + router_name(ref) + "\"";
    load = source_->observe(key, a.prometheus_url, router_url, selector, now);
  }
  CapacityTargets targets;
  if (spec.slo.tbt_seconds) targets.tbt_seconds = *spec.slo.tbt_seconds;
  targets.utilization = a.target_utilization;
  if (auto t = spec.pools.find("token"); t != spec.pools.end())
    targets.max_num_seqs = t->second.max_num_seqs;
  if (auto p = spec.pools.find("prompt"); p != spec.pools.end())
    targets.max_batch_tokens = p->second.max_batch_tokens;

  Decision d;
  if (problem.empty()) {
    d = [&] {
      std::lock_guard relock(mu_);
      return st.scaler.decide(now, a, load.ok() ? &*load : nullptr,
                              load.ok() ? "" : load.status().message(), pools, machines["prompt"],
                              machines["token"], model, targets);
    }();
  } else {
    // Nothing to size against: hold what runs, as on a metrics outage.
    Autoscaler hold;
    d = hold.decide(now, a, nullptr, problem, pools, {}, {}, model, targets);
  }

  out.decided = true;
  out.metrics_checked = problem.empty();
  out.metrics_up = d.observed;
  out.decision = d;
  for (const auto& [name, pd] : d.pools) {
    out.replicas[name] = pd.replicas;
    const int before = pools[name].replicas;
    out.previous[name] = before;
    if (pd.replicas != before) {
      out.events.push_back({"Normal", pd.replicas > before ? "ScaledUp" : "ScaledDown",
                            "pool " + name + ": " + std::to_string(before) + " -> " +
                                std::to_string(pd.replicas) + " replicas; " + pd.reason + " (" +
                                d.observation + ")"});
    }
  }
  if (!problem.empty()) {
    out.scaling_limited = {kScalingLimited, "True", "CannotSize",
                           "holding current replicas: " + problem};
  } else if (!d.observed) {
    out.scaling_limited = {kScalingLimited, "True", "MetricsUnavailable",
                           "holding current replicas: " + d.observation};
  } else if (d.limited()) {
    std::string msg;
    for (const auto& [name, pd] : d.pools)
      if (pd.limited) msg += (msg.empty() ? "" : "; ") + name + ": " + pd.reason;
    // The most actionable cause first: pods that never get ready, then the budget.
    std::string reason = "MaxReplicasReached";
    for (const char* kind : {"ReplicasNotReady", "BudgetExhausted"}) {
      const bool any = std::any_of(d.pools.begin(), d.pools.end(),
                                   [&](const auto& kv) { return kv.second.limit == kind; });
      if (any && reason == "MaxReplicasReached") reason = kind;
    }
    out.scaling_limited = {kScalingLimited, "True", reason, msg};
  } else {
    out.scaling_limited = {kScalingLimited, "False", "WithinLimits",
                           "the autoscaler's replicas are within minReplicas/maxReplicas and the "
                           "budget (" +
                               d.observation + ")"};
  }
  {
    std::lock_guard relock(mu_);
    const bool was_limited =
        st.limited.status == "True" && st.limited.reason == out.scaling_limited.reason;
    if (out.scaling_limited.status == "True" && !was_limited)
      out.events.push_back({"Warning", out.scaling_limited.reason, out.scaling_limited.message});
    st.last = now;
    st.replicas = out.replicas;
    st.limited = out.scaling_limited;
  }
  out.requeue_s = a.interval_seconds;
  return out;
}

}  // namespace splitwise::controller
