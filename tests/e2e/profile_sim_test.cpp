// Our engine's own profile feeds the simulator: `splitwise-bench profile` on stories260K
// writes perf_model.csv rows that PerfModel loads, and a cluster of CPU machines
// simulated on them serves a trace.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "sim/cluster_sim.h"
#include "sim/designs.h"
#include "sim/perf_model.h"
#include "tests/test_util.h"

namespace splitwise::sim {
namespace {

TEST(ProfileToSim, EngineProfileLoadsAndDrivesASimulation) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  const auto dir = testing::fresh_temp_dir();
  const auto csv = dir / "profile.csv";
  const std::string cmd = std::string(SPLITWISE_BENCH_BIN) + " profile -m " + model.string() +
                          " --prompts 16,64 --batches 1,4 --tokens 8 --ref-prompt 16"
                          " --ref-tokens 8 --repeats 2 -o " +
                          csv.string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  std::ifstream in(csv);
  std::string line;
  int rows = -1;
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 2 * (2 + 2 + 1)) << "2 repeats of 5 points";

  auto spec = model_spec("stories260K");
  auto cpu = machine_spec("cpu");
  ASSERT_TRUE(spec.ok() && cpu.ok());
  auto perf = PerfModel::from_csv(csv, *spec, *cpu, 1);
  ASSERT_TRUE(perf.ok()) << perf.status().message();
  EXPECT_EQ(perf->info().rows, 10);
  EXPECT_GT(perf->prompt_ms(64), 0);
  EXPECT_GT(perf->decode_ms(4, 4 * 20), 0);

  ProfileSet profiles(csv, *spec);
  auto cluster = make_cluster("cpu", 1, "cpu", 1, "cpu", 0, profiles);
  ASSERT_TRUE(cluster.ok()) << cluster.status().message();
  std::vector<Request> trace;
  for (int i = 0; i < 50; ++i) trace.push_back({i * 0.5, 16 + i % 40, 1 + i % 20});
  const SimRun run = simulate(*cluster, trace);
  int done = 0;
  for (const auto& r : run.records) done += r.completed();
  EXPECT_EQ(done, 50);
}

}  // namespace
}  // namespace splitwise::sim
