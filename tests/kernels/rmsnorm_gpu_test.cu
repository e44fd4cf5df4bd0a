// CUDA rmsnorm against the CPU reference over many shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace splitwise::kernels {
namespace {

TEST(CudaRmsnorm, MatchesCpuReference) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (int dim : {1, 8, 64, 255, 4096, 8192}) {
    for (int rows : {1, 3, 37}) {
      std::vector<float> x(static_cast<size_t>(rows) * dim), w(dim), ref(x.size()), got(x.size());
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = dist(rng);
      cpu::rmsnorm(x.data(), w.data(), ref.data(), rows, dim, 1e-5f);
      float *dx, *dw, *dout;
      SW_CUDA_CHECK(cudaMalloc(&dx, x.size() * sizeof(float)));
      SW_CUDA_CHECK(cudaMalloc(&dw, w.size() * sizeof(float)));
      SW_CUDA_CHECK(cudaMalloc(&dout, x.size() * sizeof(float)));
      SW_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
      SW_CUDA_CHECK(cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
      cuda::rmsnorm(dx, dw, dout, rows, dim, 1e-5f, nullptr);
      SW_CUDA_CHECK(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], 1e-5f * (1.0f + std::fabs(ref[i])))
            << "dim " << dim << " rows " << rows << " i " << i;
      SW_CUDA_CHECK(cudaFree(dx));
      SW_CUDA_CHECK(cudaFree(dw));
      SW_CUDA_CHECK(cudaFree(dout));
    }
  }
}

}  // namespace
}  // namespace splitwise::kernels
