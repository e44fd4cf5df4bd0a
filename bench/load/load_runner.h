// Sends a workload to the router's /v1/completions and records what every request saw.
// Open loop: each request leaves at its scheduled time whether or not earlier ones have
// finished (a closed loop would slow down with the server and hide its queueing), on
// its own connection, streaming, so every token's arrival time is observed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/prompts.h"
#include "bench/load/workload.h"

namespace splitwise::bench {

// Times in seconds from the start of the run (steady clock).
struct RequestRecord {
  int target_prompt_tokens = 0;
  int max_tokens = 0;
  double scheduled_s = 0;
  double sent_s = 0;
  double end_s = 0;
  std::vector<double> token_s;  // arrival of each token chunk (see Run::on_line)
  int prompt_tokens = 0;        // from the usage chunk (the router's own count)
  int completion_tokens = -1;   // from the usage chunk; -1 when it never came
  int http_status = 0;          // 0: no response head (connection failed)
  std::string failure;          // "" for success, else a kind: http_429, network, ...
  std::string message;          // the error text, for the first failures of each kind

  bool ok() const { return failure.empty(); }
  int output_tokens() const {
    return completion_tokens >= 0 ? completion_tokens : static_cast<int>(token_s.size());
  }
};

struct RunOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  double temperature = 0;
  int idle_timeout_ms = 120000;  // a stream silent this long counts as failed
  bool serial = false;           // baseline: the next request only after the last ended
};

// Builds every prompt before the clock starts, so tokenizing never delays a send.
std::vector<RequestRecord> run_workload(const RunOptions& options,
                                        const std::vector<Arrival>& arrivals,
                                        PromptBuilder& prompts);

}  // namespace splitwise::bench
