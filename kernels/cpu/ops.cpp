#include "kernels/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

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

// OpenBLAS is the OpenMP build (see CMakeLists): large GEMMs use the same thread pool as
// the rest of the backend, and calls from inside a parallel region stay single-threaded.
void matmul_nt(const float* x, const float* w, float* y, int m, int n, int k, bool accumulate) {
  // Below ~64K multiply-adds a GEMM call costs more than it computes.
  if (m == 1 && static_cast<int64_t>(n) * k <= (1 << 16)) {
    matvec_nt(x, w, y, n, k, accumulate);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k,
              accumulate ? 1.0f : 0.0f, y, n);
}

namespace {
// Eight floats as one GCC vector: AVX registers where the target has them, pairs of SSE
// registers otherwise; either way the exp polynomial runs on all lanes at once.
using v8f = float __attribute__((vector_size(32)));
using v8i = int32_t __attribute__((vector_size(32)));

v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof(v)); }
}  // namespace

void silu_mul(const float* gate_up, float* out, int rows, int inter) {
  for (int r = 0; r < rows; ++r) {
    const float* g = gate_up + static_cast<int64_t>(r) * 2 * inter;
    const float* u = g + inter;
    float* o = out + static_cast<int64_t>(r) * inter;
    int i = 0;
    for (; i + 8 <= inter; i += 8) {
      const v8f gv = load8(g + i);
      store8(o + i, gv / (1.0f + fast_exp_t<v8f, v8i>(-gv)) * load8(u + i));
    }
    for (; i < inter; ++i) o[i] = g[i] / (1.0f + fast_exp(-g[i])) * u[i];
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
  if (n <= 0) return;
  float mx = x[0];
  int i = 0;
  if (n >= 8) {
    v8f m = load8(x);
    for (i = 8; i + 8 <= n; i += 8) {
      const v8f v = load8(x + i);
      m = v > m ? v : m;
    }
    for (int k = 0; k < 8; ++k) mx = std::max(mx, m[k]);
  }
  for (; i < n; ++i) mx = std::max(mx, x[i]);

  v8f vsum{};
  for (i = 0; i + 8 <= n; i += 8) {
    const v8f e = fast_exp_t<v8f, v8i>(load8(x + i) - mx);
    store8(x + i, e);
    vsum += e;
  }
  float sum = 0.0f;
  for (int k = 0; k < 8; ++k) sum += vsum[k];
  for (; i < n; ++i) {
    x[i] = fast_exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace splitwise::kernels::cpu
