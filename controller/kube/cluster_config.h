// Where the apiserver is and how to authenticate to it: from the pod's service
// account (in_cluster_config) or from a kubeconfig file (load_kubeconfig).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "workers/engine/status.h"

namespace splitwise::kube {

// A bearer token, either fixed or read from a file that the kubelet rotates (projected
// service-account tokens are replaced about hourly). The file is re-read when the
// cached copy is older than `max_age`, or at once after invalidate() (on a 401).
class TokenSource {
 public:
  static std::shared_ptr<TokenSource> fixed(std::string token);
  static std::shared_ptr<TokenSource> from_file(
      std::filesystem::path path, std::chrono::milliseconds max_age = std::chrono::seconds(60));

  // The current token; on a failed re-read the last good token is kept (a rotation
  // in progress must not take the client down).
  Result<std::string> token();
  void invalidate();
  const std::filesystem::path& path() const { return path_; }

 private:
  TokenSource() = default;
  std::mutex mu_;
  std::string token_;                                // guarded by mu_
  std::chrono::steady_clock::time_point read_at_{};  // guarded by mu_
  bool stale_ = true;                                // guarded by mu_
  std::filesystem::path path_;                       // empty for a fixed token
  std::chrono::milliseconds max_age_{0};
};

struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:443" or "http://127.0.0.1:8080"
  std::string ca_pem;  // trusted CA certificates (PEM); empty: system defaults
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client certificate auth (PEM), optional
  std::string client_key_pem;
  std::shared_ptr<TokenSource> token;  // bearer token, optional
  std::string default_namespace = "default";
  // Defaults for calls made with this config.
  std::chrono::milliseconds request_timeout{30'000};
  std::string user_agent = "splitwise-controller";
};

// Paths of the pod's service-account files; tests point them elsewhere.
struct InClusterPaths {
  std::filesystem::path dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::filesystem::path token() const { return dir / "token"; }
  std::filesystem::path ca() const { return dir / "ca.crt"; }
  std::filesystem::path ns() const { return dir / "namespace"; }
};

// Uses KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the service-account files.
Result<ClusterConfig> in_cluster_config(
    const InClusterPaths& paths = {},
    std::chrono::milliseconds token_max_age = std::chrono::seconds(60));

// Loads `context` (empty: current-context) of the kubeconfig at `path`.
Result<ClusterConfig> load_kubeconfig(const std::filesystem::path& path,
                                      const std::string& context = "");

// Reads a whole file; the error names the file.
Result<std::string> read_text_file(const std::filesystem::path& path);

// Standard base64 (RFC 4648, padding optional, whitespace ignored).
Result<std::string> base64_decode(const std::string& text);

}  // namespace splitwise::kube
