#pragma once

#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

struct RopeKvShape {
  int tokens = 0;
  int num_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  int qkv_stride = 0;  // elements per qkv row: (num_heads + 2 * kv_heads) * head_dim
};

// Rotary embedding (rotate-half order) on every token's Q and K heads in place, then the
// token's K and V into its paged-cache slot.
//   qkv:       [tokens, qkv_stride]: Q heads, then K heads, then V heads
//   positions: [tokens] device
//   slots:     [tokens] device: block_id * block_size + offset; < 0 = padding (not cached)
//   cos, sin:  [max_position, head_dim / 2] fp32 (llama3 scaling is in the table)
//   k_cache, v_cache: one layer, [num_blocks, kv_heads, block_size, head_dim]
template <typename T>
void rope_kv_write(T* qkv, const int* positions, const int* slots, const float* cos,
                   const float* sin, T* k_cache, T* v_cache, const RopeKvShape& shape,
                   cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
