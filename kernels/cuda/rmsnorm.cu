#include "kernels/cuda/check.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace splitwise::kernels::cuda {

namespace {
constexpr int kThreads = 256;

// One block per row: a row of a Llama hidden state (<= 16K floats) fits a block's
// registers in a few strided passes, and the reduction stays in shared memory.
__global__ void rmsnorm_kernel(const float* __restrict__ x,       // [rows, dim]
                               const float* __restrict__ weight,  // [dim]
                               float* __restrict__ out,           // [rows, dim]
                               int dim, float eps) {
  const float* xr = x + static_cast<size_t>(blockIdx.x) * dim;
  float* o = out + static_cast<size_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffff, ss, off);
  __shared__ float warp_sums[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    ss = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffff, ss, off);
    if (threadIdx.x == 0) warp_sums[0] = ss;
  }
  __syncthreads();
  const float scale = rsqrtf(warp_sums[0] / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = weight[i] * (xr[i] * scale);
}

void launch_rmsnorm(const float* x, const float* weight, float* out, int rows, int dim, float eps,
                    cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<rows, kThreads, 0, stream>>>(x, weight, out, dim, eps);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

void rmsnorm(const float* x, const float* weight, float* out, int rows, int dim, float eps,
             cudaStream_t stream) {
  launch_rmsnorm(x, weight, out, rows, dim, eps, stream);
}

}  // namespace splitwise::kernels::cuda
