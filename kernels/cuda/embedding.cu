#include "kernels/cuda/check.cuh"
#include "kernels/cuda/embedding.cuh"

namespace splitwise::kernels::cuda {

namespace {
// One block per row; a plain copy, so the row is moved as 4-byte words where it can be.
template <typename T>
__global__ void embedding_kernel(const int* __restrict__ tokens,  // [rows]
                                 const T* __restrict__ table,     // [vocab, dim]
                                 T* __restrict__ out,             // [rows, dim]
                                 int dim) {
  const T* src = table + static_cast<size_t>(tokens[blockIdx.x]) * dim;
  T* dst = out + static_cast<size_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

template <typename T>
void launch_embedding(const int* tokens, const T* table, T* out, int rows, int dim,
                      cudaStream_t stream) {
  if (rows == 0) return;
  embedding_kernel<T><<<rows, 256, 0, stream>>>(tokens, table, out, dim);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

template <typename T>
void embedding(const int* tokens, const T* table, T* out, int rows, int dim, cudaStream_t stream) {
  launch_embedding(tokens, table, out, rows, dim, stream);
}

template void embedding<float>(const int*, const float*, float*, int, int, cudaStream_t);
template void embedding<__nv_bfloat16>(const int*, const __nv_bfloat16*, __nv_bfloat16*, int, int,
                                       cudaStream_t);

}  // namespace splitwise::kernels::cuda
