// The operator's Prometheus metrics (DESIGN.md naming: splitwise_controller_<what>_<unit>)
// and the small HTTP server that exposes them with the health probes:
//   /metrics  Prometheus text format
//   /healthz  200 while the process serves at all
//   /readyz   200 once the informers have synced (leader and standby alike), else 503
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "workers/engine/status.h"

namespace splitwise::controller {

class ControllerMetrics {
 public:
  ControllerMetrics();

  // `result`: "success", "error" or "requeue" (success with a requeue_after).
  void observe_reconcile(std::string_view result, double seconds);
  void retried();  // a key went back to the queue rate-limited after an error
  void set_queue_depth(std::size_t depth);
  void set_leader(bool leader);

  // Per InferenceCluster pool: replicas wanted (spec or autoscaler) and ready.
  void set_pool_replicas(const std::string& ns, const std::string& cluster, const std::string& pool,
                         int desired, int ready);
  // One autoscaler decision per pool: its replicas, whether it moved up or down, and
  // whether min/max or the budget held it back; metrics_up: the load was observable.
  void autoscaler_decision(const std::string& ns, const std::string& cluster,
                           const std::string& pool, int previous, int desired, bool limited);
  void autoscaler_metrics_up(const std::string& ns, const std::string& cluster, bool up);
  // Drops every per-cluster series of a deleted cluster.
  void forget_cluster(const std::string& ns, const std::string& cluster);
  // Drops the autoscaler's series of a cluster that no longer autoscales.
  void forget_autoscaler(const std::string& ns, const std::string& cluster);

  double reconcile_total(const std::string& result) const;
  double retries_total() const;
  double is_leader() const;

  // Prometheus text exposition format.
  std::string render() const;
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* success_;
  prometheus::Counter* error_;
  prometheus::Counter* requeue_;
  prometheus::Histogram* duration_;
  prometheus::Gauge* depth_;
  prometheus::Counter* retries_;
  prometheus::Gauge* leader_;
  prometheus::Family<prometheus::Gauge>* pool_replicas_;
  prometheus::Family<prometheus::Gauge>* desired_;
  prometheus::Family<prometheus::Counter>* decisions_;
  prometheus::Family<prometheus::Gauge>* limited_;
  prometheus::Family<prometheus::Gauge>* metrics_up_;
};

struct ProbeServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;  // 0: any free port (tests)
};

// Serves /metrics, /healthz and /readyz on its own io_context thread.
class ProbeServer {
 public:
  ProbeServer(ProbeServerOptions options, std::function<std::string()> render_metrics,
              std::function<bool()> ready);
  ~ProbeServer();  // stops
  ProbeServer(const ProbeServer&) = delete;
  ProbeServer& operator=(const ProbeServer&) = delete;

  Status start();
  uint16_t port() const;
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::controller
