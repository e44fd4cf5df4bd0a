#include "kernels/cuda/check.cuh"
#include "kernels/cuda/silu_mul.cuh"

namespace splitwise::kernels::cuda {

namespace {
// A flat grid over all rows * inter outputs: decode rows are short (one row of 14336 for a
// Llama-3-8B token), so a block per row would leave most of the GPU idle.
template <typename T>
__global__ void silu_mul_kernel(const T* __restrict__ gate_up,  // [rows, 2 * inter]
                                T* __restrict__ out,            // [rows, inter]
                                int inter, size_t total) {
  for (size_t idx = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = idx / inter, i = idx % inter;
    const float g = to_float(gate_up[r * 2 * inter + i]);
    const float u = to_float(gate_up[r * 2 * inter + inter + i]);
    // g / (1 + e^-g): expf, not __expf, so fp32 mode stays within 1e-6 of the CPU.
    out[idx] = from_float<T>(g / (1.0f + expf(-g)) * u);
  }
}

template <typename T>
void launch_silu_mul(const T* gate_up, T* out, int rows, int inter, cudaStream_t stream) {
  const size_t total = static_cast<size_t>(rows) * inter;
  if (total == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<size_t>((total + threads - 1) / threads, 65536));
  silu_mul_kernel<T><<<blocks, threads, 0, stream>>>(gate_up, out, inter, total);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

template <typename T>
void silu_mul(const T* gate_up, T* out, int rows, int inter, cudaStream_t stream) {
  launch_silu_mul(gate_up, out, rows, inter, stream);
}

template void silu_mul<float>(const float*, float*, int, int, cudaStream_t);
template void silu_mul<__nv_bfloat16>(const __nv_bfloat16*, __nv_bfloat16*, int, int, cudaStream_t);

}  // namespace splitwise::kernels::cuda
