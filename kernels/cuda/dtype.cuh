// Storage types of the CUDA backend: fp32 (exactness tests) and bf16 (serving), with the
// conversions kernels use to accumulate in fp32 whatever they store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace splitwise::kernels::cuda {

enum class DType { kF32, kBF16 };

inline const char* dtype_name(DType t) { return t == DType::kF32 ? "fp32" : "bf16"; }
inline size_t dtype_bytes(DType t) { return t == DType::kF32 ? 4 : 2; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

}  // namespace splitwise::kernels::cuda
