// The highest arrival rate a cluster sustains with every SLO met: arrivals are Poisson
// (or gamma) at the rate under test, with token lengths drawn from a trace.
#pragma once

#include <vector>

#include "sim/cluster_sim.h"
#include "sim/report.h"

namespace splitwise::sim {

struct RateSearch {
  double duration_s = 600;  // of arrivals per probe
  double cv = 1;            // of inter-arrival gaps
  uint64_t seed = 1;
  double start_rate = 1;     // first probe, requests/s
  double resolution = 0.02;  // stop when hi/lo - 1 is below this
};

struct RateResult {
  double max_rate = 0;  // 0 when even the lowest probe misses an SLO
  Report at_max;        // the report at max_rate
  int probes = 0;
};

RateResult max_rate_meeting_slo(const ClusterSpec& spec, const std::vector<Request>& lengths,
                                const PerfModel& reference, const SloSpec& slo,
                                const RateSearch& search);

// One probe: simulate `rate` for search.duration_s and summarize.
Report probe(const ClusterSpec& spec, const std::vector<Request>& lengths,
             const PerfModel& reference, const SloSpec& slo, const RateSearch& search, double rate);

}  // namespace splitwise::sim
