// The scheduler is pure policy: these tests drive it with fabricated tokens, no model.
#include "workers/engine/scheduler.h"

#include <gtest/gtest.h>

namespace splitwise::engine {
namespace {

// max_len 0: prompt + max_new, the tightest context the sequence can have.
SequenceState make_seq(SeqId id, int prompt_len, int max_new, int max_len = 0) {
  SequenceState s;
  s.id = id;
  s.tokens.assign(prompt_len, 5);
  s.num_prompt = prompt_len;
  s.max_new_tokens = max_new;
  s.max_len = max_len > 0 ? max_len : prompt_len + max_new;
  s.stop_ids = {2};
  return s;
}

// Feeds token `t` to every sampling chunk of the plan.
std::vector<StepResult> feed(Scheduler& s, const StepPlan& plan, TokenId t = 7) {
  std::vector<TokenId> sampled;
  for (const auto& c : plan.chunks)
    if (c.sample) sampled.push_back(t);
  return s.update(plan, sampled);
}

struct Fixture : ::testing::Test {
  BlockPool pool{64, 4};
  KvCacheManager kv{&pool};
};

TEST_F(Fixture, ChunksLongPromptsWithinTheTokenBudget) {
  Scheduler s({.max_batch_tokens = 8, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 20, 3));
  StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].start, 0);
  EXPECT_EQ(p.chunks[0].count, 8);
  EXPECT_FALSE(p.chunks[0].sample);
  EXPECT_TRUE(feed(s, p).empty());
  p = s.schedule();
  EXPECT_EQ(p.chunks[0].start, 8);
  feed(s, p);
  p = s.schedule();
  EXPECT_EQ(p.chunks[0].start, 16);
  EXPECT_EQ(p.chunks[0].count, 4);
  EXPECT_TRUE(p.chunks[0].sample);
  auto r = feed(s, p);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].finish, FinishReason::kNone);
  EXPECT_EQ(s.find(1)->num_computed, 20);
}

TEST_F(Fixture, DecodesGoFirstAndPrefillsFillTheRest) {
  Scheduler s({.max_batch_tokens = 10, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 4, 5));
  feed(s, s.schedule());  // 1 is now decoding
  s.add(make_seq(2, 30, 5));
  const StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].id, 1);
  EXPECT_EQ(p.chunks[0].count, 1);
  EXPECT_TRUE(p.chunks[0].sample);
  EXPECT_EQ(p.chunks[1].id, 2);
  EXPECT_EQ(p.chunks[1].count, 9);
}

TEST_F(Fixture, FinishesOnStopTokenAndLengthAndFreesBlocks) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 3, 100));
  s.add(make_seq(2, 3, 2));
  auto r = feed(s, s.schedule(), 7);
  ASSERT_EQ(r.size(), 2u);
  r = feed(s, s.schedule(), 7);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].finish, FinishReason::kNone);
  EXPECT_EQ(r[1].finish, FinishReason::kLength);  // 2 tokens generated
  EXPECT_EQ(s.find(2), nullptr);
  r = feed(s, s.schedule(), 2);
  EXPECT_EQ(r[0].finish, FinishReason::kStop);
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(pool.num_free(), 64);
}

TEST_F(Fixture, StopsAtTheContextLimit) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 3, 100, /*max_len=*/5));
  feed(s, s.schedule());
  auto r = feed(s, s.schedule());
  EXPECT_EQ(r[0].finish, FinishReason::kLength);
}

TEST_F(Fixture, WaitsWhenThereIsNoRoomAndAdmitsFcfs) {
  BlockPool small(4, 4);  // 16 tokens in all
  KvCacheManager kv2(&small);
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv2);
  s.add(make_seq(1, 12, 1));
  s.add(make_seq(2, 8, 1));  // does not fit beside 1
  s.add(make_seq(3, 2, 1));  // would fit, but FCFS keeps it behind 2
  StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(s.num_waiting(), 2);
  feed(s, p);  // 1 finishes (max_new 1) and frees its blocks
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].id, 2);
  EXPECT_EQ(p.chunks[1].id, 3);
}

TEST_F(Fixture, PreemptsTheNewestWhenDecodeRunsOutOfBlocks) {
  BlockPool small(4, 4);
  KvCacheManager kv2(&small);
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv2);
  s.add(make_seq(1, 8, 8));  // 16 tokens at most: each alone fits the 4 blocks
  s.add(make_seq(2, 8, 8));
  feed(s, s.schedule());  // both prefilled: 4 blocks used, 9 tokens each now
  const StepPlan p = s.schedule();
  // Seq 1 needs a third block for its 9th token: seq 2 is preempted to make room.
  ASSERT_EQ(p.preempted.size(), 1u);
  EXPECT_EQ(p.preempted[0], 2);
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].id, 1);
  EXPECT_EQ(s.find(2)->num_computed, 0);
  EXPECT_EQ(s.find(2)->num_preemptions, 1);
  EXPECT_EQ(s.find(2)->tokens.size(), 9u);  // keeps its generated token for recompute
}

TEST_F(Fixture, AbortFreesBlocksAndIgnoresLateResults) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 10, 5));
  const StepPlan p = s.schedule();
  EXPECT_TRUE(s.abort(1));
  EXPECT_EQ(pool.num_free(), 64);
  EXPECT_TRUE(feed(s, p).empty());
  EXPECT_FALSE(s.abort(1));
}

TEST_F(Fixture, RefusingASequenceLargerThanTheCacheIsTheCallersJob) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8}, &kv);
  // 64 blocks of 4 tokens: a 300-token sequence would preempt itself forever.
  EXPECT_DEATH(s.add(make_seq(1, 10, 290)), "invariant failed");
}

TEST_F(Fixture, CountsPendingPrefillTokens) {
  Scheduler s({.max_batch_tokens = 8, .max_num_seqs = 8}, &kv);
  s.add(make_seq(1, 20, 3));
  s.add(make_seq(2, 5, 3));
  EXPECT_EQ(s.pending_prefill_tokens(), 25);
  feed(s, s.schedule());  // 8 tokens of seq 1
  EXPECT_EQ(s.pending_prefill_tokens(), 17);
  while (s.pending_prefill_tokens() > 0) feed(s, s.schedule());
  EXPECT_EQ(s.num_running(), 2);  // both decoding: no prefill left
}

TEST_F(Fixture, PrefillFirstPutsPromptsBeforeDecodes) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 8, .prefill_first = true}, &kv);
  s.add(make_seq(1, 4, 10));
  feed(s, s.schedule());  // 1 decodes from now on
  s.add(make_seq(2, 6, 10));
  const StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].id, 2);  // the prompt first
  EXPECT_EQ(p.chunks[0].count, 6);
  EXPECT_EQ(p.chunks[1].id, 1);
  EXPECT_EQ(p.chunks[1].count, 1);
}

TEST_F(Fixture, PrefillFirstEvictsDecodesButNotPastTheCap) {
  BlockPool small(4, 4);  // 16 tokens
  KvCacheManager kv2(&small);
  Scheduler s(
      {.max_batch_tokens = 64, .max_num_seqs = 8, .prefill_first = true, .max_preemptions = 2},
      &kv2);
  s.add(make_seq(1, 8, 8));  // 2 blocks, then decodes into a third at token 9
  feed(s, s.schedule());
  // A 12-token prompt needs 3 blocks, 2 are free: the decode of 1 is evicted for it.
  s.add(make_seq(2, 12, 1));
  StepPlan p = s.schedule();
  ASSERT_EQ(p.preempted.size(), 1u);
  EXPECT_EQ(p.preempted[0], 1);
  EXPECT_EQ(s.find(1)->num_preemptions, 1);
  feed(s, p);  // 2 finishes (max_new 1) and frees its blocks
  // 1 recomputes, decodes; a new prompt evicts it again (second preemption)...
  while (s.find(1)->num_computed == 0 || s.find(1)->num_generated() < 2) feed(s, s.schedule());
  s.add(make_seq(3, 12, 1));
  p = s.schedule();
  EXPECT_EQ(s.find(1)->num_preemptions, 2);
  feed(s, p);
  while (s.find(1)->num_computed == 0) feed(s, s.schedule());
  // ...but at the cap of 2 it is protected: the next prompt waits instead.
  s.add(make_seq(4, 12, 1));
  p = s.schedule();
  EXPECT_TRUE(p.preempted.empty());
  EXPECT_EQ(s.find(1)->num_preemptions, 2);
  EXPECT_EQ(s.find(4)->num_computed, 0);  // still waiting
}

TEST_F(Fixture, CapsSequencesPerStep) {
  Scheduler s({.max_batch_tokens = 64, .max_num_seqs = 2}, &kv);
  for (int i = 0; i < 4; ++i) s.add(make_seq(i, 2, 5));
  EXPECT_EQ(s.schedule().chunks.size(), 2u);
}

}  // namespace
}  // namespace splitwise::engine
