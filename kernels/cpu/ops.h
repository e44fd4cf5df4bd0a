// CPU reference and fast ops, fp32. Every CUDA op is tested against these.
// Pointers are row-major; shapes are given in brackets.
#pragma once

#include <cstdint>

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

}  // namespace splitwise::kernels::cpu
