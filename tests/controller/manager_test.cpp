// The manager against the fake API server over real HTTP: events to keys, owner mapping,
// one key never on two workers, backoff on errors, requeue_after, relists after watch
// expiry, recovery from list/watch faults, graceful stop, and the probe endpoints.
#include "controller/manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "controller/controller_metrics.h"
#include "tests/controller/fake_apiserver.h"
#include "workers/net/http.h"

namespace splitwise::controller {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

template <typename Cond>
bool eventually(Cond cond, std::chrono::milliseconds timeout = 5000ms) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

json cluster(const std::string& name, int replicas = 1) {
  return {{"apiVersion", "splitwise.io/v1alpha1"},
          {"kind", "InferenceCluster"},
          {"metadata", {{"name", name}, {"namespace", "ns"}}},
          {"spec", {{"replicas", replicas}}}};
}

json owner_ref(const json& owner, bool controller = true) {
  return {{"apiVersion", "splitwise.io/v1alpha1"},
          {"kind", "InferenceCluster"},
          {"name", owner["metadata"]["name"]},
          {"uid", owner["metadata"]["uid"]},
          {"controller", controller}};
}

json child(const std::string& api_version, const std::string& kind, const std::string& name,
           json owner_refs, bool labelled = true) {
  json labels = json::object();
  if (labelled) labels[kManagedByLabel] = kManagedByValue;
  return {
      {"apiVersion", api_version},
      {"kind", kind},
      {"metadata",
       {{"name", name}, {"namespace", "ns"}, {"labels", labels}, {"ownerReferences", owner_refs}}},
      {"spec", json::object()}};
}

// Records every reconcile call; `behaviour` decides the answer.
struct Recorder {
  std::mutex mu;
  std::vector<std::pair<std::string, Clock::time_point>> calls;  // guarded by mu
  std::function<kube::ApiResult<ReconcileResult>(const std::string&, int n)> behaviour;

  ReconcileFn fn() {
    return [this](const std::string& key) -> kube::ApiResult<ReconcileResult> {
      int n;
      {
        std::lock_guard lock(mu);
        calls.emplace_back(key, Clock::now());
        n = static_cast<int>(std::count_if(calls.begin(), calls.end(),
                                           [&](const auto& c) { return c.first == key; }));
      }
      if (behaviour) return behaviour(key, n);
      return ReconcileResult{};
    };
  }
  int count(const std::string& key) {
    std::lock_guard lock(mu);
    return static_cast<int>(
        std::count_if(calls.begin(), calls.end(), [&](const auto& c) { return c.first == key; }));
  }
  std::vector<Clock::time_point> times(const std::string& key) {
    std::lock_guard lock(mu);
    std::vector<Clock::time_point> out;
    for (const auto& c : calls) {
      if (c.first == key) out.push_back(c.second);
    }
    return out;
  }
  std::vector<std::string> keys() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& c : calls) out.push_back(c.first);
    return out;
  }
};

class ManagerTest : public ::testing::Test {
 protected:
  void start_fake(fake::FakeApiServerOptions options = {}) {
    fake_ = std::make_unique<fake::FakeApiServer>(options);
    ASSERT_TRUE(fake_->start().ok());
    kube::ClusterConfig config;
    config.server = fake_->url();
    config.request_timeout = 5000ms;
    kube::RetryPolicy retry;
    retry.max_attempts = 3;
    retry.backoff = {5ms, 20ms, 0.5};
    auto client = kube::RestClient::create(config, retry);
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(*client);
  }
  void SetUp() override { start_fake(); }

  ManagerOptions options() {
    ManagerOptions o;
    o.workers = 2;
    o.leader_election.enabled = false;
    o.informer_backoff = {10ms, 100ms, 0.5};
    o.queue.base_delay = 5ms;
    return o;
  }

  std::unique_ptr<Manager> make_manager(ManagerOptions o) {
    return std::make_unique<Manager>(*client_, recorder_.fn(), std::move(o));
  }

  json create(const std::string& resource, json object) {
    auto created = fake_->create(resource, std::move(object));
    EXPECT_TRUE(created.ok()) << created.status().message();
    return created.ok() ? *created : json();
  }

  std::unique_ptr<fake::FakeApiServer> fake_;
  std::unique_ptr<kube::RestClient> client_;
  Recorder recorder_;
};

TEST(ControllerOwnerKeyTest, FindsTheControllingInferenceCluster) {
  json owner = {{"metadata", {{"name", "ic"}, {"uid", "u1"}}}};
  json ok = child("apps/v1", "Deployment", "d", json::array({owner_ref(owner)}));
  EXPECT_EQ(controller_owner_key(ok), "ns/ic");
  EXPECT_FALSE(controller_owner_key(child("v1", "Service", "s", json::array())));
  EXPECT_FALSE(
      controller_owner_key(child("v1", "Service", "s", json::array({owner_ref(owner, false)}))));
  json other_kind = owner_ref(owner);
  other_kind["kind"] = "ReplicaSet";
  other_kind["apiVersion"] = "apps/v1";
  EXPECT_FALSE(controller_owner_key(child("v1", "Service", "s", json::array({other_kind}))));
  json other_group = owner_ref(owner);
  other_group["apiVersion"] = "example.com/v1";
  EXPECT_FALSE(controller_owner_key(child("v1", "Service", "s", json::array({other_group}))));
  // The controller ref wins over earlier non-controller refs.
  EXPECT_EQ(controller_owner_key(
                child("v1", "Service", "s", json::array({other_kind, owner_ref(owner)}))),
            "ns/ic");
  EXPECT_FALSE(controller_owner_key(json::array()));
}

TEST_F(ManagerTest, ClusterEventsEnqueueTheirKey) {
  auto manager = make_manager(options());
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  EXPECT_TRUE(manager->running());
  create("inferenceclusters", cluster("a"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/a") >= 1; }));
  ASSERT_TRUE(manager->get_cluster("ns/a").has_value());
  const int before = recorder_.count("ns/a");
  ASSERT_TRUE(
      fake_->merge_patch("inferenceclusters", "ns", "a", {{"spec", {{"replicas", 3}}}}).ok());
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/a") > before; }));
  const int before_delete = recorder_.count("ns/a");
  ASSERT_TRUE(fake_->remove("inferenceclusters", "ns", "a").ok());
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/a") > before_delete; }));
  EXPECT_FALSE(manager->get_cluster("ns/a").has_value());
  manager->stop();
}

TEST_F(ManagerTest, ExistingClustersAreReconciledAtStart) {
  create("inferenceclusters", cluster("pre1"));
  create("inferenceclusters", cluster("pre2"));
  auto manager = make_manager(options());
  manager->start();
  EXPECT_TRUE(eventually(
      [&] { return recorder_.count("ns/pre1") >= 1 && recorder_.count("ns/pre2") >= 1; }));
}

TEST_F(ManagerTest, ChildEventsEnqueueTheOwnersKey) {
  auto manager = make_manager(options());
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  json owner = create("inferenceclusters", cluster("owner"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/owner") == 1; }));

  // Not ours: no managed-by label, or not the controller: no reconcile of the owner.
  create("deployments", child("apps/v1", "Deployment", "unlabelled",
                              json::array({owner_ref(owner)}), /*labelled=*/false));
  create("services",
         child("v1", "Service", "not-controller", json::array({owner_ref(owner, false)})));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(recorder_.count("ns/owner"), 1);

  create("deployments",
         child("apps/v1", "Deployment", "owner-prompt", json::array({owner_ref(owner)})));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/owner") == 2; }));
  create("configmaps", child("v1", "ConfigMap", "owner-config", json::array({owner_ref(owner)})));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/owner") == 3; }));
  // A child deleted behind our back wakes its owner too.
  ASSERT_TRUE(fake_->remove("deployments", "ns", "owner-prompt").ok());
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/owner") == 4; }));
  for (const std::string& key : recorder_.keys()) EXPECT_EQ(key, "ns/owner");
}

TEST_F(ManagerTest, OneKeyIsNeverReconciledByTwoWorkersAtOnce) {
  std::mutex mu;
  std::map<std::string, int> in_flight;  // guarded by mu
  int max_per_key = 0, in_flight_total = 0, max_total = 0;
  recorder_.behaviour = [&](const std::string& key, int) -> kube::ApiResult<ReconcileResult> {
    {
      std::lock_guard lock(mu);
      max_per_key = std::max(max_per_key, ++in_flight[key]);
      max_total = std::max(max_total, ++in_flight_total);
    }
    std::this_thread::sleep_for(20ms);
    {
      std::lock_guard lock(mu);
      --in_flight[key];
      --in_flight_total;
    }
    return ReconcileResult{};
  };
  ManagerOptions o = options();
  o.workers = 4;
  auto manager = make_manager(o);
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  for (const char* name : {"x", "y", "z"}) create("inferenceclusters", cluster(name));
  // A stream of updates while the keys are being reconciled.
  for (int i = 0; i < 30; ++i) {
    for (const char* name : {"x", "y", "z"}) {
      ASSERT_TRUE(
          fake_->merge_patch("inferenceclusters", "ns", name, {{"spec", {{"replicas", i}}}}).ok());
    }
    std::this_thread::sleep_for(3ms);
  }
  ASSERT_TRUE(
      eventually([&] { return recorder_.count("ns/x") >= 3 && recorder_.count("ns/z") >= 3; }));
  manager->stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(max_per_key, 1);
  EXPECT_GT(max_total, 1) << "different keys should run in parallel";
  // De-duplication: far fewer passes than events.
  EXPECT_LT(recorder_.count("ns/x"), 31);
}

TEST_F(ManagerTest, ErrorsBackOffExponentiallyWithoutHotLoop) {
  std::atomic<bool> fail{true};
  recorder_.behaviour = [&](const std::string&, int) -> kube::ApiResult<ReconcileResult> {
    if (fail) return kube::ApiError{409, "Conflict", "stale"};
    return ReconcileResult{};
  };
  auto manager = make_manager(options());
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  create("inferenceclusters", cluster("bad"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/bad") >= 1; }));
  const auto first = recorder_.times("ns/bad").front();
  std::this_thread::sleep_for(first + 300ms - Clock::now());
  std::vector<Clock::time_point> t = recorder_.times("ns/bad");
  // 5 ms doubling: retries at ~5, 15, 35, 75, 155, 315 ms -> about 6 calls; a hot loop
  // would make hundreds, no retry at all would make 1.
  EXPECT_GE(t.size(), 4u);
  EXPECT_LE(t.size(), 9u);
  ASSERT_GE(t.size(), 4u);
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) {
    gaps.push_back(std::chrono::duration<double, std::milli>(t[i] - t[i - 1]).count());
  }
  EXPECT_GT(gaps.back(), 3 * gaps.front()) << "delays must grow";
  EXPECT_GE(manager->metrics().reconcile_total("error"), static_cast<double>(t.size()));
  EXPECT_GE(manager->metrics().retries_total(), static_cast<double>(t.size()));
  // Once the reconcile succeeds (at the next backoff step) the key settles.
  fail = false;
  ASSERT_TRUE(eventually([&] { return manager->metrics().reconcile_total("success") >= 1; }));
  const double errors = manager->metrics().reconcile_total("error");
  const std::string line = "splitwise_controller_reconcile_total{result=\"error\"} " +
                           std::to_string(static_cast<int>(errors));
  EXPECT_NE(manager->render_metrics().find(line), std::string::npos);
}

TEST_F(ManagerTest, RequeueAfterRunsTheKeyAgain) {
  recorder_.behaviour = [](const std::string&, int n) -> kube::ApiResult<ReconcileResult> {
    return ReconcileResult{n <= 3 ? 40ms : 0ms};
  };
  auto manager = make_manager(options());
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  create("inferenceclusters", cluster("rollout"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/rollout") == 4; }, 2000ms));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(recorder_.count("ns/rollout"), 4);  // the fourth pass asked for nothing more
  auto t = recorder_.times("ns/rollout");
  EXPECT_GE(t[1] - t[0], 35ms);
  EXPECT_EQ(manager->metrics().reconcile_total("requeue"), 3);
  EXPECT_EQ(manager->metrics().reconcile_total("success"), 1);
}

TEST_F(ManagerTest, PeriodicResyncReenqueuesEveryCluster) {
  ManagerOptions o = options();
  o.resync = 150ms;
  auto manager = make_manager(o);
  manager->start();
  create("inferenceclusters", cluster("quiet"));
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/quiet") >= 3; }, 2000ms));
}

TEST_F(ManagerTest, WatchExpiryRelistsAndMissesNothing) {
  fake::FakeApiServerOptions fo;
  fo.bookmark_interval_ms = 0;
  start_fake(fo);
  // The first cluster watch breaks after one event; its successor waits 500 ms at the
  // server, long enough for changes and a compaction to pass it by (410 -> relist).
  fake::FaultRule cut;
  cut.method = "GET";
  cut.path_regex = "inferenceclusters";
  cut.query_regex = "watch=";
  cut.action = fake::FaultRule::Action::kCutWatch;
  cut.cut_after_events = 1;
  cut.times = 1;
  fake_->set_fault(cut);
  fake::FaultRule delay = cut;
  delay.action = fake::FaultRule::Action::kDelay;
  delay.delay_ms = 500;
  const int delay_id = fake_->set_fault(delay);

  auto manager = make_manager(options());
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  const int lists_before = fake_->counters().count("list", "inferenceclusters");
  create("inferenceclusters", cluster("c0"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/c0") >= 1; }));
  ASSERT_TRUE(eventually([&] { return fake_->fault_hits(delay_id) == 1; }));
  create("inferenceclusters", cluster("c1"));
  create("inferenceclusters", cluster("c2"));
  fake_->compact();
  create("inferenceclusters", cluster("c3"));
  for (const char* key : {"ns/c1", "ns/c2", "ns/c3"}) {
    EXPECT_TRUE(eventually([&] { return recorder_.count(key) >= 1; })) << key;
  }
  EXPECT_GT(fake_->counters().count("list", "inferenceclusters"), lists_before);
}

TEST_F(ManagerTest, InformersRecoverFromListAndWatchFaults) {
  // More 500s than the REST client retries, throttling, and dropped watch connections.
  fake::FaultRule list_500;
  list_500.method = "GET";
  list_500.path_regex = "inferenceclusters$";
  list_500.query_regex = "^(?!.*watch=)";
  list_500.status = 500;
  list_500.times = 7;
  const int f1 = fake_->set_fault(list_500);
  fake::FaultRule list_429 = list_500;
  list_429.path_regex = "deployments$";
  list_429.status = 429;
  list_429.retry_after_s = 0;
  list_429.times = 4;
  const int f2 = fake_->set_fault(list_429);
  fake::FaultRule drop;
  drop.method = "GET";
  drop.path_regex = "services$";
  drop.query_regex = "watch=";
  drop.action = fake::FaultRule::Action::kDrop;
  drop.times = 3;
  const int f3 = fake_->set_fault(drop);
  fake::FaultRule watch_500 = drop;
  watch_500.path_regex = "configmaps$";
  watch_500.action = fake::FaultRule::Action::kStatus;
  watch_500.status = 500;
  const int f4 = fake_->set_fault(watch_500);

  auto manager = make_manager(options());
  manager->start();
  EXPECT_FALSE(manager->ready());
  ASSERT_TRUE(manager->wait_for_sync(10'000ms));
  EXPECT_TRUE(manager->ready());
  json owner = create("inferenceclusters", cluster("flaky"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/flaky") >= 1; }));
  EXPECT_TRUE(eventually([&] { return fake_->fault_hits(f3) == 3 && fake_->fault_hits(f4) == 3; }));
  int n = recorder_.count("ns/flaky");
  create("services", child("v1", "Service", "flaky-svc", json::array({owner_ref(owner)})));
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/flaky") > n; }));
  n = recorder_.count("ns/flaky");
  create("configmaps", child("v1", "ConfigMap", "flaky-cm", json::array({owner_ref(owner)})));
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/flaky") > n; }));
  n = recorder_.count("ns/flaky");
  create("deployments", child("apps/v1", "Deployment", "flaky-d", json::array({owner_ref(owner)})));
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/flaky") > n; }));
  EXPECT_EQ(fake_->fault_hits(f1), 7);
  EXPECT_EQ(fake_->fault_hits(f2), 4);
}

TEST_F(ManagerTest, WatchesOneNamespaceWhenAsked) {
  ManagerOptions o = options();
  o.watch_namespace = "ns";
  auto manager = make_manager(o);
  manager->start();
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  json elsewhere = cluster("far");
  elsewhere["metadata"]["namespace"] = "other";
  create("inferenceclusters", elsewhere);
  create("inferenceclusters", cluster("near"));
  ASSERT_TRUE(eventually([&] { return recorder_.count("ns/near") >= 1; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(recorder_.count("other/far"), 0);
}

TEST_F(ManagerTest, StopWaitsForTheReconcileInFlight) {
  std::atomic<bool> entered{false}, finished{false};
  recorder_.behaviour = [&](const std::string&, int) -> kube::ApiResult<ReconcileResult> {
    entered = true;
    std::this_thread::sleep_for(300ms);
    finished = true;
    return ReconcileResult{};
  };
  auto manager = make_manager(options());
  manager->start();
  create("inferenceclusters", cluster("slow"));
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  manager->stop();
  EXPECT_TRUE(finished.load());
  EXPECT_FALSE(manager->running());
  const int calls = recorder_.count("ns/slow");
  ASSERT_TRUE(
      fake_->merge_patch("inferenceclusters", "ns", "slow", {{"spec", {{"replicas", 2}}}}).ok());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(recorder_.count("ns/slow"), calls);
}

TEST_F(ManagerTest, AThrowingReconcileIsAnErrorAndRetried) {
  recorder_.behaviour = [](const std::string&, int n) -> kube::ApiResult<ReconcileResult> {
    if (n == 1) throw std::runtime_error("boom");
    return ReconcileResult{};
  };
  auto manager = make_manager(options());
  manager->start();
  create("inferenceclusters", cluster("thrower"));
  EXPECT_TRUE(eventually([&] { return recorder_.count("ns/thrower") >= 2; }));
  EXPECT_EQ(manager->metrics().reconcile_total("error"), 1);
}

struct Got {
  int status = 0;
  std::string body;
};

Got http_get(uint16_t port, const std::string& path) {
  boost::asio::io_context io;
  net::HttpClient client(io);
  Got got;
  net::HttpRequest req;
  req.method = "GET";
  req.target = path;
  client.request("127.0.0.1", port, req, 2000, [&](Result<net::HttpResponse> r) {
    if (r.ok()) got = {r->status, r->body};
  });
  io.run();
  return got;
}

TEST_F(ManagerTest, ProbesAndMetricsAreServed) {
  fake::FaultRule slow_list;
  slow_list.method = "GET";
  slow_list.path_regex = "inferenceclusters$";
  slow_list.action = fake::FaultRule::Action::kDelay;
  slow_list.delay_ms = 400;
  fake_->set_fault(slow_list);
  auto manager = make_manager(options());
  ProbeServer probes(
      {.host = "127.0.0.1", .port = 0}, [&] { return manager->render_metrics(); },
      [&] { return manager->ready(); });
  ASSERT_TRUE(probes.start().ok());
  manager->start();
  EXPECT_EQ(http_get(probes.port(), "/healthz").status, 200);
  EXPECT_EQ(http_get(probes.port(), "/readyz").status, 503);  // the list is still delayed
  ASSERT_TRUE(manager->wait_for_sync(5000ms));
  EXPECT_EQ(http_get(probes.port(), "/readyz").status, 200);
  create("inferenceclusters", cluster("m"));
  ASSERT_TRUE(eventually([&] { return manager->metrics().reconcile_total("success") >= 1; }));
  Got metrics = http_get(probes.port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const char* want :
       {"splitwise_controller_reconcile_total{result=\"success\"} 1",
        "splitwise_controller_reconcile_duration_seconds_count 1",
        "splitwise_controller_workqueue_depth 0", "splitwise_controller_workqueue_retries_total 0",
        "splitwise_controller_is_leader 1"}) {
    EXPECT_NE(metrics.body.find(want), std::string::npos) << want << "\n" << metrics.body;
  }
  manager->stop();
  EXPECT_NE(http_get(probes.port(), "/metrics").body.find("splitwise_controller_is_leader 0"),
            std::string::npos);
}

}  // namespace
}  // namespace splitwise::controller
