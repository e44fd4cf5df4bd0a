// The engine's view of a backend: one forward step over a mixed batch, and where the KV
// cache's blocks live so a transport can move them. The CPU ModelRunner and the CUDA
// runner (workers/engine/cuda) implement it; the engine never knows which it drives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "workers/engine/kv_cache.h"
#include "workers/engine/model_config.h"
#include "workers/engine/sampler.h"
#include "workers/engine/status.h"
#include "workers/engine/tokenizer.h"

namespace splitwise::engine {

// The tokens of one sequence to run this step: a prefill chunk or one decode token.
struct SequenceChunk {
  std::span<const TokenId> tokens;       // tokens to process, positions start_pos...
  int start_pos = 0;                     // KV for [0, start_pos) is already cached
  std::span<const BlockId> block_table;  // covers start_pos + tokens.size() tokens
  int num_logits = 1;                    // logits for the last num_logits tokens (0: none)
};

// Called after every batch token's K and V of `layer` are written (on a GPU: enqueued,
// with layer_ready_event(layer) recorded behind the write), before that layer's
// attention: from then on those slots do not change, so a transport may send them while
// the runner computes the rest of the step.
using LayerListener = std::function<void(int layer)>;

// One sampled row: the request's parameters and the draw index of this token.
struct SampleRow {
  SamplingParams params;
  int64_t index = 0;
};

// Where KV blocks live, for the transport. `format` takes transport::KvFormat's values
// (0 CPU fp32, 1 GPU fp32, 2 GPU bf16); the engine does not depend on the transport.
struct KvMemoryInfo {
  bool on_device = false;
  int device = -1;
  uint32_t format = 0;
  size_t half_block_bytes = 0;  // one block's K (= its V) in one layer
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;

  // Runs the batch; `logits` becomes [sum of num_logits, vocab] in chunk order, on the host.
  // Bad input (token out of range, position past the context, a block table too short)
  // is reported, and the cache is left as it was for other sequences.
  virtual Status forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                         const LayerListener& on_layer = {}) = 0;

  // Backends that sample where the logits are (a GPU: 4 bytes per row cross the bus
  // instead of a vocabulary of logits). `rows` has one entry per chunk with num_logits
  // == 1 (no chunk may ask for more); `tokens` gets one token per row.
  virtual bool samples_on_device() const { return false; }
  virtual Status forward_sample(std::span<const SequenceChunk> batch,
                                std::span<const SampleRow> rows, std::vector<TokenId>* tokens,
                                const LayerListener& on_layer = {});

  virtual KvMemoryInfo kv_memory() const = 0;
  // Block `block`'s K (V) bytes in `layer`: host or device memory per kv_memory().
  virtual std::byte* key_block(int layer, BlockId block) = 0;
  virtual std::byte* value_block(int layer, BlockId block) = 0;
  // A cudaEvent_t recorded behind `layer`'s KV write of the current step (GPU only).
  virtual void* layer_ready_event(int /*layer*/) { return nullptr; }
};

// The checks every backend applies before touching its cache (see Runner::forward).
Status validate_batch(const ModelConfig& config, std::span<const SequenceChunk> batch,
                      int num_kv_blocks, int block_size);

}  // namespace splitwise::engine
