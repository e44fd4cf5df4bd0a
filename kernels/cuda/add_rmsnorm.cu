#include "kernels/cuda/add_rmsnorm.cuh"
#include "kernels/cuda/check.cuh"

namespace splitwise::kernels::cuda {

namespace {
constexpr int kThreads = 256;
// Rows up to kThreads * kMaxPerThread elements keep the summed row in registers, so the
// residual is read once from memory; Llama hidden sizes (<= 16K) fit.
constexpr int kMaxPerThread = 64;

__device__ float block_sum(float v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffff, v, off);
  __shared__ float warp_sums[kThreads / 32];
  __syncthreads();  // warp_sums may still be read by a previous call
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  return total;
}

template <typename T>
__global__ void add_rmsnorm_kernel(T* __restrict__ residual,      // [rows, dim]
                                   const T* __restrict__ delta,   // [rows, dim] or null
                                   const T* __restrict__ weight,  // [dim]
                                   T* __restrict__ out,           // [rows, dim]
                                   int dim, float eps) {
  T* res = residual + static_cast<size_t>(blockIdx.x) * dim;
  const T* d = delta ? delta + static_cast<size_t>(blockIdx.x) * dim : nullptr;
  T* o = out + static_cast<size_t>(blockIdx.x) * dim;
  float vals[kMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < dim) {
      float v = to_float(res[i]);
      if (d) {
        // Stored back rounded, as the next layer reads it; the norm uses the rounded value
        // too, so the result does not depend on whether the add was fused.
        const T sum = from_float<T>(v + to_float(d[i]));
        res[i] = sum;
        v = to_float(sum);
      }
      vals[j] = v;
      ss += v * v;
    }
  }
  const float scale = rsqrtf(block_sum(ss) / static_cast<float>(dim) + eps);
#pragma unroll
  for (int j = 0; j < kMaxPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < dim) o[i] = from_float<T>(to_float(weight[i]) * (vals[j] * scale));
  }
}

template <typename T>
__global__ void rmsnorm_rows_kernel(const T* __restrict__ x,            // [*, dim]
                                    const int* __restrict__ row_index,  // [rows]
                                    const T* __restrict__ weight,       // [dim]
                                    T* __restrict__ out,                // [rows, dim]
                                    int dim, float eps) {
  const T* xr = x + static_cast<size_t>(row_index[blockIdx.x]) * dim;
  T* o = out + static_cast<size_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kThreads) {
    const float v = to_float(xr[i]);
    ss += v * v;
  }
  const float scale = rsqrtf(block_sum(ss) / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += kThreads)
    o[i] = from_float<T>(to_float(weight[i]) * (to_float(xr[i]) * scale));
}

template <typename T>
void launch_add_rmsnorm(T* residual, const T* delta, const T* weight, T* out, int rows, int dim,
                        float eps, cudaStream_t stream) {
  if (rows == 0) return;
  SW_CUDA_REQUIRE(dim <= kThreads * kMaxPerThread, "add_rmsnorm: dim too large");
  add_rmsnorm_kernel<T><<<rows, kThreads, 0, stream>>>(residual, delta, weight, out, dim, eps);
  SW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_rmsnorm_rows(const T* x, const int* row_index, const T* weight, T* out, int rows,
                         int dim, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_rows_kernel<T><<<rows, kThreads, 0, stream>>>(x, row_index, weight, out, dim, eps);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

template <typename T>
void add_rmsnorm(T* residual, const T* delta, const T* weight, T* out, int rows, int dim, float eps,
                 cudaStream_t stream) {
  launch_add_rmsnorm(residual, delta, weight, out, rows, dim, eps, stream);
}

template <typename T>
void rmsnorm_rows(const T* x, const int* row_index, const T* weight, T* out, int rows, int dim,
                  float eps, cudaStream_t stream) {
  launch_rmsnorm_rows(x, row_index, weight, out, rows, dim, eps, stream);
}

#define SW_INSTANTIATE(T)                                                                  \
  template void add_rmsnorm<T>(T*, const T*, const T*, T*, int, int, float, cudaStream_t); \
  template void rmsnorm_rows<T>(const T*, const int*, const T*, T*, int, int, float, cudaStream_t);
SW_INSTANTIATE(float)
SW_INSTANTIATE(__nv_bfloat16)
#undef SW_INSTANTIATE

}  // namespace splitwise::kernels::cuda
