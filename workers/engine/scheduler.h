// Continuous-batching scheduler: pure policy. schedule() turns the queue into a step
// plan (decodes first, then FCFS prefill chunks within a token budget); update() takes
// the sampled tokens back. It never touches model memory: KV space is asked of the
// KvCacheManager, which answers with block ids or "no room".
#pragma once

#include <deque>
#include <span>
#include <vector>

#include "workers/engine/kv_cache.h"
#include "workers/engine/tokenizer.h"

namespace splitwise::engine {

struct SchedulerConfig {
  int max_batch_tokens = 2048;  // prompt + decode tokens in one step
  int max_num_seqs = 256;       // sequences in one step
  // Splitwise's mixed machines: prompts go before decodes and may preempt them for KV
  // room, but a sequence preempted max_preemptions times is never preempted again.
  bool prefill_first = false;
  int max_preemptions = 4;
};

// kHandoff: a prompt-role sequence finished its prefill; its KV blocks stay allocated
// (for the transport) until the engine releases them.
enum class FinishReason { kNone, kStop, kLength, kAborted, kHandoff };
const char* to_string(FinishReason reason);

struct SequenceState {
  SeqId id = 0;
  std::vector<TokenId> tokens;  // prompt, then generated tokens
  int num_prompt = 0;
  int num_computed = 0;  // tokens whose KV is in the cache
  int max_new_tokens = 0;
  int max_len = 0;  // context limit: generation stops when tokens reach it
  std::vector<TokenId> stop_ids;
  int num_preemptions = 0;
  bool handoff = false;  // prompt role: finish after the first token, keep the KV

  int num_generated() const { return static_cast<int>(tokens.size()) - num_prompt; }
};

// Tokens [start, start + count) of sequence `id` run this step; when `sample`, the
// last of them yields logits and a new token.
struct ScheduledChunk {
  SeqId id = 0;
  int start = 0;
  int count = 0;
  bool sample = false;
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  std::vector<SeqId> preempted;  // lost their KV this step; will be recomputed
  bool empty() const { return chunks.empty(); }
};

struct StepResult {
  SeqId id = 0;
  TokenId token = -1;
  FinishReason finish = FinishReason::kNone;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv) : config_(config), kv_(kv) {}

  void add(SequenceState seq);
  // A sequence whose first num_computed tokens' KV is already in its reserved blocks
  // (a handoff from a prompt worker): it joins the running set directly.
  void add_running(SequenceState seq);
  // Drops a sequence wherever it is and frees its blocks. False if unknown.
  bool abort(SeqId id);

  StepPlan schedule();
  // `sampled` holds one token per chunk with sample == true, in plan order.
  std::vector<StepResult> update(const StepPlan& plan, std::span<const TokenId> sampled);

  const SequenceState* find(SeqId id) const;
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  bool idle() const { return waiting_.empty() && running_.empty(); }
  int64_t pending_prefill_tokens() const;

 private:
  StepPlan schedule_decode_first();
  StepPlan schedule_prefill_first();
  void preempt_last();
  // Prefill-first: evicts the newest running decode that may still be preempted and is
  // not in `plan`; false when there is none.
  bool preempt_decode_for_prefill(StepPlan& plan, std::deque<SequenceState>& evicted);

  SchedulerConfig config_;
  KvCacheManager* kv_;
  std::deque<SequenceState> waiting_;  // FCFS; preempted sequences go to the front
  std::deque<SequenceState> running_;  // hold KV blocks, in admission order
};

}  // namespace splitwise::engine
