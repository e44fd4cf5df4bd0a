#include "workers/engine/scheduler.h"

#include <algorithm>

#include "workers/engine/batch_policy.h"
#include "workers/engine/status.h"

namespace splitwise::engine {

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAborted:
      return "aborted";
    case FinishReason::kHandoff:
      return "handoff";
  }
  return "unknown";
}

void Scheduler::add(SequenceState seq) {
  SW_CHECK(!seq.tokens.empty() && seq.num_prompt > 0 && seq.max_len > 0);
  // A sequence that cannot fit even an empty cache would preempt itself forever; callers
  // (Engine::add_request) refuse it with a reason before it gets here.
  SW_CHECK(kv_->blocks_for(seq.max_len - 1) <= kv_->num_blocks());
  waiting_.push_back(std::move(seq));
}

void Scheduler::add_running(SequenceState seq) {
  SW_CHECK(kv_->has(seq.id) && kv_->blocks_missing(seq.id, seq.num_computed) == 0);
  SW_CHECK(seq.num_computed < static_cast<int>(seq.tokens.size()));
  running_.push_back(std::move(seq));
}

bool Scheduler::abort(SeqId id) {
  for (auto* q : {&waiting_, &running_}) {
    auto it = std::find_if(q->begin(), q->end(), [id](const auto& s) { return s.id == id; });
    if (it != q->end()) {
      kv_->free(id);
      q->erase(it);
      return true;
    }
  }
  return false;
}

// Recompute-style preemption of the newest running sequence: its blocks go back to
// the pool and it re-enters the queue first, to prefill prompt + generated tokens again.
void Scheduler::preempt_last() {
  SequenceState seq = std::move(running_.back());
  running_.pop_back();
  kv_->free(seq.id);
  seq.num_computed = 0;
  ++seq.num_preemptions;
  waiting_.push_front(std::move(seq));
}

StepPlan Scheduler::schedule() {
  return config_.prefill_first ? schedule_prefill_first() : schedule_decode_first();
}

StepPlan Scheduler::schedule_decode_first() {
  StepPlan plan;
  int budget = config_.max_batch_tokens;

  // 1. Running sequences, oldest first: each continues its prefill or decodes one token.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    SequenceState& seq = running_[i];
    const int remaining = static_cast<int>(seq.tokens.size()) - seq.num_computed;
    const int count = prefill_chunk(remaining, budget);
    if (!kv_->reserve(seq.id, seq.num_computed + count)) {
      if (i + 1 == running_.size()) {
        // Nothing newer to evict: this one yields its own blocks.
        plan.preempted.push_back(seq.id);
        preempt_last();
        break;
      }
      plan.preempted.push_back(running_.back().id);
      preempt_last();
      continue;  // retry the same sequence with the freed blocks
    }
    plan.chunks.push_back({seq.id, seq.num_computed, count,
                           seq.num_computed + count == static_cast<int>(seq.tokens.size())});
    budget -= count;
    ++i;
  }

  // 2. Waiting sequences, strictly FCFS: the first that does not fit stops admission,
  // so a long prompt is not starved by shorter ones behind it.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(plan.chunks.size()) < config_.max_num_seqs && plan.preempted.empty()) {
    SequenceState& seq = waiting_.front();
    const int count = prefill_chunk(static_cast<int>(seq.tokens.size()), budget);
    if (!kv_->reserve(seq.id, count)) break;
    plan.chunks.push_back({seq.id, 0, count, count == static_cast<int>(seq.tokens.size())});
    budget -= count;
    running_.push_back(std::move(seq));
    waiting_.pop_front();
  }
  return plan;
}

namespace {
bool in_plan(const StepPlan& plan, SeqId id) {
  return std::any_of(plan.chunks.begin(), plan.chunks.end(),
                     [id](const ScheduledChunk& c) { return c.id == id; });
}
bool decoding(const SequenceState& s) {
  return s.num_computed >= s.num_prompt && static_cast<int>(s.tokens.size()) - s.num_computed == 1;
}
}  // namespace

bool Scheduler::preempt_decode_for_prefill(StepPlan& plan, std::deque<SequenceState>& evicted) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (!decoding(*it) || !may_preempt(it->num_preemptions, config_.max_preemptions) ||
        in_plan(plan, it->id))
      continue;
    SequenceState seq = std::move(*it);
    running_.erase(std::next(it).base());
    kv_->free(seq.id);
    seq.num_computed = 0;
    ++seq.num_preemptions;
    plan.preempted.push_back(seq.id);
    evicted.push_back(std::move(seq));
    return true;
  }
  return false;
}

StepPlan Scheduler::schedule_prefill_first() {
  StepPlan plan;
  int budget = config_.max_batch_tokens;
  auto room = [&] {
    return budget > 0 && static_cast<int>(plan.chunks.size()) < config_.max_num_seqs;
  };
  std::deque<SequenceState> evicted;

  // 1. Prefills already under way (chunked prompts), oldest first.
  for (SequenceState& seq : running_) {
    if (!room()) break;
    if (decoding(seq)) continue;
    const int count = prefill_chunk(static_cast<int>(seq.tokens.size()) - seq.num_computed, budget);
    if (!kv_->reserve(seq.id, seq.num_computed + count)) continue;
    plan.chunks.push_back({seq.id, seq.num_computed, count,
                           seq.num_computed + count == static_cast<int>(seq.tokens.size())});
    budget -= count;
  }
  // 2. New prompts, FCFS; they may evict decodes for KV room. Sequences preempted up to
  // the cap wait at the front of the queue, so they are admitted first.
  while (!waiting_.empty() && room()) {
    SequenceState& seq = waiting_.front();
    const int count = prefill_chunk(static_cast<int>(seq.tokens.size()), budget);
    bool fits = kv_->reserve(seq.id, count);
    while (!fits && preempt_decode_for_prefill(plan, evicted)) fits = kv_->reserve(seq.id, count);
    if (!fits) break;
    plan.chunks.push_back({seq.id, 0, count, count == static_cast<int>(seq.tokens.size())});
    budget -= count;
    running_.push_back(std::move(seq));
    waiting_.pop_front();
  }
  // 3. Decodes with what is left. One that finds no block yields its own (it is not
  // preempted for another decode: the prompts above already took their room).
  for (size_t i = 0; i < running_.size() && room();) {
    SequenceState& seq = running_[i];
    if (!decoding(seq) || in_plan(plan, seq.id)) {
      ++i;
      continue;
    }
    bool fits = kv_->reserve(seq.id, seq.num_computed + 1);
    // A sequence at the preemption cap takes a block from a newer decode instead
    // (victims come after it in running_, so index i stays valid).
    while (!fits && !may_preempt(seq.num_preemptions, config_.max_preemptions) &&
           preempt_decode_for_prefill(plan, evicted))
      fits = kv_->reserve(seq.id, seq.num_computed + 1);
    if (!fits) {
      SequenceState out = std::move(seq);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      kv_->free(out.id);
      out.num_computed = 0;
      ++out.num_preemptions;
      plan.preempted.push_back(out.id);
      evicted.push_back(std::move(out));
      continue;
    }
    plan.chunks.push_back({seq.id, seq.num_computed, 1, true});
    budget -= 1;
    ++i;
  }
  // Evicted sequences recompute next, most-preempted first.
  std::stable_sort(evicted.begin(), evicted.end(), [](const auto& a, const auto& b) {
    return a.num_preemptions > b.num_preemptions;
  });
  for (auto it = evicted.rbegin(); it != evicted.rend(); ++it) waiting_.push_front(std::move(*it));
  return plan;
}

std::vector<StepResult> Scheduler::update(const StepPlan& plan, std::span<const TokenId> sampled) {
  std::vector<StepResult> results;
  size_t next = 0;
  for (const ScheduledChunk& chunk : plan.chunks) {
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const auto& s) { return s.id == chunk.id; });
    if (chunk.sample) SW_CHECK(next < sampled.size());
    const TokenId token = chunk.sample ? sampled[next++] : -1;
    if (it == running_.end()) continue;  // aborted while the step ran
    SequenceState& seq = *it;
    SW_CHECK(seq.num_computed == chunk.start);
    seq.num_computed += chunk.count;
    if (!chunk.sample) continue;
    seq.tokens.push_back(token);
    StepResult r{seq.id, token, FinishReason::kNone};
    if (seq.handoff) {
      r.finish = FinishReason::kHandoff;
      results.push_back(r);
      running_.erase(it);  // blocks stay with the engine until the transport is done
      continue;
    }
    if (std::find(seq.stop_ids.begin(), seq.stop_ids.end(), token) != seq.stop_ids.end())
      r.finish = FinishReason::kStop;
    else if (seq.num_generated() >= seq.max_new_tokens ||
             static_cast<int>(seq.tokens.size()) >= seq.max_len)
      r.finish = FinishReason::kLength;
    results.push_back(r);
    if (r.finish != FinishReason::kNone) {
      kv_->free(seq.id);
      running_.erase(it);
    }
  }
  SW_CHECK(next == sampled.size());
  return results;
}

int64_t Scheduler::pending_prefill_tokens() const {
  int64_t n = 0;
  for (const auto* q : {&waiting_, &running_})
    for (const SequenceState& s : *q)
      if (s.num_computed < s.num_prompt || static_cast<int>(s.tokens.size()) - s.num_computed > 1)
        n += static_cast<int>(s.tokens.size()) - s.num_computed;  // prefill still to run
  return n;
}

const SequenceState* Scheduler::find(SeqId id) const {
  for (const auto* q : {&waiting_, &running_})
    for (const SequenceState& s : *q)
      if (s.id == id) return &s;
  return nullptr;
}

}  // namespace splitwise::engine
