// The whole operator (manager + informers + work queue + reconciler) against the fake API
// server: kubectl-style changes in, children and status out, and the 200-cluster figure.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "controller/api/yaml_json.h"
#include "controller/kube/cluster_config.h"
#include "controller/manager.h"
#include "controller/reconciler.h"
#include "tests/controller/examples.h"
#include "tests/controller/fake_apiserver.h"

namespace splitwise::controller {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

class OperatorE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fake_.start().ok());
    kube::ClusterConfig config;
    config.server = fake_.url();
    config.token = kube::TokenSource::fixed("test");
    config.request_timeout = 5000ms;
    auto client = kube::RestClient::create(config);
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(*client);
  }
  void TearDown() override {
    manager_.reset();
    fake_.stop();
  }
  void run_operator(int workers = 2) {
    ManagerOptions o;
    o.workers = workers;
    o.leader_election.enabled = false;
    // The reconciler reads the manager's cache; built after it, so a forwarding lambda.
    manager_ = std::make_unique<Manager>(
        *client_, [this](const std::string& key) { return reconciler_->reconcile(key); }, o);
    ReconcilerOptions ro;
    ro.requeue_while_progressing = 200ms;
    reconciler_ = std::make_unique<Reconciler>(*client_, manager_->cluster_getter(), ro);
    manager_->start();
    ASSERT_TRUE(manager_->wait_for_sync(10s));
  }
  bool observed(const std::string& ns, const std::string& name) {
    auto ic = fake_.get("inferenceclusters", ns, name);
    if (!ic || !(*ic).contains("status") || !(*ic)["status"].is_object()) return false;
    return (*ic)["status"].value("observedGeneration", int64_t{0}) ==
           (*ic)["metadata"].value("generation", int64_t{-1});
  }

  fake::FakeApiServer fake_;
  std::unique_ptr<kube::RestClient> client_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(OperatorE2E, ApplyChangeAndDeleteACluster) {
  run_operator();
  ASSERT_TRUE(fake_.create("inferenceclusters", load_example("splitwise-ha.yaml")).ok());
  ASSERT_TRUE(eventually([&] { return observed("inference", "llama3-8b-ha"); }, 10s));
  ASSERT_TRUE(fake_.get("deployments", "inference", "llama3-8b-ha-prompt"));
  ASSERT_TRUE(fake_.get("deployments", "inference", "llama3-8b-ha-token"));
  ASSERT_TRUE(fake_.get("services", "inference", "llama3-8b-ha-router"));

  // A spec change reaches the child through the watch, not a direct call.
  ASSERT_TRUE(
      fake_
          .merge_patch("inferenceclusters", "inference", "llama3-8b-ha",
                       {{"spec", {{"pools", {{"token", {{"replicas", 6}, {"maxReplicas", 12}}}}}}}})
          .ok());
  EXPECT_TRUE(eventually(
      [&] {
        auto d = fake_.get("deployments", "inference", "llama3-8b-ha-token");
        return d && (*d)["spec"]["replicas"] == 6;
      },
      10s));

  // A child deleted by hand comes back (the child informer maps it to its owner).
  ASSERT_TRUE(fake_.remove("services", "inference", "llama3-8b-ha-prompt").ok());
  EXPECT_TRUE(eventually(
      [&] { return fake_.get("services", "inference", "llama3-8b-ha-prompt").has_value(); }, 10s));

  // Deleting the cluster collects every child (owner references).
  ASSERT_TRUE(fake_.remove("inferenceclusters", "inference", "llama3-8b-ha").ok());
  EXPECT_TRUE(eventually(
      [&] {
        return fake_.list("deployments", "inference").empty() &&
               fake_.list("services", "inference").empty() &&
               fake_.list("configmaps", "inference").empty();
      },
      10s));
}

// 200 clusters created at once: every one reconciled (children + observed status), with
// the time and the API requests per cluster printed (the operator's cost at scale).
TEST_F(OperatorE2E, TwoHundredClusters) {
  run_operator(4);
  fake_.reset_counters();
  const Json base = load_example("all-h100.yaml");
  constexpr int kClusters = 200;
  const auto start = Clock::now();
  for (int i = 0; i < kClusters; ++i) {
    Json ic = base;
    ic["metadata"]["name"] = "ic-" + std::to_string(i);
    ic["metadata"]["namespace"] = "ns-" + std::to_string(i % 10);
    ASSERT_TRUE(fake_.create("inferenceclusters", ic).ok());
  }
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kClusters; ++i)
          if (!observed("ns-" + std::to_string(i % 10), "ic-" + std::to_string(i))) return false;
        return true;
      },
      120s));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Let requeues of still-progressing clusters settle into the count too.
  const auto counters = fake_.counters();
  const int requests = static_cast<int>(counters.log.size());
  // 7 children + status per cluster at least; far more means a hot loop.
  EXPECT_EQ(fake_.list("deployments").size(), size_t{kClusters} * 4);  // 3 pools + router
  EXPECT_LT(requests, kClusters * 60) << "more than 60 API requests per cluster";
  std::printf(
      "200 InferenceClusters reconciled in %.2f s: %d API requests, %.1f per cluster "
      "(%d writes)\n",
      seconds, requests, double(requests) / kClusters, counters.writes);
}

}  // namespace
}  // namespace splitwise::controller
