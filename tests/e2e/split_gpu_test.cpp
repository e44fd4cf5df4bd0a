// The phase-split path on two GPUs: prompt worker on GPU 0, token worker on GPU 1, KV over
// NCCL, both in fp32 so the output must be llama2.c's greedy text byte for byte (the same
// golden the single-process CPU run reproduces). Skips with fewer than two GPUs.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/e2e/cluster_harness.h"
#include "tests/test_util.h"

namespace {

using namespace splitwise::e2e;
using json = nlohmann::json;

int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::string complete_text(const Endpoint& router, const std::string& prompt, int max_tokens) {
  const json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  const HttpResult r = http_post(router, "/v1/completions", body.dump());
  const json j = json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object() || !j.contains("choices"))
    return "ERROR " + std::to_string(r.status) + " " + r.error + r.body;
  return j["choices"][0].value("text", "");
}

void run_split(const std::string& transport, int prompt_gpu, int token_gpu) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  SW_REQUIRE_SHARED(golden_path, "models/golden/s260_greedy_n64_prompt_once.stdout.txt");
  const std::string golden = splitwise::testing::read_file(golden_path);
  ClusterOptions o;
  o.worker_args = {"--kv-cache-mb", "64",   "--device",       "cuda",
                   "--dtype",       "fp32", "--kv-transport", transport};
  o.role_args["prompt"] = {"--gpu", std::to_string(prompt_gpu)};
  o.role_args["token"] = {"--gpu", std::to_string(token_gpu)};
  Cluster cluster(model, o);
  ASSERT_EQ(cluster.start(60s), "");
  const std::string once = "Once upon a time";
  if (transport == "nccl") {
    // The first request to a token worker starts the NCCL set-up between the processes;
    // its layers ride TCP meanwhile. Wait for the link, so the checked requests use it.
    EXPECT_EQ(once + complete_text(cluster.router(), once, 60) + "\n", golden);
    EXPECT_TRUE(poll_until([&] { return cluster.logs().find("NCCL link up") != std::string::npos; },
                           30s, 50ms))
        << cluster.logs();
  }
  for (int rep = 0; rep < 3; ++rep)
    EXPECT_EQ(once + complete_text(cluster.router(), once, 60) + "\n", golden) << cluster.logs();
  const Worker& prompt = *cluster.workers("prompt")[0];
  const Worker& token = *cluster.workers("token")[0];
  const double sent =
      prompt.metric("splitwise_worker_kv_handoff_bytes_total", {{"direction", "sent"}})
          .value_or(-1);
  const double received =
      token.metric("splitwise_worker_kv_handoff_bytes_total", {{"direction", "received"}})
          .value_or(-1);
  EXPECT_GT(sent, 0);
  EXPECT_EQ(sent, received);
  // The NCCL run must never have fallen back (a fallback logs "... over TCP").
  const std::string logs = cluster.logs();
  if (transport == "nccl") EXPECT_EQ(logs.find("over TCP"), std::string::npos) << logs;
  EXPECT_TRUE(cluster.wait_kv_released()) << logs;
}

TEST(SplitGpu, TwoGpusOverNcclMatchGolden) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 CUDA GPUs, found " << gpu_count();
  run_split("nccl", 0, 1);
}

TEST(SplitGpu, TwoGpusOverTcpMatchGolden) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 CUDA GPUs, found " << gpu_count();
  run_split("tcp", 0, 1);
}

TEST(SplitGpu, OneGpuBothWorkersOverTcpMatchGolden) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA GPU found";
  run_split("tcp", 0, 0);
}

}  // namespace
