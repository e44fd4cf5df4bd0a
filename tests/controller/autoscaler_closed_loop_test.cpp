// The autoscaler in a closed loop with the simulator standing in for the cluster and its
// metrics: the conversation trace of ../shared/data is replayed through a Splitwise-HA
// cluster (H100 prompt, A100 token machines, llama2-70b profiles) whose pool sizes the
// autoscaler sets every interval from what the "router" observed over the last window.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "controller/autoscaler.h"
#include "sim/cluster_sim.h"
#include "sim/designs.h"
#include "tests/test_util.h"

namespace splitwise::controller {
namespace {

struct Loop {
  double gpu_hours = 0;
  double attainment = 0;  // requests meeting TTFT and TBT targets
  int scale_events = 0;
  int max_prompt = 0, max_token = 0;
  int requests = 0;
};

constexpr double kTtftSlo = 2.0, kTbtSlo = 0.1;

double attainment(const std::vector<sim::RequestRecord>& recs) {
  int ok = 0;
  for (const auto& r : recs) ok += r.completed() && r.ttft() <= kTtftSlo && r.tbt() <= kTbtSlo;
  return recs.empty() ? 0 : static_cast<double>(ok) / recs.size();
}

LoadObservation observe(const std::vector<sim::RequestRecord>& recs, double now, double window) {
  LoadObservation o;
  int n = 0;
  for (auto it = recs.rbegin(); it != recs.rend() && it->arrival >= now - window; ++it) {
    ++n;
    o.mean_prompt_tokens += it->prompt_tokens;
    o.mean_output_tokens += it->output_tokens;
  }
  o.arrival_rate = n / window;
  if (n) o.mean_prompt_tokens /= n, o.mean_output_tokens /= n;
  return o;
}

class AutoscalerClosedLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    SW_REQUIRE_SHARED(trace_path, "data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv");
    SW_REQUIRE_SHARED(profile, "data/splitwise-sim-profiles/perf_model.csv");
    auto t = sim::load_azure_trace(trace_path);
    ASSERT_TRUE(t.ok()) << t.status().message();
    trace_ = std::move(*t);
    model_ = *sim::model_spec("llama2-70b");
    profiles_ = std::make_unique<sim::ProfileSet>(profile, model_);
    auto cluster = sim::make_design("splitwise-ha", {1, 1, 0}, *profiles_);
    ASSERT_TRUE(cluster.ok()) << cluster.status().message();
    spec_ = *cluster;
    spec_.startup_s = 60;
    prompt_ = {spec_.pools[0].machine, spec_.pools[0].perf};
    token_ = {spec_.pools[1].machine, spec_.pools[1].perf};
    targets_.tbt_seconds = kTbtSlo;
    as_.interval_seconds = 30;
    as_.scale_down_window_seconds = 300;
    as_.max_step = 4;
  }

  PoolNow pool_now(const sim::ClusterSim& s, int pool) const {
    PoolNow p;
    p.replicas = s.pool_size(pool);
    p.ready = s.pool_ready(pool);
    p.min_replicas = 1;
    p.max_replicas = 64;
    const auto& m = spec_.pools[pool].machine;
    p.gpus_per_worker = m.gpus;
    p.cost_per_gpu_hour = m.cost_per_hour / m.gpus;
    p.kw_per_gpu = m.gpu_kw;
    return p;
  }

  // Runs the trace with pools sized (prompt, token) and no autoscaler.
  Loop run_static(int prompt, int token) {
    sim::ClusterSpec s = spec_;
    s.pools[0].machines = prompt;
    s.pools[1].machines = token;
    const sim::SimRun run = sim::simulate(s, trace_);
    Loop l;
    l.requests = static_cast<int>(run.records.size());
    l.attainment = attainment(run.records);
    for (const auto& m : run.machines)
      l.gpu_hours += (run.end_s - m.started) / 3600 * spec_.pools[m.pool].machine.gpus;
    l.max_prompt = prompt;
    l.max_token = token;
    return l;
  }

  // Starts where an autoscaler that ran before the trace would have left the pools: sized
  // for the first two minutes (starting at the minimum instead would measure a cold start,
  // not the scaling).
  Loop run_autoscaled() {
    sim::ClusterSpec start = spec_;
    std::vector<sim::RequestRecord> first;
    for (const auto& r : trace_)
      if (r.arrival_s < 120)
        first.push_back({r.arrival_s, -1, -1, r.prompt_tokens, r.output_tokens});
    const PoolNeed initial =
        needed_machines(observe(first, 120, 120), prompt_, token_, model_, targets_);
    start.pools[0].machines = std::max(initial.prompt, 1);
    start.pools[1].machines = std::max(initial.token, 1);
    sim::ClusterSim s(start);
    s.add_requests(trace_);
    Autoscaler scaler;
    Loop l;
    const double end = trace_.back().arrival_s;
    for (double t = as_.interval_seconds; t <= end + as_.interval_seconds;
         t += as_.interval_seconds) {
      s.run_until(t);
      const LoadObservation obs = observe(s.records(), t, std::min(t, 60.0));
      std::map<std::string, PoolNow> pools{{"prompt", pool_now(s, 0)}, {"token", pool_now(s, 1)}};
      const Decision d = scaler.decide(t, as_, &obs, "", pools, prompt_, token_, model_, targets_);
      for (int i = 0; i < 2; ++i) {
        const int want = d.pools.at(i == 0 ? "prompt" : "token").replicas;
        if (want != s.pool_size(i)) {
          ++l.scale_events;
          s.set_pool_size(i, want);
        }
      }
      l.max_prompt = std::max(l.max_prompt, s.pool_size(0));
      l.max_token = std::max(l.max_token, s.pool_size(1));
    }
    s.run_to_completion();
    l.requests = static_cast<int>(s.records().size());
    l.attainment = attainment(s.records());
    for (int i = 0; i < 2; ++i)
      l.gpu_hours += s.machine_seconds(i) / 3600 * spec_.pools[i].machine.gpus;
    return l;
  }

  std::vector<sim::Request> trace_;
  sim::ModelSpec model_;
  std::unique_ptr<sim::ProfileSet> profiles_;
  sim::ClusterSpec spec_;
  MachineModel prompt_, token_;
  CapacityTargets targets_;
  AutoscalingSpec as_;
};

TEST_F(AutoscalerClosedLoop, MeetsSlosWithFewerGpuHoursThanPeakAndDoesNotFlap) {
  // Static peak provisioning: the capacity model at the busiest 2-minute window.
  double peak = 0;
  for (double t = 120; t <= trace_.back().arrival_s; t += 30) {
    std::vector<sim::RequestRecord> recs;
    for (const auto& r : trace_)
      if (r.arrival_s >= t - 120 && r.arrival_s < t)
        recs.push_back({r.arrival_s, -1, -1, r.prompt_tokens, r.output_tokens});
    peak = std::max(peak, observe(recs, t, 120).arrival_rate);
  }
  const LoadObservation all = observe(
      [&] {
        std::vector<sim::RequestRecord> recs;
        for (const auto& r : trace_)
          recs.push_back({r.arrival_s, -1, -1, r.prompt_tokens, r.output_tokens});
        return recs;
      }(),
      trace_.back().arrival_s, trace_.back().arrival_s);
  LoadObservation at_peak = all;
  at_peak.arrival_rate = peak;
  const PoolNeed need = needed_machines(at_peak, prompt_, token_, model_, targets_);
  const Loop fixed = run_static(std::max(need.prompt, 1), std::max(need.token, 1));
  const Loop scaled = run_autoscaled();
  const double hours = trace_.back().arrival_s / 3600;
  std::printf(
      "peak %.2f req/s (mean %.2f): static %d prompt + %d token: %.1f GPU-hours, "
      "attainment %.4f\n",
      peak, all.arrival_rate, fixed.max_prompt, fixed.max_token, fixed.gpu_hours, fixed.attainment);
  std::printf(
      "autoscaled: up to %d prompt + %d token: %.1f GPU-hours, attainment %.4f, "
      "%d scale events (%.1f per hour)\n",
      scaled.max_prompt, scaled.max_token, scaled.gpu_hours, scaled.attainment, scaled.scale_events,
      scaled.scale_events / hours);
  EXPECT_EQ(scaled.requests, static_cast<int>(trace_.size()));
  EXPECT_GE(scaled.attainment, 0.99);
  EXPECT_LT(scaled.gpu_hours, fixed.gpu_hours);
  EXPECT_LE(scaled.scale_events / hours, 30) << "flapping";
}

}  // namespace
}  // namespace splitwise::controller
