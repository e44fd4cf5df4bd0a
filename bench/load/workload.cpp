#include "bench/load/workload.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

namespace splitwise::bench {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): the
// trace spans midnight in neither file, but a replay window should not depend on that.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// "2023-11-16 18:15:46.6805900" -> seconds since the epoch (fraction kept as a double).
bool parse_timestamp(const std::string& s, double* out) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%d %d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6) return false;
  *out = static_cast<double>(days_from_civil(y, mo, d)) * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
  return true;
}

// Length of the q-quantile (nearest rank) of prompt + output over `rows`.
int total_quantile(const std::vector<TraceRow>& rows, double q) {
  std::vector<int> totals;
  totals.reserve(rows.size());
  for (const TraceRow& r : rows) totals.push_back(r.context_tokens + r.generated_tokens);
  if (totals.empty()) return 0;
  std::sort(totals.begin(), totals.end());
  const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(totals.size()))) - 1;
  return totals[std::min(i, totals.size() - 1)];
}

double length_factor(const std::vector<TraceRow>& rows, const LengthScaling& s) {
  if (s.factor > 0) return s.factor;
  if (s.mode == "none") return 1;
  const int fit = total_quantile(rows, s.mode == "max" ? 1.0 : 0.99);
  // Only shrink: a trace that already fits is replayed at its own lengths.
  return fit > s.context - 1 ? static_cast<double>(s.context - 1) / fit : 1.0;
}

// Scales one row and clamps it into the context. Prompt + max_tokens over the context is
// a 400 at the router, so the total stays at most context - 1 (one token of slack for a
// prompt builder that lands a token long); the output keeps at least one token.
Arrival scale_row(const TraceRow& r, double f, const LengthScaling& s, int* clamped) {
  Arrival a;
  a.prompt_tokens = std::max(s.min_prompt, static_cast<int>(std::lround(r.context_tokens * f)));
  a.output_tokens = std::max(1, static_cast<int>(std::lround(r.generated_tokens * f)));
  const int room = s.context - 1;
  if (a.prompt_tokens + a.output_tokens > room) {
    ++*clamped;
    a.output_tokens = std::min(a.output_tokens, room - s.min_prompt);
    a.prompt_tokens = std::min(a.prompt_tokens, room - a.output_tokens);
  }
  return a;
}

}  // namespace

Result<std::vector<TraceRow>> read_azure_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the trace");
  std::string line;
  if (!std::getline(in, line) || line.rfind("TIMESTAMP", 0) != 0)
    return Status::error(path + ": expected the header TIMESTAMP,ContextTokens,GeneratedTokens");
  std::vector<TraceRow> rows;
  double t0 = 0;
  for (int n = 2; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string ts, ctx, gen;
    std::getline(fields, ts, ',');
    std::getline(fields, ctx, ',');
    std::getline(fields, gen, ',');
    TraceRow r;
    double t = 0;
    try {
      r.context_tokens = std::stoi(ctx);
      r.generated_tokens = std::stoi(gen);
    } catch (const std::exception&) {
      return Status::error(path + ":" + std::to_string(n) + ": bad token counts '" + line + "'");
    }
    if (!parse_timestamp(ts, &t))
      return Status::error(path + ":" + std::to_string(n) + ": bad timestamp '" + ts + "'");
    if (rows.empty()) t0 = t;
    r.t_s = t - t0;
    rows.push_back(r);
  }
  if (rows.empty()) return Status::error(path + ": no requests");
  return rows;
}

Workload workload_from_trace(const std::vector<TraceRow>& all, const TraceSlice& slice,
                             const LengthScaling& scaling) {
  std::vector<TraceRow> rows;
  for (const TraceRow& r : all) {
    if (r.t_s < slice.start_s) continue;
    if (slice.limit > 0 && static_cast<int>(rows.size()) >= slice.limit) break;
    rows.push_back(r);
  }
  Workload w;
  w.time_scale = slice.time_scale;
  if (slice.target_rate > 0 && rows.size() > 1) {
    // n - 1 gaps over the slice's span: the mean rate a listener would measure.
    const double span = rows.back().t_s - rows.front().t_s;
    if (span > 0) w.time_scale = slice.target_rate * span / static_cast<double>(rows.size() - 1);
  }
  const double t0 = rows.empty() ? 0 : rows.front().t_s;
  if (slice.duration_s > 0)
    std::erase_if(
        rows, [&](const TraceRow& r) { return (r.t_s - t0) / w.time_scale >= slice.duration_s; });
  w.length_factor = length_factor(rows, scaling);
  for (const TraceRow& r : rows) {
    Arrival a = scale_row(r, w.length_factor, scaling, &w.clamped);
    a.at_s = (r.t_s - t0) / w.time_scale;
    w.arrivals.push_back(a);
  }
  return w;
}

Workload workload_poisson(const PoissonSpec& spec, const std::vector<TraceRow>& sample_from,
                          const LengthScaling& scaling) {
  Workload w;
  std::mt19937_64 rng(spec.seed);
  std::exponential_distribution<double> gap(spec.rate);
  std::uniform_int_distribution<size_t> pick(0, sample_from.empty() ? 0 : sample_from.size() - 1);
  w.length_factor = sample_from.empty() ? 1.0 : length_factor(sample_from, scaling);
  double t = 0;
  for (int i = 0; i < spec.requests; ++i) {
    Arrival a;
    if (sample_from.empty()) {
      a = scale_row(TraceRow{0, spec.prompt_tokens, spec.output_tokens}, 1.0, scaling, &w.clamped);
    } else {
      a = scale_row(sample_from[pick(rng)], w.length_factor, scaling, &w.clamped);
    }
    // The first request goes at t = 0: a run should not open with an idle gap.
    a.at_s = t;
    t += gap(rng);
    w.arrivals.push_back(a);
  }
  return w;
}

}  // namespace splitwise::bench
