#include "bench/load/report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>

namespace splitwise::bench {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The paper's SLOs: slowdown limits at p50 / p90 / p99; all nine must hold.
struct SloSpec {
  const char* metric;
  double limits[3];
};
constexpr SloSpec kSlos[] = {{"TTFT", {2, 3, 6}}, {"TBT", {1.25, 1.5, 5}}, {"E2E", {1.25, 1.5, 5}}};
constexpr const char* kPcts[] = {"p50", "p90", "p99"};

// Linear interpolation between closest ranks (numpy's default); a neighbour at infinity
// (a failed request) makes the percentile infinite rather than NaN.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  if (std::isinf(sorted[lo]) || std::isinf(sorted[hi])) return kInf;
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

double ms(double s) { return s * 1000.0; }

std::vector<double> gaps_ms(const RequestRecord& r) {
  std::vector<double> g;
  for (size_t k = 1; k < r.token_s.size(); ++k) g.push_back(ms(r.token_s[k] - r.token_s[k - 1]));
  return g;
}

// A request's TBT for the SLO: its mean gap, (last token - first token) / (n - 1). With a
// model this small a decode step is a fraction of a millisecond, below the jitter of
// delivery: several tokens often arrive in one read (gaps of ~0.03 ms) and then a longer
// pause, so single gaps against one baseline gap would measure socket coalescing. The
// mean over the request is what a reader of the stream experiences.
double mean_gap_ms(const RequestRecord& r) {
  return ms(r.token_s.back() - r.token_s.front()) / static_cast<double>(r.token_s.size() - 1);
}

}  // namespace

Distribution distribution(std::vector<double> v) {
  Distribution d;
  d.n = v.size();
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  d.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  d.p50 = percentile(v, 0.50);
  d.p90 = percentile(v, 0.90);
  d.p99 = percentile(v, 0.99);
  return d;
}

Result<Baseline> Baseline::fit(const std::vector<RequestRecord>& serial) {
  // Per shape (prompt length), the median over its repeats: an unloaded latency is a
  // best case, and on a shared machine a single run can catch someone else's time slice.
  std::map<int, std::pair<std::vector<double>, std::vector<double>>> shapes;
  int used = 0;
  for (const RequestRecord& r : serial) {
    if (!r.ok() || r.token_s.empty()) continue;
    auto& [ttft, gap] = shapes[r.prompt_tokens];
    ttft.push_back(ms(r.token_s.front() - r.sent_s));
    if (r.token_s.size() > 1) gap.push_back(mean_gap_ms(r));
    ++used;
  }
  if (shapes.empty()) return Status::error("baseline: no serial request completed with a token");
  Baseline b;
  std::vector<double> gaps;
  for (auto& [prompt, v] : shapes) {
    b.ttft_ms.emplace_back(prompt, distribution(v.first).p50);
    if (!v.second.empty()) gaps.push_back(distribution(v.second).p50);
  }
  b.requests = used;
  b.source = "measured: " + std::to_string(used) + " serial requests, " +
             std::to_string(shapes.size()) + " shapes";
  b.tbt_ms = distribution(gaps).p50;  // of per-request mean gaps (see mean_gap_ms)
  if (b.tbt_ms <= 0) return Status::error("baseline: no gaps between tokens were measured");
  return b;
}

double Baseline::ttft_for(int prompt_tokens) const {
  SW_CHECK(!ttft_ms.empty());
  if (prompt_tokens <= ttft_ms.front().first) return ttft_ms.front().second;
  if (prompt_tokens >= ttft_ms.back().first) return ttft_ms.back().second;
  auto hi = std::lower_bound(ttft_ms.begin(), ttft_ms.end(), prompt_tokens,
                             [](const auto& point, int p) { return point.first < p; });
  auto lo = hi - 1;
  const double f = static_cast<double>(prompt_tokens - lo->first) / (hi->first - lo->first);
  return lo->second + f * (hi->second - lo->second);
}

nlohmann::json Baseline::to_json() const {
  return {{"ttft_ms", ttft_ms}, {"tbt_ms", tbt_ms}, {"requests", requests}, {"source", source}};
}

std::string Baseline::describe() const {
  std::string line = "TTFT ms at prompt tokens";
  char cell[48];
  for (const auto& [p, t] : ttft_ms) {
    std::snprintf(cell, sizeof cell, " %d:%.2f", p, t);
    line += cell;
  }
  std::snprintf(cell, sizeof cell, "; TBT %.3f ms", tbt_ms);
  return line + cell;
}

Result<Baseline> Baseline::read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the baseline file");
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_object() && j.contains("baseline")) j = j["baseline"];
  const std::string expected = path + ": expected {\"ttft_ms\": [[tokens, ms], ...], \"tbt_ms\"}";
  if (!j.is_object() || !j.contains("ttft_ms") || !j["ttft_ms"].is_array() ||
      !j.contains("tbt_ms") || !j["tbt_ms"].is_number())
    return Status::error(expected);
  Baseline b;
  try {
    b.ttft_ms = j["ttft_ms"].get<std::vector<std::pair<int, double>>>();
  } catch (const nlohmann::json::exception&) {
    return Status::error(expected);
  }
  std::sort(b.ttft_ms.begin(), b.ttft_ms.end());
  b.tbt_ms = j["tbt_ms"].get<double>();
  b.requests = j.value("requests", 0);
  b.source = "file " + path;
  const bool positive = std::all_of(b.ttft_ms.begin(), b.ttft_ms.end(),
                                    [](const auto& point) { return point.second > 0; });
  if (b.ttft_ms.empty() || !positive || b.tbt_ms <= 0)
    return Status::error(path + ": baseline latencies must be positive");
  return b;
}

bool Summary::slo_all_ok() const {
  return !slo.empty() &&
         std::all_of(slo.begin(), slo.end(), [](const SloRow& r) { return r.ok(); });
}

Summary summarize(const std::string& label, const std::string& source,
                  const std::vector<RequestRecord>& records, std::optional<Baseline> baseline) {
  Summary s;
  s.label = label;
  s.source = source;
  s.offered = records.size();
  s.baseline = baseline;
  std::vector<double> ttft, tbt, e2e, ttft_slow, tbt_slow, e2e_slow;
  double first_send = kInf, last_end = 0, prompt_sum = 0;
  for (const RequestRecord& r : records) {
    s.offered_span_s = std::max(s.offered_span_s, r.scheduled_s);
    first_send = std::min(first_send, r.sent_s);
    last_end = std::max(last_end, r.end_s);
    s.max_send_lag_ms = std::max(s.max_send_lag_ms, ms(r.sent_s - r.scheduled_s));
    // A failed request counts as an infinite slowdown: a cluster that sheds load with 429s
    // must not pass its SLOs on the requests it chose to keep.
    if (!r.ok() || r.token_s.empty()) {
      if (!r.ok()) {
        ++s.failures[r.failure];
        s.failure_example.emplace(r.failure, r.message);
      }
      ttft_slow.push_back(kInf);
      e2e_slow.push_back(kInf);
      continue;
    }
    ++s.completed;
    prompt_sum += r.prompt_tokens;
    s.output_tokens += r.output_tokens();
    const double t = ms(r.token_s.front() - r.sent_s), e = ms(r.end_s - r.sent_s);
    ttft.push_back(t);
    e2e.push_back(e);
    for (double g : gaps_ms(r)) tbt.push_back(g);
    if (baseline && r.token_s.size() > 1) tbt_slow.push_back(mean_gap_ms(r) / baseline->tbt_ms);
    if (baseline) {
      ttft_slow.push_back(t / baseline->ttft_for(r.prompt_tokens));
      e2e_slow.push_back(e / baseline->e2e_for(r.prompt_tokens, r.output_tokens()));
    }
  }
  s.ttft_ms = distribution(ttft);
  s.tbt_ms = distribution(tbt);
  s.e2e_ms = distribution(e2e);
  if (s.completed) {
    s.mean_prompt_tokens = prompt_sum / static_cast<double>(s.completed);
    s.mean_output_tokens = static_cast<double>(s.output_tokens) / static_cast<double>(s.completed);
  }
  s.window_s = last_end > first_send ? last_end - first_send : 0;
  if (s.window_s > 0) {
    s.requests_per_s = static_cast<double>(s.completed) / s.window_s;
    s.tokens_per_s = static_cast<double>(s.output_tokens) / s.window_s;
  }
  if (baseline) {
    const Distribution d[] = {distribution(ttft_slow), distribution(tbt_slow),
                              distribution(e2e_slow)};
    for (int m = 0; m < 3; ++m) {
      const double v[] = {d[m].p50, d[m].p90, d[m].p99};
      for (int p = 0; p < 3; ++p)
        s.slo.push_back({kSlos[m].metric, kPcts[p], v[p], kSlos[m].limits[p]});
    }
  }
  return s;
}

void print_summary(const Summary& s, std::FILE* out) {
  std::fprintf(out, "== %s ==\n%s\n", s.label.c_str(), s.source.c_str());
  std::fprintf(out, "offered %zu requests over %.1f s (%.2f req/s); completed %zu", s.offered,
               s.offered_span_s,
               s.offered_span_s > 0 ? static_cast<double>(s.offered - 1) / s.offered_span_s : 0.0,
               s.completed);
  int failed = 0;
  for (const auto& [kind, n] : s.failures) failed += n;
  std::fprintf(out, ", failed %d", failed);
  for (const auto& [kind, n] : s.failures) std::fprintf(out, " [%s: %d]", kind.c_str(), n);
  for (const auto& [kind, text] : s.failure_example)
    if (!text.empty()) std::fprintf(out, "\n  e.g. %s: %.160s", kind.c_str(), text.c_str());
  std::fprintf(out, "\nmean lengths: prompt %.1f, output %.1f tokens; max send lag %.1f ms\n",
               s.mean_prompt_tokens, s.mean_output_tokens, s.max_send_lag_ms);
  std::fprintf(out, "%-6s %8s %9s %9s %9s %9s\n", "ms", "n", "p50", "p90", "p99", "mean");
  for (auto [name, d] : {std::pair{"TTFT", &s.ttft_ms}, {"TBT", &s.tbt_ms}, {"E2E", &s.e2e_ms}})
    std::fprintf(out, "%-6s %8zu %9.2f %9.2f %9.2f %9.2f\n", name, d->n, d->p50, d->p90, d->p99,
                 d->mean);
  std::fprintf(out, "throughput: %.2f req/s, %.1f output tokens/s over %.1f s\n", s.requests_per_s,
               s.tokens_per_s, s.window_s);
  if (!s.baseline) {
    std::fprintf(out, "SLOs: no baseline (pass --baseline-requests N or --baseline FILE)\n\n");
    return;
  }
  const Baseline& b = *s.baseline;
  std::fprintf(out, "SLOs vs unloaded (%s):\n  %s\n", b.source.c_str(), b.describe().c_str());
  std::fprintf(out, "%-6s %10s %10s %10s\n", "slow", "p50", "p90", "p99");
  for (size_t m = 0; m < s.slo.size(); m += 3) {
    std::fprintf(out, "%-6s", s.slo[m].metric.c_str());
    for (size_t p = m; p < m + 3; ++p) {
      char cell[32];
      std::snprintf(cell, sizeof cell, "%.2f/%gx%s", s.slo[p].slowdown, s.slo[p].limit,
                    s.slo[p].ok() ? "" : "!");
      std::fprintf(out, " %10s", cell);
    }
    std::fprintf(out, "\n");
  }
  std::fprintf(out, "all nine SLOs: %s\n\n", s.slo_all_ok() ? "HOLD" : "MISSED (! marks)");
}

nlohmann::json summary_json(const Summary& s, const std::vector<RequestRecord>& records) {
  auto dist = [](const Distribution& d) {
    return nlohmann::json{
        {"n", d.n}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}, {"mean", d.mean}};
  };
  // JSON has no infinity; a slowdown made infinite by failures is written as null.
  auto num = [](double v) { return std::isinf(v) ? nlohmann::json() : nlohmann::json(v); };
  nlohmann::json j = {{"label", s.label},
                      {"source", s.source},
                      {"offered", s.offered},
                      {"offered_span_s", s.offered_span_s},
                      {"completed", s.completed},
                      {"failures", s.failures},
                      {"ttft_ms", dist(s.ttft_ms)},
                      {"tbt_ms", dist(s.tbt_ms)},
                      {"e2e_ms", dist(s.e2e_ms)},
                      {"mean_prompt_tokens", s.mean_prompt_tokens},
                      {"mean_output_tokens", s.mean_output_tokens},
                      {"output_tokens", s.output_tokens},
                      {"window_s", s.window_s},
                      {"requests_per_s", s.requests_per_s},
                      {"output_tokens_per_s", s.tokens_per_s},
                      {"max_send_lag_ms", s.max_send_lag_ms}};
  if (s.baseline) {
    j["baseline"] = s.baseline->to_json();
    for (const SloRow& r : s.slo)
      j["slo"][r.metric][r.pct] = {
          {"slowdown", num(r.slowdown)}, {"limit", r.limit}, {"ok", r.ok()}};
    j["slo_all_ok"] = s.slo_all_ok();
  }
  for (const RequestRecord& r : records) {
    nlohmann::json q = {{"scheduled_s", r.scheduled_s},
                        {"sent_s", r.sent_s},
                        {"end_s", r.end_s},
                        {"target_prompt_tokens", r.target_prompt_tokens},
                        {"prompt_tokens", r.prompt_tokens},
                        {"max_tokens", r.max_tokens},
                        {"output_tokens", r.output_tokens()},
                        {"status", r.http_status},
                        {"failure", r.failure}};
    if (!r.token_s.empty()) q["first_token_s"] = r.token_s.front();
    j["requests"].push_back(std::move(q));
  }
  return j;
}

}  // namespace splitwise::bench
