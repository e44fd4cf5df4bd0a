#pragma once

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

// The residual add fused into the RMSNorm that follows it:
//   residual[r] += delta[r]   (skipped when delta is null)
//   out[r] = weight * residual[r] / rms(residual[r])
// residual, delta, out: [rows, dim]; weight: [dim]. Sums in fp32.
template <typename T>
void add_rmsnorm(T* residual, const T* delta, const T* weight, T* out, int rows, int dim, float eps,
                 cudaStream_t stream);

// The final norm for the rows that need logits only: out[i] = norm(x[row_index[i]]).
// x: [*, dim]; row_index: [rows] device; out: [rows, dim].
template <typename T>
void rmsnorm_rows(const T* x, const int* row_index, const T* weight, T* out, int rows, int dim,
                  float eps, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
