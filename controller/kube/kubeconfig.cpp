// load_kubeconfig: the subset of kubeconfig that an operator run outside the cluster
// needs (clusters, users with token / token-file / client certificates, contexts).
// exec and auth-provider plugins are not supported and say so.
#include <yaml-cpp/yaml.h>

#include "controller/kube/cluster_config.h"

namespace splitwise::kube {
namespace {

struct Ctx {
  std::string file;
  std::filesystem::path dir;  // relative paths in a kubeconfig are relative to its folder
  Status error(const std::string& what) const { return Status::error(file + ": " + what); }
  std::filesystem::path resolve(const std::string& p) const {
    std::filesystem::path path(p);
    return path.is_absolute() ? path : dir / path;
  }
};

// Finds the entry named `name` in a list like `clusters:` and returns its `field` map.
Result<YAML::Node> named_entry(const Ctx& ctx, const YAML::Node& root, const std::string& list,
                               const std::string& field, const std::string& name) {
  const YAML::Node entries = root[list];
  if (!entries || !entries.IsSequence()) return ctx.error("missing list '" + list + "'");
  for (const YAML::Node& entry : entries) {
    if (entry["name"] && entry["name"].as<std::string>() == name) {
      const YAML::Node body = entry[field];
      if (!body || !body.IsMap()) {
        return ctx.error(list + " entry '" + name + "' has no '" + field + "' map");
      }
      return body;
    }
  }
  return ctx.error(list + ": no entry named '" + name + "'");
}

std::string str(const YAML::Node& node, const std::string& key) {
  const YAML::Node v = node[key];
  return v && v.IsScalar() ? v.as<std::string>() : "";
}

// Reads PEM data from `<key>-data` (base64) or a file named by `<key>`.
Result<std::string> pem(const Ctx& ctx, const YAML::Node& node, const std::string& where,
                        const std::string& key) {
  if (const std::string data = str(node, key + "-data"); !data.empty()) {
    Result<std::string> decoded = base64_decode(data);
    if (!decoded.ok()) return ctx.error(where + "." + key + "-data: " + decoded.status().message());
    return decoded;
  }
  if (const std::string file = str(node, key); !file.empty()) {
    Result<std::string> text = read_text_file(ctx.resolve(file));
    if (!text.ok()) return ctx.error(where + "." + key + ": " + text.status().message());
    return text;
  }
  return std::string();
}

Result<ClusterConfig> parse(const Ctx& ctx, const YAML::Node& root, std::string context_name) {
  if (!root || !root.IsMap()) return ctx.error("not a kubeconfig (expected a YAML map)");
  if (context_name.empty()) context_name = str(root, "current-context");
  if (context_name.empty()) return ctx.error("no context given and 'current-context' is unset");

  Result<YAML::Node> context = named_entry(ctx, root, "contexts", "context", context_name);
  if (!context.ok()) return context.status();
  const std::string cluster_name = str(*context, "cluster");
  if (cluster_name.empty()) return ctx.error("context '" + context_name + "' has no 'cluster'");
  const std::string user_name = str(*context, "user");

  ClusterConfig config;
  if (const std::string ns = str(*context, "namespace"); !ns.empty()) config.default_namespace = ns;

  Result<YAML::Node> cluster = named_entry(ctx, root, "clusters", "cluster", cluster_name);
  if (!cluster.ok()) return cluster.status();
  const std::string where = "clusters[" + cluster_name + "].cluster";
  config.server = str(*cluster, "server");
  if (config.server.empty()) return ctx.error(where + ".server is missing");
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return ctx.error(where + ".server '" + config.server + "' is not an http(s) URL");
  }
  if (const std::string insecure = str(*cluster, "insecure-skip-tls-verify"); !insecure.empty()) {
    if (insecure != "true" && insecure != "false") {
      return ctx.error(where + ".insecure-skip-tls-verify must be true or false");
    }
    config.insecure_skip_tls_verify = insecure == "true";
  }
  Result<std::string> ca = pem(ctx, *cluster, where, "certificate-authority");
  if (!ca.ok()) return ca.status();
  config.ca_pem = std::move(*ca);

  if (user_name.empty()) return config;  // anonymous
  Result<YAML::Node> user = named_entry(ctx, root, "users", "user", user_name);
  if (!user.ok()) return user.status();
  const std::string uwhere = "users[" + user_name + "].user";
  if ((*user)["exec"] || (*user)["auth-provider"]) {
    return ctx.error(uwhere +
                     ": exec and auth-provider credentials are not supported; use "
                     "token, token-file or client certificates");
  }
  if (const std::string token = str(*user, "token"); !token.empty()) {
    config.token = TokenSource::fixed(token);
  } else if (const std::string file = str(*user, "tokenFile").empty() ? str(*user, "token-file")
                                                                      : str(*user, "tokenFile");
             !file.empty()) {
    config.token = TokenSource::from_file(ctx.resolve(file));
    Result<std::string> t = config.token->token();
    if (!t.ok()) return ctx.error(uwhere + ".token-file: " + t.status().message());
  }
  Result<std::string> cert = pem(ctx, *user, uwhere, "client-certificate");
  if (!cert.ok()) return cert.status();
  Result<std::string> key = pem(ctx, *user, uwhere, "client-key");
  if (!key.ok()) return key.status();
  if (cert->empty() != key->empty()) {
    return ctx.error(uwhere + ": client-certificate and client-key must be given together");
  }
  config.client_cert_pem = std::move(*cert);
  config.client_key_pem = std::move(*key);
  return config;
}

}  // namespace

Result<ClusterConfig> load_kubeconfig(const std::filesystem::path& path,
                                      const std::string& context) {
  Ctx ctx{path.string(), path.parent_path()};
  Result<std::string> text = read_text_file(path);
  if (!text.ok()) return text.status();
  try {
    return parse(ctx, YAML::Load(*text), context);
  } catch (const YAML::Exception& e) {
    return ctx.error(std::string("invalid YAML: ") + e.what());
  }
}

}  // namespace splitwise::kube
