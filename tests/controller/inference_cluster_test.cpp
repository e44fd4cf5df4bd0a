// InferenceCluster parsing and validation: the shipped examples are valid, and each rule
// of the CRD (and the operator's own) names the field it rejects.
#include <gtest/gtest.h>

#include <filesystem>

#include "controller/api/inference_cluster.h"
#include "controller/api/yaml_json.h"
#include "tests/controller/examples.h"
#include "tests/test_util.h"

namespace splitwise::controller {
namespace {

Json example(const std::string& name) { return load_example(name); }

std::vector<FieldError> errors_of(const Json& spec) {
  ParsedSpec p = parse_spec(spec);
  auto v = validate(p.spec);
  p.errors.insert(p.errors.end(), v.begin(), v.end());
  return p.errors;
}

bool names(const std::vector<FieldError>& errors, const std::string& field,
           const std::string& fragment = "") {
  for (const FieldError& e : errors)
    if (e.field == field && e.message.find(fragment) != std::string::npos) return true;
  return false;
}

std::string dump(const std::vector<FieldError>& errors) {
  std::string s;
  for (const auto& e : errors) s += e.str() + "\n";
  return s;
}

TEST(InferenceCluster, ExamplesAreValidWithDefaultsApplied) {
  for (const char* name : {"splitwise-ha.yaml", "all-h100.yaml", "cpu-dev.yaml"}) {
    const Json ic = example(name);
    ASSERT_EQ(ic["apiVersion"], "splitwise.io/v1alpha1") << name;
    const auto errors = errors_of(ic["spec"]);
    EXPECT_TRUE(errors.empty()) << name << ":\n" << dump(errors);
  }
  const ParsedSpec ha = parse_spec(example("splitwise-ha.yaml")["spec"]);
  EXPECT_EQ(ha.spec.pools.at("prompt").gpu_type, "H100");
  EXPECT_EQ(ha.spec.pools.at("token").replicas, 3);
  EXPECT_EQ(ha.spec.pools.at("token").max_batch_tokens, 2048);  // default
  EXPECT_EQ(ha.spec.router.service_type, "LoadBalancer");
  EXPECT_EQ(ha.spec.kv_transfer, "nccl");
  EXPECT_DOUBLE_EQ(*ha.spec.slo.ttft_seconds, 0.5);
  const ParsedSpec dev = parse_spec(example("cpu-dev.yaml")["spec"]);
  EXPECT_FALSE(dev.spec.pools.at("prompt").on_gpu());
  EXPECT_EQ(dev.spec.router.port, 8000);
}

TEST(InferenceCluster, EachRuleNamesItsField) {
  const Json base = example("splitwise-ha.yaml")["spec"];
  auto with = [&](const std::function<void(Json&)>& edit) {
    Json s = base;
    edit(s);
    return errors_of(s);
  };
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["prompt"]["minReplicas"] = 5; }),
                    "spec.pools.prompt.minReplicas", "<= replicas"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["token"]["maxReplicas"] = 1; }),
                    "spec.pools.token.maxReplicas"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["token"]["gpuType"] = "V100"; }),
                    "spec.pools.token.gpuType", "unknown GPU type"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["token"].erase("gpuType"); }),
                    "spec.pools.token.gpuType", "nodeSelector"));
  // An explicit nodeSelector places an unknown GPU.
  EXPECT_TRUE(with([](Json& s) {
                s["pools"]["token"].erase("gpuType");
                s["pools"]["token"]["nodeSelector"] = {{"gpu", "v100"}};
              }).empty());
  EXPECT_TRUE(
      names(with([](Json& s) { s["pools"].erase("token"); }), "spec.pools", "token-capable"));
  EXPECT_TRUE(
      names(with([](Json& s) { s["pools"].erase("prompt"); }), "spec.pools", "prompt-capable"));
  // A mixed pool is both.
  EXPECT_TRUE(with([](Json& s) {
                s["pools"] = {{"mixed", {{"gpuType", "H100"}, {"replicas", 1}}}};
              }).empty());
  EXPECT_TRUE(names(with([](Json& s) { s["slo"]["ttftSeconds"] = 0; }), "spec.slo.ttftSeconds",
                    "positive"));
  EXPECT_TRUE(names(with([](Json& s) { s["slo"]["tbtSeconds"] = -1.5; }), "spec.slo.tbtSeconds"));
  EXPECT_TRUE(
      names(with([](Json& s) { s["model"]["hostPath"] = "/m"; }), "spec.model", "exactly one"));
  EXPECT_TRUE(names(with([](Json& s) { s["model"].erase("name"); }), "spec.model.name"));
  EXPECT_TRUE(names(with([](Json& s) { s["router"]["serviceType"] = "Ingress"; }),
                    "spec.router.serviceType"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["prompt"]["gpuType"] = "CPU"; }),
                    "spec.kvTransfer", "nccl needs GPU pools"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["prompt"]["replicas"] = "two"; }),
                    "spec.pools.prompt.replicas", "expected an integer"));
  EXPECT_TRUE(names(with([](Json& s) { s["pools"]["decode"] = Json::object(); }),
                    "spec.pools.decode", "unknown pool"));
  EXPECT_TRUE(names(errors_of(Json::array()), "spec"));
}

TEST(InferenceCluster, GpuTypesMapToProductLabels) {
  for (const std::string& t : known_gpu_types()) {
    if (t == "CPU") {
      EXPECT_TRUE(gpu_product_labels(t).empty());
      continue;
    }
    const auto labels = gpu_product_labels(t);
    ASSERT_FALSE(labels.empty()) << t;
    for (const auto& l : labels) EXPECT_EQ(l.rfind("NVIDIA-", 0), 0u) << l;
  }
  EXPECT_TRUE(gpu_product_labels("V100").empty());
}

TEST(YamlJson, ScalarsFollowTheCoreSchemaAndRoundTrip) {
  auto j =
      yaml_to_json("a: 1\nb: '1'\nc: true\nd: \"true\"\ne: 1.5\nf: null\ng: [x, 2]\nh: 0.5e1\n");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ((*j)["a"], 1);
  EXPECT_EQ((*j)["b"], "1");
  EXPECT_EQ((*j)["c"], true);
  EXPECT_EQ((*j)["d"], "true");
  EXPECT_EQ((*j)["e"], 1.5);
  EXPECT_TRUE((*j)["f"].is_null());
  EXPECT_EQ((*j)["g"], Json::array({"x", 2}));
  EXPECT_EQ((*j)["h"], 5.0);
  auto back = yaml_to_json(json_to_yaml(*j));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *j);
  const Json tricky = {{"s", "a: b"}, {"t", "- x"}, {"u", ""}, {"v", "0123"}, {"w", "yes #no"}};
  auto t = yaml_to_json(json_to_yaml(tricky));
  ASSERT_TRUE(t.ok()) << json_to_yaml(tricky);
  EXPECT_EQ(*t, tricky);
  EXPECT_FALSE(yaml_to_json("a: [1, 2").ok());
}

}  // namespace
}  // namespace splitwise::controller
