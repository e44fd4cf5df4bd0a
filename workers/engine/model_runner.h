// One forward step of a Llama-family model over a batch that mixes prefill chunks and
// decode tokens of many sequences, on the CPU in fp32, with a paged KV cache.
// The runner computes; it never decides what runs (that is the scheduler's job).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "workers/engine/kv_cache.h"
#include "workers/engine/rope.h"
#include "workers/engine/runner.h"
#include "workers/engine/status.h"
#include "workers/engine/tokenizer.h"
#include "workers/engine/weights.h"

namespace splitwise::engine {

class ModelRunner final : public Runner {
 public:
  // `weights` must outlive the runner. The KV cache holds num_kv_blocks blocks of
  // block_size tokens for every layer.
  ModelRunner(const ModelWeights* weights, int num_kv_blocks, int block_size);

  const ModelConfig& config() const override { return weights_->config; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  int block_size() const override { return block_size_; }

  // Runs the batch; `logits` becomes [sum of num_logits, vocab] in chunk order.
  // Bad input (token out of range, position past the context, a block table too
  // short) is reported, and the cache is left as it was for other sequences.
  Status forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                 const LayerListener& on_layer = {}) override;

  // KV storage of one layer; the transport sends blocks of it by id. Keys are
  // [num_kv_blocks, kv_heads, head_dim, block_size] (positions innermost, so one query
  // scores a whole block with contiguous vector FMAs); values [num_kv_blocks, block_size,
  // kv_dim] (so one position's row is added to the output with contiguous FMAs).
  float* key_cache(int layer) { return keys_.get() + layer * layer_stride_; }
  float* value_cache(int layer) { return values_.get() + layer * layer_stride_; }
  size_t block_floats() const { return static_cast<size_t>(block_size_) * config().kv_dim(); }

  KvMemoryInfo kv_memory() const override { return {false, -1, 0, block_floats() * sizeof(float)}; }
  std::byte* key_block(int layer, BlockId block) override {
    return reinterpret_cast<std::byte*>(key_cache(layer) + block * block_floats());
  }
  std::byte* value_block(int layer, BlockId block) override {
    return reinterpret_cast<std::byte*>(value_cache(layer) + block * block_floats());
  }

 private:
  void attention(int layer, std::span<const SequenceChunk> batch);

  const ModelWeights* weights_;
  int num_kv_blocks_;
  int block_size_;
  size_t layer_stride_;
  // [layers, blocks, ...] as above. Left uninitialised: a slot is always written
  // before it is read, and zeroing gigabytes at start-up is wasted time.
  std::unique_ptr<float[]> keys_;
  std::unique_ptr<float[]> values_;  // same layout
  RopeTable rope_;

  // Per-step workspaces, grown on demand and reused so steady state allocates nothing.
  std::vector<float> x_, xb_, qkv_, attn_, gate_up_, act_, normed_;
  std::vector<float> scores_;     // [threads, heads, max_position] attention scratch
  std::vector<int> token_pos_;    // [tokens] position of each batch token
  std::vector<int> token_chunk_;  // [tokens] index of its chunk
};

}  // namespace splitwise::engine
