// Request arrivals for the simulator: the Azure LLM inference traces the paper used, or
// synthetic Poisson / gamma arrivals whose token lengths are drawn from a trace.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::sim {

struct Request {
  double arrival_s = 0;  // from the start of the run
  int prompt_tokens = 0;
  int output_tokens = 0;  // >= 1: the first comes from the prefill
};

// TIMESTAMP,ContextTokens,GeneratedTokens (../shared/data/azure-llm-2023). Arrivals are
// made relative to the first request and sorted; errors name the file and line.
Result<std::vector<Request>> load_azure_trace(const std::filesystem::path& path);

// The requests arriving in [start_s, start_s + duration_s), shifted to start at 0.
std::vector<Request> window(const std::vector<Request>& trace, double start_s, double duration_s);

struct ArrivalProcess {
  double rate = 1;  // requests per second
  double duration_s = 60;
  // Coefficient of variation of inter-arrival gaps: 1 is Poisson, > 1 burstier (gamma).
  double cv = 1;
  uint64_t seed = 1;
};

// Arrivals from `process`; each request's (prompt, output) pair is drawn, jointly, from
// `lengths` (a trace), so the length mix and its correlation are the trace's.
std::vector<Request> generate(const ArrivalProcess& process, const std::vector<Request>& lengths);

// Arrivals per second over the whole trace.
double mean_rate(const std::vector<Request>& trace);

}  // namespace splitwise::sim
