// Expectations about tiny-llama3-gqa's Llama 3.1 RoPE settings, shared by the config and
// the weight loader tests (both must read the same values, from either config style).
#pragma once

#include <gtest/gtest.h>

#include "workers/engine/model_config.h"

namespace splitwise::engine {

inline void expect_llama3_scaling(const ModelConfig& c) {
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 256);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
}

}  // namespace splitwise::engine
