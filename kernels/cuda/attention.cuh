// Paged-KV causal attention with GQA for the CUDA model runner: prefill (chunked, many
// queries per sequence) and decode (one query per sequence, flash-decoding split-K).
//
// KV cache, per layer, K and V separate, T = float or __nv_bfloat16:
//   k_cache, v_cache: [num_blocks, kv_heads, block_size, head_dim]
// Token p of a sequence lives in block block_tables[seq][p / block_size], slot
// p % block_size. Query head h reads kv head h / (num_heads / kv_heads). The keys of the
// step's own tokens must already be in the cache (the runner writes KV first).
// Accumulation is fp32 for both T; T is storage only. Launchers enqueue on `stream`,
// never allocate and never synchronise.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

namespace splitwise::kernels::cuda {

struct PrefillAttentionParams {
  int num_seqs = 0, num_heads = 0, kv_heads = 0, head_dim = 0, block_size = 0;
  int max_blocks = 0;                 // row length of block_tables
  const int* q_row_start = nullptr;   // [num_seqs] device: row of each seq's first query in q/out
  const int* q_len = nullptr;         // [num_seqs] device: queries of each seq (>= 1)
  const int* pos0 = nullptr;          // [num_seqs] device: position of each seq's first query;
                                      // keys are positions [0, pos0 + q_len)
  const int* block_tables = nullptr;  // [num_seqs, max_blocks] device
  const int* tile_seq = nullptr;      // [num_tiles] device: seq of each query tile
  const int* tile_q0 = nullptr;       // [num_tiles] device: first query (within its seq) of the
                                      // tile; a tile is kPrefillTileRows queries
  int num_tiles = 0;
  int q_stride = 0;    // elements between rows of q; a row is [num_heads, head_dim]
  int out_stride = 0;  // elements between rows of out; a row is [num_heads, head_dim]
  float scale = 0.0f;  // softmax scale, usually 1 / sqrt(head_dim)
};

constexpr int kPrefillTileRows = 64;

// Host helper: appends one (seq, q0) pair per kPrefillTileRows queries of each seq.
// q_len: [num_seqs] host.
void build_prefill_tiles(const int* q_len, int num_seqs, std::vector<int>* tile_seq,
                         std::vector<int>* tile_q0);

// q: rows of [num_heads, head_dim] at q + row * q_stride; out likewise with out_stride. Only
// the rows and heads of the tiles' queries are written. bf16 with head_dim 32, 64 or 128,
// strides that are multiples of 8 and 16-byte aligned pointers runs on tensor cores; every
// other case (fp32 always) runs a plain-FFMA path with no alignment needs.
template <typename T>
void prefill_attention(const T* q,        // [rows, q_stride]
                       const T* k_cache,  // [num_blocks, kv_heads, block_size, head_dim]
                       const T* v_cache,  // [num_blocks, kv_heads, block_size, head_dim]
                       T* out,            // [rows, out_stride]
                       const PrefillAttentionParams& p, cudaStream_t stream);

struct DecodeAttentionParams {
  int num_seqs = 0, num_heads = 0, kv_heads = 0, head_dim = 0, block_size = 0;
  int max_blocks = 0;                 // row length of block_tables
  const int* q_row = nullptr;         // [num_seqs] device: row of each seq's query in q/out
  const int* context_len = nullptr;   // [num_seqs] device: keys [0, context_len) are attended
                                      // (the query's own token included); 0 = padding: the
                                      // seq is skipped and its out row left untouched
  const int* block_tables = nullptr;  // [num_seqs, max_blocks] device
  int max_context = 0;  // upper bound of every context_len; the grid depends on it alone,
                        // so a graph captured once replays for any lengths up to it
  int q_stride = 0, out_stride = 0;  // elements between rows of q / of out
  float scale = 0.0f;
  float* workspace = nullptr;  // decode_attention_workspace_floats(...) floats, caller-owned
};

// Keys per split-K partition of decode: one block per (seq, kv head, partition).
constexpr int kDecodePartitionKeys = 256;

// Floats of workspace decode_attention needs for these sizes (0 when max_context fits one
// partition: that case writes out directly).
size_t decode_attention_workspace_floats(int num_seqs, int num_heads, int head_dim,
                                         int max_context);

// q: row q_row[s] holds seq s's query, [num_heads, head_dim] at q + row * q_stride; out
// likewise. bf16 with head_dim 64 or 128 and 16-byte aligned caches runs on tensor cores;
// other cases on CUDA cores, with 16-byte K/V loads when head_dim * sizeof(T) is a multiple
// of 16 and the caches are 16-byte aligned, scalar loads otherwise. q and out need no
// alignment. Padding seqs (context_len 0) keep their out rows untouched.
template <typename T>
void decode_attention(const T* q,        // [rows, q_stride]
                      const T* k_cache,  // [num_blocks, kv_heads, block_size, head_dim]
                      const T* v_cache,  // [num_blocks, kv_heads, block_size, head_dim]
                      T* out,            // [rows, out_stride]
                      const DecodeAttentionParams& p, cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
