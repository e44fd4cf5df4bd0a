#include "controller/kube/leader_elector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/controller/kube/fake_list_watch.h"

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

SystemTime at(int seconds) { return SystemTime(std::chrono::seconds(1'700'000'000 + seconds)); }

TEST(MicroTimeTest, FormatsAndParses) {
  const SystemTime t = SystemTime(std::chrono::seconds(1136214245)) + std::chrono::microseconds(42);
  EXPECT_EQ(format_micro_time(t), "2006-01-02T15:04:05.000042Z");
  EXPECT_EQ(parse_micro_time("2006-01-02T15:04:05.000042Z"), t);
  EXPECT_EQ(parse_micro_time("2006-01-02T15:04:05Z"), SystemTime(std::chrono::seconds(1136214245)));
  EXPECT_EQ(parse_micro_time("2006-01-02T15:04:05.5Z"),
            SystemTime(std::chrono::seconds(1136214245)) + 500ms);
  EXPECT_FALSE(parse_micro_time("2006-01-02 15:04:05Z"));
  EXPECT_FALSE(parse_micro_time("2006-01-02T15:04:05.Z"));
  EXPECT_FALSE(parse_micro_time("2006-13-02T15:04:05Z"));
  EXPECT_FALSE(parse_micro_time("2006-01-02T15:04:05+01:00"));
}

TEST(LeaseRecordTest, RoundTripsThroughSpec) {
  LeaseRecord r{"pod-a", 15, at(0), at(10), 3};
  EXPECT_EQ(lease_record_from(json{{"spec", lease_spec(r)}}), r);
  EXPECT_EQ(lease_spec(r)["renewTime"], format_micro_time(at(10)));
  EXPECT_EQ(lease_record_from(json::object()), LeaseRecord{});
}

TEST(DecideLeaseTest, CreatesWhenAbsent) {
  auto d = decide_lease(std::nullopt, "me", at(0), at(0), 15s);
  EXPECT_EQ(d.action, LeaseAction::kCreate);
  EXPECT_EQ(d.next.holder, "me");
  EXPECT_EQ(d.next.lease_duration_s, 15);
  EXPECT_EQ(d.next.acquire_time, at(0));
  EXPECT_EQ(d.next.renew_time, at(0));
  EXPECT_EQ(d.next.transitions, 0);
}

TEST(DecideLeaseTest, WaitsWhileOtherHolderIsLiveThenAcquiresOnExpiry) {
  LeaseRecord other{"other", 15, at(0), at(0), 2};
  EXPECT_EQ(decide_lease(other, "me", at(14), at(0), 15s).action, LeaseAction::kWait);
  auto d = decide_lease(other, "me", at(15), at(0), 15s);
  EXPECT_EQ(d.action, LeaseAction::kAcquire);
  EXPECT_EQ(d.next.holder, "me");
  EXPECT_EQ(d.next.transitions, 3);
  EXPECT_EQ(d.next.acquire_time, at(15));
  // Expiry runs from when *we* observed the record, not the holder's clock.
  EXPECT_EQ(decide_lease(other, "me", at(20), at(10), 15s).action, LeaseAction::kWait);
  // The holder's own duration counts, not ours.
  LeaseRecord long_lease{"other", 60, at(0), at(0), 0};
  EXPECT_EQ(decide_lease(long_lease, "me", at(30), at(0), 15s).action, LeaseAction::kWait);
}

TEST(DecideLeaseTest, AcquiresReleasedLeaseAtOnce) {
  LeaseRecord released{"", 1, at(0), at(0), 4};
  auto d = decide_lease(released, "me", at(0), at(0), 15s);
  EXPECT_EQ(d.action, LeaseAction::kAcquire);
  EXPECT_EQ(d.next.transitions, 5);
}

TEST(DecideLeaseTest, RenewsOwnLeaseKeepingAcquireTime) {
  LeaseRecord mine{"me", 15, at(0), at(2), 1};
  auto d = decide_lease(mine, "me", at(4), at(2), 15s);
  EXPECT_EQ(d.action, LeaseAction::kRenew);
  EXPECT_EQ(d.next.acquire_time, at(0));
  EXPECT_EQ(d.next.renew_time, at(4));
  EXPECT_EQ(d.next.transitions, 1);
}

// An in-memory Lease store with resourceVersion checks (409 on stale updates).
class FakeLeases : public LeaseClient {
 public:
  ApiResult<json> get(const std::string&, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_) return ApiError::transport("down");
    if (lease_.is_null()) return ApiError{404, "NotFound", "no lease"};
    return lease_;
  }
  ApiResult<json> create(const std::string&, const json& lease) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_) return ApiError::transport("down");
    if (!lease_.is_null()) return ApiError{409, "AlreadyExists", "exists"};
    lease_ = lease;
    lease_["metadata"]["resourceVersion"] = std::to_string(++rv_);
    return lease_;
  }
  ApiResult<json> update(const std::string&, const json& lease) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_) return ApiError::transport("down");
    if (lease["metadata"].value("resourceVersion", "") != std::to_string(rv_)) {
      ++conflicts_;
      return ApiError{409, "Conflict", "stale"};
    }
    lease_ = lease;
    lease_["metadata"]["resourceVersion"] = std::to_string(++rv_);
    return lease_;
  }
  LeaseRecord record() {
    std::lock_guard<std::mutex> lock(mu_);
    return lease_record_from(lease_);
  }
  void set_failing(bool f) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = f;
  }
  // Someone else writes between our read and our write.
  void bump_rv() {
    std::lock_guard<std::mutex> lock(mu_);
    ++rv_;
    lease_["metadata"]["resourceVersion"] = std::to_string(rv_);
  }
  int conflicts() {
    std::lock_guard<std::mutex> lock(mu_);
    return conflicts_;
  }

 private:
  std::mutex mu_;
  json lease_;
  int rv_ = 0;
  int conflicts_ = 0;
  bool fail_ = false;
};

LeaderElectionConfig config(const std::string& id) {
  LeaderElectionConfig c;
  c.lease_namespace = "ns";
  c.lease_name = "splitwise-controller";
  c.identity = id;
  c.lease_duration = 1000ms;
  c.renew_deadline = 300ms;
  c.retry_period = 20ms;
  return c;
}

TEST(LeaderElectorTest, RoundsCreateRenewAndWait) {
  FakeLeases leases;
  LeaderElector a(leases, config("a"));
  LeaderElector b(leases, config("b"));
  EXPECT_EQ(a.try_acquire_or_renew(), LeaderElector::Round::kHeld);
  EXPECT_EQ(leases.record().holder, "a");
  EXPECT_EQ(a.try_acquire_or_renew(), LeaderElector::Round::kHeld);  // renew
  EXPECT_EQ(b.try_acquire_or_renew(), LeaderElector::Round::kHeldByOther);
  EXPECT_EQ(b.leader(), "a");
  EXPECT_TRUE(a.release().ok());
  EXPECT_EQ(leases.record().holder, "");
  EXPECT_EQ(leases.record().lease_duration_s, 1);
  EXPECT_EQ(b.try_acquire_or_renew(), LeaderElector::Round::kHeld);  // at once after release
  EXPECT_EQ(leases.record().holder, "b");
  EXPECT_EQ(leases.record().transitions, 1);
}

TEST(LeaderElectorTest, ConflictOnWriteIsRereadAndRetried) {
  FakeLeases leases;
  LeaderElector a(leases, config("a"));
  ASSERT_EQ(a.try_acquire_or_renew(), LeaderElector::Round::kHeld);
  // A stale-rv write: the fake rejects updates whose rv is not current, so bump it
  // under a racing writer by wrapping update.
  class Racy : public LeaseClient {
   public:
    explicit Racy(FakeLeases& f) : f_(f) {}
    ApiResult<json> get(const std::string& ns, const std::string& n) override {
      return f_.get(ns, n);
    }
    ApiResult<json> create(const std::string& ns, const json& l) override {
      return f_.create(ns, l);
    }
    ApiResult<json> update(const std::string& ns, const json& l) override {
      if (!raced_) {
        raced_ = true;
        f_.bump_rv();
      }
      return f_.update(ns, l);
    }
    FakeLeases& f_;
    bool raced_ = false;
  } racy(leases);
  LeaderElector a2(racy, config("a"));
  EXPECT_EQ(a2.try_acquire_or_renew(), LeaderElector::Round::kHeld);
  EXPECT_EQ(leases.conflicts(), 1);
}

TEST(LeaderElectorTest, FailoverAndStepDownAfterRenewDeadline) {
  FakeLeases leases;
  std::atomic<int> a_started{0}, a_stopped{0}, b_started{0};
  auto ca = config("a");
  ca.on_started_leading = [&] { ++a_started; };
  ca.on_stopped_leading = [&] { ++a_stopped; };
  auto cb = config("b");
  cb.on_started_leading = [&] { ++b_started; };
  std::vector<std::string> b_leaders;
  std::mutex mu;
  cb.on_new_leader = [&](const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    b_leaders.push_back(id);
  };
  LeaderElector a(leases, ca);
  LeaderElector b(leases, cb);
  std::thread ta([&] { a.run(); });
  ASSERT_TRUE(eventually([&] { return a.is_leader(); }));
  std::thread tb([&] { b.run(); });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(b.is_leader());
  EXPECT_EQ(b.leader(), "a");

  // The apiserver becomes unreachable: a must step down after the renew deadline.
  leases.set_failing(true);
  ASSERT_TRUE(eventually([&] { return a_stopped.load() == 1; }, 2000ms));
  EXPECT_FALSE(a.is_leader());
  leases.set_failing(false);
  // The lease is a's until it expires (1 s); then one of them takes it.
  ASSERT_TRUE(eventually([&] { return a.is_leader() || b.is_leader(); }, 3000ms));
  a.stop();
  ta.join();
  // If a held it, its graceful stop released it and b takes over at once.
  ASSERT_TRUE(eventually([&] { return b.is_leader(); }, 2000ms));
  b.stop();
  tb.join();
  EXPECT_EQ(b_started.load(), 1);
  EXPECT_EQ(leases.record().holder, "");  // b released on stop
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(b_leaders.empty());
  EXPECT_EQ(b_leaders.front(), "a");
}

}  // namespace
}  // namespace splitwise::kube
