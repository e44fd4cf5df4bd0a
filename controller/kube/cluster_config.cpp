#include "controller/kube/cluster_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace splitwise::kube {
namespace {

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

}  // namespace

Result<std::string> read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Result<std::string> base64_decode(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned int acc = 0;
  int bits = 0;
  bool padding = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding) return Status::error("invalid base64");
    acc = (acc << 6) | static_cast<unsigned int>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) return Status::error("invalid base64 (truncated)");
  return out;
}

std::shared_ptr<TokenSource> TokenSource::fixed(std::string token) {
  std::shared_ptr<TokenSource> source(new TokenSource());
  source->token_ = trim(std::move(token));
  source->stale_ = false;
  return source;
}

std::shared_ptr<TokenSource> TokenSource::from_file(std::filesystem::path path,
                                                    std::chrono::milliseconds max_age) {
  std::shared_ptr<TokenSource> source(new TokenSource());
  source->path_ = std::move(path);
  source->max_age_ = max_age;
  return source;
}

Result<std::string> TokenSource::token() {
  std::lock_guard<std::mutex> lock(mu_);
  if (path_.empty()) return token_;
  const auto now = std::chrono::steady_clock::now();
  if (stale_ || now - read_at_ >= max_age_) {
    Result<std::string> text = read_text_file(path_);
    if (text.ok() && !trim(*text).empty()) {
      token_ = trim(*text);
      read_at_ = now;
      stale_ = false;
    } else if (token_.empty()) {
      return Status::error("bearer token: " +
                           (text.ok() ? path_.string() + " is empty" : text.status().message()));
    }
  }
  return token_;
}

void TokenSource::invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  stale_ = true;
}

Result<ClusterConfig> in_cluster_config(const InClusterPaths& paths,
                                        std::chrono::milliseconds token_max_age) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return Status::error(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
        "(not running in a pod?)");
  }
  ClusterConfig config;
  const std::string h = host;
  // An IPv6 service address needs brackets in a URL.
  config.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  config.token = TokenSource::from_file(paths.token(), token_max_age);
  Result<std::string> token = config.token->token();
  if (!token.ok()) return token.status().with_context("in-cluster config");
  Result<std::string> ca = read_text_file(paths.ca());
  if (!ca.ok()) return ca.status().with_context("in-cluster config: CA certificate");
  config.ca_pem = std::move(*ca);
  if (Result<std::string> ns = read_text_file(paths.ns()); ns.ok() && !trim(*ns).empty()) {
    config.default_namespace = trim(*ns);
  }
  return config;
}

}  // namespace splitwise::kube
