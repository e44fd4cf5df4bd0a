// The children of each example InferenceCluster against golden YAML, plus the properties
// the reconciler relies on (owner references, placement, stable output). Regenerate the
// golden files after an intended change with SPLITWISE_UPDATE_GOLDEN=1 and review the diff.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "controller/api/yaml_json.h"
#include "controller/builders.h"
#include "tests/controller/examples.h"
#include "tests/test_util.h"

namespace splitwise::controller {
namespace {

const std::filesystem::path kSource(SPLITWISE_SOURCE_DIR);

struct Example {
  Json object;
  ClusterSpec spec;
};

Example load(const std::string& name) {
  Example e{load_example(name), {}};
  e.object["metadata"]["uid"] = "0b9e3c4a-5d6f-4a1b-9c8d-7e6f5a4b3c2d";
  ParsedSpec p = parse_spec(e.object["spec"]);
  EXPECT_TRUE(p.errors.empty());
  e.spec = p.spec;
  return e;
}

std::string render(const std::vector<Json>& children) {
  std::string out;
  for (const Json& c : children) out += "---\n" + json_to_yaml(c);
  return out;
}

TEST(Builders, ChildrenMatchGoldenYaml) {
  const bool update = std::getenv("SPLITWISE_UPDATE_GOLDEN") != nullptr;
  for (const char* name : {"splitwise-ha.yaml", "all-h100.yaml", "cpu-dev.yaml"}) {
    const Example e = load(name);
    const std::string got =
        render(build_children(cluster_ref(e.object), e.spec, BuildOptions{}, true));
    const auto golden = kSource / "tests/controller/golden" / name;
    if (update) {
      std::ofstream(golden) << got;
      continue;
    }
    ASSERT_TRUE(std::filesystem::exists(golden))
        << golden << " (run with SPLITWISE_UPDATE_GOLDEN=1)";
    EXPECT_EQ(got, testing::read_file(golden)) << name << ": children differ from " << golden;
  }
}

TEST(Builders, EveryChildIsOwnedAndLabelled) {
  const Example e = load("splitwise-ha.yaml");
  const ClusterRef ref = cluster_ref(e.object);
  const auto children = build_children(ref, e.spec, BuildOptions{}, true);
  // ConfigMap, 2 pools x (Deployment + Service), router Deployment + Service, ServiceMonitor.
  ASSERT_EQ(children.size(), 8u);
  for (const Json& c : children) {
    const Json& owners = c["metadata"]["ownerReferences"];
    ASSERT_EQ(owners.size(), 1u) << c["metadata"]["name"];
    EXPECT_EQ(owners[0]["uid"], ref.uid);
    EXPECT_EQ(owners[0]["controller"], true);
    EXPECT_EQ(owners[0]["kind"], "InferenceCluster");
    EXPECT_EQ(c["metadata"]["namespace"], "inference");
    EXPECT_EQ(c["metadata"]["labels"]["splitwise.io/cluster"], "llama3-8b-ha");
  }
  EXPECT_EQ(build_children(ref, e.spec, BuildOptions{}, false).size(), 7u);  // no monitoring API
}

TEST(Builders, PoolsLandOnTheirGpuNodes) {
  const Example e = load("splitwise-ha.yaml");
  const ClusterRef ref = cluster_ref(e.object);
  auto products = [&](const std::string& pool) {
    const Json d = build_pool_deployment(ref, e.spec, pool, "h", BuildOptions{});
    return d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
  };
  EXPECT_EQ(products("prompt")["key"], "nvidia.com/gpu.product");
  EXPECT_EQ(products("prompt")["values"], Json(gpu_product_labels("H100")));
  EXPECT_EQ(products("token")["values"], Json(gpu_product_labels("A100")));
  const Json prompt = build_pool_deployment(ref, e.spec, "prompt", "h", BuildOptions{});
  const Json& c = prompt["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], 1);
  EXPECT_EQ(prompt["spec"]["replicas"], 2);

  // An explicit nodeSelector replaces the GPU affinity; a CPU pool asks for no GPU.
  ClusterSpec s = e.spec;
  s.pools["token"].node_selector = {{"pool", "a100-spot"}};
  const Json t = build_pool_deployment(ref, s, "token", "h", BuildOptions{});
  EXPECT_EQ(t["spec"]["template"]["spec"]["nodeSelector"]["pool"], "a100-spot");
  EXPECT_FALSE(t["spec"]["template"]["spec"].contains("affinity"));
  const Example dev = load("cpu-dev.yaml");
  const Json cpu =
      build_pool_deployment(cluster_ref(dev.object), dev.spec, "prompt", "h", BuildOptions{});
  const Json& cc = cpu["spec"]["template"]["spec"]["containers"][0];
  EXPECT_FALSE(cc["resources"].contains("limits"));
  EXPECT_EQ(std::find(cc["args"].begin(), cc["args"].end(), "--device"), cc["args"].end());
}

TEST(Builders, ConfigChangeRollsPodsAndNothingElseDoes) {
  const Example e = load("all-h100.yaml");
  const ClusterRef ref = cluster_ref(e.object);
  const auto a = build_children(ref, e.spec, BuildOptions{}, false);
  EXPECT_EQ(render(a), render(build_children(ref, e.spec, BuildOptions{}, false)));  // stable
  ClusterSpec scaled = e.spec;
  scaled.pools["token"].replicas = 7;
  const auto b = build_children(ref, scaled, BuildOptions{}, false);
  EXPECT_EQ(a[0], b[0]);  // the ConfigMap: replicas are not configuration
  ClusterSpec renamed = e.spec;
  renamed.model.name = "other";
  const auto c = build_children(ref, renamed, BuildOptions{}, false);
  EXPECT_NE(config_hash(a[0]), config_hash(c[0]));
}

}  // namespace
}  // namespace splitwise::controller
