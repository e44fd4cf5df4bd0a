// What a simulated run means: latency percentiles, the paper's slowdown SLOs, throughput,
// cost and power; a per-request CSV; an SVG of latency over time.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "sim/cluster_sim.h"
#include "sim/perf_model.h"

namespace splitwise::sim {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
};
// Nearest-rank percentiles; +inf entries (requests that never finished) count as misses.
Percentiles percentiles(std::vector<double> values);

// Slowdown SLOs against the same request alone on a reference machine (the paper: a
// DGX-A100), at p50 / p90 / p99. All nine must hold.
struct SloSpec {
  std::array<double, 3> ttft{2, 3, 6};
  std::array<double, 3> tbt{1.25, 1.5, 5};
  std::array<double, 3> e2e{1.25, 1.5, 5};
  // TBT as each token's gap (inter-token latency) against the median request's reference,
  // instead of each request's mean gap against its own: stricter on prefill stalls.
  bool tbt_per_token = false;
};

struct Report {
  int requests = 0, completed = 0, rejected = 0;
  double duration_s = 0;  // last arrival
  double throughput_rps = 0, output_tokens_per_s = 0;
  Percentiles ttft_s, tbt_s, e2e_s;           // seconds
  Percentiles ttft_slow, tbt_slow, e2e_slow;  // slowdown against the reference
  Percentiles kv_tail_s;                      // split requests only
  Percentiles itl_s, itl_slow;                // every token's gap (when the run's gaps were given)
  bool slo_met = false;
  std::string slo_verdict;  // "ok" or the first SLO missed, with its value
  double machine_hours = 0, cost_usd = 0, cost_per_hour = 0, mean_power = 0;
  int64_t preemptions = 0;
};

// `reference` times each request alone (batch 1) for the slowdowns.
Report summarize(const std::vector<RequestRecord>& records,
                 const std::vector<MachineStats>& machines, const ClusterSpec& spec,
                 const PerfModel& reference, const SloSpec& slo, double end_s,
                 const LogHistogram* token_gaps = nullptr);

std::string format_report(const Report& r);

// One row per request: arrival, lengths, TTFT, TBT, E2E, machines, KV tail, preemptions.
Status write_requests_csv(const std::filesystem::path& path,
                          const std::vector<RequestRecord>& records);
// TTFT and TBT p50/p99 per `bin_s` of arrival time, as an SVG line chart.
Status write_latency_svg(const std::filesystem::path& path,
                         const std::vector<RequestRecord>& records, double bin_s,
                         const std::string& title);

}  // namespace splitwise::sim
