// The CUDA backend: one forward step over a mixed batch (prefill chunks and decode tokens
// of many sequences) with the KV cache in GPU memory, bf16 storage (or fp32 for exactness
// tests) and fp32 accumulation. Same contract as the CPU ModelRunner (see runner.h).
//
// Decode-only steps are replayed from CUDA graphs, one per batch-size bucket: the step's
// inputs go up in one copy, the whole step (all layers, the vocabulary projection and
// sampling) is one graph launch, and only the sampled tokens come back. Other steps run
// eagerly, so a prompt worker can hand each layer's KV to the transport as it is written.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/sampling.cuh"
#include "workers/engine/cuda/device_weights.h"
#include "workers/engine/runner.h"

namespace splitwise::engine::cuda {

struct CudaRunnerOptions {
  bool cuda_graphs = true;
  int max_graph_batch = 256;     // larger decode batches run eagerly
  int graph_max_context = 8192;  // decode steps past this context run eagerly
  int initial_tokens = 2048;     // workspace sized for this many tokens; grows if exceeded
};

class CudaRunner final : public Runner {
 public:
  // Runs on the current CUDA device, which must hold `weights`.
  static Result<std::unique_ptr<CudaRunner>> create(std::shared_ptr<const DeviceWeights> weights,
                                                    int num_kv_blocks, int block_size,
                                                    const CudaRunnerOptions& options = {});
  ~CudaRunner() override;

  const ModelConfig& config() const override { return weights_->config(); }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }

  Status forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                 const LayerListener& on_layer = {}) override;
  bool samples_on_device() const override { return true; }
  Status forward_sample(std::span<const SequenceChunk> batch, std::span<const SampleRow> rows,
                        std::vector<TokenId>* tokens, const LayerListener& on_layer = {}) override;

  KvMemoryInfo kv_memory() const override;
  std::byte* key_block(int layer, BlockId block) override;
  std::byte* value_block(int layer, BlockId block) override;
  void* layer_ready_event(int layer) override { return layer_events_[layer]; }

  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  int graphs_captured() const { return static_cast<int>(graphs_.size()); }
  size_t kv_cache_bytes() const { return kv_.bytes(); }

 private:
  // Offsets (in ints) of one step's inputs inside the metadata buffer.
  struct Layout {
    int tokens = 0, positions = 0, slots = 0, logit_rows = 0;
    int q_row_start = 0, q_len = 0, pos0 = 0, ptables = 0, tile_seq = 0, tile_q0 = 0;
    int q_row = 0, ctx_len = 0, dtables = 0;
    int total = 0;
  };
  // Sizes of one step; host values only (what launchers need besides device metadata).
  struct Shape {
    int tokens = 0, logit_rows = 0;
    int prefill_seqs = 0, tiles = 0, prefill_max_blocks = 1;
    int decode_seqs = 0, decode_max_blocks = 1, decode_max_context = 0;
    bool sample = false;
    Layout layout;
  };

  CudaRunner(std::shared_ptr<const DeviceWeights> weights, int num_blocks, int block_size,
             const CudaRunnerOptions& options);
  Status run(std::span<const SequenceChunk> batch, std::span<const SampleRow> rows, bool sample,
             std::vector<float>* logits, std::vector<TokenId>* tokens,
             const LayerListener& on_layer);
  static Layout layout_for(const Shape& s);
  // The shape the constructor reserves for, and the device bytes a shape's workspaces take.
  static Shape initial_shape(const CudaRunnerOptions& options, int block_size);
  static size_t workspace_bytes(const ModelConfig& c, kernels::cuda::DType dtype, const Shape& s);
  void reserve(const Shape& s);
  void enqueue_step(const Shape& s, const LayerListener& on_layer);
  template <typename T>
  void enqueue_step_t(const Shape& s, const LayerListener& on_layer);
  int bucket_for(int decode_seqs) const;

  std::shared_ptr<const DeviceWeights> weights_;
  CudaRunnerOptions options_;
  int device_ = 0;
  int num_blocks_;
  int block_size_;
  size_t half_block_bytes_;
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> layer_events_;
  kernels::cuda::Gemm gemm_;
  kernels::cuda::DeviceBuffer kv_;  // [layers][K, V][blocks, kv_heads, block_size, head_dim]
  kernels::cuda::DeviceBuffer rope_cos_, rope_sin_;  // [max_position, head_dim / 2] fp32

  // Workspaces, grown (never shrunk) when a step needs more; growing drops the graphs,
  // which hold their addresses.
  int cap_tokens_ = 0, cap_logits_ = 0, cap_meta_ = 0;
  size_t cap_decode_ws_ = 0;
  kernels::cuda::DeviceBuffer x_, normed_, qkv_, attn_, tmp_, gate_up_, act_, logits_in_;
  kernels::cuda::DeviceBuffer logits_, meta_, sample_params_, out_tokens_, decode_ws_;
  // Pinned host mirrors, so uploads and the token read-back are true async copies.
  int* host_meta_ = nullptr;
  kernels::cuda::SampleParams* host_params_ = nullptr;
  int* host_tokens_ = nullptr;

  struct Graph {
    cudaGraphExec_t exec = nullptr;
  };
  std::map<int, Graph> graphs_;  // by decode batch bucket
};

}  // namespace splitwise::engine::cuda
