// The level-triggered InferenceCluster reconciler. One pass reads the cluster from the
// manager's cache and the children from the API server, server-side-applies the wanted
// children (skipping those whose applied content and live resourceVersion are unchanged
// since its last apply), removes children it owns that are no longer wanted, and writes
// the status only when it differs. It never trusts event contents: whatever woke it, a
// pass computes everything from the world as it is now.
//
// Thread safety: reconcile() may run on several threads for different keys at once (the
// work queue never runs one key twice at once); per-cluster memory is guarded by mu_.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "controller/api/inference_cluster.h"
#include "controller/autoscale_step.h"
#include "controller/builders.h"
#include "controller/kube/rest_client.h"
#include "controller/reconcile_result.h"

namespace splitwise::controller {

struct ReconcilerOptions {
  BuildOptions build;
  std::string field_manager = "splitwise-operator";
  std::chrono::milliseconds requeue_while_progressing{5000};
  // Autoscaling: where load is observed (null: over HTTP), the clock in seconds (null:
  // steady_clock), and callbacks for the controller's metrics.
  std::shared_ptr<LoadSource> load_source;
  std::function<double()> clock_s;
  std::function<void(const ClusterRef&, const AutoscaleOutcome&)> on_autoscale;
  // Per pool after each status computation: desired and ready replicas.
  std::function<void(const ClusterRef&, const std::string& pool, int desired, int ready)>
      on_pool_status;
  std::function<void(const ClusterRef&)> on_forget;  // the cluster is gone
};

// ReconcileResult {requeue_after; 0: no timed requeue} lives in reconcile_result.h,
// shared with the manager.

class Reconciler {
 public:
  // `get_cluster` reads the manager's informer cache of InferenceClusters by
  // "namespace/name" (read-only here); `client` talks to the API.
  Reconciler(kube::RestClient& client,
             std::function<std::optional<Json>(const std::string& key)> get_cluster,
             ReconcilerOptions options = {});

  // One pass for "namespace/name". An error means "retry with backoff" (the manager
  // rate-limits the key); an invalid spec is not an error (it waits for the user's edit).
  kube::ApiResult<ReconcileResult> reconcile(const std::string& key);

  // How long a discovery answer for monitoring.coreos.com/v1 is trusted.
  static constexpr std::chrono::seconds kDiscoveryTtl{60};

 private:
  // What the last pass applied for one child: the content's hash and the
  // resourceVersion the server answered with.
  struct Applied {
    std::string hash;
    std::string resource_version;
  };
  struct ClusterMemory {
    std::string uid;                         // memory of a recreated cluster starts empty
    std::map<std::string, Applied> applied;  // "Kind/name" -> last apply
  };
  struct Pass;

  kube::ApiResult<ReconcileResult> reconcile_valid(Pass& pass);
  kube::ApiResult<ReconcileResult> reconcile_invalid(Pass& pass,
                                                     const std::vector<FieldError>& errors);
  kube::ApiStatus apply_children(Pass& pass, const std::vector<Json>& wanted,
                                 std::map<std::string, Json>& live);
  kube::ApiStatus remove_unwanted(Pass& pass, const std::vector<Json>& wanted,
                                  const std::map<std::string, Json>& live);
  // PUTs the status computed by `compute` (called with the object's current status) when
  // it differs; on 409 re-reads the object and tries once more. Sets *written.
  kube::ApiStatus write_status(Pass& pass, const std::function<Json(const Json&)>& compute,
                               bool* written, Json* previous);
  void emit_event(const Pass& pass, const std::string& type, const std::string& reason,
                  const std::string& message);
  bool service_monitors_served();

  kube::RestClient& client_;
  std::function<std::optional<Json>(const std::string&)> get_cluster_;
  ReconcilerOptions options_;
  std::unique_ptr<AutoscaleStep> autoscale_;

  std::mutex mu_;
  std::map<std::string, ClusterMemory> memory_;                 // guarded by mu_; key "ns/name"
  std::optional<bool> monitoring_;                              // guarded by mu_
  std::chrono::steady_clock::time_point monitoring_checked_{};  // guarded by mu_
};

}  // namespace splitwise::controller
