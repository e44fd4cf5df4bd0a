#include "workers/router/router_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace splitwise::router {
namespace {

TEST(RouterConfig, ParsesAddresses) {
  auto a = parse_worker_address(worker::Role::kToken, "10.0.0.7:8102");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.7");
  EXPECT_EQ(a->port, 8102);
  EXPECT_EQ(a->role, worker::Role::kToken);
  for (const char* bad : {"nohost", ":80", "h:", "h:0", "h:65536", "h:8o", "h:123456"})
    EXPECT_FALSE(parse_worker_address(worker::Role::kPrompt, bad).ok()) << bad;
}

TEST(RouterConfig, ReadsWorkersFromYaml) {
  const auto dir = testing::fresh_temp_dir();
  {
    std::ofstream(dir / "ok.yaml") << "workers:\n"
                                      "  - {role: prompt, address: 127.0.0.1:8101}\n"
                                      "  - role: token\n    address: 127.0.0.1:8102\n"
                                      "  - {role: mixed, address: gpu-3:9000}\n";
  }
  std::vector<WorkerAddress> w;
  ASSERT_TRUE(read_workers_yaml((dir / "ok.yaml").string(), &w).ok());
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].role, worker::Role::kPrompt);
  EXPECT_EQ(w[1].port, 8102);
  EXPECT_EQ(w[2].host, "gpu-3");

  std::ofstream(dir / "bad_role.yaml") << "workers:\n  - {role: decoder, address: h:1}\n";
  std::ofstream(dir / "bad_addr.yaml") << "workers:\n  - {role: token, address: h}\n";
  std::ofstream(dir / "no_list.yaml") << "servers: []\n";
  std::ofstream(dir / "broken.yaml") << "workers: [ {role: token\n";
  for (const char* f : {"bad_role.yaml", "bad_addr.yaml", "no_list.yaml", "broken.yaml"}) {
    std::vector<WorkerAddress> out;
    const Status st = read_workers_yaml((dir / f).string(), &out);
    EXPECT_FALSE(st.ok()) << f;
    EXPECT_NE(st.message().find(f), std::string::npos) << st.message();
  }
  std::vector<WorkerAddress> out;
  EXPECT_FALSE(read_workers_yaml((dir / "missing.yaml").string(), &out).ok());
}

}  // namespace
}  // namespace splitwise::router
