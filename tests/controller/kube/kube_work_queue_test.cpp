#include "controller/kube/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueueTest, AddDeduplicatesWaitingKeys) {
  WorkQueue q;
  q.add("a");
  q.add("b");
  q.add("a");
  EXPECT_EQ(q.len(), 2u);
  EXPECT_EQ(q.get(), "a");
  EXPECT_EQ(q.get(), "b");
  EXPECT_EQ(q.len(), 0u);
}

TEST(WorkQueueTest, KeyReaddedWhileProcessingComesBackAfterDone) {
  WorkQueue q;
  q.add("a");
  auto key = q.get();
  ASSERT_EQ(key, "a");
  q.add("a");  // while processing: must not be handed out yet
  q.add("a");
  EXPECT_EQ(q.len(), 0u);
  q.done("a");
  EXPECT_EQ(q.len(), 1u);
  EXPECT_EQ(q.get(), "a");
  q.done("a");
  EXPECT_EQ(q.len(), 0u);
}

TEST(WorkQueueTest, NeverProcessesOneKeyConcurrently) {
  WorkQueue q;
  constexpr int kKeys = 5;
  std::mutex mu;
  std::set<std::string> in_flight;
  std::atomic<bool> overlap{false};
  std::atomic<int> processed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (auto key = q.get()) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!in_flight.insert(*key).second) overlap = true;
        }
        std::this_thread::sleep_for(200us);
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(*key);
        }
        ++processed;
        q.done(*key);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    q.add("k" + std::to_string(i % kKeys));
    if (i % 50 == 0) std::this_thread::sleep_for(100us);
  }
  // Let the queue drain, then stop.
  for (int i = 0; i < 200 && (q.len() > 0); ++i) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(20ms);
  q.shutdown();
  for (auto& t : workers) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_GE(processed.load(), kKeys);
  EXPECT_LT(processed.load(), 2000);  // de-duplication collapsed many adds
}

TEST(WorkQueueTest, ShutdownWakesBlockedGetters) {
  WorkQueue q;
  std::atomic<int> woke{0};
  std::vector<std::thread> getters;
  for (int i = 0; i < 3; ++i) {
    getters.emplace_back([&] {
      EXPECT_EQ(q.get(), std::nullopt);
      ++woke;
    });
  }
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(woke.load(), 0);
  q.shutdown();
  for (auto& t : getters) t.join();
  EXPECT_EQ(woke.load(), 3);
  q.add("x");  // ignored after shutdown
  EXPECT_EQ(q.len(), 0u);
  EXPECT_TRUE(q.shutting_down());
}

TEST(WorkQueueTest, AddAfterDelaysAndOrdersByDueTime) {
  WorkQueue q;
  const auto start = std::chrono::steady_clock::now();
  q.add_after("late", 120ms);
  q.add_after("early", 40ms);
  EXPECT_EQ(q.len(), 0u);
  EXPECT_EQ(q.get(), "early");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 40ms);
  EXPECT_EQ(q.get(), "late");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 120ms);
}

TEST(WorkQueueTest, AddAfterKeepsEarlierDueTimeForSameKey) {
  WorkQueue q;
  q.add_after("a", 30ms);
  q.add_after("a", 5000ms);  // later: ignored, the earlier one stands
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(q.get(), "a");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  q.done("a");
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(q.len(), 0u);  // and it came only once
}

TEST(WorkQueueTest, AddAfterZeroIsImmediate) {
  WorkQueue q;
  q.add_after("a", 0ms);
  EXPECT_EQ(q.len(), 1u);
}

TEST(WorkQueueTest, RateLimitedBackoffGrowsAndForgetResets) {
  WorkQueue q(WorkQueueOptions{5ms, 1000s});
  EXPECT_EQ(q.next_delay("a"), 5ms);
  q.add_rate_limited("a");
  EXPECT_EQ(q.num_requeues("a"), 1);
  EXPECT_EQ(q.next_delay("a"), 10ms);
  q.add_rate_limited("a");
  q.add_rate_limited("a");
  EXPECT_EQ(q.next_delay("a"), 40ms);
  EXPECT_EQ(q.next_delay("b"), 5ms);  // per key
  q.forget("a");
  EXPECT_EQ(q.num_requeues("a"), 0);
  EXPECT_EQ(q.next_delay("a"), 5ms);
  EXPECT_EQ(q.get(), "a");  // the rate-limited adds still deliver (once)
}

TEST(WorkQueueTest, RateLimitedDelayIsCapped) {
  WorkQueue q(WorkQueueOptions{5ms, 1000s});
  for (int i = 0; i < 40; ++i) q.add_rate_limited("a");
  EXPECT_EQ(q.next_delay("a"), std::chrono::milliseconds(1000s));
}

TEST(WorkQueueTest, RateLimitedAddActuallyWaits) {
  WorkQueue q(WorkQueueOptions{50ms, 1000s});
  q.add_rate_limited("a");  // 50 ms
  q.add_rate_limited("b");  // 50 ms (own count)
  auto start = std::chrono::steady_clock::now();
  auto key = q.get();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  ASSERT_TRUE(key);
  q.done(*key);
  q.add_rate_limited("a");  // now 100 ms
  start = std::chrono::steady_clock::now();
  while (true) {
    auto k = q.get();
    ASSERT_TRUE(k);
    q.done(*k);
    if (*k == "a" && std::chrono::steady_clock::now() - start > 1ms) break;
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 95ms);
}

}  // namespace
}  // namespace splitwise::kube
