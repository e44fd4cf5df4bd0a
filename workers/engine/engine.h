// The engine loop of one worker: scheduler + KV bookkeeping + model runner + samplers.
// Callers add requests as token ids and call step() until idle.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "workers/engine/kv_cache.h"
#include "workers/engine/model_runner.h"
#include "workers/engine/runner.h"
#include "workers/engine/sampler.h"
#include "workers/engine/scheduler.h"
#include "workers/engine/weights.h"

namespace splitwise::engine {

struct EngineConfig {
  int num_kv_blocks = 0;  // 0: as many as kv_cache_bytes holds (capped at what
                          // max_num_seqs full-context sequences could use)
  size_t kv_cache_bytes = size_t{256} << 20;
  int block_size = 16;
  int kv_element_bytes = 4;  // bytes per cached K/V element (2 for a bf16 GPU cache)
  SchedulerConfig scheduler;
};

// Builds the backend once the engine has sized the KV cache; empty = the CPU ModelRunner.
using RunnerFactory =
    std::function<Result<std::unique_ptr<Runner>>(int num_kv_blocks, int block_size)>;

// Rejects configurations no engine can run with (zero block size or token budget).
Status validate_engine_config(const EngineConfig& config);

struct GenerationRequest {
  SeqId id = 0;
  std::vector<TokenId> prompt;
  SamplingParams sampling;
  int max_new_tokens = 16;
  std::vector<TokenId> stop_ids;  // e.g. the tokenizer's EOS ids
  // Prompt role: finish after the first token (FinishReason::kHandoff) and keep the KV
  // blocks for the transport until release().
  bool handoff = false;
};

// Blocks of a handoff sequence that one step wrote: table entries
// [first_block, first_block + num_blocks) of `blocks` (the whole table).
struct HandoffChunk {
  SeqId id = 0;
  int first_block = 0;
  int num_blocks = 0;
  std::span<const BlockId> blocks;
};
using HandoffListener = std::function<void(int layer, std::span<const HandoffChunk> chunks)>;

struct EngineStats {
  int64_t steps = 0;
  int64_t prompt_tokens = 0;  // prefill tokens run (recomputation included)
  int64_t decode_tokens = 0;
  int64_t preemptions = 0;
};

// Single-threaded: one owner thread calls add_request, abort and step (a worker posts
// requests to that thread rather than sharing the engine).
class Engine {
 public:
  // `weights` must outlive the engine; `config` must pass validate_engine_config.
  Engine(const ModelWeights* weights, const EngineConfig& config);
  // With a backend from `factory` (e.g. the CUDA runner); fails when the factory does.
  static Result<std::unique_ptr<Engine>> create(const ModelWeights* weights,
                                                const EngineConfig& config,
                                                const RunnerFactory& factory);

  // Rejects what can never run: an empty prompt or one that fills the context, a
  // duplicate id, bad sampling values, more KV than the whole cache holds.
  Status add_request(GenerationRequest request);
  void abort(SeqId id);

  // One forward step; returns the tokens it produced (with finish reasons).
  Result<std::vector<StepResult>> step();

  // Prompt role: called during step() after each layer with the handoff sequences' blocks
  // that layer just wrote (runs on the engine thread; must not block).
  void set_handoff_listener(HandoffListener listener) { handoff_listener_ = std::move(listener); }
  // Frees the KV blocks a finished handoff sequence kept (once its transfer is over).
  void release(SeqId id);

  // Token role, step 1: checks the request and reserves KV blocks for its prompt, which a
  // prompt worker will fill; returns the block table. No room -> error, nothing held.
  Result<std::vector<BlockId>> reserve_prefilled(const GenerationRequest& request);
  // Step 2, once every layer has landed: the sequence joins the decode batch with
  // `first_token` (sampled by the prompt worker) as its first generated token. Returns
  // that token's result (it may already finish the request).
  Result<StepResult> activate_prefilled(SeqId id, TokenId first_token);

  // KV storage, for the transport: see Runner::key_block.
  Runner& runner() { return *runner_; }
  bool idle() const { return scheduler_.idle(); }

  const EngineStats& stats() const { return stats_; }
  int num_waiting() const { return scheduler_.num_waiting(); }
  int num_running() const { return scheduler_.num_running(); }
  int num_reserved() const { return static_cast<int>(reserved_.size()); }
  // Prompt tokens not yet prefilled, over waiting and running sequences.
  int64_t pending_prefill_tokens() const { return scheduler_.pending_prefill_tokens(); }
  const ModelConfig& config() const { return weights_->config; }
  int num_free_blocks() const { return kv_.num_free_blocks(); }
  int num_kv_blocks() const { return pool_.num_blocks(); }

 private:
  Engine(const ModelWeights* weights, const EngineConfig& config, std::nullptr_t);  // no runner
  // Validates `request`; returns the sequence's length limit (prompt + new tokens, capped
  // by the context).
  Result<int> check_request(const GenerationRequest& request) const;
  SequenceState make_sequence(GenerationRequest request, int max_len);

  const ModelWeights* weights_;
  BlockPool pool_;
  KvCacheManager kv_;
  Scheduler scheduler_;
  std::unique_ptr<Runner> runner_;
  std::unordered_map<SeqId, Sampler> samplers_;
  EngineStats stats_;
  std::vector<SequenceChunk> chunks_;  // reused per step
  std::vector<float> logits_;
  std::vector<TokenId> sampled_;
  std::vector<SampleRow> sample_rows_;
  HandoffListener handoff_listener_;
  std::vector<HandoffChunk> handoff_chunks_;
  std::unordered_map<SeqId, int> handoff_sent_;  // blocks already handed over
  // Token role: requests with reserved blocks whose KV has not landed yet.
  std::unordered_map<SeqId, std::pair<GenerationRequest, int>> reserved_;  // with max_len
};

}  // namespace splitwise::engine
