// GEMMs of the CUDA backend through cuBLASLt: y[m, n] = x[m, k] . w[n, k]^T (+ y), row-major,
// the weight layout of the CPU backend. The algorithm is chosen by timing cuBLASLt's best
// heuristic candidates on the real operands once per (m bucket, n, k, types), m bucketed to
// powers of two, since a serving engine sees every m up to its token budget; each exact
// shape then caches its descriptors with the bucket's algorithm (when cuBLASLt accepts it
// for that shape), so a steady-state call is one cublasLtMatmul with no host-side setup.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

class Gemm {
 public:
  // `workspace_bytes` of device memory for split-K and stream-K algorithms; allocated once.
  explicit Gemm(size_t workspace_bytes = size_t{32} << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // x: [m, k] (`in`), w: [n, k] (`in`), y: [m, n] (`out`); fp32 accumulation always (fp32
  // inputs use plain fp32 math, never tf32). accumulate: y += x . w^T (the residual add
  // fused into the GEMM's epilogue). A shape's first call tunes, which must not happen
  // while `stream` is being captured: run one step eagerly before capturing a graph.
  void matmul(const void* x, const void* w, void* y, int m, int n, int k, DType in, DType out,
              bool accumulate, cudaStream_t stream);

  int tuned_shapes() const { return static_cast<int>(plans_.size()); }
  // Shapes tuned to the GEMV kernel (gemv.cuh) rather than a cuBLASLt algorithm.
  int gemv_shapes() const;

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool use_gemv = false;  // our decode GEMV timed faster than every cuBLASLt candidate
  };
  using Key = std::tuple<int, int, int, int, int>;  // m, n, k, in, out
  struct Choice {
    cublasLtMatmulAlgo_t algo{};
    bool use_gemv = false;
  };
  static int m_bucket(int m);
  Choice tune(Plan& p, const void* x, const void* w, int m, int n, int k, DType in, DType out,
              const cublasLtMatmulHeuristicResult_t* found, int count, cudaStream_t stream);
  Plan& plan_for(const void* x, const void* w, int m, int n, int k, DType in, DType out,
                 cudaStream_t stream);
  void run_gemv(const void* x, const void* w, void* y, int m, int n, int k, DType out, bool acc,
                cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;    // by exact shape
  std::map<Key, Choice> tuned_;  // by m bucket
  DeviceBuffer scratch_;         // tuning output, grown (never freed) as shapes need
};

}  // namespace splitwise::kernels::cuda
