// The operator's controller manager, with controller-runtime semantics:
//  - informers on InferenceClusters and on the children the operator writes (Deployments,
//    Services, ConfigMaps labelled app.kubernetes.io/managed-by=splitwise-operator); events
//    only enqueue keys (level-triggered): a cluster's own key, or for a child the key of
//    its controlling InferenceCluster owner;
//  - a de-duplicating, rate-limited work queue and N workers: an error puts the key back
//    with per-key exponential backoff, a success forgets the failures and honours
//    requeue_after; one key is never reconciled by two workers at once;
//  - leader election over a Lease: informers run on every replica (a standby keeps warm
//    caches, so failover does not wait for a relist, and reports ready); only the leader
//    runs the queue and the workers. Losing the lease stops the workers and calls
//    on_lost_leadership (the binary exits there so the Deployment restarts it);
//  - stop(): stops the workers, waits for the reconciles in flight, then releases the lease.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/controller_metrics.h"
#include "controller/kube/backoff.h"
#include "controller/kube/informer.h"
#include "controller/kube/leader_elector.h"
#include "controller/kube/rest_client.h"
#include "controller/kube/work_queue.h"
#include "controller/reconcile_result.h"

namespace splitwise::controller {

using ReconcileFn = std::function<kube::ApiResult<ReconcileResult>(const std::string& key)>;
// The informer cache's view of a cluster by key ("ns/name"); nullopt once deleted.
using GetClusterFn = std::function<std::optional<nlohmann::json>(const std::string& key)>;

inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kManagedByValue = "splitwise-operator";
inline constexpr const char* kLeaseName = "splitwise-operator";

struct LeaderElectionOptions {
  bool enabled = true;
  std::string lease_namespace = "default";
  std::string lease_name = kLeaseName;
  std::string identity;  // "" -> default_identity()
  std::chrono::milliseconds lease_duration{15'000};
  std::chrono::milliseconds renew_deadline{10'000};
  std::chrono::milliseconds retry_period{2'000};
  // false only in tests that simulate a crashed leader.
  bool release_on_stop = true;
};

struct ManagerOptions {
  std::string watch_namespace;  // "" for all namespaces
  int workers = 2;
  // Every cached cluster is re-enqueued this often (0: never): the level-triggered net
  // under missed events and drift nobody reported.
  std::chrono::milliseconds resync{std::chrono::minutes(10)};
  kube::WorkQueueOptions queue;
  LeaderElectionOptions leader_election;
  // Backoff of the informers' list/watch loops after errors.
  kube::BackoffPolicy informer_backoff{std::chrono::milliseconds(200),
                                       std::chrono::milliseconds(30'000), 0.5};
  // Called (on the elector's thread, after the workers stopped) when leadership is lost
  // other than by stop().
  std::function<void()> on_lost_leadership;
};

// The key of the InferenceCluster that controls `object` (its ownerReference with
// controller: true and kind InferenceCluster), "ns/name"; nullopt when there is none.
std::optional<std::string> controller_owner_key(const nlohmann::json& object);

// hostname + "_" + a random suffix: unique per process even for two replicas on one host.
std::string default_identity();

// The resources the manager watches.
const kube::Resource& inference_clusters_resource();
const std::vector<kube::Resource>& child_resources();

class Manager {
 public:
  Manager(kube::RestClient& client, ReconcileFn reconcile, ManagerOptions options = {});
  ~Manager();  // stop()
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Starts the informers and either the elector or (without leader election) the workers.
  void start();
  // Graceful: workers stop and in-flight reconciles finish, then the lease is released,
  // then the informers stop. Idempotent.
  void stop();

  // All informers have loaded their first list.
  bool synced() const;
  bool wait_for_sync(std::chrono::milliseconds timeout) const;
  // Ready for traffic: synced; a standby is as ready as the leader.
  bool ready() const { return synced(); }
  bool is_leader() const { return leading_.load(); }
  // Workers are running (the leader, or no leader election).
  bool running() const;
  const std::string& identity() const { return identity_; }

  std::optional<nlohmann::json> get_cluster(const std::string& key) const;
  GetClusterFn cluster_getter() const {
    return [this](const std::string& key) { return get_cluster(key); };
  }

  ControllerMetrics& metrics() { return metrics_; }
  // Refreshes the gauges that are sampled (queue depth), then renders.
  std::string render_metrics();

 private:
  void enqueue(const std::string& key);
  void enqueue_owner(const nlohmann::json& object);
  void start_workers();
  void stop_workers();
  void worker_loop(std::shared_ptr<kube::WorkQueue> queue);
  void process(kube::WorkQueue& queue, const std::string& key);
  void on_started_leading();
  void on_stopped_leading();

  kube::RestClient& client_;
  ReconcileFn reconcile_;
  const ManagerOptions options_;
  const std::string identity_;
  ControllerMetrics metrics_;

  std::unique_ptr<kube::Informer> clusters_;
  std::vector<std::unique_ptr<kube::Informer>> children_;
  std::unique_ptr<kube::RestLeaseClient> lease_client_;
  std::unique_ptr<kube::LeaderElector> elector_;
  std::thread elector_thread_;
  std::atomic<bool> leading_{false};
  std::atomic<bool> stopping_{false};
  bool started_ = false;  // guarded by lifecycle_mu_

  // Worker lifecycle (start on leadership, stop on loss or stop()); held while joining.
  mutable std::mutex lifecycle_mu_;
  std::vector<std::thread> workers_;  // guarded by lifecycle_mu_

  // The queue of the current leadership term; null while not running. Handlers read it.
  mutable std::mutex queue_mu_;
  std::shared_ptr<kube::WorkQueue> queue_;  // guarded by queue_mu_
};

}  // namespace splitwise::controller
