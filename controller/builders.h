// The children of an InferenceCluster, built as pure functions of the cluster object:
// a ConfigMap, per non-empty pool a Deployment and a headless Service, the router's
// Deployment and Service, and a ServiceMonitor. Same input, same bytes: the reconciler
// server-side-applies them every pass, and the API server turns an unchanged apply into
// no write. Tested against golden YAML (tests/controller/golden/).
#pragma once

#include <string>
#include <vector>

#include "controller/api/inference_cluster.h"

namespace splitwise::controller {

struct BuildOptions {
  std::string default_image = "ghcr.io/splitwise/splitwise:0.1.0";
  std::string field_manager = "splitwise-operator";
};

// What the builders need of the cluster object besides its parsed spec.
struct ClusterRef {
  std::string name;
  std::string ns;
  std::string uid;
};
ClusterRef cluster_ref(const Json& cluster);

// Every child, in apply order (ConfigMap first: Deployments roll when its hash changes).
// `with_service_monitor`: the monitoring.coreos.com/v1 API exists in the cluster.
std::vector<Json> build_children(const ClusterRef& ref, const ClusterSpec& spec,
                                 const BuildOptions& options, bool with_service_monitor);

Json build_config_map(const ClusterRef& ref, const ClusterSpec& spec);
Json build_pool_deployment(const ClusterRef& ref, const ClusterSpec& spec, const std::string& pool,
                           const std::string& config_hash, const BuildOptions& options);
Json build_pool_service(const ClusterRef& ref, const std::string& pool);
Json build_router_deployment(const ClusterRef& ref, const ClusterSpec& spec,
                             const std::string& config_hash, const BuildOptions& options);
Json build_router_service(const ClusterRef& ref, const ClusterSpec& spec);
Json build_service_monitor(const ClusterRef& ref);

// Names of children (stable: the reconciler and tests find children by them).
std::string pool_name(const ClusterRef& ref, const std::string& pool);
std::string router_name(const ClusterRef& ref);
std::string config_map_name(const ClusterRef& ref);

// Labels every child and pod carries; `component` is a pool name, "router" or "config".
Json common_labels(const ClusterRef& ref, const std::string& component);
// FNV-1a of the ConfigMap's data, as hex: pods carry it so a config change rolls them.
std::string config_hash(const Json& config_map);

}  // namespace splitwise::controller
