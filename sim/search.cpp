#include "sim/search.h"

#include <cmath>

namespace splitwise::sim {

Report probe(const ClusterSpec& spec, const std::vector<Request>& lengths,
             const PerfModel& reference, const SloSpec& slo, const RateSearch& search,
             double rate) {
  ArrivalProcess process{rate, search.duration_s, search.cv, search.seed};
  const auto trace = generate(process, lengths);
  const SimRun run = simulate(spec, trace);
  return summarize(run.records, run.machines, spec, reference, slo, run.end_s, &run.token_gaps);
}

RateResult max_rate_meeting_slo(const ClusterSpec& spec, const std::vector<Request>& lengths,
                                const PerfModel& reference, const SloSpec& slo,
                                const RateSearch& search) {
  RateResult out;
  double lo = 0, hi = 0;
  Report lo_report;
  // Grow (or shrink) geometrically to bracket the limit, then bisect on a log scale:
  // SLO attainment is monotone in the rate up to simulation noise.
  double rate = search.start_rate;
  for (int i = 0; i < 40; ++i) {
    Report r = probe(spec, lengths, reference, slo, search, rate);
    ++out.probes;
    if (r.slo_met) {
      lo = rate;
      lo_report = std::move(r);
      if (hi > 0) break;
      rate *= 2;
    } else {
      hi = rate;
      if (lo > 0) break;
      rate /= 2;
      if (rate < 1e-3) return out;
    }
  }
  if (lo == 0 || hi == 0) return out;
  while (hi / lo - 1 > search.resolution) {
    const double mid = std::sqrt(lo * hi);
    Report r = probe(spec, lengths, reference, slo, search, mid);
    ++out.probes;
    if (r.slo_met) {
      lo = mid;
      lo_report = std::move(r);
    } else {
      hi = mid;
    }
  }
  out.max_rate = lo;
  out.at_max = std::move(lo_report);
  return out;
}

}  // namespace splitwise::sim
