// Token sampling: greedy, temperature, top-k, top-p. The random draw for a sequence's
// n-th generated token is a pure function of (seed, n), so a seeded run repeats exactly
// however requests are batched, preempted, or moved to another worker mid-stream.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "workers/engine/status.h"
#include "workers/engine/tokenizer.h"

namespace splitwise::engine {

// Temperatures below this sample greedily.
inline constexpr float kGreedyBelow = 1e-5f;

struct SamplingParams {
  float temperature = 0.0f;  // below kGreedyBelow: greedy
  int top_k = 0;             // 0: whole vocabulary
  float top_p = 1.0f;        // nucleus mass kept, (0, 1]
  uint64_t seed = 0;
  // Draw index of the first generated token: a request resumed elsewhere after n tokens
  // passes n, so its draws continue the original sequence of draws.
  int64_t first_index = 0;
};

// Rejects values a request cannot mean (negative temperature, top_p outside (0, 1]).
Status validate_sampling(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params) {}

  // Picks generated token number `index` (0 = first) from one row of logits.
  // Greedy ties go to the lowest id.
  TokenId sample(std::span<const float> logits, int64_t index);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::vector<std::pair<float, TokenId>> candidates_;  // reused across calls
};

// Uniform double in [0, 1) determined by (seed, index): a counter-based generator
// (SplitMix64 finaliser), so no state travels with a sequence.
double uniform_at(uint64_t seed, int64_t index);

}  // namespace splitwise::engine
