#pragma once

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

// Decode-sized products: y[m, n] (+)= x[m, k] . w[n, k]^T for m <= kGemvMaxRows, bf16
// operands, fp32 accumulation. A decode step reads every weight once for one to a few
// tokens, so this is a pass over w at memory speed: one warp per output row, 16-byte
// loads, several in flight per lane. `Out` is bf16 or fp32 (the vocabulary projection).
// Preconditions (gemv_supported): k % 8 == 0 and x, w 16-byte aligned.
constexpr int kGemvMaxRows = 4;

bool gemv_supported(const void* x, const void* w, int m, int k);

template <typename Out>
void gemv_bf16(const __nv_bfloat16* x,  // [m, k]
               const __nv_bfloat16* w,  // [n, k]
               Out* y,                  // [m, n]
               int m, int n, int k, bool accumulate, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
