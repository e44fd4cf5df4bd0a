#include "controller/kube/cluster_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "tests/test_util.h"

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

TEST(Base64Test, DecodesWithAndWithoutPadding) {
  EXPECT_EQ(*base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(*base64_decode("aGVsbG8"), "hello");
  EXPECT_EQ(*base64_decode("aGVs\nbG8h"), "hello!");
  EXPECT_FALSE(base64_decode("a$b=").ok());
  EXPECT_FALSE(base64_decode("a").ok());
}

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://dev.example:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNB
- name: prod-cluster
  cluster:
    server: https://prod.example
    certificate-authority: ca.pem
- name: insecure-cluster
  cluster:
    server: http://127.0.0.1:8080
    insecure-skip-tls-verify: true
users:
- name: dev-user
  user:
    token: abc123
- name: prod-user
  user:
    token-file: token.txt
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
    namespace: team-a
- name: prod
  context:
    cluster: prod-cluster
    user: prod-user
- name: local
  context:
    cluster: insecure-cluster
)";

TEST(KubeconfigTest, LoadsCurrentContext) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "config", kKubeconfig);
  Result<ClusterConfig> config = load_kubeconfig(dir / "config");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://dev.example:6443");
  EXPECT_EQ(config->ca_pem, "-----BEGIN CERTIFICATE-----\nCA");
  EXPECT_EQ(config->default_namespace, "team-a");
  ASSERT_TRUE(config->token);
  EXPECT_EQ(*config->token->token(), "abc123");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
}

TEST(KubeconfigTest, LoadsNamedContextWithFilesRelativeToConfig) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "config", kKubeconfig);
  write(dir / "ca.pem", "PEM-CA");
  write(dir / "token.txt", "file-token\n");
  Result<ClusterConfig> config = load_kubeconfig(dir / "config", "prod");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://prod.example");
  EXPECT_EQ(config->ca_pem, "PEM-CA");
  EXPECT_EQ(*config->token->token(), "file-token");
  EXPECT_EQ(config->client_cert_pem, "cert");
  EXPECT_EQ(config->client_key_pem, "key");
  EXPECT_EQ(config->default_namespace, "default");

  Result<ClusterConfig> local = load_kubeconfig(dir / "config", "local");
  ASSERT_TRUE(local.ok()) << local.status().message();
  EXPECT_TRUE(local->insecure_skip_tls_verify);
  EXPECT_FALSE(local->token);
}

TEST(KubeconfigTest, ErrorsNameFileAndField) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "config", kKubeconfig);
  // prod needs ca.pem and token.txt, which are absent.
  Result<ClusterConfig> prod = load_kubeconfig(dir / "config", "prod");
  ASSERT_FALSE(prod.ok());
  EXPECT_NE(prod.status().message().find((dir / "config").string()), std::string::npos);
  EXPECT_NE(prod.status().message().find("certificate-authority"), std::string::npos);

  Result<ClusterConfig> missing = load_kubeconfig(dir / "config", "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("contexts: no entry named 'nope'"), std::string::npos);

  write(dir / "noserver", R"(current-context: c
clusters: [{name: k, cluster: {insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: k}}]
)");
  Result<ClusterConfig> noserver = load_kubeconfig(dir / "noserver");
  ASSERT_FALSE(noserver.ok());
  EXPECT_NE(noserver.status().message().find("clusters[k].cluster.server is missing"),
            std::string::npos)
      << noserver.status().message();

  write(dir / "badb64", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://x", certificate-authority-data: "@@@"}}]
contexts: [{name: c, context: {cluster: k}}]
)");
  Result<ClusterConfig> badb64 = load_kubeconfig(dir / "badb64");
  ASSERT_FALSE(badb64.ok());
  EXPECT_NE(badb64.status().message().find("certificate-authority-data"), std::string::npos)
      << badb64.status().message();

  write(dir / "exec", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://x"}}]
users: [{name: u, user: {exec: {command: aws}}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)");
  Result<ClusterConfig> exec = load_kubeconfig(dir / "exec");
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.status().message().find("users[u].user"), std::string::npos);

  write(dir / "broken", "clusters: [unclosed");
  EXPECT_FALSE(load_kubeconfig(dir / "broken").ok());
  EXPECT_FALSE(load_kubeconfig(dir / "absent").ok());
}

class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~EnvGuard() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(InClusterConfigTest, ReadsServiceAccountFiles) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "token", "tok-1\n");
  write(dir / "ca.crt", "CA-PEM");
  write(dir / "namespace", "splitwise-system");
  EnvGuard host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  EnvGuard port("KUBERNETES_SERVICE_PORT", "443");
  Result<ClusterConfig> config = in_cluster_config(InClusterPaths{dir});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->ca_pem, "CA-PEM");
  EXPECT_EQ(config->default_namespace, "splitwise-system");
  EXPECT_EQ(*config->token->token(), "tok-1");
}

TEST(InClusterConfigTest, IPv6HostIsBracketed) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "token", "t");
  write(dir / "ca.crt", "CA");
  EnvGuard host("KUBERNETES_SERVICE_HOST", "fd00::1");
  EnvGuard port("KUBERNETES_SERVICE_PORT", "443");
  Result<ClusterConfig> config = in_cluster_config(InClusterPaths{dir});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://[fd00::1]:443");
  EXPECT_EQ(config->default_namespace, "default");
}

TEST(InClusterConfigTest, ErrorsWithoutEnvOrFiles) {
  const fs::path dir = testing::fresh_temp_dir();
  {
    EnvGuard host("KUBERNETES_SERVICE_HOST", nullptr);
    EnvGuard port("KUBERNETES_SERVICE_PORT", "443");
    Result<ClusterConfig> config = in_cluster_config(InClusterPaths{dir});
    ASSERT_FALSE(config.ok());
    EXPECT_NE(config.status().message().find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  }
  EnvGuard host("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  EnvGuard port("KUBERNETES_SERVICE_PORT", "443");
  Result<ClusterConfig> config = in_cluster_config(InClusterPaths{dir});
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find((dir / "token").string()), std::string::npos);
  write(dir / "token", "t");
  config = in_cluster_config(InClusterPaths{dir});
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("ca.crt"), std::string::npos);
}

TEST(TokenSourceTest, RereadsRotatedTokenAfterMaxAge) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "token", "first");
  auto source = TokenSource::from_file(dir / "token", 50ms);
  EXPECT_EQ(*source->token(), "first");
  write(dir / "token", "second");
  EXPECT_EQ(*source->token(), "first");  // cached while fresh
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(*source->token(), "second");
}

TEST(TokenSourceTest, InvalidateForcesReread) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "token", "first");
  auto source = TokenSource::from_file(dir / "token", 3600s);
  EXPECT_EQ(*source->token(), "first");
  write(dir / "token", "second");
  EXPECT_EQ(*source->token(), "first");
  source->invalidate();  // a 401
  EXPECT_EQ(*source->token(), "second");
}

TEST(TokenSourceTest, KeepsLastGoodTokenWhileFileIsMissing) {
  const fs::path dir = testing::fresh_temp_dir();
  write(dir / "token", "good");
  auto source = TokenSource::from_file(dir / "token", 0ms);
  EXPECT_EQ(*source->token(), "good");
  fs::remove(dir / "token");
  EXPECT_EQ(*source->token(), "good");
  auto fresh = TokenSource::from_file(dir / "token", 0ms);
  EXPECT_FALSE(fresh->token().ok());
}

}  // namespace
}  // namespace splitwise::kube
