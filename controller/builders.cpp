#include "controller/builders.h"

#include <cstdio>

#include "controller/api/yaml_json.h"

namespace splitwise::controller {

namespace {

constexpr int kHttpPort = 8000;
constexpr int kKvPort = 9000;
constexpr const char* kModelMount = "/models";
constexpr const char* kConfigMount = "/etc/splitwise";

Json owner_reference(const ClusterRef& ref) {
  return {{"apiVersion", std::string(kGroup) + "/" + kVersion},
          {"kind", kKind},
          {"name", ref.name},
          {"uid", ref.uid},
          {"controller", true},
          {"blockOwnerDeletion", true}};
}

Json metadata(const ClusterRef& ref, const std::string& name, const std::string& component) {
  return {{"name", name},
          {"namespace", ref.ns},
          {"labels", common_labels(ref, component)},
          {"ownerReferences", Json::array({owner_reference(ref)})}};
}

Json selector_labels(const ClusterRef& ref, const std::string& component) {
  return {{"splitwise.io/cluster", ref.name}, {"splitwise.io/component", component}};
}

std::string model_path(const ClusterSpec& spec) {
  return spec.model.path.empty() ? kModelMount : std::string(kModelMount) + "/" + spec.model.path;
}

Json model_volume(const ClusterSpec& spec) {
  if (!spec.model.pvc.empty())
    return {{"name", "model"},
            {"persistentVolumeClaim", {{"claimName", spec.model.pvc}, {"readOnly", true}}}};
  return {{"name", "model"}, {"hostPath", {{"path", spec.model.host_path}, {"type", "Directory"}}}};
}

// Restricted pod security: the daemons need no privileges, no writable root and no root.
Json container_security() {
  return {{"runAsNonRoot", true},
          {"allowPrivilegeEscalation", false},
          {"readOnlyRootFilesystem", true},
          {"capabilities", {{"drop", Json::array({"ALL"})}}}};
}

Json http_probe(const std::string& path, int period) {
  return {{"httpGet", {{"path", path}, {"port", "http"}}}, {"periodSeconds", period}};
}

// Node placement: an explicit nodeSelector wins; otherwise a GPU type becomes required
// node affinity on nvidia.com/gpu.product (a type spans several board names).
void place(const PoolSpec& p, Json* pod_spec) {
  if (!p.node_selector.empty()) (*pod_spec)["nodeSelector"] = p.node_selector;
  if (!p.affinity.is_null()) {
    (*pod_spec)["affinity"] = p.affinity;
  } else if (p.node_selector.empty() && p.on_gpu()) {
    const auto products = gpu_product_labels(p.gpu_type);
    if (!products.empty())
      (*pod_spec)["affinity"] = {
          {"nodeAffinity",
           {{"requiredDuringSchedulingIgnoredDuringExecution",
             {{"nodeSelectorTerms",
               Json::array({{{"matchExpressions", Json::array({{{"key", "nvidia.com/gpu.product"},
                                                                {"operator", "In"},
                                                                {"values", products}}})}}})}}}}}};
  }
  if (!p.tolerations.is_null()) (*pod_spec)["tolerations"] = p.tolerations;
}

Json worker_args(const ClusterSpec& spec, const std::string& pool, const PoolSpec& p) {
  Json a = Json::array({"--role", pool, "-m", model_path(spec), "--host", "0.0.0.0", "--port",
                        std::to_string(kHttpPort)});
  if (pool == "token") a.insert(a.end(), {"--kv-port", std::to_string(kKvPort)});
  a.insert(a.end(), {"--max-batch-tokens", std::to_string(p.max_batch_tokens), "--max-num-seqs",
                     std::to_string(p.max_num_seqs)});
  if (p.kv_cache_mb) a.insert(a.end(), {"--kv-cache-mb", std::to_string(*p.kv_cache_mb)});
  if (p.on_gpu())
    a.insert(a.end(), {"--device", "cuda", "--gpu", "0", "--dtype", p.dtype, "--kv-transport",
                       spec.kv_transfer});
  return a;
}

Json pool_resources(const PoolSpec& p) {
  Json r = p.resources.is_null() ? Json::object() : p.resources;
  if (p.on_gpu()) {
    r["limits"]["nvidia.com/gpu"] = p.gpus_per_worker;
    r["requests"]["nvidia.com/gpu"] = p.gpus_per_worker;
  }
  return r;
}

}  // namespace

ClusterRef cluster_ref(const Json& cluster) {
  const Json& m = cluster.at("metadata");
  return {m.value("name", ""), m.value("namespace", "default"), m.value("uid", "")};
}

std::string pool_name(const ClusterRef& ref, const std::string& pool) {
  return ref.name + "-" + pool;
}
std::string router_name(const ClusterRef& ref) { return ref.name + "-router"; }
std::string config_map_name(const ClusterRef& ref) { return ref.name + "-config"; }

Json common_labels(const ClusterRef& ref, const std::string& component) {
  return {{"app.kubernetes.io/name", "splitwise"},
          {"app.kubernetes.io/instance", ref.name},
          {"app.kubernetes.io/component", component},
          {"app.kubernetes.io/managed-by", "splitwise-operator"},
          {"splitwise.io/cluster", ref.name},
          {"splitwise.io/component", component}};
}

std::string config_hash(const Json& config_map) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : config_map.value("data", Json::object()).dump()) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Json build_config_map(const ClusterRef& ref, const ClusterSpec& spec) {
  // The router's worker list: each pool's headless Service, which the router resolves to
  // every ready pod's address (discover: dns), so each replica is a worker of its own.
  Json workers = Json::array();
  for (const auto& [pool, p] : spec.pools) {
    workers.push_back(
        {{"role", pool},
         {"address", pool_name(ref, pool) + "." + ref.ns + ".svc:" + std::to_string(kHttpPort)},
         {"discover", "dns"}});
  }
  Json cm = {{"apiVersion", "v1"},
             {"kind", "ConfigMap"},
             {"metadata", metadata(ref, config_map_name(ref), "config")}};
  cm["data"]["router.yaml"] = json_to_yaml(Json{{"workers", workers}});
  cm["data"]["model"] = spec.model.name;
  cm["data"]["kvTransfer"] = spec.kv_transfer;
  return cm;
}

Json build_pool_deployment(const ClusterRef& ref, const ClusterSpec& spec, const std::string& pool,
                           const std::string& hash, const BuildOptions& options) {
  const PoolSpec& p = spec.pools.at(pool);
  Json container = {
      {"name", "worker"},
      {"image", spec.image.empty() ? options.default_image : spec.image},
      {"command", Json::array({"splitwise-worker"})},
      {"args", worker_args(spec, pool, p)},
      {"ports", Json::array({{{"name", "http"}, {"containerPort", kHttpPort}},
                             {{"name", "kv"}, {"containerPort", kKvPort}}})},
      {"readinessProbe", http_probe("/health", 5)},
      {"livenessProbe", http_probe("/health", 10)},
      {"resources", pool_resources(p)},
      {"securityContext", container_security()},
      {"volumeMounts",
       Json::array({{{"name", "model"}, {"mountPath", kModelMount}, {"readOnly", true}}})}};
  if (p.on_gpu())
    container["env"] = Json::array({{{"name", "CUDA_DEVICE_ORDER"}, {"value", "PCI_BUS_ID"}}});
  Json pod_spec = {{"containers", Json::array({container})},
                   {"volumes", Json::array({model_volume(spec)})},
                   {"securityContext", {{"runAsNonRoot", true}, {"runAsUser", 65532}}}};
  place(p, &pod_spec);
  Json pod_labels = common_labels(ref, pool);
  Json d = {{"apiVersion", "apps/v1"},
            {"kind", "Deployment"},
            {"metadata", metadata(ref, pool_name(ref, pool), pool)},
            {"spec",
             {{"replicas", p.replicas},
              {"selector", {{"matchLabels", selector_labels(ref, pool)}}},
              {"template",
               {{"metadata",
                 {{"labels", pod_labels}, {"annotations", {{"splitwise.io/config-hash", hash}}}}},
                {"spec", pod_spec}}}}}};
  return d;
}

Json build_pool_service(const ClusterRef& ref, const std::string& pool) {
  // Headless: the router (and Prometheus) reach every worker pod, not a load balancer.
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", metadata(ref, pool_name(ref, pool), pool)},
          {"spec",
           {{"clusterIP", "None"},
            {"selector", selector_labels(ref, pool)},
            {"ports", Json::array({{{"name", "http"}, {"port", kHttpPort}, {"targetPort", "http"}},
                                   {{"name", "kv"}, {"port", kKvPort}, {"targetPort", "kv"}}})}}}};
}

Json build_router_deployment(const ClusterRef& ref, const ClusterSpec& spec,
                             const std::string& hash, const BuildOptions& options) {
  Json container = {
      {"name", "router"},
      {"image", spec.image.empty() ? options.default_image : spec.image},
      {"command", Json::array({"splitwise-router"})},
      {"args", Json::array({"-m", model_path(spec), "--model-name", spec.model.name, "--host",
                            "0.0.0.0", "--port", std::to_string(kHttpPort), "--config",
                            std::string(kConfigMount) + "/router.yaml"})},
      {"ports", Json::array({{{"name", "http"}, {"containerPort", kHttpPort}}})},
      {"readinessProbe", http_probe("/health", 5)},
      {"livenessProbe", http_probe("/health", 10)},
      {"securityContext", container_security()},
      {"volumeMounts",
       Json::array({{{"name", "model"}, {"mountPath", kModelMount}, {"readOnly", true}},
                    {{"name", "config"}, {"mountPath", kConfigMount}, {"readOnly", true}}})}};
  Json pod_spec = {
      {"containers", Json::array({container})},
      {"volumes",
       Json::array({model_volume(spec),
                    {{"name", "config"}, {"configMap", {{"name", config_map_name(ref)}}}}})},
      {"securityContext", {{"runAsNonRoot", true}, {"runAsUser", 65532}}}};
  return {{"apiVersion", "apps/v1"},
          {"kind", "Deployment"},
          {"metadata", metadata(ref, router_name(ref), "router")},
          {"spec",
           {{"replicas", spec.router.replicas},
            {"selector", {{"matchLabels", selector_labels(ref, "router")}}},
            {"template",
             {{"metadata",
               {{"labels", common_labels(ref, "router")},
                {"annotations", {{"splitwise.io/config-hash", hash}}}}},
              {"spec", pod_spec}}}}}};
}

Json build_router_service(const ClusterRef& ref, const ClusterSpec& spec) {
  return {
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata", metadata(ref, router_name(ref), "router")},
      {"spec",
       {{"type", spec.router.service_type},
        {"selector", selector_labels(ref, "router")},
        {"ports",
         Json::array({{{"name", "http"}, {"port", spec.router.port}, {"targetPort", "http"}}})}}}};
}

Json build_service_monitor(const ClusterRef& ref) {
  return {{"apiVersion", "monitoring.coreos.com/v1"},
          {"kind", "ServiceMonitor"},
          {"metadata", metadata(ref, ref.name, "metrics")},
          {"spec",
           {{"selector",
             {{"matchLabels",
               {{"splitwise.io/cluster", ref.name},
                {"app.kubernetes.io/managed-by", "splitwise-operator"}}}}},
            {"endpoints",
             Json::array({{{"port", "http"}, {"path", "/metrics"}, {"interval", "15s"}}})}}}};
}

std::vector<Json> build_children(const ClusterRef& ref, const ClusterSpec& spec,
                                 const BuildOptions& options, bool with_service_monitor) {
  std::vector<Json> out;
  out.push_back(build_config_map(ref, spec));
  const std::string hash = config_hash(out.back());
  for (const auto& [pool, p] : spec.pools) {
    out.push_back(build_pool_deployment(ref, spec, pool, hash, options));
    out.push_back(build_pool_service(ref, pool));
  }
  out.push_back(build_router_deployment(ref, spec, hash, options));
  out.push_back(build_router_service(ref, spec));
  if (with_service_monitor) out.push_back(build_service_monitor(ref));
  return out;
}

}  // namespace splitwise::controller
