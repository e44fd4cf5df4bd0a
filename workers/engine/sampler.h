// Token sampling: greedy, temperature, top-k, top-p. Each sequence owns its Sampler and
// its random stream, so a seeded run repeats exactly however requests are batched.
#pragma once

#include <cstdint>
#include <random>
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
};

// Rejects values a request cannot mean (negative temperature, top_p outside (0, 1]).
Status validate_sampling(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // Picks the next token from one row of logits. Greedy ties go to the lowest id.
  TokenId sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, TokenId>> candidates_;  // reused across calls
};

}  // namespace splitwise::engine
