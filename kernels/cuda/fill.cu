#include "kernels/cuda/check.cuh"
#include "kernels/cuda/fill.cuh"

namespace splitwise::kernels::cuda {

namespace {
__device__ uint64_t mix(uint64_t z) {  // SplitMix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_kernel(T* __restrict__ x,  // [n]
                            size_t n, uint64_t seed, float center, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = mix(seed + 0x9E3779B97F4A7C15ull * (i + 1));
    const float u = static_cast<float>(r >> 40) * 0x1.0p-23f - 1.0f;  // [-1, 1)
    x[i] = from_float<T>(center + scale * u);
  }
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ in,  // [n]
                               T* __restrict__ out,           // [n]
                               size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(in[i]);
}

int grid_for(size_t n) { return static_cast<int>(std::min<size_t>((n + 255) / 256, 1 << 16)); }
}  // namespace

template <typename T>
void fill_uniform(T* x, size_t n, uint64_t seed, float center, float scale, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<T><<<grid_for(n), 256, 0, stream>>>(x, n, seed, center, scale);
  SW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void convert_from_f32(const float* in, T* out, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<T><<<grid_for(n), 256, 0, stream>>>(in, out, n);
  SW_CUDA_CHECK_LAUNCH();
}

template void fill_uniform<float>(float*, size_t, uint64_t, float, float, cudaStream_t);
template void fill_uniform<__nv_bfloat16>(__nv_bfloat16*, size_t, uint64_t, float, float,
                                          cudaStream_t);
template void convert_from_f32<float>(const float*, float*, size_t, cudaStream_t);
template void convert_from_f32<__nv_bfloat16>(const float*, __nv_bfloat16*, size_t, cudaStream_t);

}  // namespace splitwise::kernels::cuda
