#include <cstdint>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/gemv.cuh"

namespace splitwise::kernels::cuda {

namespace {
constexpr int kWarps = 8;   // rows per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ void fma8(const uint4& wv, const uint4& xv, float& acc) {
  const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&wv);
  const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 a = __bfloat1622float2(wp[i]);
    const float2 b = __bfloat1622float2(xp[i]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
}

template <int M, typename Out>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const __nv_bfloat16* __restrict__ x,  // [M, k]
                const __nv_bfloat16* __restrict__ w,  // [n, k]
                Out* __restrict__ y,                  // [M, n]
                int n, int k, bool accumulate) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarps + threadIdx.x / 32;
  if (row >= n) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<size_t>(row) * k);
  const int vecs = k / 8;  // 16-byte vectors per row
  float acc[M] = {};
  int v = lane;
  // Main loop: kUnroll independent loads per lane before their use. The weights are
  // read exactly once, so they bypass L1 (ld.global.cs); x is shared by every warp.
  for (; v + 32 * (kUnroll - 1) < vecs; v += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wr + v + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < M; ++r)
        fma8(wv[u],
             __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * k) + v + 32 * u),
             acc[r]);
  }
  for (; v < vecs; v += 32) {
    const uint4 wv = __ldcs(wr + v);
#pragma unroll
    for (int r = 0; r < M; ++r)
      fma8(wv, __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * k) + v), acc[r]);
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float s = acc[r];
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffff, s, off);
    if (lane == 0) {
      Out* out = y + static_cast<size_t>(r) * n + row;
      if (accumulate) s += to_float(*out);
      *out = from_float<Out>(s);
    }
  }
}

template <int M, typename Out>
void launch(const __nv_bfloat16* x, const __nv_bfloat16* w, Out* y, int n, int k, bool acc,
            cudaStream_t stream) {
  gemv_kernel<M, Out><<<(n + kWarps - 1) / kWarps, kWarps * 32, 0, stream>>>(x, w, y, n, k, acc);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

bool gemv_supported(const void* x, const void* w, int m, int k) {
  return m >= 1 && m <= kGemvMaxRows && k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

template <typename Out>
void gemv_bf16(const __nv_bfloat16* x, const __nv_bfloat16* w, Out* y, int m, int n, int k,
               bool accumulate, cudaStream_t stream) {
  SW_CUDA_REQUIRE(gemv_supported(x, w, m, k), "gemv_bf16: unsupported shape or alignment");
  switch (m) {
    case 1:
      return launch<1>(x, w, y, n, k, accumulate, stream);
    case 2:
      return launch<2>(x, w, y, n, k, accumulate, stream);
    case 3:
      return launch<3>(x, w, y, n, k, accumulate, stream);
    default:
      return launch<4>(x, w, y, n, k, accumulate, stream);
  }
}

template void gemv_bf16<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*,
                                       int, int, int, bool, cudaStream_t);
template void gemv_bf16<float>(const __nv_bfloat16*, const __nv_bfloat16*, float*, int, int, int,
                               bool, cudaStream_t);

}  // namespace splitwise::kernels::cuda
