// Rotary position embedding tables, including Llama 3 frequency scaling.
#pragma once

#include <vector>

#include "workers/engine/model_config.h"

namespace splitwise::engine {

// Inverse frequencies, [head_dim / 2], computed in fp32 as the reference
// implementations do (a double-precision table shifts logits by ~1e-6 at long positions).
std::vector<float> rope_inv_freq(const ModelConfig& config);

// Llama 3.1 frequency scaling in place (no-op for the default type).
void apply_scaling(const RopeScaling& scaling, std::vector<float>& inv_freq);

// cos and sin of position * inv_freq for positions [0, num_positions).
// Both [num_positions, head_dim / 2].
struct RopeTable {
  int half_dim = 0;
  std::vector<float> cos;
  std::vector<float> sin;
};
RopeTable make_rope_table(const ModelConfig& config, int num_positions);

}  // namespace splitwise::engine
