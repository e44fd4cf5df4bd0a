#pragma once

#include <cuda_runtime.h>

namespace splitwise::kernels::cuda {

// out[r] = x[r] / rms(x[r]) * weight for each row, fp32.
// x, out: [rows, dim] device; weight: [dim] device. Enqueued on `stream`, no sync.
void rmsnorm(const float* x, const float* weight, float* out, int rows, int dim, float eps,
             cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
