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
// vectorisation without -ffast-math). Inputs are clamped to [-87, 88] (so e^x never
// becomes a slow denormal, and NaN maps to e^-87, about 0); within that range the relative
// error is below 1e-7 (tests/kernels/ops_test.cpp measures it against double exp).
// F is float or a GCC vector of floats; I the matching int32 type.
template <typename F, typename I>
inline F fast_exp_t(F x) {
  x = x > -87.0f ? x : F{} - 87.0f;  // written so that NaN fails the test and is clamped
  x = x < 88.0f ? x : F{} + 88.0f;
  // x = n ln2 + r with n integral; ln2 split in two (Cody-Waite) so that n * ln2_hi is
  // exact and r keeps full precision even for large |x|.
  const F t = x * 1.44269504088896341f;         // x * log2(e)
  const F n = (t + 12582912.0f) - 12582912.0f;  // round to nearest: 1.5 * 2^23 trick
  const F r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  // e^r for |r| <= 0.35 by its Taylor series to degree 7 (truncation error < 1e-8).
  F p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
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
