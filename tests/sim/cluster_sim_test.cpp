// ClusterSim on synthetic machines (tests/sim/sim_test_util.h): prefill 10 ms + 0.01 ms
// per token, decode 20 ms per iteration, toy KV of 2560 bytes per token over 10 layers,
// 1 GB/s links and 5 ms handoff overhead, so every expected time below is worked out by
// hand in its comment. A few tests at the end run the real profile and trace.
#include "sim/cluster_sim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "sim/designs.h"
#include "sim/report.h"
#include "tests/sim/sim_test_util.h"
#include "tests/test_util.h"

namespace splitwise::sim {
namespace {

using simtest::kToyDecodeS;
using simtest::kToyKvBytes;
using simtest::kToyLayers;
using simtest::kToyOverheadS;
using simtest::mixed_spec;
using simtest::req;
using simtest::split_spec;
using simtest::toy_prompt_s;

constexpr double kEps = 1e-9;

std::vector<RequestRecord> run(const ClusterSpec& spec, const std::vector<Request>& trace) {
  return simulate(spec, trace).records;
}

// --- One request, exact times ----------------------------------------------------

TEST(ClusterSimSplitTest, SingleRequestTimesAreExact) {
  const auto spec = split_spec(1, 1, 100000);
  ClusterSim sim(spec);
  sim.add_requests({req(1.0, 1000, 5)});
  sim.run_to_completion();
  ASSERT_EQ(sim.records().size(), 1u);
  const RequestRecord& r = sim.records()[0];
  EXPECT_EQ(r.prompt_machine, 0);
  EXPECT_EQ(r.token_machine, 1);
  // An idle prompt machine: TTFT is the prefill alone, 10 + 0.01 x 1000 = 20 ms.
  EXPECT_NEAR(r.ttft(), 0.020, kEps);
  // 2.56 MB of KV at 1 GB/s = 2.56 ms, streamed during the 20 ms prefill: only the last
  // layer's tenth (0.256 ms) and the 5 ms overhead are left after it.
  const double tail = 1000 * kToyKvBytes / 1e9 / kToyLayers + kToyOverheadS;
  EXPECT_NEAR(r.kv_tail_s, tail, kEps);
  // Four more tokens, one 20 ms decode iteration each, from when the KV has landed.
  EXPECT_NEAR(r.finish, 1.020 + tail + 4 * kToyDecodeS, kEps);
  EXPECT_NEAR(r.tbt(), (tail + 4 * kToyDecodeS) / 4, kEps);
  EXPECT_EQ(r.preemptions, 0);
  const auto& m = sim.machines();
  EXPECT_EQ(m[0].iterations, 1);
  EXPECT_EQ(m[0].prefill_tokens, 1000);
  EXPECT_NEAR(m[0].busy_s, 0.020, kEps);
  EXPECT_EQ(m[1].iterations, 4);
  EXPECT_EQ(m[1].decode_tokens, 4);
  EXPECT_EQ(m[1].max_batch, 1);
  EXPECT_EQ(m[1].prefill_tokens, 0);
}

TEST(ClusterSimSplitTest, SlowLinkTransferIsNotHiddenBehindThePrefill) {
  // 2.56 MB at 10 MB/s = 256 ms, started with the prefill at t = 1: lands at 1.256 + 5 ms.
  const auto rec = run(split_spec(1, 1, 100000, 1e7), {req(1.0, 1000, 3)});
  EXPECT_NEAR(rec[0].first_token, 1.020, kEps);
  EXPECT_NEAR(rec[0].kv_tail_s, 0.256 - 0.020 + kToyOverheadS, kEps);
  EXPECT_NEAR(rec[0].finish, 1.256 + kToyOverheadS + 2 * kToyDecodeS, kEps);
}

TEST(ClusterSimSplitTest, TransfersIntoOneTokenMachineShareItsLink) {
  // Two prompt machines prefill at once; both send 256 ms of KV to the one token machine,
  // whose ingress takes them one after the other.
  const auto rec = run(split_spec(2, 1, 100000, 1e7), {req(0, 1000, 2), req(0, 1000, 2)});
  EXPECT_EQ(rec[0].prompt_machine, 0);
  EXPECT_EQ(rec[1].prompt_machine, 1);
  EXPECT_NEAR(rec[0].first_token, 0.020, kEps);
  EXPECT_NEAR(rec[1].first_token, 0.020, kEps);
  EXPECT_NEAR(rec[0].kv_tail_s, 0.256 - 0.020 + kToyOverheadS, kEps);
  EXPECT_NEAR(rec[1].kv_tail_s, 0.512 - 0.020 + kToyOverheadS, kEps);
}

TEST(ClusterSimSplitTest, OneTokenRequestNeverReachesTheTokenMachine) {
  // KV capacity 4096 tokens: the first request reserves 3001 of it at placement. The
  // second needs all 256 blocks, so it can only run if the first gave its reservation
  // back when its prefill produced its only token.
  const auto spec = split_spec(1, 1, 4096);
  const auto rec = run(spec, {req(0, 3000, 1), req(1, 4000, 96)});
  EXPECT_NEAR(rec[0].first_token, toy_prompt_s(2048) + toy_prompt_s(952), kEps);
  EXPECT_EQ(rec[0].finish, rec[0].first_token);
  EXPECT_EQ(rec[0].kv_tail_s, 0);
  EXPECT_EQ(rec[0].tbt(), 0);
  ASSERT_TRUE(rec[1].completed()) << "token machine KV leaked by a one-token request";
  SimRun only_first = simulate(spec, {req(0, 3000, 1)});
  EXPECT_EQ(only_first.machines[1].iterations, 0) << "the token machine decoded for it";
}

TEST(ClusterSimSplitTest, DecodeIterationsReadTheBatchContext) {
  // 0.01 ms per KV token: the four decode iterations hold 1001..1004 tokens of context,
  // 20 ms + 10.01..10.04 ms each.
  const auto flat = run(split_spec(1, 1, 100000), {req(0, 1000, 5)});
  const auto kv = run(split_spec(1, 1, 100000, 1e9, 0.01), {req(0, 1000, 5)});
  const double landed = 0.020 + flat[0].kv_tail_s;
  EXPECT_NEAR(flat[0].finish - landed, 0.080, kEps);
  EXPECT_NEAR(kv[0].finish - landed, (80 + 0.01 * (1001 + 1002 + 1003 + 1004)) / 1e3, kEps);
  // Prefill does not read decode KV: TTFT is unchanged.
  EXPECT_NEAR(kv[0].ttft(), flat[0].ttft(), kEps);
}

// --- Batching ----------------------------------------------------------------------

TEST(ClusterSimSplitTest, LongPromptIsChunkedAtTheTokenBudget) {
  ClusterSim sim(split_spec(1, 1, 100000));
  sim.add_requests({req(0, 3000, 2)});
  sim.run_to_completion();
  const RequestRecord& r = sim.records()[0];
  // 2048 tokens then 952: 30.48 + 19.52 ms, against 40 ms for one 3000-token iteration.
  EXPECT_NEAR(r.ttft(), 0.050, kEps);
  EXPECT_EQ(sim.machines()[0].iterations, 2);
  EXPECT_EQ(sim.machines()[0].prefill_tokens, 3000);
  // The KV streamed from the first chunk's start: 7.68 ms, done long before the end.
  EXPECT_NEAR(r.kv_tail_s, 3000 * kToyKvBytes / 1e9 / kToyLayers + kToyOverheadS, kEps);
}

TEST(ClusterSimSplitTest, QueuedPromptsBatchFcfsUpToTheTokenBudget) {
  // r0 runs alone (11 ms); then r1, r2 and 48 tokens of r3 fill 2048 tokens (30.48 ms);
  // then the other 952 tokens of r3 (19.52 ms).
  const auto rec = run(split_spec(1, 1, 100000),
                       {req(0, 100, 1), req(0, 1000, 1), req(0, 1000, 1), req(0, 1000, 1)});
  EXPECT_NEAR(rec[0].first_token, 0.011, kEps);
  EXPECT_NEAR(rec[1].first_token, 0.04148, kEps);
  EXPECT_NEAR(rec[2].first_token, 0.04148, kEps);
  EXPECT_NEAR(rec[3].first_token, 0.061, kEps);
}

TEST(ClusterSimSplitTest, TokenMachineJoinsNewSequencesAtIterationBoundaries) {
  // r0 lands at 16.0256 ms and decodes every 20 ms. r1 lands at 66.0256 ms, mid-iteration,
  // and joins the batch at the next boundary, 76.0256 ms; its 2 tokens take 2 iterations.
  const auto spec = split_spec(1, 1, 100000);
  SimRun s = simulate(spec, {req(0, 100, 11), req(0.05, 100, 3)});
  const double tail = 100 * kToyKvBytes / 1e9 / kToyLayers + kToyOverheadS;
  const double landed0 = 0.011 + tail;
  EXPECT_NEAR(s.records[0].finish, landed0 + 10 * kToyDecodeS, kEps);
  EXPECT_NEAR(s.records[1].first_token, 0.061, kEps);
  EXPECT_NEAR(s.records[1].finish, landed0 + 5 * kToyDecodeS, kEps);
  EXPECT_EQ(s.machines[1].iterations, 10);
  EXPECT_EQ(s.machines[1].decode_tokens, 12);
  EXPECT_EQ(s.machines[1].max_batch, 2);
}

TEST(ClusterSimSplitTest, TokenBatchIsCappedAtMaxNumSeqs) {
  // Three prompt machines prefill three requests at once (11 ms); their KV lands on the
  // one token machine at 16.03, 16.28 and 16.54 ms. With max_num_seqs 2, r0 decodes
  // alone from 16.03 ms, r1 joins at the first boundary (36.03 ms), and r2 only when r0
  // has left (after its 4 iterations, at 96.03 ms).
  auto spec = split_spec(3, 1, 100000);
  spec.batching.max_num_seqs = 2;
  const SimRun s = simulate(spec, {req(0, 100, 5), req(0, 100, 5), req(0, 100, 5)});
  const double tail = 100 * kToyKvBytes / 1e9 / kToyLayers + kToyOverheadS;
  const double start = 0.011 + tail;
  EXPECT_NEAR(s.records[0].finish, start + 4 * kToyDecodeS, kEps);
  EXPECT_NEAR(s.records[1].finish, start + 5 * kToyDecodeS, kEps);
  EXPECT_NEAR(s.records[2].finish, start + 8 * kToyDecodeS, kEps);
  EXPECT_EQ(s.machines[3].max_batch, 2);
  EXPECT_EQ(s.machines[3].decode_tokens, 12);
}

// --- Placement ---------------------------------------------------------------------

TEST(ClusterSimPlacementTest, JsqByPendingPromptTokens) {
  // Machines 0 and 1 prompt, 2 token. r0 (1000 tokens) takes machine 0; ten 100-token
  // prompts go to machine 1 until its pending tokens equal machine 0's; the tie then
  // goes to the machine with fewer queued requests, machine 0.
  std::vector<Request> t = {req(0, 1000, 1)};
  for (int i = 0; i < 11; ++i) t.push_back(req(0, 100, 1));
  const auto rec = run(split_spec(2, 1, 100000), t);
  EXPECT_EQ(rec[0].prompt_machine, 0);
  for (int i = 1; i <= 10; ++i) EXPECT_EQ(rec[i].prompt_machine, 1) << "request " << i;
  EXPECT_EQ(rec[11].prompt_machine, 0);
}

TEST(ClusterSimPlacementTest, JsqBalancesPromptTokensOverARun) {
  const std::vector<Request> lengths = {{0, 200, 1}, {0, 1500, 1}, {0, 4000, 1}};
  const auto trace = generate({40, 60, 1, 9}, lengths);
  const SimRun s = simulate(split_spec(2, 1, 100000), trace);
  const double a = static_cast<double>(s.machines[0].prefill_tokens);
  const double b = static_cast<double>(s.machines[1].prefill_tokens);
  EXPECT_GT(a + b, 0);
  EXPECT_NEAR(a / (a + b), 0.5, 0.05);
}

TEST(ClusterSimPlacementTest, TokenMachineWithTheMostFreeKv) {
  // Token machines 1 and 2. r0 reserves 2000 tokens on 1 (tie: lower index); r1 and r2
  // then find more free KV on 2.
  const auto rec =
      run(split_spec(1, 2, 10000), {req(0, 1000, 1000), req(0, 100, 100), req(0, 100, 100)});
  EXPECT_EQ(rec[0].token_machine, 1);
  EXPECT_EQ(rec[1].token_machine, 2);
  EXPECT_EQ(rec[2].token_machine, 2);
}

TEST(ClusterSimPlacementTest, WaitsForTokenKvThenServesFcfs) {
  // 4096 tokens of token KV: r0 reserves 3000, so r1 (3000) waits until r0 finishes, and
  // r2, though it would fit, waits behind r1 (FCFS).
  const auto rec =
      run(split_spec(1, 1, 4096), {req(0, 2000, 1000), req(0, 2000, 1000), req(0.001, 100, 2)});
  for (const auto& r : rec) ASSERT_TRUE(r.completed());
  EXPECT_NEAR(rec[1].first_token, rec[0].finish + toy_prompt_s(2000), kEps);
  EXPECT_NEAR(rec[2].first_token, rec[1].first_token + toy_prompt_s(100), kEps);
}

TEST(ClusterSimPlacementTest, RequestTooBigForEveryMachineIsRejectedNotLost) {
  const auto rec = run(split_spec(1, 1, 4096), {req(0, 100, 10), req(0.001, 5000, 10),
                                                req(0.002, 4000, 200), req(0.003, 100, 10)});
  ASSERT_EQ(rec.size(), 4u);
  for (int i : {1, 2}) {
    EXPECT_TRUE(rec[i].rejected) << "request " << i;
    EXPECT_FALSE(rec[i].completed());
    EXPECT_EQ(rec[i].first_token, -1);
  }
  for (int i : {0, 3}) {
    EXPECT_FALSE(rec[i].rejected);
    EXPECT_TRUE(rec[i].completed()) << "request " << i << " stuck behind a rejected one";
  }
}

TEST(ClusterSimPlacementTest, OverflowsToTheMixedPool) {
  // Prompt and token machines hold 4096 tokens; a mixed machine (index 2) holds 100k.
  auto spec = split_spec(1, 1, 4096);
  spec.pools.push_back(
      {"mixed", Role::kMixed, simtest::toy_machine(100000), simtest::toy_perf(), 1});
  const auto rec = run(spec, {req(0, 5000, 10), req(0, 100, 10)});
  EXPECT_EQ(rec[0].prompt_machine, 2);
  EXPECT_EQ(rec[0].token_machine, -1);
  EXPECT_TRUE(rec[0].completed());
  EXPECT_EQ(rec[1].prompt_machine, 0);
  EXPECT_EQ(rec[1].token_machine, 1);
}

// --- Whole runs ----------------------------------------------------------------------

std::vector<Request> toy_trace(double rate, double duration, uint64_t seed) {
  const std::vector<Request> lengths = {
      {0, 500, 50}, {0, 1500, 200}, {0, 100, 1}, {0, 3000, 20}, {0, 40, 300}};
  return generate({rate, duration, 1, seed}, lengths);
}

TEST(ClusterSimRunTest, EverythingCompletesAndTokenKvReturnsToEmpty) {
  const auto spec = split_spec(2, 2, 50000);
  const auto trace = toy_trace(20, 30, 3);
  ClusterSim sim(spec);
  sim.add_requests(trace);
  sim.run_to_completion();
  int64_t prompt_tokens = 0, decode_tokens = 0;
  for (const RequestRecord& r : sim.records()) {
    ASSERT_TRUE(r.completed());
    EXPECT_GE(r.ttft(), toy_prompt_s(std::min(r.prompt_tokens, 2048)) - kEps);
    EXPECT_GE(r.finish, r.first_token);
    prompt_tokens += r.prompt_tokens;
    decode_tokens += r.output_tokens - 1;
  }
  EXPECT_EQ(sim.records().size(), trace.size());
  const auto& m = sim.machines();
  EXPECT_EQ(m[0].prefill_tokens + m[1].prefill_tokens, prompt_tokens);
  EXPECT_EQ(m[2].decode_tokens + m[3].decode_tokens, decode_tokens);
  // Each token machine must be exactly empty again: two requests of exactly its capacity
  // (50000 tokens = 3125 blocks), one for each.
  const double t = sim.now() + 1;
  sim.add_requests({req(t, 40000, 10000), req(t, 40000, 10000)});
  sim.run_to_completion();
  const auto& rec = sim.records();
  ASSERT_TRUE(rec[rec.size() - 2].completed());
  ASSERT_TRUE(rec[rec.size() - 1].completed());
  EXPECT_NE(rec[rec.size() - 2].token_machine, rec[rec.size() - 1].token_machine);
}

TEST(ClusterSimRunTest, DeterministicForTheSameInput) {
  const auto spec = split_spec(2, 2, 20000);
  const auto trace = toy_trace(30, 20, 5);
  const SimRun a = simulate(spec, trace), b = simulate(spec, trace);
  ASSERT_EQ(a.records.size(), b.records.size());
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.end_s, b.end_s);
  for (size_t i = 0; i < a.records.size(); ++i) {
    const RequestRecord &x = a.records[i], &y = b.records[i];
    EXPECT_EQ(x.first_token, y.first_token) << i;
    EXPECT_EQ(x.finish, y.finish) << i;
    EXPECT_EQ(x.prompt_machine, y.prompt_machine) << i;
    EXPECT_EQ(x.token_machine, y.token_machine) << i;
    EXPECT_EQ(x.kv_tail_s, y.kv_tail_s) << i;
  }
}

// --- Mixed machines ------------------------------------------------------------------

TEST(ClusterSimMixedTest, PromptsGoFirstAndStallDecodes) {
  // r0: prefill 11 ms, then decodes from 11 ms every 20 ms. r1 (2000 tokens, 1 output)
  // arrives at 40 ms; at 51 ms its prefill and r0's decode share one iteration of
  // prompt_ms(2001) = 30.01 ms, delaying r0's remaining 6 tokens by 10.01 ms.
  const auto alone = run(mixed_spec(1, 100000), {req(0, 100, 10)});
  EXPECT_NEAR(alone[0].finish, 0.011 + 9 * kToyDecodeS, kEps);
  const auto rec = run(mixed_spec(1, 100000), {req(0, 100, 10), req(0.04, 2000, 1)});
  EXPECT_NEAR(rec[1].first_token, 0.051 + 0.03001, kEps);
  EXPECT_NEAR(rec[0].finish, 0.051 + 0.03001 + 6 * kToyDecodeS, kEps);
}

// `n` requests that each grow to 1000 tokens, 1 ms apart, on one mixed machine with 4000
// tokens of KV: the router admits them on the KV free at arrival, so once n > 4 the
// decodes outgrow the cache and must be preempted.
std::unique_ptr<ClusterSim> overcommitted_mixed(int n, int max_preemptions) {
  auto spec = mixed_spec(1, 4000);
  spec.batching.max_preemptions = max_preemptions;
  std::vector<Request> t;
  for (int i = 0; i < n; ++i) t.push_back(req(0.001 * i, 500, 500));
  auto sim = std::make_unique<ClusterSim>(spec);
  sim->add_requests(t);
  sim->run_to_completion();
  return sim;
}

TEST(ClusterSimMixedTest, PreemptedSequencesFinishAndGiveBackAllKv) {
  for (int cap : {4, 1}) {
    auto sim = overcommitted_mixed(5, cap);
    int preempted = 0;
    for (const RequestRecord& r : sim->records()) {
      EXPECT_TRUE(r.completed()) << "cap " << cap;
      EXPECT_LE(r.preemptions, cap);
      preempted += r.preemptions > 0;
    }
    EXPECT_GT(preempted, 0) << "cap " << cap << ": the test must exercise preemption";
    // All KV back: a request of exactly the cache (4000 tokens = 250 blocks) runs.
    sim->add_requests({req(sim->now() + 1, 3000, 1000)});
    sim->run_to_completion();
    EXPECT_TRUE(sim->records().back().completed()) << "cap " << cap << ": mixed KV leaked";
  }
}

TEST(ClusterSimMixedTest, NoSequenceIsPreemptedMoreThanTheCap) {
  for (int cap : {4, 1, 0}) {
    auto sim = overcommitted_mixed(12, cap);
    for (const RequestRecord& r : sim->records()) EXPECT_LE(r.preemptions, cap);
  }
}

// Overcommitted 3x: every request must still finish (late), not be left in the cache
// when the run ends. Once every resident sequence is at the preemption cap and the KV is
// full, something must give (the engine's scheduler lets such a decode yield its own
// blocks); a machine that just stops leaves the run's requests unfinished forever.
TEST(ClusterSimMixedTest, OvercommittedKvStillCompletesEverything) {
  auto sim = overcommitted_mixed(12, 4);
  int done = 0;
  for (const RequestRecord& r : sim->records()) done += r.completed();
  EXPECT_EQ(done, 12) << "the simulation stopped at t = " << sim->now()
                      << " s with requests unfinished";
}

TEST(ClusterSimMixedTest, DecodesMoreSequencesThanTheTokenBudget) {
  // 2100 short requests fit the KV easily (12 tokens each) and the default max_num_seqs
  // (4096); a decode batch of 2100 is more than max_batch_tokens (2048) but must still
  // make progress, e.g. in parts, as the engine's scheduler does.
  std::vector<Request> t;
  for (int i = 0; i < 2100; ++i) t.push_back(req(0, 8, 4));
  const auto rec = run(mixed_spec(1, 1000000), t);
  int done = 0;
  for (const RequestRecord& r : rec) done += r.completed();
  EXPECT_EQ(done, 2100);
}

// --- Autoscaling ---------------------------------------------------------------------

TEST(ClusterSimScalingTest, AddedMachinesServeOnlyAfterStartup) {
  auto spec = split_spec(1, 1, 100000);
  spec.startup_s = 10;
  ClusterSim sim(spec);
  sim.set_pool_size(0, 2);  // machine 2, after the token machine
  EXPECT_EQ(sim.pool_size(0), 2);
  EXPECT_EQ(sim.pool_ready(0), 1);
  sim.add_requests({req(5, 1000, 2), req(5, 1000, 2)});
  sim.run_until(9.99);
  EXPECT_EQ(sim.pool_ready(0), 1);
  sim.run_until(10);
  EXPECT_EQ(sim.pool_ready(0), 2);
  EXPECT_EQ(sim.machines()[2].started, 0) << "billed from when it was asked for, start-up included";
  sim.add_requests({req(20, 1000, 2), req(20, 1000, 2)});
  sim.run_to_completion();
  const auto& rec = sim.records();
  EXPECT_EQ(rec[0].prompt_machine, 0);
  EXPECT_EQ(rec[1].prompt_machine, 0) << "served by a machine still starting up";
  EXPECT_EQ(rec[2].prompt_machine, 0);
  EXPECT_EQ(rec[3].prompt_machine, 2);
}

TEST(ClusterSimScalingTest, RemovedMachineDrainsThenStopsCosting) {
  // Prompt machines 0 and 1: r0, r2 on 0 and r1, r3 on 1 (JSQ ties go to the lower
  // index). Removing one at 1 ms drains machine 1: r3 still prefills there, 20-40 ms.
  ClusterSim sim(split_spec(2, 1, 100000));
  sim.add_requests({req(0, 1000, 2), req(0, 1000, 2), req(0, 1000, 2), req(0, 1000, 2)});
  sim.run_until(0.001);
  sim.set_pool_size(0, 1);
  EXPECT_EQ(sim.pool_size(0), 1);
  EXPECT_EQ(sim.pool_ready(0), 1);
  sim.add_requests({req(1, 1000, 2), req(1, 1000, 2)});
  sim.run_until(100);
  const auto& rec = sim.records();
  for (const auto& r : rec) EXPECT_TRUE(r.completed());
  EXPECT_EQ(rec[3].prompt_machine, 1);
  EXPECT_NEAR(rec[3].first_token, 0.040, kEps);
  EXPECT_EQ(rec[4].prompt_machine, 0);
  EXPECT_EQ(rec[5].prompt_machine, 0);
  EXPECT_NEAR(sim.machines()[1].stopped, 0.040, kEps);
  EXPECT_NEAR(sim.machine_seconds(0), 100 + 0.040, kEps);
  sim.run_until(200);
  EXPECT_NEAR(sim.machine_seconds(0), 200 + 0.040, kEps) << "a stopped machine still costs";
}

TEST(ClusterSimScalingTest, MachineSecondsNeverDecrease) {
  // A machine added at t = 0 with a 10 s start-up. Whether its start-up is billed or not,
  // the pool's machine-seconds can only grow with time.
  auto spec = split_spec(1, 1, 100000);
  spec.startup_s = 10;
  ClusterSim sim(spec);
  sim.set_pool_size(0, 2);
  double prev = 0;
  for (double t = 0.5; t <= 20; t += 0.5) {
    sim.run_until(t);
    const double now = sim.machine_seconds(0);
    EXPECT_GE(now, prev - kEps) << "machine-seconds fell at t = " << t;
    prev = now;
  }
}

TEST(ClusterSimScalingTest, MachineRemovedBeforeItIsReadyCostsAtMostItsStartup) {
  // Added at 0 with a 10 s start-up, removed at 5 s before it served: it costs between
  // nothing (billed from serving) and 5 s (billed from being asked for), never less.
  auto spec = split_spec(1, 1, 100000);
  spec.startup_s = 10;
  ClusterSim sim(spec);
  sim.set_pool_size(0, 2);
  sim.run_until(5);
  sim.set_pool_size(0, 1);
  EXPECT_EQ(sim.pool_ready(0), 1);
  sim.run_until(100);
  EXPECT_EQ(sim.pool_ready(0), 1);
  const MachineStats& gone = sim.machines()[2];
  EXPECT_GE(gone.stopped, gone.started)
      << "started " << gone.started << " stopped " << gone.stopped;
  EXPECT_GE(sim.machine_seconds(0), 100 - kEps);
  EXPECT_LE(sim.machine_seconds(0), 105 + kEps);
}

// --- The real profile and trace ------------------------------------------------------

TEST(ClusterSimRealTest, SplitwiseHhOnTwoMinutesOfConversation) {
  SW_REQUIRE_SHARED(csv, "data/splitwise-sim-profiles/perf_model.csv");
  SW_REQUIRE_SHARED(conv, "data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv");
  auto trace = load_azure_trace(conv);
  ASSERT_TRUE(trace.ok()) << trace.status().message();
  const auto t = window(*trace, 600, 120);
  ASSERT_GT(t.size(), 500u);
  ProfileSet profiles(csv, *model_spec("llama2-70b"));
  auto spec = make_design("splitwise-hh", {2, 2, 0}, profiles);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  const SimRun s = simulate(*spec, t);
  ASSERT_EQ(s.records.size(), t.size());
  std::vector<double> tail;
  int64_t prompt_tokens = 0, decode_tokens = 0;
  for (const RequestRecord& r : s.records) {
    ASSERT_TRUE(r.completed());
    EXPECT_LT(r.prompt_machine, 2);
    EXPECT_GE(r.token_machine, 2);
    prompt_tokens += r.prompt_tokens;
    decode_tokens += r.output_tokens - 1;
    if (r.output_tokens > 1) tail.push_back(r.kv_tail_s);
  }
  const auto& m = s.machines;
  EXPECT_EQ(m[0].prefill_tokens + m[1].prefill_tokens, prompt_tokens);
  EXPECT_EQ(m[2].decode_tokens + m[3].decode_tokens, decode_tokens);
  // Layer-wise transfer of ~0.3 GB at 400 GB/s while an ~80 ms prefill runs: what is left
  // is the 5 ms H100 overhead plus the last of 80 layers (~10 us).
  const Percentiles p = percentiles(tail);
  EXPECT_GE(p.p50, 0.005);
  EXPECT_LT(p.p50, 0.0055);
}

}  // namespace
}  // namespace splitwise::sim
