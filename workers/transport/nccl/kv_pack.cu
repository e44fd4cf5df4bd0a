#include <algorithm>
#include <cstring>

#include "kernels/cuda/check.cuh"
#include "workers/transport/nccl/kv_pack.cuh"

namespace splitwise::transport::nccl {
namespace {

constexpr int kThreads = 256;
constexpr int kVectorsPerThread = 4;  // per CTA: 256 * 4 * 16 B = 16 KiB of one half block

struct PackArgs {
  KvBlockAddr blocks[kKvPackBlocksPerLaunch];
  uint8_t* packed;  // [count][2][half] for this launch's blocks
  uint32_t half;    // bytes of one K (or V)
};
static_assert(sizeof(PackArgs) <= 4096, "kernel parameters must stay within 4 KiB");

// grid.y = 2 * blocks (K and V of each), grid.x = chunks of one half block.
// __grid_constant__: blocks[] is indexed at run time; this reads it in place from the
// parameter space instead of copying the whole array to local memory.
template <bool kGather, typename V>
__global__ void __launch_bounds__(kThreads) kv_pack_kernel(const __grid_constant__ PackArgs args) {
  const uint32_t i = blockIdx.y >> 1;
  const uint32_t part = blockIdx.y & 1;  // 0 K, 1 V
  uint8_t* block = static_cast<uint8_t*>(part ? args.blocks[i].v : args.blocks[i].k);
  uint8_t* packed = args.packed + (2 * static_cast<size_t>(i) + part) * args.half;
  const V* __restrict__ src = reinterpret_cast<const V*>(kGather ? block : packed);
  V* __restrict__ dst = reinterpret_cast<V*>(kGather ? packed : block);
  const uint32_t n = args.half / sizeof(V);
  const uint32_t stride = gridDim.x * blockDim.x;
#pragma unroll kVectorsPerThread
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) dst[j] = src[j];
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <bool kGather>
void launch(const KvBlockAddr* blocks, uint32_t num_blocks, uint32_t half, uint8_t* packed,
            cudaStream_t stream) {
  if (num_blocks == 0 || half == 0) return;
  bool vec = half % 16 == 0 && aligned16(packed);
  for (uint32_t b = 0; b < num_blocks && vec; ++b) {
    vec = aligned16(blocks[b].k) && aligned16(blocks[b].v);
  }
  const uint32_t elem = vec ? 16 : 1;
  const uint32_t per_cta = kThreads * kVectorsPerThread;
  const uint32_t chunks = (half / elem + per_cta - 1) / per_cta;
  for (uint32_t first = 0; first < num_blocks; first += kKvPackBlocksPerLaunch) {
    const uint32_t count = std::min(kKvPackBlocksPerLaunch, num_blocks - first);
    PackArgs args;
    std::memcpy(args.blocks, blocks + first, count * sizeof(KvBlockAddr));
    args.packed = packed + 2 * static_cast<size_t>(first) * half;
    args.half = half;
    const dim3 grid(chunks, 2 * count);
    if (vec) {
      kv_pack_kernel<kGather, uint4><<<grid, kThreads, 0, stream>>>(args);
    } else {
      kv_pack_kernel<kGather, uint8_t><<<grid, kThreads, 0, stream>>>(args);
    }
    SW_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void kv_gather(const KvBlockAddr* blocks, uint32_t num_blocks, uint32_t half_block_bytes,
               void* packed, cudaStream_t stream) {
  launch<true>(blocks, num_blocks, half_block_bytes, static_cast<uint8_t*>(packed), stream);
}

void kv_scatter(const void* packed, const KvBlockAddr* blocks, uint32_t num_blocks,
                uint32_t half_block_bytes, cudaStream_t stream) {
  launch<false>(blocks, num_blocks, half_block_bytes,
                static_cast<uint8_t*>(const_cast<void*>(packed)), stream);
}

}  // namespace splitwise::transport::nccl
