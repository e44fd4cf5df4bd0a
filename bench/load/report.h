// From per-request records to the figures the Splitwise paper judges a cluster by:
// TTFT, TBT and E2E percentiles, throughput, failures, and the nine SLOs (slowdown of
// each request against the same request on an unloaded system).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/load/load_runner.h"

namespace splitwise::bench {

// Unloaded latency as a function of the request's shape, measured by a serial run:
// TTFT at a few prompt lengths spanning the workload's (interpolated linearly between
// them: prefill is not linear in the prompt, attention grows with its square), TBT as
// the median over requests of their mean gap, E2E = TTFT + (output tokens - 1) * TBT.
// With temperature 0 a request makes the same tokens loaded or alone, so its own output
// length is the one it would have had alone.
struct Baseline {
  std::vector<std::pair<int, double>> ttft_ms;  // (prompt tokens, ms), sorted by tokens
  double tbt_ms = 0;
  int requests = 0;
  std::string source;  // "measured: N serial requests" or the file it came from

  double ttft_for(int prompt_tokens) const;  // clamped to the end points outside them
  double e2e_for(int prompt_tokens, int output_tokens) const {
    return ttft_for(prompt_tokens) + tbt_ms * std::max(0, output_tokens - 1);
  }
  static Result<Baseline> fit(const std::vector<RequestRecord>& serial);
  static Result<Baseline> read(const std::string& path);  // a --json output or a baseline
  nlohmann::json to_json() const;
  std::string describe() const;  // one line with the measured points
};

struct Distribution {
  size_t n = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};
Distribution distribution(std::vector<double> values);  // infinities sort last

struct SloRow {
  std::string metric;  // TTFT | TBT | E2E
  std::string pct;     // p50 | p90 | p99
  double slowdown = 0;
  double limit = 0;
  bool ok() const { return slowdown <= limit; }
};

struct Summary {
  std::string label, source;
  size_t offered = 0;
  double offered_span_s = 0;
  size_t completed = 0;
  std::map<std::string, int> failures;
  std::map<std::string, std::string> failure_example;
  Distribution ttft_ms, tbt_ms, e2e_ms;
  double mean_prompt_tokens = 0, mean_output_tokens = 0;
  long long output_tokens = 0;
  double window_s = 0;  // first send to last end
  double requests_per_s = 0, tokens_per_s = 0;
  double max_send_lag_ms = 0;  // how late the generator itself sent: large means it starved
  std::optional<Baseline> baseline;
  std::vector<SloRow> slo;
  bool slo_all_ok() const;
};

Summary summarize(const std::string& label, const std::string& source,
                  const std::vector<RequestRecord>& records, std::optional<Baseline> baseline);
void print_summary(const Summary& s, std::FILE* out);
nlohmann::json summary_json(const Summary& s, const std::vector<RequestRecord>& records);

}  // namespace splitwise::bench
