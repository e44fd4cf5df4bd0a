// The autoscaler inside the reconciler, against the fake API server: replicas it decides
// reach the Deployments, ScalingLimited and Events say why, a metrics outage holds the
// pools, and bad spec.autoscaling fields are an InvalidSpec naming the field.
#include <gtest/gtest.h>

#include "controller/reconciler.h"
#include "controller/status.h"
#include "tests/controller/examples.h"
#include "tests/controller/fake_apiserver.h"
#include "tests/test_util.h"

namespace splitwise::controller {
namespace {

using namespace std::chrono_literals;

// A load source the test sets by hand.
class FakeLoad : public LoadSource {
 public:
  Result<LoadObservation> observe(const std::string& key, const std::string& prometheus,
                                  const std::string& router_url, const std::string& selector,
                                  double now_s) override {
    ++calls;
    last_router_url = router_url;
    last_selector = selector;
    if (!error.empty()) return Status::error(error);
    return load;
  }
  LoadObservation load{1, 1000, 200};
  std::string error;
  int calls = 0;
  std::string last_router_url, last_selector;
};

class AutoscaleReconcileTest : public ::testing::Test {
 protected:
  static constexpr const char* kNs = "inference";
  static constexpr const char* kName = "llama3-8b-ha";

  void SetUp() override {
    SW_REQUIRE_SHARED(profile, "data/splitwise-sim-profiles/perf_model.csv");
    profile_ = profile.string();
    fake_ = std::make_unique<fake::FakeApiServer>(fake::FakeApiServerOptions{});
    ASSERT_TRUE(fake_->start().ok());
    kube::ClusterConfig config;
    config.server = fake_->url();
    config.token = kube::TokenSource::fixed("test");
    auto client = kube::RestClient::create(config, {});
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
    load_ = std::make_shared<FakeLoad>();
    ReconcilerOptions options;
    options.load_source = load_;
    options.clock_s = [this] { return now_; };
    options.on_autoscale = [this](const ClusterRef&, const AutoscaleOutcome& o) {
      ++decisions_;
      last_ = o;
    };
    reconciler_ = std::make_unique<Reconciler>(
        *client_,
        [this](const std::string& key) {
          auto slash = key.find('/');
          return fake_->get("inferenceclusters", key.substr(0, slash), key.substr(slash + 1));
        },
        options);
  }
  void TearDown() override {
    if (fake_) fake_->stop();
  }

  void create(const Json& autoscaling) {
    Json object = load_example("splitwise-ha.yaml");
    object["spec"]["pools"]["prompt"]["gpusPerWorker"] = 8;  // the profile's TP-8 machines
    object["spec"]["pools"]["token"]["gpusPerWorker"] = 8;
    object["spec"]["autoscaling"] = autoscaling;
    object["spec"]["router"]["replicas"] = routers_;
    ASSERT_TRUE(fake_->create("inferenceclusters", object).ok());
  }
  Json enabled(Json extra = Json::object()) {
    Json a = {{"enabled", true},
              {"intervalSeconds", 30},
              {"scaleDownStabilizationSeconds", 120},
              {"profile", {{"path", profile_}, {"model", "llama2-70b"}}}};
    a.merge_patch(extra);
    return a;
  }
  ReconcileResult reconcile() {
    auto r = reconciler_->reconcile(std::string(kNs) + "/" + kName);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? *r : ReconcileResult{};
  }
  int replicas(const std::string& pool) {
    auto d = fake_->get("deployments", kNs, std::string(kName) + "-" + pool);
    return d ? (*d)["spec"].value("replicas", -1) : -1;
  }
  void all_ready() {
    for (const char* pool : {"prompt", "token", "router"}) {
      const std::string name = std::string(kName) + "-" + pool;
      Json d = *fake_->get("deployments", kNs, name);
      const int n = d["spec"].value("replicas", 1);
      Json status = {{"observedGeneration", d["metadata"]["generation"]},
                     {"replicas", n},
                     {"readyReplicas", n},
                     {"updatedReplicas", n},
                     {"availableReplicas", n}};
      ASSERT_TRUE(fake_->update_status("deployments", kNs, name, status).ok());
    }
  }
  Json scaling_limited() {
    auto c = fake_->get("inferenceclusters", kNs, kName);
    const Json* cond = c ? find_condition((*c)["status"], kScalingLimited) : nullptr;
    return cond ? *cond : Json();
  }
  int events(const std::string& reason) {
    int n = 0;
    for (const auto& e : fake_->events()) n += e.value("reason", "") == reason;
    return n;
  }

  std::string profile_;
  int routers_ = 1;  // one router: its Service can be scraped without Prometheus
  double now_ = 1000;
  int decisions_ = 0;
  AutoscaleOutcome last_;
  std::unique_ptr<fake::FakeApiServer> fake_;
  std::unique_ptr<kube::RestClient> client_;
  std::shared_ptr<FakeLoad> load_;
  std::unique_ptr<Reconciler> reconciler_;
};

TEST_F(AutoscaleReconcileTest, DecisionsReachTheDeploymentsWithEventsAndStatus) {
  create(enabled());
  load_->load = {6, 1000, 200};
  const ReconcileResult first = reconcile();
  EXPECT_EQ(decisions_, 1);
  EXPECT_EQ(load_->last_router_url, "http://llama3-8b-ha-router.inference.svc:8000/metrics");
  EXPECT_EQ(load_->last_selector, "namespace=\"inference\",service=\"llama3-8b-ha-router\"");
  const int prompt = replicas("prompt"), token = replicas("token");
  EXPECT_EQ(prompt, last_.replicas.at("prompt"));
  EXPECT_EQ(token, last_.replicas.at("token"));
  EXPECT_GE(prompt, 1);
  EXPECT_GE(token, 1);
  EXPECT_GT(first.requeue_after.count(), 0);
  EXPECT_LE(first.requeue_after, 30001ms) << "the next decision is due in one interval";
  EXPECT_EQ(scaling_limited().value("reason", ""), "WithinLimits");
  auto c = fake_->get("inferenceclusters", kNs, kName);
  EXPECT_EQ((*c)["status"]["pools"]["token"].value("desired", -1), token);

  // Within the interval nothing is observed again, and the replicas stay.
  all_ready();
  now_ += 10;
  reconcile();
  EXPECT_EQ(load_->calls, 1);
  EXPECT_EQ(replicas("token"), token);

  // Four times the load after the interval: the pools grow, by at most maxStep.
  load_->load = {24, 1000, 200};
  now_ += 30;
  reconcile();
  EXPECT_EQ(load_->calls, 2);
  EXPECT_GT(replicas("token"), token);
  EXPECT_LE(replicas("token"), token + 4);
  EXPECT_GE(events("ScaledUp"), 1);
}

TEST_F(AutoscaleReconcileTest, MaxReplicasAndBudgetSetScalingLimited) {
  create(enabled({{"budget", {{"gpus", 48}}}}));
  load_->load = {60, 1000, 200};  // far beyond 48 GPUs of DGX machines
  reconcile();
  all_ready();
  for (int i = 0; i < 4; ++i) {
    now_ += 30;
    reconcile();
    all_ready();
  }
  const Json limited = scaling_limited();
  EXPECT_EQ(limited.value("status", ""), "True");
  EXPECT_EQ(limited.value("reason", ""), "BudgetExhausted");
  EXPECT_NE(limited.value("message", "").find("GPU budget 48"), std::string::npos)
      << limited.dump();
  EXPECT_LE((replicas("prompt") + replicas("token")) * 8, 48);
  EXPECT_GE(events("BudgetExhausted"), 1);
  EXPECT_EQ(events("BudgetExhausted"), 1) << "a limit that stays is reported once";
}

TEST_F(AutoscaleReconcileTest, MetricsOutageHoldsThePoolsAndSaysSo) {
  create(enabled());
  load_->load = {6, 1000, 200};
  reconcile();
  all_ready();
  const int prompt = replicas("prompt"), token = replicas("token");
  load_->error = "connection refused";
  now_ += 30;
  reconcile();
  EXPECT_EQ(replicas("prompt"), prompt);
  EXPECT_EQ(replicas("token"), token);
  const Json limited = scaling_limited();
  EXPECT_EQ(limited.value("reason", ""), "MetricsUnavailable");
  EXPECT_NE(limited.value("message", "").find("connection refused"), std::string::npos);
  EXPECT_FALSE(last_.metrics_up);

  // Garbage (a rate with no lengths) is no better than no answer.
  load_->error.clear();
  load_->load = {5, 0, 0};
  now_ += 30;
  reconcile();
  EXPECT_EQ(replicas("token"), token);
  EXPECT_EQ(scaling_limited().value("reason", ""), "MetricsUnavailable");

  // Zero traffic never takes a pool to zero.
  load_->load = {0, 0, 0};
  for (int i = 0; i < 10; ++i) {
    now_ += 30;
    reconcile();
    all_ready();
  }
  EXPECT_GE(replicas("prompt"), 1);
  EXPECT_GE(replicas("token"), 1);
}

TEST_F(AutoscaleReconcileTest, BadAutoscalingFieldIsAnInvalidSpecNamingIt) {
  create(enabled({{"maxStep", 0}}));
  reconcile();
  auto c = fake_->get("inferenceclusters", kNs, kName);
  const Json* degraded = find_condition((*c)["status"], kDegraded);
  ASSERT_NE(degraded, nullptr);
  EXPECT_EQ(degraded->value("reason", ""), kReasonInvalidSpec);
  EXPECT_NE(degraded->value("message", "").find("spec.autoscaling.maxStep"), std::string::npos);
  EXPECT_FALSE(fake_->get("deployments", kNs, std::string(kName) + "-prompt").has_value());
  EXPECT_EQ(load_->calls, 0);
}

TEST_F(AutoscaleReconcileTest, SeveralRoutersNeedPrometheus) {
  routers_ = 2;
  create(enabled());
  reconcile();
  Json limited = scaling_limited();
  EXPECT_EQ(limited.value("reason", ""), "CannotSize");
  EXPECT_NE(limited.value("message", "").find("prometheusURL"), std::string::npos)
      << limited.dump();
  EXPECT_EQ(load_->calls, 0);
  EXPECT_FALSE(last_.metrics_checked) << "a configuration problem is not a metrics outage";
}

TEST_F(AutoscaleReconcileTest, TurningAutoscalingOffIsReportedOnce) {
  create(enabled());
  reconcile();
  EXPECT_TRUE(last_.enabled);
  auto c = fake_->get("inferenceclusters", kNs, kName);
  Json object = *c;
  object["spec"]["autoscaling"]["enabled"] = false;
  ASSERT_TRUE(fake_->put_object("inferenceclusters", object).ok());
  const int before = decisions_;
  reconcile();
  EXPECT_TRUE(last_.disabled_now) << "the controller's metrics drop the autoscaler's series";
  EXPECT_EQ(decisions_, before + 1);
  reconcile();
  EXPECT_EQ(decisions_, before + 1) << "only once";
}

TEST_F(AutoscaleReconcileTest, UnprofiledGpuTypeHoldsWithAReason) {
  Json object = load_example("splitwise-ha.yaml");
  object["spec"]["pools"]["prompt"]["gpuType"] = "L40S";
  object["spec"]["autoscaling"] = enabled();
  ASSERT_TRUE(fake_->create("inferenceclusters", object).ok());
  reconcile();
  EXPECT_EQ(replicas("prompt"), 2) << "the spec's replicas stand";
  const Json limited = scaling_limited();
  EXPECT_EQ(limited.value("reason", ""), "CannotSize");
  EXPECT_NE(limited.value("message", "")
                .find("spec.pools.prompt: no performance profile for "
                      "gpuType L40S"),
            std::string::npos)
      << limited.dump();
  // The token pool's problem is named too: the example's 1-GPU workers have no profile rows.
  EXPECT_NE(limited.value("message", "").find("spec.pools.token"), std::string::npos);
  EXPECT_EQ(load_->calls, 0);
}

}  // namespace
}  // namespace splitwise::controller
