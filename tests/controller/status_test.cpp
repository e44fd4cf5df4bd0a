// The InferenceCluster status rules, as pure functions: no API server.
#include "controller/status.h"

#include <gtest/gtest.h>

namespace splitwise::controller {
namespace {

Json deployment(int generation, int observed, int replicas, int ready, int updated) {
  return {{"metadata", {{"name", "d"}, {"generation", generation}}},
          {"status",
           {{"observedGeneration", observed},
            {"replicas", replicas},
            {"readyReplicas", ready},
            {"updatedReplicas", updated},
            {"availableReplicas", ready}}}};
}

Json pod(const std::string& name, Json status) {
  return {{"metadata", {{"name", name}}}, {"status", std::move(status)}};
}

Json unschedulable_pod(const std::string& name) {
  return pod(name, {{"phase", "Pending"},
                    {"conditions", Json::array({{{"type", "PodScheduled"},
                                                 {"status", "False"},
                                                 {"reason", "Unschedulable"},
                                                 {"message",
                                                  "0/4 nodes are available: 4 Insufficient "
                                                  "nvidia.com/gpu."}}})}});
}

Json crashing_pod(const std::string& name) {
  return pod(name, {{"phase", "Running"},
                    {"containerStatuses",
                     Json::array({{{"name", "worker"},
                                   {"restartCount", 3},
                                   {"state", {{"waiting", {{"reason", "CrashLoopBackOff"}}}}},
                                   {"lastState", {{"terminated", {{"reason", "Error"}}}}}}})}});
}

ClusterSpec two_pool_spec(const std::string& kv = "tcp") {
  ClusterSpec spec;
  spec.pools["prompt"].replicas = 2;
  spec.pools["prompt"].gpu_type = "H100";
  spec.pools["token"].replicas = 3;
  spec.pools["token"].gpu_type = "A100";
  spec.router.replicas = 1;
  spec.kv_transfer = kv;
  return spec;
}

// Every component at its desired count, up to date.
StatusInput steady_input() {
  StatusInput in;
  in.generation = 4;
  in.ref = {"c", "ns", "uid-1"};
  in.spec = two_pool_spec();
  in.now = "2024-01-01T00:00:00Z";
  in.components = {{"prompt", 2, deployment(1, 1, 2, 2, 2), {}},
                   {"token", 3, deployment(1, 1, 3, 3, 3), {}},
                   {"router", 1, deployment(1, 1, 1, 1, 1), {}}};
  return in;
}

const Json& cond(const Json& status, const std::string& type) {
  const Json* c = find_condition(status, type);
  EXPECT_NE(c, nullptr) << type;
  static const Json kNone = Json::object();
  return c ? *c : kNone;
}

TEST(StatusTest, AllReadyAndStable) {
  ComputedStatus out = compute_status(steady_input());
  const Json& s = out.status;
  EXPECT_EQ(s["observedGeneration"], 4);
  EXPECT_EQ(s["promptReady"], "2/2");
  EXPECT_EQ(s["tokenReady"], "3/3");
  EXPECT_EQ(s["endpoint"], "c-router.ns.svc:8000");
  EXPECT_EQ(s["pools"]["token"], (Json{{"replicas", 3}, {"ready", 3}, {"desired", 3}}));
  EXPECT_FALSE(s["pools"].contains("router"));
  EXPECT_EQ(cond(s, kReady)["status"], "True");
  EXPECT_EQ(cond(s, kReady)["reason"], "AllReady");
  EXPECT_EQ(cond(s, kReady)["observedGeneration"], 4);
  EXPECT_EQ(cond(s, kProgressing)["status"], "False");
  EXPECT_EQ(cond(s, kProgressing)["reason"], "Stable");
  EXPECT_EQ(cond(s, kDegraded)["status"], "False");
  EXPECT_EQ(cond(s, kDegraded)["reason"], "AsExpected");
  EXPECT_EQ(cond(s, kKvTransportReady)["status"], "True");
  EXPECT_EQ(cond(s, kScalingLimited)["status"], "False");
  EXPECT_EQ(cond(s, kScalingLimited)["reason"], "WithinLimits");
  EXPECT_EQ(s["conditions"].size(), 5u);
  EXPECT_FALSE(out.progressing);
  EXPECT_FALSE(out.pods_pending);
}

TEST(StatusTest, PoolBelowDesiredIsNotReady) {
  StatusInput in = steady_input();
  in.components[1].deployment = deployment(1, 1, 3, 1, 3);  // token: 1 of 3 ready
  ComputedStatus out = compute_status(in);
  EXPECT_EQ(out.status["tokenReady"], "1/3");
  const Json& ready = cond(out.status, kReady);
  EXPECT_EQ(ready["status"], "False");
  EXPECT_EQ(ready["reason"], "PoolsNotReady");
  EXPECT_NE(ready["message"].get<std::string>().find("token 1/3"), std::string::npos);
  // The token pool is not ready: the transport is not judged yet.
  EXPECT_EQ(cond(out.status, kKvTransportReady)["status"], "Unknown");
}

TEST(StatusTest, RouterNotReadyIsNotReady) {
  StatusInput in = steady_input();
  in.components[2].deployment = deployment(1, 1, 1, 0, 1);
  EXPECT_EQ(cond(compute_status(in).status, kReady)["status"], "False");
}

TEST(StatusTest, MissingDeploymentCountsZeroAndProgresses) {
  StatusInput in = steady_input();
  in.components[0].deployment = nullptr;
  ComputedStatus out = compute_status(in);
  EXPECT_EQ(out.status["promptReady"], "0/2");
  EXPECT_TRUE(out.progressing);
  EXPECT_EQ(cond(out.status, kReady)["status"], "False");
}

TEST(StatusTest, RolloutIsProgressing) {
  // The Deployment controller has not observed generation 2 yet.
  StatusInput in = steady_input();
  in.components[0].deployment = deployment(2, 1, 2, 2, 2);
  ComputedStatus out = compute_status(in);
  EXPECT_TRUE(out.progressing);
  EXPECT_EQ(cond(out.status, kProgressing)["status"], "True");
  EXPECT_EQ(cond(out.status, kProgressing)["reason"], "RollingOut");
  EXPECT_NE(cond(out.status, kProgressing)["message"].get<std::string>().find("prompt"),
            std::string::npos);
  // Old pods still running next to new ones.
  in = steady_input();
  in.components[1].deployment = deployment(2, 2, 4, 3, 2);
  EXPECT_TRUE(compute_status(in).progressing);
  // Fewer updated pods than desired.
  in = steady_input();
  in.components[1].deployment = deployment(2, 2, 3, 3, 1);
  EXPECT_TRUE(compute_status(in).progressing);
}

TEST(StatusTest, UnschedulablePodIsInsufficientCapacity) {
  StatusInput in = steady_input();
  in.components[0].pods = {unschedulable_pod("c-prompt-abc")};
  ComputedStatus out = compute_status(in);
  const Json& d = cond(out.status, kDegraded);
  EXPECT_EQ(d["status"], "True");
  EXPECT_EQ(d["reason"], "InsufficientCapacity");
  const std::string message = d["message"];
  EXPECT_NE(message.find("pool prompt"), std::string::npos) << message;
  EXPECT_NE(message.find("Insufficient nvidia.com/gpu"), std::string::npos) << message;
  EXPECT_NE(message.find("c-prompt-abc"), std::string::npos) << message;
  EXPECT_TRUE(out.pods_pending);
  EXPECT_EQ(out.degraded.reason, "InsufficientCapacity");
}

TEST(StatusTest, CrashLoopIsCrashLooping) {
  StatusInput in = steady_input();
  in.components[1].pods = {crashing_pod("c-token-xyz")};
  ComputedStatus out = compute_status(in);
  const Json& d = cond(out.status, kDegraded);
  EXPECT_EQ(d["reason"], "CrashLooping");
  const std::string message = d["message"];
  EXPECT_NE(message.find("pool token"), std::string::npos) << message;
  EXPECT_NE(message.find("c-token-xyz"), std::string::npos) << message;
  EXPECT_FALSE(out.pods_pending);
}

TEST(StatusTest, ManyRestartsCountAsCrashesFewDoNot) {
  Json few = pod("p", {{"containerStatuses", Json::array({{{"name", "w"}, {"restartCount", 2}}})}});
  Json many =
      pod("p", {{"containerStatuses",
                 Json::array({{{"name", "w"}, {"restartCount", kCrashRestartThreshold}}})}});
  EXPECT_TRUE(diagnose_pods({few}).crashing.empty());
  EXPECT_EQ(diagnose_pods({many}).crashing.size(), 1u);
}

TEST(StatusTest, PendingButSchedulableIsNotDegraded) {
  StatusInput in = steady_input();
  in.components[0].pods = {
      pod("p", {{"phase", "Pending"},
                {"conditions", Json::array({{{"type", "PodScheduled"}, {"status", "True"}}})}})};
  ComputedStatus out = compute_status(in);
  EXPECT_TRUE(out.pods_pending);
  EXPECT_EQ(cond(out.status, kDegraded)["status"], "False");
}

TEST(StatusTest, CapacityWinsOverCrashesButNamesBoth) {
  StatusInput in = steady_input();
  in.components[0].pods = {unschedulable_pod("a")};
  in.components[1].pods = {crashing_pod("b")};
  Json s = compute_status(in).status;
  const Json& d = cond(s, kDegraded);
  EXPECT_EQ(d["reason"], "InsufficientCapacity");
  EXPECT_NE(d["message"].get<std::string>().find("pool token"), std::string::npos);
}

TEST(StatusTest, LastTransitionTimeKeptWhileStatusUnchanged) {
  StatusInput in = steady_input();
  Json first = compute_status(in).status;
  EXPECT_EQ(cond(first, kReady)["lastTransitionTime"], "2024-01-01T00:00:00Z");
  // Later pass, same facts: nothing moves, so the whole status is identical.
  in.current = first;
  in.now = "2024-01-01T01:00:00Z";
  Json second = compute_status(in).status;
  EXPECT_EQ(second, first);
  // A pool drops: Ready flips and only Ready's time moves.
  in.current = second;
  in.now = "2024-01-01T02:00:00Z";
  in.components[0].deployment = deployment(1, 1, 2, 1, 2);
  Json third = compute_status(in).status;
  EXPECT_EQ(cond(third, kReady)["lastTransitionTime"], "2024-01-01T02:00:00Z");
  EXPECT_EQ(cond(third, kDegraded)["lastTransitionTime"], "2024-01-01T00:00:00Z");
  // A reason or message change without a status change keeps the time too.
  Json conditions = set_condition(third["conditions"], {kReady, "False", "Other", "m"}, 5,
                                  "2024-01-01T03:00:00Z");
  Json updated = {{"conditions", conditions}};
  EXPECT_EQ(cond(updated, kReady)["lastTransitionTime"], "2024-01-01T02:00:00Z");
  EXPECT_EQ(cond(updated, kReady)["reason"], "Other");
  EXPECT_EQ(cond(updated, kReady)["observedGeneration"], 5);
}

TEST(StatusTest, KeepsFieldsAndScalingLimitedOwnedByOthers) {
  StatusInput in = steady_input();
  in.current = {{"autoscaler", {{"lastScale", "x"}}},
                {"conditions", Json::array({{{"type", "ScalingLimited"},
                                             {"status", "True"},
                                             {"reason", "AtMaxReplicas"},
                                             {"message", "token at max"},
                                             {"lastTransitionTime", "2023-01-01T00:00:00Z"}}})}};
  Json s = compute_status(in).status;
  EXPECT_EQ(s["autoscaler"]["lastScale"], "x");
  EXPECT_EQ(cond(s, kScalingLimited)["status"], "True");
  EXPECT_EQ(cond(s, kScalingLimited)["reason"], "AtMaxReplicas");
}

TEST(StatusTest, KvTransport) {
  // NCCL with a CPU pool cannot work (validation rejects it; the condition says why).
  StatusInput in = steady_input();
  in.spec = two_pool_spec("nccl");
  in.spec.pools["token"].gpu_type = "CPU";
  EXPECT_EQ(cond(compute_status(in).status, kKvTransportReady)["reason"], "NcclNeedsGpus");
  EXPECT_EQ(cond(compute_status(in).status, kKvTransportReady)["status"], "False");
  in.spec = two_pool_spec("nccl");
  EXPECT_EQ(cond(compute_status(in).status, kKvTransportReady)["status"], "True");
  EXPECT_EQ(cond(compute_status(in).status, kKvTransportReady)["reason"], "Nccl");
  // A mixed-only cluster: the mixed pool stands for both roles.
  in = steady_input();
  in.spec.pools.clear();
  in.spec.pools["mixed"].replicas = 1;
  in.components = {{"mixed", 1, deployment(1, 1, 1, 0, 1), {}},
                   {"router", 1, deployment(1, 1, 1, 1, 1), {}}};
  Json s = compute_status(in).status;
  EXPECT_EQ(s["promptReady"], "0/1");
  EXPECT_EQ(s["tokenReady"], "0/1");
  EXPECT_EQ(cond(s, kKvTransportReady)["status"], "Unknown");
}

TEST(StatusTest, InvalidSpecStatusNamesEveryField) {
  std::vector<FieldError> errors = {
      {"spec.pools.prompt.minReplicas", "minReplicas must be <= replicas"},
      {"spec.pools.token.maxReplicas", "replicas must be <= maxReplicas (3 > 2)"}};
  Json current = {{"promptReady", "2/2"}};
  Json s = invalid_spec_status(current, 7, errors, "2024-01-01T00:00:00Z");
  EXPECT_EQ(s["observedGeneration"], 7);
  EXPECT_EQ(s["promptReady"], "2/2");  // counts left as they were
  const Json& d = cond(s, kDegraded);
  EXPECT_EQ(d["status"], "True");
  EXPECT_EQ(d["reason"], "InvalidSpec");
  const std::string m = d["message"];
  EXPECT_NE(m.find("spec.pools.prompt.minReplicas: minReplicas must be <= replicas"),
            std::string::npos);
  EXPECT_NE(m.find("spec.pools.token.maxReplicas: replicas must be <= maxReplicas (3 > 2)"),
            std::string::npos);
  EXPECT_EQ(cond(s, kReady)["status"], "False");
  EXPECT_EQ(cond(s, kReady)["reason"], "InvalidSpec");
  EXPECT_EQ(s["conditions"].size(), 5u);
  // Same errors again: identical status (so the reconciler writes nothing).
  EXPECT_EQ(invalid_spec_status(s, 7, errors, "2024-01-02T00:00:00Z"), s);
}

}  // namespace
}  // namespace splitwise::controller
