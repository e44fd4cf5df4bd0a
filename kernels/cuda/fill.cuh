#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

// x[i] = center + scale * u, u uniform in [-1, 1) from a counter-based hash of (seed, i):
// random weights made on the device (benchmarks, tests), never zeros.
template <typename T>
void fill_uniform(T* x, size_t n, uint64_t seed, float center, float scale, cudaStream_t stream);

// Converts fp32 to the storage type on the device (weight upload).
template <typename T>
void convert_from_f32(const float* in, T* out, size_t n, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
