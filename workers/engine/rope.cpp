#include "workers/engine/rope.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>

namespace splitwise::engine {

namespace {
// Round-to-nearest-even to bf16's 8 significant bits, kept in a float.
float round_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}
}  // namespace

std::vector<float> rope_inv_freq(const ModelConfig& config) {
  const int half = config.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(config.head_dim);
    inv[i] = 1.0f / std::pow(config.rope_theta, exponent);
  }
  apply_scaling(config.rope_scaling, inv);
  if (config.rope_inv_freq_bf16)
    for (float& f : inv) f = round_to_bf16(f);
  return inv;
}

void apply_scaling(const RopeScaling& s, std::vector<float>& inv) {
  if (s.type != "llama3") return;
  // Llama 3.1: long wavelengths (beyond the original context) are slowed by `factor`,
  // short ones kept, and the band between blended linearly in 1/wavelength.
  const float old_len = static_cast<float>(s.original_max_position);
  const float low_wavelen = old_len / s.low_freq_factor;
  const float high_wavelen = old_len / s.high_freq_factor;
  for (float& f : inv) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f = f / s.factor;
      continue;
    }
    const float smooth =
        (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    f = (1.0f - smooth) * f / s.factor + smooth * f;
  }
}

RopeTable make_rope_table(const ModelConfig& config, int num_positions) {
  RopeTable t;
  const std::vector<float> inv = rope_inv_freq(config);
  t.half_dim = static_cast<int>(inv.size());
  t.cos.resize(static_cast<size_t>(num_positions) * t.half_dim);
  t.sin.resize(t.cos.size());
  for (int p = 0; p < num_positions; ++p) {
    for (int i = 0; i < t.half_dim; ++i) {
      const float angle = static_cast<float>(p) * inv[i];
      t.cos[static_cast<size_t>(p) * t.half_dim + i] = std::cos(angle);
      t.sin[static_cast<size_t>(p) * t.half_dim + i] = std::sin(angle);
    }
  }
  return t;
}

}  // namespace splitwise::engine
