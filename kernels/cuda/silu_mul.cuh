#pragma once

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i]   (the SwiGLU activation)
// gate_up: [rows, 2 * inter]; out: [rows, inter]. Computed in fp32.
template <typename T>
void silu_mul(const T* gate_up, T* out, int rows, int inter, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
