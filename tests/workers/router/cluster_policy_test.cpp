// Every placement rule on hand-built worker snapshots: no clock, no network.
#include "workers/router/cluster_policy.h"

#include <gtest/gtest.h>

#include <vector>

namespace splitwise::router {
namespace {

using Role = WorkerView::Role;
using Kind = Placement::Kind;

WorkerView prompt_w(int64_t pending, int64_t queued = 0) {
  return {.id = "p",
          .role = Role::kPrompt,
          .healthy = true,
          .pending_prefill_tokens = pending,
          .queued_requests = queued,
          .free_kv_blocks = 1000,
          .total_kv_blocks = 1000,
          .block_size = 16};
}

WorkerView token_w(int free, int64_t queued = 0, int total = 1000) {
  return {.id = "t",
          .role = Role::kToken,
          .healthy = true,
          .queued_requests = queued,
          .free_kv_blocks = free,
          .total_kv_blocks = total,
          .block_size = 16};
}

WorkerView mixed_w(int64_t pending, int free, int64_t queued = 0, int total = 1000) {
  return {.id = "m",
          .role = Role::kMixed,
          .healthy = true,
          .pending_prefill_tokens = pending,
          .queued_requests = queued,
          .free_kv_blocks = free,
          .total_kv_blocks = total,
          .block_size = 16};
}

Placement run(const std::vector<WorkerView>& w, int prompt = 100, int max_new = 28,
              const PolicyConfig& config = {}) {
  return place(w, prompt, max_new, config);
}

TEST(ClusterPolicy, BlocksNeededRoundsUp) {
  EXPECT_EQ(blocks_needed(0, 16), 0);
  EXPECT_EQ(blocks_needed(1, 16), 1);
  EXPECT_EQ(blocks_needed(16, 16), 1);
  EXPECT_EQ(blocks_needed(17, 16), 2);
  EXPECT_EQ(blocks_needed(int64_t{1} << 40, 1), int64_t{1} << 40);
}

TEST(ClusterPolicy, SplitPicksShortestPrefillQueueAndMostFreeBlocks) {
  const std::vector<WorkerView> w = {prompt_w(500), prompt_w(100), prompt_w(300),
                                     token_w(200),  token_w(900),  token_w(400)};
  const Placement p = run(w);
  EXPECT_EQ(p.kind, Kind::kSplit);
  EXPECT_EQ(p.prompt, 1);
  EXPECT_EQ(p.token, 4);
  EXPECT_EQ(p.mixed, -1);
}

TEST(ClusterPolicy, PromptTiesGoToFewerQueuedThenLowerIndex) {
  EXPECT_EQ(run({prompt_w(100, 5), prompt_w(100, 2), prompt_w(100, 2), token_w(50)}).prompt, 1);
  EXPECT_EQ(run({prompt_w(100, 2), prompt_w(100, 2), token_w(50)}).prompt, 0);
}

TEST(ClusterPolicy, TokenTiesGoToFewerQueuedThenLowerIndex) {
  EXPECT_EQ(run({prompt_w(0), token_w(50, 3), token_w(50, 1), token_w(50, 1)}).token, 2);
  EXPECT_EQ(run({prompt_w(0), token_w(50, 1), token_w(50, 1)}).token, 1);
}

TEST(ClusterPolicy, TokenWorkerMustHoldPromptPlusNewTokens) {
  // 100 + 28 = 128 tokens = 8 blocks of 16; 129 tokens need 9.
  EXPECT_EQ(run({prompt_w(0), token_w(8, 0, 100)}, 100, 28).kind, Kind::kSplit);
  const Placement p = run({prompt_w(0), token_w(8, 0, 100), mixed_w(0, 9)}, 100, 29);
  EXPECT_EQ(p.kind, Kind::kMixed);
  EXPECT_EQ(p.mixed, 2);
  // The roomiest worker is the one that fits, not the first that fits.
  EXPECT_EQ(run({prompt_w(0), token_w(7, 0, 60), token_w(9, 0, 60), token_w(60, 0, 60)}).token, 3);
}

TEST(ClusterPolicy, UnhealthyWorkersAreSkipped) {
  std::vector<WorkerView> w = {prompt_w(0), prompt_w(900), token_w(900), token_w(100)};
  w[0].healthy = false;
  w[2].healthy = false;
  const Placement p = run(w);
  EXPECT_EQ(p.kind, Kind::kSplit);
  EXPECT_EQ(p.prompt, 1);
  EXPECT_EQ(p.token, 3);
}

TEST(ClusterPolicy, WorkerWithFullQueueIsNotEligible) {
  PolicyConfig config;
  config.max_queued_per_worker = 4;
  const Placement p =
      run({prompt_w(0, 4), prompt_w(50, 3), token_w(900, 4), token_w(10, 3, 100)}, 100, 28, config);
  EXPECT_EQ(p.kind, Kind::kSplit);
  EXPECT_EQ(p.prompt, 1);
  EXPECT_EQ(p.token, 3);
}

TEST(ClusterPolicy, PromptPoolOverThresholdGoesMixed) {
  PolicyConfig config;
  config.prompt_overflow_tokens = 1000;
  // Exactly at the threshold is not over it.
  EXPECT_EQ(run({prompt_w(1000), token_w(500), mixed_w(0, 500)}, 100, 28, config).kind,
            Kind::kSplit);
  const Placement p =
      run({prompt_w(1001), prompt_w(5000), token_w(500), mixed_w(0, 500)}, 100, 28, config);
  EXPECT_EQ(p.kind, Kind::kMixed);
  EXPECT_EQ(p.mixed, 3);
}

TEST(ClusterPolicy, OverloadedTokenPoolGoesMixed) {
  // 40 of 1000 free is below 5%; the request would fit, but that room is kept for
  // the running sequences.
  const Placement p = run({prompt_w(0), token_w(40), mixed_w(0, 500)});
  EXPECT_EQ(p.kind, Kind::kMixed);
  EXPECT_EQ(run({prompt_w(0), token_w(50), mixed_w(0, 500)}).kind, Kind::kSplit);
}

TEST(ClusterPolicy, MixedPicksLeastPendingThenQueuedThenIndex) {
  EXPECT_EQ(run({mixed_w(300, 500), mixed_w(100, 500), mixed_w(200, 500)}).mixed, 1);
  EXPECT_EQ(run({mixed_w(100, 500, 3), mixed_w(100, 500, 1), mixed_w(100, 500, 1)}).mixed, 1);
  // A less loaded worker without room is passed over.
  EXPECT_EQ(run({mixed_w(0, 5), mixed_w(900, 500)}).mixed, 1);
}

TEST(ClusterPolicy, OnlyMixedWorkersAlwaysUseThem) {
  // Even far past the prompt threshold: the mixed pool has no such threshold.
  const Placement p = run({mixed_w(1 << 20, 500), mixed_w(1 << 21, 500)});
  EXPECT_EQ(p.kind, Kind::kMixed);
  EXPECT_EQ(p.mixed, 0);
}

TEST(ClusterPolicy, SplitIsPreferredOverMixed) {
  const Placement p = run({mixed_w(0, 1000), prompt_w(5000), token_w(100)});
  EXPECT_EQ(p.kind, Kind::kSplit);
  EXPECT_EQ(p.prompt, 1);
  EXPECT_EQ(p.token, 2);
}

TEST(ClusterPolicy, PairOrNothing) {
  // A free prompt worker alone is no placement: the token side is full.
  const Placement p = run({prompt_w(0), token_w(2, 0, 10)});
  EXPECT_EQ(p.kind, Kind::kReject);
  EXPECT_EQ(p.prompt, -1);
  EXPECT_EQ(p.token, -1);
  EXPECT_EQ(p.retry_after_s, 1);
  EXPECT_NE(p.reason.find("token pool: 0 of 1 eligible (1 without free KV blocks"),
            std::string::npos)
      << p.reason;
  EXPECT_EQ(p.reason.find("prompt pool"), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("mixed pool: no workers"), std::string::npos) << p.reason;
}

TEST(ClusterPolicy, EverythingFullIsRetryableAndNamesEachPool) {
  PolicyConfig config;
  config.max_queued_per_worker = 10;
  std::vector<WorkerView> w = {prompt_w(9000), prompt_w(0, 10), token_w(10), mixed_w(0, 3)};
  w.push_back(token_w(900));
  w.back().healthy = false;
  const Placement p = run(w, 100, 28, config);
  EXPECT_EQ(p.kind, Kind::kReject);
  EXPECT_EQ(p.retry_after_s, 1);
  EXPECT_NE(p.reason.find("prompt pool: 0 of 2 eligible (1 queue full, 1 over the prefill"),
            std::string::npos)
      << p.reason;
  EXPECT_NE(p.reason.find("token pool: 0 of 2 eligible (1 unhealthy, 1 below the free KV"),
            std::string::npos)
      << p.reason;
  EXPECT_NE(p.reason.find("mixed pool: 0 of 1 eligible (1 without free KV blocks"),
            std::string::npos)
      << p.reason;
}

TEST(ClusterPolicy, NoWorkersAtAllIsRetryableOnlyIfSomeoneCouldHoldIt) {
  const Placement none = run({});
  EXPECT_EQ(none.kind, Kind::kReject);
  EXPECT_EQ(none.retry_after_s, 0);
  // An unhealthy worker that could hold it may come back.
  std::vector<WorkerView> w = {mixed_w(0, 1000)};
  w[0].healthy = false;
  EXPECT_EQ(run(w).retry_after_s, 1);
}

TEST(ClusterPolicy, RequestLargerThanEveryKvCacheIsNotRetryable) {
  // 1000 blocks of 16 tokens hold 16000; ask for 16001.
  const std::vector<WorkerView> w = {prompt_w(0), token_w(1000), mixed_w(0, 1000)};
  EXPECT_EQ(run(w, 15000, 1000).kind, Kind::kSplit);
  const Placement p = run(w, 15000, 1001);
  EXPECT_EQ(p.kind, Kind::kReject);
  EXPECT_EQ(p.retry_after_s, 0);
  EXPECT_NE(p.reason.find("16001 tokens"), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("does not fit in the KV cache of any worker"), std::string::npos);
}

TEST(ClusterPolicy, PromptLargerThanEveryPromptWorkerNeedsAMixedWorker) {
  std::vector<WorkerView> w = {prompt_w(0), token_w(1000, 0, 2000)};
  w[0].total_kv_blocks = w[0].free_kv_blocks = 10;  // holds 160 prompt tokens
  EXPECT_EQ(run(w, 160, 10).kind, Kind::kSplit);
  EXPECT_EQ(run(w, 161, 10).retry_after_s, 0);
  w.push_back(mixed_w(0, 1000));
  EXPECT_EQ(run(w, 161, 10).kind, Kind::kMixed);
}

TEST(ClusterPolicy, WorkersReportingNoBlockSizeAreSkipped) {
  std::vector<WorkerView> w = {token_w(1000), prompt_w(0), token_w(100)};
  w[0].block_size = 0;
  EXPECT_EQ(run(w).token, 2);
}

TEST(ClusterPolicy, HugeRequestsDoNotOverflow) {
  const Placement p = run({prompt_w(0), token_w(1000)}, 2'000'000'000, 2'000'000'000);
  EXPECT_EQ(p.kind, Kind::kReject);
  EXPECT_EQ(p.retry_after_s, 0);
  EXPECT_NE(p.reason.find("4000000000 tokens"), std::string::npos) << p.reason;
}

}  // namespace
}  // namespace splitwise::router
