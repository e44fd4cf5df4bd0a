// What the load generator sends and when: a list of arrivals (time offset, prompt and
// output lengths in tokens), from an Azure LLM trace or a Poisson process. Pure data:
// no sockets, no clocks, so it is testable and the same list can be replayed twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::bench {

struct Arrival {
  double at_s = 0;        // offset from the start of the run, in wall seconds
  int prompt_tokens = 0;  // target prompt length, BOS included (what the router counts)
  int output_tokens = 0;  // max_tokens of the request
};

// One row of AzureLLMInferenceTrace_*.csv, time in seconds from the first row of the file.
struct TraceRow {
  double t_s = 0;
  int context_tokens = 0;
  int generated_tokens = 0;
};

// Reads TIMESTAMP, ContextTokens, GeneratedTokens; errors name the file and line.
Result<std::vector<TraceRow>> read_azure_trace(const std::string& path);

struct TraceSlice {
  double start_s = 0;      // skip rows before this trace time (seconds from the first row)
  int limit = 0;           // keep at most this many rows (0: no limit)
  double duration_s = 0;   // keep rows arriving within this many wall seconds (0: all)
  double time_scale = 1;   // speedup: wall = trace / time_scale
  double target_rate = 0;  // if > 0, overrides time_scale so the slice offers this req/s
};

// How trace lengths (thousands of tokens, GPT-4 era) shrink to a small model's context.
struct LengthScaling {
  int context = 512;
  std::string mode = "p99";  // p99 | max: the slice's total that must fit; none: clamp only
  double factor = 0;         // if > 0, used as is instead of derived from `mode`
  int min_prompt = 2;        // BOS plus at least one word
};

struct Workload {
  std::vector<Arrival> arrivals;
  double time_scale = 1;     // the speedup actually applied
  double length_factor = 1;  // the token scale actually applied
  int clamped = 0;           // requests cut to fit the context after scaling
  std::string source;        // a line describing where it came from, for the report
};

Workload workload_from_trace(const std::vector<TraceRow>& rows, const TraceSlice& slice,
                             const LengthScaling& scaling);

// Poisson arrivals at `rate` req/s. Lengths are fixed (prompt_tokens/output_tokens > 0)
// or, when `sample_from` is non-empty, drawn from its rows and scaled like a trace.
struct PoissonSpec {
  double rate = 1;
  int requests = 100;
  int prompt_tokens = 64;
  int output_tokens = 32;
  uint64_t seed = 1;
};
Workload workload_poisson(const PoissonSpec& spec, const std::vector<TraceRow>& sample_from,
                          const LengthScaling& scaling);

}  // namespace splitwise::bench
