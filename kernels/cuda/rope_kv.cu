#include "kernels/cuda/check.cuh"
#include "kernels/cuda/rope_kv.cuh"

namespace splitwise::kernels::cuda {

namespace {
constexpr int kThreads = 128;

// One block per token. Each thread owns rotation pairs (i, i + half) of some head, so the
// pair is read and written by the same thread and the rotation needs no barrier; K is
// cached from the rotated registers, so it is never read back from memory.
template <typename T>
__global__ void rope_kv_kernel(T* __restrict__ qkv,                // [tokens, qkv_stride]
                               const int* __restrict__ positions,  // [tokens]
                               const int* __restrict__ slots,      // [tokens]
                               const float* __restrict__ cos,      // [max_pos, half]
                               const float* __restrict__ sin,      // [max_pos, half]
                               T* __restrict__ k_cache,  // [blocks, kv_heads, block_size, hd]
                               T* __restrict__ v_cache,  // same
                               RopeKvShape s) {
  const int t = blockIdx.x;
  const int half = s.head_dim / 2;
  const int pos = positions[t];
  const int slot = slots[t];
  T* row = qkv + static_cast<size_t>(t) * s.qkv_stride;
  const float* cs = cos + static_cast<size_t>(pos) * half;
  const float* sn = sin + static_cast<size_t>(pos) * half;
  const int rot_heads = s.num_heads + s.kv_heads;
  const size_t block = slot >= 0 ? slot / s.block_size : 0;
  const int offset = slot >= 0 ? slot % s.block_size : 0;
  auto cache_at = [&](T* cache, int kv_head, int i) {
    return cache + ((block * s.kv_heads + kv_head) * s.block_size + offset) * s.head_dim + i;
  };
  for (int w = threadIdx.x; w < rot_heads * half; w += blockDim.x) {
    const int h = w / half, i = w % half;
    T* xh = row + h * s.head_dim;
    const float a = to_float(xh[i]), b = to_float(xh[i + half]);
    const T ra = from_float<T>(a * cs[i] - b * sn[i]);
    const T rb = from_float<T>(b * cs[i] + a * sn[i]);
    xh[i] = ra;
    xh[i + half] = rb;
    if (h >= s.num_heads && slot >= 0) {
      *cache_at(k_cache, h - s.num_heads, i) = ra;
      *cache_at(k_cache, h - s.num_heads, i + half) = rb;
    }
  }
  if (slot < 0) return;
  const T* v = row + (s.num_heads + s.kv_heads) * s.head_dim;
  for (int w = threadIdx.x; w < s.kv_heads * s.head_dim; w += blockDim.x)
    *cache_at(v_cache, w / s.head_dim, w % s.head_dim) = v[w];
}

template <typename T>
void launch_rope_kv(T* qkv, const int* positions, const int* slots, const float* cos,
                    const float* sin, T* k_cache, T* v_cache, const RopeKvShape& s,
                    cudaStream_t stream) {
  if (s.tokens == 0) return;
  SW_CUDA_REQUIRE(s.head_dim % 2 == 0, "rope_kv_write: head_dim must be even");
  rope_kv_kernel<T>
      <<<s.tokens, kThreads, 0, stream>>>(qkv, positions, slots, cos, sin, k_cache, v_cache, s);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

template <typename T>
void rope_kv_write(T* qkv, const int* positions, const int* slots, const float* cos,
                   const float* sin, T* k_cache, T* v_cache, const RopeKvShape& shape,
                   cudaStream_t stream) {
  launch_rope_kv(qkv, positions, slots, cos, sin, k_cache, v_cache, shape, stream);
}

template void rope_kv_write<float>(float*, const int*, const int*, const float*, const float*,
                                   float*, float*, const RopeKvShape&, cudaStream_t);
template void rope_kv_write<__nv_bfloat16>(__nv_bfloat16*, const int*, const int*, const float*,
                                           const float*, __nv_bfloat16*, __nv_bfloat16*,
                                           const RopeKvShape&, cudaStream_t);

}  // namespace splitwise::kernels::cuda
