// CPU reference and fast ops, fp32. Every CUDA op is tested against these.
// Pointers are row-major; shapes are given in brackets.
#pragma once

#include <cstdint>
#include <type_traits>

namespace splitwise::kernels::cpu {

// out[r] = x[r] / rms(x[r]) * weight, per row.  x, out: [rows, dim]; weight: [dim]
void rmsnorm(const float* x, const float* weight, float* out, int rows, int dim, float eps);

// y = x * w^T (+ y when accumulate).  x: [m, k]; w: [n, k]; y: [m, n]
void matmul_nt(const float* x, const float* w, float* y, int m, int n, int k,
               bool accumulate = false);

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i].
// gate_up: [rows, 2 * inter]; out: [rows, inter]
void silu_mul(const float* gate_up, float* out, int rows, int inter);

// Rotate-half RoPE in place on `num_heads` heads of one token.
// x: [num_heads, head_dim]; cos, sin: [head_dim / 2] for this token's position
void rope_rotate_half(float* x, int num_heads, int head_dim, const float* cos, const float* sin);

// In-place numerically stable softmax over n values.
void softmax(float* x, int n);

// e^x without libm, branch-free so that the same code serves plain floats and GCC
// vector types (softmax and SiLU spend most of their time here, and libm's expf blocks
// vectorisation without -ffast-math). Relative error below 2e-7; inputs are clamped to
// [-87, 88], so e^x underflows to ~1.6e-38 rather than to a denormal.
// F is float or a GCC vector of floats; I the matching int32 type.
template <typename F, typename I>
inline F fast_exp_t(F x) {
  x = x < -87.0f ? F{} - 87.0f : x;
  x = x > 88.0f ? F{} + 88.0f : x;
  const F t = x * 1.44269504088896341f;  // x * log2(e)
  // Round to nearest through the 1.5 * 2^23 trick: exact for |t| < 2^22, no branch.
  const F n = (t + 12582912.0f) - 12582912.0f;
  const F l = (t - n) * 0.693147180559945309f;  // (t - n) in [-0.5, 0.5], times ln 2
  // e^l by its Taylor series to degree 7 (truncation error < 1e-8 on the range).
  F p = l * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * l + 1.0f / 120.0f;
  p = p * l + 1.0f / 24.0f;
  p = p * l + 1.0f / 6.0f;
  p = p * l + 0.5f;
  p = p * l + 1.0f;
  p = p * l + 1.0f;
  // Times 2^n through the exponent bits (n is within [-126, 127] after the clamp).
  I bits;
  if constexpr (std::is_same_v<F, float>) {
    bits = (static_cast<int32_t>(n) + 127) << 23;
  } else {
    bits = (__builtin_convertvector(n, I) + 127) << 23;
  }
  return p * __builtin_bit_cast(F, bits);
}

inline float fast_exp(float x) { return fast_exp_t<float, int32_t>(x); }

}  // namespace splitwise::kernels::cpu
