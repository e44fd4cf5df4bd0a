// The InferenceCluster reconciler against the fake API server, over real HTTP.
#include "controller/reconciler.h"

#include <gtest/gtest.h>

#include <set>

#include "controller/api/yaml_json.h"
#include "controller/kube/cluster_config.h"
#include "controller/status.h"
#include "tests/controller/examples.h"
#include "tests/controller/fake_apiserver.h"

namespace splitwise::controller {
namespace {

using namespace std::chrono_literals;

std::string rv(const Json& object) { return object["metadata"]["resourceVersion"]; }

const Json* condition(const Json& cluster, const std::string& type) {
  // A pointer into `cluster` itself (value() would return a copy and leave it dangling).
  if (!cluster.is_object() || !cluster.contains("status")) return nullptr;
  return find_condition(cluster.at("status"), type);
}

class ReconcilerTest : public ::testing::Test {
 protected:
  static constexpr const char* kNs = "inference";
  static constexpr const char* kHa = "llama3-8b-ha";

  void start(fake::FakeApiServerOptions fake_options = {}, int attempts = 5) {
    fake_ = std::make_unique<fake::FakeApiServer>(fake_options);
    ASSERT_TRUE(fake_->start().ok());
    kube::ClusterConfig config;
    config.server = fake_->url();
    config.token = kube::TokenSource::fixed("test");
    config.request_timeout = 5000ms;
    kube::RetryPolicy retry;
    retry.max_attempts = attempts;
    retry.backoff = {1ms, 5ms, 0.5};
    auto client = kube::RestClient::create(config, retry);
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(*client);
    reconciler_ = std::make_unique<Reconciler>(
        *client_, [this](const std::string& key) { return cache(key); });
  }
  void SetUp() override { start(); }
  void TearDown() override {
    if (fake_) fake_->stop();
  }

  // The manager's informer cache, read straight from the fake (always fresh) unless a
  // test pins a stale copy.
  std::optional<Json> cache(const std::string& key) {
    if (stale_) return stale_;
    auto slash = key.find('/');
    return fake_->get("inferenceclusters", key.substr(0, slash), key.substr(slash + 1));
  }

  Json create_example(const std::string& file, const Json& spec_patch = nullptr) {
    Json object = load_example(file);
    if (!spec_patch.is_null()) object["spec"].merge_patch(spec_patch);
    auto created = fake_->create("inferenceclusters", object);
    EXPECT_TRUE(created.ok()) << created.status().message();
    return created.ok() ? *created : Json();
  }

  ReconcileResult reconcile_ok(const std::string& name = kHa) {
    auto r = reconciler_->reconcile(std::string(kNs) + "/" + name);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? *r : ReconcileResult{};
  }

  Json cluster(const std::string& name = kHa) {
    return fake_->get("inferenceclusters", kNs, name).value_or(Json());
  }
  std::optional<Json> child(const std::string& resource, const std::string& name) {
    return fake_->get(resource, kNs, name);
  }
  // Every child object in the namespace, "resource/name" -> resourceVersion.
  std::map<std::string, std::string> child_versions() {
    std::map<std::string, std::string> out;
    for (const char* res : {"deployments", "services", "configmaps"}) {
      for (const auto& o : fake_->list(res, kNs))
        out[std::string(res) + "/" + o["metadata"]["name"].get<std::string>()] = rv(o);
    }
    return out;
  }
  std::vector<Json> events_with(const std::string& reason) {
    std::vector<Json> out;
    for (const auto& e : fake_->events()) {
      if (e.value("reason", "") == reason) out.push_back(e);
    }
    return out;
  }
  void set_deployment_status(const std::string& name, int ready, int desired) {
    Json d = *child("deployments", name);
    Json status = {{"observedGeneration", d["metadata"]["generation"]},
                   {"replicas", desired},
                   {"readyReplicas", ready},
                   {"updatedReplicas", desired},
                   {"availableReplicas", ready}};
    ASSERT_TRUE(fake_->update_status("deployments", kNs, name, status).ok());
  }
  void create_pod(const std::string& name, const std::string& component, const Json& status) {
    Json pod = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata",
         {{"name", name},
          {"namespace", kNs},
          {"labels", {{"splitwise.io/cluster", kHa}, {"splitwise.io/component", component}}}}},
        {"spec", {{"containers", Json::array({{{"name", "worker"}, {"image", "x"}}})}}}};
    ASSERT_TRUE(fake_->create("pods", pod).ok());
    ASSERT_TRUE(fake_->update_status("pods", kNs, name, status).ok());
  }

  std::unique_ptr<fake::FakeApiServer> fake_;
  std::unique_ptr<kube::RestClient> client_;
  std::unique_ptr<Reconciler> reconciler_;
  std::optional<Json> stale_;
};

TEST_F(ReconcilerTest, CreatesEveryChildWithOwnerPlacementStatusAndEvent) {
  Json created = create_example("splitwise-ha.yaml");
  const std::string uid = created["metadata"]["uid"];
  ASSERT_FALSE(uid.empty());
  ReconcileResult r = reconcile_ok();

  const std::vector<std::pair<std::string, std::string>> children = {
      {"configmaps", "llama3-8b-ha-config"}, {"deployments", "llama3-8b-ha-prompt"},
      {"services", "llama3-8b-ha-prompt"},   {"deployments", "llama3-8b-ha-token"},
      {"services", "llama3-8b-ha-token"},    {"deployments", "llama3-8b-ha-router"},
      {"services", "llama3-8b-ha-router"}};
  for (const auto& [res, name] : children) {
    auto object = child(res, name);
    ASSERT_TRUE(object.has_value()) << res << "/" << name;
    const Json& owners = (*object)["metadata"]["ownerReferences"];
    ASSERT_EQ(owners.size(), 1u) << name;
    EXPECT_EQ(owners[0]["uid"], uid);
    EXPECT_EQ(owners[0]["kind"], "InferenceCluster");
    EXPECT_EQ(owners[0]["controller"], true);
    // Written by the operator's field manager with server-side apply.
    EXPECT_TRUE(fake_->managed_fields(res, kNs, name).count("splitwise-operator")) << name;
  }
  EXPECT_EQ(fake_->list("deployments", kNs).size(), 3u);
  EXPECT_EQ(fake_->list("services", kNs).size(), 3u);
  EXPECT_TRUE(fake_->list("servicemonitors", kNs).empty());

  // Prompts on H100 nodes, tokens on A100 nodes, both tolerating the GPU taint.
  auto values = [&](const std::string& name) {
    Json d = *child("deployments", name);
    return d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
  };
  EXPECT_EQ(values("llama3-8b-ha-prompt")["key"], "nvidia.com/gpu.product");
  EXPECT_EQ(values("llama3-8b-ha-prompt")["values"], Json(gpu_product_labels("H100")));
  EXPECT_EQ(values("llama3-8b-ha-token")["values"], Json(gpu_product_labels("A100")));
  Json prompt = *child("deployments", "llama3-8b-ha-prompt");
  EXPECT_EQ(prompt["spec"]["replicas"], 2);
  EXPECT_EQ(prompt["spec"]["template"]["spec"]["tolerations"][0]["key"], "nvidia.com/gpu");

  Json c = cluster();
  const int64_t generation = c["metadata"]["generation"];
  EXPECT_EQ(c["status"]["observedGeneration"], generation);
  for (const char* type : {kReady, kProgressing, kDegraded, kKvTransportReady, kScalingLimited}) {
    const Json* cond = condition(c, type);
    ASSERT_NE(cond, nullptr) << type;
    EXPECT_EQ((*cond)["observedGeneration"], generation) << type;
    EXPECT_FALSE((*cond)["lastTransitionTime"].get<std::string>().empty());
  }
  EXPECT_EQ((*condition(c, kReady))["status"], "False");  // no pod is ready yet
  EXPECT_EQ((*condition(c, kProgressing))["status"], "True");
  EXPECT_EQ(c["status"]["promptReady"], "0/2");
  EXPECT_EQ(c["status"]["endpoint"], "llama3-8b-ha-router.inference.svc:8000");
  EXPECT_EQ(r.requeue_after, 5000ms);  // rolling out: look again

  auto created_events = events_with("Created");
  ASSERT_EQ(created_events.size(), 1u);
  const Json& e = created_events[0];
  EXPECT_EQ(e["type"], "Normal");
  EXPECT_EQ(e["involvedObject"]["name"], kHa);
  EXPECT_EQ(e["involvedObject"]["uid"], uid);
  EXPECT_EQ(e["source"]["component"], "splitwise-operator");
  EXPECT_EQ(e["count"], 1);
  const std::string message = e["message"];
  EXPECT_NE(message.find("applied 7 of 7 children"), std::string::npos) << message;
  EXPECT_NE(message.find("Deployment llama3-8b-ha-prompt"), std::string::npos) << message;
}

TEST_F(ReconcilerTest, SecondPassWithNothingChangedWritesNothing) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  auto versions = child_versions();
  const std::string cluster_rv = rv(cluster());
  const size_t events = fake_->events().size();
  fake_->reset_counters();

  reconcile_ok();
  fake::Counters counters = fake_->counters();
  EXPECT_EQ(counters.writes, 0);
  EXPECT_EQ(counters.noop_writes, 0);
  for (const char* res : {"deployments", "services", "configmaps"}) {
    EXPECT_EQ(counters.count("apply", res), 0) << res;
  }
  EXPECT_EQ(counters.count("update", "inferenceclusters/status"), 0);
  EXPECT_EQ(counters.count("create", "events"), 0);
  EXPECT_EQ(child_versions(), versions);
  EXPECT_EQ(rv(cluster()), cluster_rv);
  EXPECT_EQ(fake_->events().size(), events);
}

TEST_F(ReconcilerTest, SpecChangeUpdatesChildren) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  ASSERT_TRUE(
      fake_
          ->merge_patch(
              "inferenceclusters", kNs, kHa,
              {{"spec",
                {{"pools",
                  {{"token", {{"replicas", 5}}}, {"prompt", {{"tolerations", nullptr}}}}}}}})
          .ok());
  reconcile_ok();
  Json token = *child("deployments", "llama3-8b-ha-token");
  EXPECT_EQ(token["spec"]["replicas"], 5);
  Json prompt = *child("deployments", "llama3-8b-ha-prompt");
  EXPECT_FALSE(prompt["spec"]["template"]["spec"].contains("tolerations")) << prompt.dump();
  // The token pool keeps its tolerations.
  EXPECT_TRUE(token["spec"]["template"]["spec"].contains("tolerations"));
  auto updated = events_with("Updated");
  ASSERT_EQ(updated.size(), 1u);
  const std::string message = updated[0]["message"];
  EXPECT_NE(message.find("applied 2 of 7 children"), std::string::npos) << message;
  EXPECT_NE(message.find("Deployment llama3-8b-ha-token"), std::string::npos) << message;
  Json c = cluster();
  EXPECT_EQ(c["status"]["observedGeneration"], c["metadata"]["generation"]);
  EXPECT_EQ(c["status"]["tokenReady"], "0/5");
}

TEST_F(ReconcilerTest, RemovedPoolDeletesItsOwnedChildrenOnly) {
  Json hh = create_example("all-h100.yaml");
  const std::string name = "llama3-8b-hh";
  reconcile_ok(name);
  ASSERT_TRUE(child("deployments", "llama3-8b-hh-mixed").has_value());
  ASSERT_TRUE(child("services", "llama3-8b-hh-mixed").has_value());
  // A Deployment a person made with the cluster's label but no owner reference: not ours.
  Json foreign = {
      {"apiVersion", "apps/v1"},
      {"kind", "Deployment"},
      {"metadata",
       {{"name", "debug-shell"}, {"namespace", kNs}, {"labels", {{"splitwise.io/cluster", name}}}}},
      {"spec", {{"replicas", 1}}}};
  ASSERT_TRUE(fake_->create("deployments", foreign).ok());

  ASSERT_TRUE(fake_
                  ->merge_patch("inferenceclusters", kNs, name,
                                {{"spec", {{"pools", {{"mixed", nullptr}}}}}})
                  .ok());
  reconcile_ok(name);
  EXPECT_FALSE(child("deployments", "llama3-8b-hh-mixed").has_value());
  EXPECT_FALSE(child("services", "llama3-8b-hh-mixed").has_value());
  EXPECT_TRUE(child("deployments", "llama3-8b-hh-prompt").has_value());
  EXPECT_TRUE(child("deployments", "debug-shell").has_value());
  auto deleted = events_with("Deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_NE(deleted[0]["message"].get<std::string>().find("Deployment llama3-8b-hh-mixed"),
            std::string::npos);
  EXPECT_FALSE(cluster(name)["status"]["pools"].contains("mixed"));
}

TEST_F(ReconcilerTest, ChildDeletedByHandIsRecreated) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  ASSERT_TRUE(fake_->remove("deployments", kNs, "llama3-8b-ha-token").ok());
  ASSERT_TRUE(fake_->remove("services", kNs, "llama3-8b-ha-router").ok());
  reconcile_ok();
  auto token = child("deployments", "llama3-8b-ha-token");
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ((*token)["spec"]["replicas"], 3);
  EXPECT_TRUE(child("services", "llama3-8b-ha-router").has_value());
  EXPECT_EQ(events_with("Created").size(), 2u);
}

TEST_F(ReconcilerTest, ChildEditedByHandIsRestored) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  ASSERT_TRUE(
      fake_->merge_patch("deployments", kNs, "llama3-8b-ha-prompt", {{"spec", {{"replicas", 9}}}})
          .ok());
  // A whole-object replace that drops a label and changes the Service type.
  Json svc = *child("services", "llama3-8b-ha-router");
  svc["metadata"]["labels"].erase("app.kubernetes.io/component");
  svc["spec"]["type"] = "NodePort";
  svc["metadata"].erase("resourceVersion");
  ASSERT_TRUE(fake_->put_object("services", svc).ok());

  reconcile_ok();
  EXPECT_EQ((*child("deployments", "llama3-8b-ha-prompt"))["spec"]["replicas"], 2);
  Json restored = *child("services", "llama3-8b-ha-router");
  EXPECT_EQ(restored["spec"]["type"], "LoadBalancer");
  EXPECT_EQ(restored["metadata"]["labels"]["app.kubernetes.io/component"], "router");
  // Both repairs are one summarised event.
  auto updated = events_with("Updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_NE(updated[0]["message"].get<std::string>().find("applied 2 of 7"), std::string::npos);
}

TEST_F(ReconcilerTest, InvalidSpecTouchesNoChildrenUntilFixed) {
  create_example("splitwise-ha.yaml", {{"pools", {{"prompt", {{"minReplicas", 5}}}}}});
  ReconcileResult r = reconcile_ok();
  EXPECT_EQ(r.requeue_after, 0ms);
  EXPECT_TRUE(fake_->list("deployments", kNs).empty());
  EXPECT_TRUE(fake_->list("services", kNs).empty());
  EXPECT_TRUE(fake_->list("configmaps", kNs).empty());
  Json c = cluster();
  const Json* degraded = condition(c, kDegraded);
  ASSERT_NE(degraded, nullptr);
  EXPECT_EQ((*degraded)["status"], "True");
  EXPECT_EQ((*degraded)["reason"], "InvalidSpec");
  EXPECT_NE((*degraded)["message"].get<std::string>().find("spec.pools.prompt.minReplicas"),
            std::string::npos);
  EXPECT_EQ((*condition(c, kReady))["status"], "False");
  EXPECT_EQ(c["status"]["observedGeneration"], c["metadata"]["generation"]);
  auto warnings = events_with("InvalidSpec");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0]["type"], "Warning");

  // Same bad spec again: no event spam, no status write.
  fake_->reset_counters();
  reconcile_ok();
  EXPECT_EQ(events_with("InvalidSpec").size(), 1u);
  EXPECT_EQ(fake_->counters().writes, 0);

  // The user fixes it: children appear and the condition clears.
  ASSERT_TRUE(fake_
                  ->merge_patch("inferenceclusters", kNs, kHa,
                                {{"spec", {{"pools", {{"prompt", {{"minReplicas", 1}}}}}}}})
                  .ok());
  reconcile_ok();
  EXPECT_EQ(fake_->list("deployments", kNs).size(), 3u);
  c = cluster();
  EXPECT_NE((*condition(c, kDegraded))["reason"], "InvalidSpec");
  EXPECT_EQ(c["status"]["observedGeneration"], c["metadata"]["generation"]);
}

TEST_F(ReconcilerTest, StatusFollowsDeploymentStatus) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  set_deployment_status("llama3-8b-ha-prompt", 2, 2);
  set_deployment_status("llama3-8b-ha-token", 3, 3);
  set_deployment_status("llama3-8b-ha-router", 2, 2);
  ReconcileResult r = reconcile_ok();
  Json c = cluster();
  EXPECT_EQ(c["status"]["promptReady"], "2/2");
  EXPECT_EQ(c["status"]["tokenReady"], "3/3");
  EXPECT_EQ(c["status"]["pools"]["token"], (Json{{"replicas", 3}, {"ready", 3}, {"desired", 3}}));
  EXPECT_EQ((*condition(c, kReady))["status"], "True");
  EXPECT_EQ((*condition(c, kReady))["reason"], "AllReady");
  EXPECT_EQ((*condition(c, kProgressing))["status"], "False");
  EXPECT_EQ((*condition(c, kKvTransportReady))["status"], "True");
  EXPECT_EQ(r.requeue_after, 0ms);

  set_deployment_status("llama3-8b-ha-token", 1, 3);
  reconcile_ok();
  c = cluster();
  EXPECT_EQ(c["status"]["tokenReady"], "1/3");
  EXPECT_EQ((*condition(c, kReady))["status"], "False");
  EXPECT_EQ((*condition(c, kReady))["reason"], "PoolsNotReady");
}

TEST_F(ReconcilerTest, UnschedulablePodIsInsufficientCapacity) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  create_pod("llama3-8b-ha-prompt-x1", "prompt",
             {{"phase", "Pending"},
              {"conditions", Json::array({{{"type", "PodScheduled"},
                                           {"status", "False"},
                                           {"reason", "Unschedulable"},
                                           {"message",
                                            "0/3 nodes are available: 3 node(s) didn't "
                                            "match Pod's node affinity/selector."}}})}});
  ReconcileResult r = reconcile_ok();
  Json c = cluster();
  const Json* degraded = condition(c, kDegraded);
  ASSERT_NE(degraded, nullptr);
  EXPECT_EQ((*degraded)["status"], "True");
  EXPECT_EQ((*degraded)["reason"], "InsufficientCapacity");
  const std::string message = (*degraded)["message"];
  EXPECT_NE(message.find("pool prompt"), std::string::npos) << message;
  EXPECT_NE(message.find("didn't match Pod's node affinity"), std::string::npos) << message;
  EXPECT_GT(r.requeue_after, 0ms);
  auto warnings = events_with("InsufficientCapacity");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0]["type"], "Warning");
  reconcile_ok();  // nothing new: no second event
  EXPECT_EQ(events_with("InsufficientCapacity").size(), 1u);
}

TEST_F(ReconcilerTest, CrashLoopingContainerIsCrashLooping) {
  create_example("splitwise-ha.yaml");
  reconcile_ok();
  create_pod("llama3-8b-ha-token-y2", "token",
             {{"phase", "Running"},
              {"containerStatuses",
               Json::array({{{"name", "worker"},
                             {"restartCount", 4},
                             {"state", {{"waiting", {{"reason", "CrashLoopBackOff"}}}}}}})}});
  reconcile_ok();
  Json c = cluster();
  const Json* degraded = condition(c, kDegraded);
  ASSERT_NE(degraded, nullptr);
  EXPECT_EQ((*degraded)["reason"], "CrashLooping");
  const std::string message = (*degraded)["message"];
  EXPECT_NE(message.find("pool token"), std::string::npos) << message;
  EXPECT_NE(message.find("llama3-8b-ha-token-y2"), std::string::npos) << message;
  EXPECT_EQ(events_with("CrashLooping").size(), 1u);
}

TEST_F(ReconcilerTest, ServerErrorsOnApplyAreRetriedWithoutDuplicates) {
  create_example("splitwise-ha.yaml");
  fake::FaultRule rule;
  rule.method = "PATCH";
  rule.path_regex = "/deployments/";
  rule.status = 500;
  rule.times = 2;
  int id = fake_->set_fault(rule);
  reconcile_ok();  // the client retries idempotent applies itself
  EXPECT_EQ(fake_->fault_hits(id), 2);
  EXPECT_EQ(fake_->counters().count("apply", "deployments"), 3 + 2);
  std::set<std::string> names;
  for (const auto& d : fake_->list("deployments", kNs)) names.insert(d["metadata"]["name"]);
  EXPECT_EQ(names, (std::set<std::string>{"llama3-8b-ha-prompt", "llama3-8b-ha-router",
                                          "llama3-8b-ha-token"}));
}

TEST_F(ReconcilerTest, ServerErrorWithoutClientRetryFailsThePassThenRecovers) {
  start({}, /*attempts=*/1);
  create_example("splitwise-ha.yaml");
  fake::FaultRule rule;
  rule.method = "PATCH";
  rule.path_regex = "/deployments/llama3-8b-ha-token";
  rule.status = 503;
  rule.times = 2;
  fake_->set_fault(rule);
  for (int pass = 0; pass < 2; ++pass) {
    auto r = reconciler_->reconcile(std::string(kNs) + "/" + kHa);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, 503);
  }
  // Status is not written after a failed apply; the next pass completes everything.
  EXPECT_FALSE(cluster().contains("status"));
  reconcile_ok();
  EXPECT_EQ(fake_->list("deployments", kNs).size(), 3u);
  EXPECT_TRUE(cluster().contains("status"));
}

TEST_F(ReconcilerTest, StatusConflictFromStaleCacheIsRetried) {
  create_example("splitwise-ha.yaml");
  stale_ = cluster();  // the cache has not seen the label edit below
  ASSERT_TRUE(
      fake_->merge_patch("inferenceclusters", kNs, kHa, {{"metadata", {{"labels", {{"a", "b"}}}}}})
          .ok());
  fake_->reset_counters();
  reconcile_ok();
  EXPECT_EQ(fake_->counters().count("update", "inferenceclusters/status"), 2);
  Json c = cluster();
  EXPECT_TRUE(c["status"].contains("conditions"));
  EXPECT_EQ(c["metadata"]["labels"]["a"], "b");
}

TEST_F(ReconcilerTest, InjectedStatusConflictIsRetried) {
  create_example("splitwise-ha.yaml");
  fake::FaultRule rule;
  rule.method = "PUT";
  rule.path_regex = "/inferenceclusters/llama3-8b-ha/status";
  rule.status = 409;
  rule.times = 1;
  int id = fake_->set_fault(rule);
  reconcile_ok();
  EXPECT_EQ(fake_->fault_hits(id), 1);
  EXPECT_TRUE(cluster()["status"].contains("conditions"));
}

TEST_F(ReconcilerTest, ServiceMonitorOnlyWhenServed) {
  fake::FakeApiServerOptions options;
  options.serve_monitoring = true;
  start(options);
  Json created = create_example("splitwise-ha.yaml");
  reconcile_ok();
  auto sm = child("servicemonitors", kHa);
  ASSERT_TRUE(sm.has_value());
  EXPECT_EQ((*sm)["metadata"]["ownerReferences"][0]["uid"], created["metadata"]["uid"]);
  fake_->reset_counters();
  reconcile_ok();
  EXPECT_EQ(fake_->counters().writes, 0);
}

TEST_F(ReconcilerTest, DeletedOrDeletingClusterIsLeftToTheGarbageCollector) {
  // Absent from the cache: nothing to do, and nothing is asked of the server.
  fake_->reset_counters();
  reconcile_ok("gone");
  EXPECT_TRUE(fake_->counters().log.empty());

  Json object = load_example("splitwise-ha.yaml");
  object["metadata"]["finalizers"] = Json::array({"example.com/hold"});
  ASSERT_TRUE(fake_->create("inferenceclusters", object).ok());
  ASSERT_TRUE(fake_->remove("inferenceclusters", kNs, kHa).ok());  // deletionTimestamp set
  ASSERT_TRUE(cluster()["metadata"].contains("deletionTimestamp"));
  reconcile_ok();
  EXPECT_TRUE(fake_->list("deployments", kNs).empty());
}

}  // namespace
}  // namespace splitwise::controller
