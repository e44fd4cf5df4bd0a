#include "kernels/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

namespace splitwise::kernels::cpu {

void rmsnorm(const float* x, const float* weight, float* out, int rows, int dim, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * dim;
    float* o = out + static_cast<int64_t>(r) * dim;
    float ss = 0.0f;
    for (int i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int i = 0; i < dim; ++i) o[i] = weight[i] * (xr[i] * scale);
  }
}

// One row of x against all of w, for the m == 1 decode case: OpenBLAS's sgemv has
// per-call overhead (thread dispatch, argument checks) that dominates at the tiny
// sizes of small models, so a plain dot-product loop the compiler vectorises wins.
static void matvec_nt(const float* x, const float* w, float* y, int n, int k, bool accumulate) {
  for (int j = 0; j < n; ++j) {
    const float* wr = w + static_cast<int64_t>(j) * k;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < k; ++i) acc += x[i] * wr[i];
    y[j] = accumulate ? y[j] + acc : acc;
  }
}

void matmul_nt(const float* x, const float* w, float* y, int m, int n, int k, bool accumulate) {
  // Below ~64K multiply-adds a GEMM call costs more than it computes.
  if (m == 1 && static_cast<int64_t>(n) * k <= (1 << 16)) {
    matvec_nt(x, w, y, n, k, accumulate);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k,
              accumulate ? 1.0f : 0.0f, y, n);
}

void silu_mul(const float* gate_up, float* out, int rows, int inter) {
  for (int r = 0; r < rows; ++r) {
    const float* g = gate_up + static_cast<int64_t>(r) * 2 * inter;
    const float* u = g + inter;
    float* o = out + static_cast<int64_t>(r) * inter;
    for (int i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void rope_rotate_half(float* x, int num_heads, int head_dim, const float* cos, const float* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = xh[i];
      const float b = xh[i + half];
      xh[i] = a * cos[i] - b * sin[i];
      xh[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void softmax(float* x, int n) {
  const float mx = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace splitwise::kernels::cpu
