// kv_gather / kv_scatter against a CPU reference, over many shapes: aligned (16-byte
// vector path) and not (byte path), one launch and several (more blocks than one launch
// carries), and single blocks.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "workers/transport/nccl/kv_pack.cuh"

namespace splitwise::transport::nccl {
namespace {

struct Shape {
  uint32_t blocks;
  uint32_t half;
  size_t misalign;  // bytes added to every block address (0 keeps them 16-byte aligned)
};

TEST(KvPackGpuTest, GatherAndScatterMatchTheCpuReference) {
  if (!kernels::cuda::gpu_available()) GTEST_SKIP() << "needs a CUDA GPU";
  const Shape shapes[] = {{1, 16, 0},    {3, 64, 0},     {7, 32768, 0}, {240, 256, 0},
                          {241, 256, 0}, {600, 4096, 0}, {5, 34, 0},    {9, 4096, 2}};
  std::mt19937_64 rng(11);
  cudaStream_t stream;
  SW_CUDA_CHECK(cudaStreamCreate(&stream));
  for (const Shape& s : shapes) {
    SCOPED_TRACE("blocks " + std::to_string(s.blocks) + " half " + std::to_string(s.half) +
                 " misalign " + std::to_string(s.misalign));
    const size_t slot = s.half + 16;  // room for the misalignment
    const uint32_t pool_blocks = s.blocks * 2 + 3;
    const size_t pool_bytes = size_t{pool_blocks} * 2 * slot;
    std::vector<uint8_t> host_pool(pool_bytes);
    for (auto& b : host_pool) b = static_cast<uint8_t>(rng());
    uint8_t* pool = nullptr;
    uint8_t* packed = nullptr;
    SW_CUDA_CHECK(cudaMalloc(&pool, pool_bytes));
    SW_CUDA_CHECK(cudaMalloc(&packed, size_t{s.blocks} * 2 * s.half));
    SW_CUDA_CHECK(cudaMemcpy(pool, host_pool.data(), pool_bytes, cudaMemcpyHostToDevice));

    // Blocks at shuffled physical slots, K and V far apart as in a real cache.
    std::vector<uint32_t> physical(pool_blocks);
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), rng);
    std::vector<KvBlockAddr> addrs(s.blocks);
    std::vector<size_t> k_off(s.blocks), v_off(s.blocks);
    for (uint32_t i = 0; i < s.blocks; ++i) {
      k_off[i] = size_t{physical[i]} * slot + s.misalign;
      v_off[i] = (size_t{pool_blocks} + physical[i]) * slot + s.misalign;
      addrs[i] = {pool + k_off[i], pool + v_off[i]};
    }

    kv_gather(addrs.data(), s.blocks, s.half, packed, stream);
    std::vector<uint8_t> got(size_t{s.blocks} * 2 * s.half);
    SW_CUDA_CHECK(cudaStreamSynchronize(stream));
    SW_CUDA_CHECK(cudaMemcpy(got.data(), packed, got.size(), cudaMemcpyDeviceToHost));
    std::vector<uint8_t> want(got.size());
    for (uint32_t i = 0; i < s.blocks; ++i) {
      std::memcpy(&want[(2 * size_t{i}) * s.half], &host_pool[k_off[i]], s.half);
      std::memcpy(&want[(2 * size_t{i} + 1) * s.half], &host_pool[v_off[i]], s.half);
    }
    ASSERT_EQ(got, want);

    // Scatter fresh bytes back; everything outside the blocks must stay as it was.
    std::vector<uint8_t> fresh(got.size());
    for (auto& b : fresh) b = static_cast<uint8_t>(rng());
    SW_CUDA_CHECK(cudaMemcpy(packed, fresh.data(), fresh.size(), cudaMemcpyHostToDevice));
    kv_scatter(packed, addrs.data(), s.blocks, s.half, stream);
    SW_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<uint8_t> after(pool_bytes);
    SW_CUDA_CHECK(cudaMemcpy(after.data(), pool, pool_bytes, cudaMemcpyDeviceToHost));
    std::vector<uint8_t> expected = host_pool;
    for (uint32_t i = 0; i < s.blocks; ++i) {
      std::memcpy(&expected[k_off[i]], &fresh[(2 * size_t{i}) * s.half], s.half);
      std::memcpy(&expected[v_off[i]], &fresh[(2 * size_t{i} + 1) * s.half], s.half);
    }
    ASSERT_EQ(after, expected);
    SW_CUDA_CHECK(cudaFree(pool));
    SW_CUDA_CHECK(cudaFree(packed));
  }
  SW_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace splitwise::transport::nccl
