#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/gemv.cuh"

namespace splitwise::kernels::cuda {

namespace {
cudaDataType_t cuda_type(DType t) { return t == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// Candidates timed per shape; more rarely changes the winner and lengthens start-up.
constexpr int kCandidates = 8;
constexpr int kTimedRuns = 3;
}  // namespace

Gemm::Gemm(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  SW_CUBLAS_CHECK(cublasLtCreate(&handle_));
  SW_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

Gemm::~Gemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
  }
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

Gemm::Plan& Gemm::plan_for(const void* x, const void* w, int m, int n, int k, DType in, DType out,
                           cudaStream_t stream) {
  const Key key{m, n, k, static_cast<int>(in), static_cast<int>(out)};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;

  // Row-major y = x . w^T is column-major y^T = w . x^T: cuBLAS's A is w read transposed
  // (k x n column-major, ld k), B is x^T (k x m, ld k), C/D is y^T (n x m, ld n).
  Plan p;
  SW_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  SW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                 sizeof(trans_a)));
  SW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                 sizeof(trans_b)));
  SW_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(in), k, n, k));
  SW_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(in), k, m, k));
  SW_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(out), n, m, n));

  cublasLtMatmulPreference_t pref;
  SW_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  SW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof(workspace_bytes_)));
  std::vector<cublasLtMatmulHeuristicResult_t> found(kCandidates);
  int count = 0;
  SW_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref,
                                                 kCandidates, found.data(), &count));
  cublasLtMatmulPreferenceDestroy(pref);
  SW_CUDA_REQUIRE(count > 0, "cuBLASLt has no algorithm for this GEMM");
  p.algo = found[0].algo;

  const Key bucket{m_bucket(m), n, k, static_cast<int>(in), static_cast<int>(out)};
  if (auto t = tuned_.find(bucket); t != tuned_.end()) {
    // The bucket's winner, if cuBLASLt accepts it for this exact m.
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(handle_, p.desc, p.a, p.b, p.c, p.c, &t->second.algo, &check) ==
            CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= workspace_bytes_)
      p.algo = t->second.algo;
    p.use_gemv = t->second.use_gemv;
  } else {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    SW_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      const Choice c = tune(p, x, w, m, n, k, in, out, found.data(), count, stream);
      p.algo = c.algo;
      p.use_gemv = c.use_gemv;
      tuned_.emplace(bucket, c);
    }
  }
  return plans_.emplace(key, p).first->second;
}

int Gemm::m_bucket(int m) {
  if (m <= kGemvMaxRows) return m;  // decode sizes, each its own (the GEMV competes there)
  int b = 1;
  while (b < m) b *= 2;
  return b;
}

Gemm::Choice Gemm::tune(Plan& p, const void* x, const void* w, int m, int n, int k, DType in,
                        DType out, const cublasLtMatmulHeuristicResult_t* found, int count,
                        cudaStream_t stream) {
  // Candidates write into scratch (y may be accumulated into, so it must not be touched).
  const size_t bytes = static_cast<size_t>(m) * n * dtype_bytes(out);
  if (scratch_.bytes() < bytes) {
    SW_CUDA_CHECK(cudaStreamSynchronize(stream));
    scratch_ = DeviceBuffer(std::max(bytes, scratch_.bytes() * 2));
  }
  void* scratch = scratch_.get();
  cudaEvent_t start, stop;
  SW_CUDA_CHECK(cudaEventCreate(&start));
  SW_CUDA_CHECK(cudaEventCreate(&stop));
  auto time = [&](const auto& run) {
    run();  // warm-up
    SW_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int r = 0; r < kTimedRuns; ++r) run();
    SW_CUDA_CHECK(cudaEventRecord(stop, stream));
    SW_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    SW_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms;
  };
  const float one = 1.0f, zero = 0.0f;
  Choice best_choice{found[0].algo, false};
  float best = 1e30f;
  for (int i = 0; i < count; ++i) {
    if (found[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const cublasLtMatmulAlgo_t* algo = &found[i].algo;
    if (cublasLtMatmul(handle_, p.desc, &one, w, p.a, x, p.b, &zero, scratch, p.c, scratch, p.c,
                       algo, workspace_, workspace_bytes_, stream) != CUBLAS_STATUS_SUCCESS)
      continue;  // some candidates refuse at run time
    const float ms = time([&] {
      SW_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &one, w, p.a, x, p.b, &zero, scratch, p.c,
                                     scratch, p.c, algo, workspace_, workspace_bytes_, stream));
    });
    if (ms < best) {
      best = ms;
      best_choice.algo = *algo;
    }
  }
  // Decode-sized bf16 products: our GEMV competes on the same footing.
  if (in == DType::kBF16 && gemv_supported(x, w, m, k)) {
    const float ms = time([&] { run_gemv(x, w, scratch, m, n, k, out, false, stream); });
    best_choice.use_gemv = ms < best;
  }
  SW_CUDA_CHECK(cudaEventDestroy(start));
  SW_CUDA_CHECK(cudaEventDestroy(stop));
  return best_choice;
}

int Gemm::gemv_shapes() const {
  int n = 0;
  for (const auto& [key, p] : plans_) n += p.use_gemv;
  return n;
}

void Gemm::run_gemv(const void* x, const void* w, void* y, int m, int n, int k, DType out, bool acc,
                    cudaStream_t stream) {
  const auto* xb = static_cast<const __nv_bfloat16*>(x);
  const auto* wb = static_cast<const __nv_bfloat16*>(w);
  if (out == DType::kF32)
    gemv_bf16(xb, wb, static_cast<float*>(y), m, n, k, acc, stream);
  else
    gemv_bf16(xb, wb, static_cast<__nv_bfloat16*>(y), m, n, k, acc, stream);
}

void Gemm::matmul(const void* x, const void* w, void* y, int m, int n, int k, DType in, DType out,
                  bool accumulate, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  Plan& p = plan_for(x, w, m, n, k, in, out, stream);
  if (p.use_gemv && gemv_supported(x, w, m, k))
    return run_gemv(x, w, y, m, n, k, out, accumulate, stream);
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  SW_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &one, w, p.a, x, p.b, &beta, y, p.c, y, p.c,
                                 &p.algo, workspace_, workspace_bytes_, stream));
}

}  // namespace splitwise::kernels::cuda
