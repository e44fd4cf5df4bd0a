// Gather and scatter of one layer's KV blocks between the KV cache and a contiguous
// staging buffer, in the order of a LAYER frame's payload: [num_blocks][K | V]. NCCL
// moves one contiguous buffer per layer; the blocks of a request are scattered over the
// cache, so each send packs them first and each receive unpacks them after.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace splitwise::transport::nccl {

// Where one block's K and V live (device pointers, half_block_bytes each). Same layout
// as KvSink::Destination; gather only reads them.
struct KvBlockAddr {
  void* k = nullptr;
  void* v = nullptr;
};

// Blocks one launch moves; more take several launches. Their addresses travel as kernel
// parameters (240 * 16 = 3840 bytes, inside the classic 4 KiB limit), so a launch needs no
// upload and no allocation. A 2048-token prompt at block_size 16 is 128 blocks: one launch.
inline constexpr uint32_t kKvPackBlocksPerLaunch = 240;

// packed[i] = {K of blocks[i], V of blocks[i]}. Enqueued on `stream`, no sync. 16-byte
// vector copies when half_block_bytes and every address are 16-byte aligned (always so
// for cudaMalloc'd caches), byte copies otherwise.
void kv_gather(const KvBlockAddr* blocks,  // [num_blocks] host array of device addresses
               uint32_t num_blocks, uint32_t half_block_bytes,
               void* packed,  // [num_blocks][2][half_block_bytes] device
               cudaStream_t stream);

// The inverse: blocks[i].k, blocks[i].v = packed[i].
void kv_scatter(const void* packed,         // [num_blocks][2][half_block_bytes] device
                const KvBlockAddr* blocks,  // [num_blocks] host array of device addresses
                uint32_t num_blocks, uint32_t half_block_bytes, cudaStream_t stream);

}  // namespace splitwise::transport::nccl
