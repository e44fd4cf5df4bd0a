#pragma once

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

// out[r] = table[tokens[r]]. tokens: [rows] device; table: [vocab, dim]; out: [rows, dim].
// Token ids are validated by the caller (the runner checks them before upload).
template <typename T>
void embedding(const int* tokens, const T* table, T* out, int rows, int dim, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
