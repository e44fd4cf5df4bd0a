// One check-macro family for CUDA runtime, cuBLAS and NCCL calls: a failure aborts
// with file:line and the library's own error text. Used around every call.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace splitwise::kernels::cuda {

[[noreturn]] inline void fail(const char* lib, const char* what, const char* expr, const char* file,
                              int line) {
  std::fprintf(stderr, "%s:%d: %s error: %s in %s\n", file, line, lib, what, expr);
  std::abort();
}

// True when a usable GPU is present; tests skip (not pass) when this is false.
inline bool gpu_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace splitwise::kernels::cuda

#define SW_CUDA_CHECK(expr)                                                                        \
  do {                                                                                             \
    const cudaError_t _e = (expr);                                                                 \
    if (_e != cudaSuccess)                                                                         \
      ::splitwise::kernels::cuda::fail("CUDA", cudaGetErrorString(_e), #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, not later.
#define SW_CUDA_CHECK_LAUNCH() SW_CUDA_CHECK(cudaGetLastError())

// The cuBLAS and NCCL forms expand only where used, so users include cublas_v2.h or
// nccl.h themselves and this header needs neither.
#define SW_CUBLAS_CHECK(expr)                                                                \
  do {                                                                                       \
    const cublasStatus_t _s = (expr);                                                        \
    if (_s != CUBLAS_STATUS_SUCCESS)                                                         \
      ::splitwise::kernels::cuda::fail("cuBLAS", cublasGetStatusString(_s), #expr, __FILE__, \
                                       __LINE__);                                            \
  } while (0)

#define SW_NCCL_CHECK(expr)                                                                        \
  do {                                                                                             \
    const ncclResult_t _r = (expr);                                                                \
    if (_r != ncclSuccess)                                                                         \
      ::splitwise::kernels::cuda::fail("NCCL", ncclGetErrorString(_r), #expr, __FILE__, __LINE__); \
  } while (0)

// A launcher's precondition on its arguments (a caller's bug, not bad user input).
#define SW_CUDA_REQUIRE(cond, msg)                                                                 \
  do {                                                                                             \
    if (!(cond)) ::splitwise::kernels::cuda::fail("precondition", msg, #cond, __FILE__, __LINE__); \
  } while (0)
