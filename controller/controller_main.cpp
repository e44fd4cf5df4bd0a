// splitwise-controller: the InferenceCluster operator. Watches InferenceClusters and the
// children it writes, reconciles them on N workers while it holds the leader lease, and
// serves /metrics, /healthz and /readyz on --metrics-port. SIGTERM/SIGINT stop it
// gracefully (in-flight reconciles finish, the lease is released); losing the lease
// exits with status 1 so the Deployment restarts it as a fresh candidate, as
// controller-runtime managers do.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

#include "controller/controller_metrics.h"
#include "controller/kube/cluster_config.h"
#include "controller/kube/rest_client.h"
#include "controller/manager.h"
#include "controller/reconciler.h"

namespace {

using namespace splitwise;
using std::chrono::milliseconds;

milliseconds seconds_flag(double s) { return milliseconds(static_cast<long>(s * 1000)); }

Result<kube::ClusterConfig> load_config(const std::string& kubeconfig, const std::string& context) {
  std::string path = kubeconfig;
  if (path.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env != nullptr) path = env;
  }
  if (!path.empty()) return kube::load_kubeconfig(path, context);
  return kube::in_cluster_config();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"splitwise-controller: the InferenceCluster operator"};
  std::string kubeconfig, context, watch_namespace, lease_namespace, log_level = "info";
  std::string image = controller::BuildOptions{}.default_image;
  bool leader_elect = true;
  double lease_duration = 15, renew_deadline = 10, retry_period = 2, resync = 600;
  int metrics_port = 8080, workers = 2;
  app.add_option("--kubeconfig", kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, else the pod's service account)");
  app.add_option("--context", context, "kubeconfig context (default: current-context)");
  app.add_option("--namespace", watch_namespace,
                 "watch InferenceClusters in this namespace only (default: all)");
  app.add_flag("--leader-elect,!--no-leader-elect", leader_elect,
               "run the workers only while holding the lease (default: true)");
  app.add_option("--lease-namespace", lease_namespace,
                 "namespace of the Lease (default: the pod's or the context's namespace)");
  app.add_option("--lease-duration", lease_duration, "seconds a standby waits on a silent leader")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--renew-deadline", renew_deadline,
                 "seconds the leader keeps trying to renew before it steps down")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--retry-period", retry_period, "seconds between lease attempts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--metrics-port", metrics_port, "port of /metrics, /healthz and /readyz")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  app.add_option("--workers", workers, "concurrent reconciles (different clusters)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--resync-period", resync, "seconds between full passes over every cluster")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--image", image, "worker and router image when a cluster sets none")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  // The lease stores whole seconds, and the leader must give up before a standby may
  // take over: retry < renew deadline < lease duration.
  if (leader_elect &&
      !(lease_duration >= 1 && renew_deadline < lease_duration && retry_period < renew_deadline)) {
    spdlog::error(
        "need --retry-period < --renew-deadline < --lease-duration and --lease-duration >= 1 "
        "(got {} / {} / {})",
        retry_period, renew_deadline, lease_duration);
    return 2;
  }

  // Signals are taken by sigwait() below; blocked before any thread exists, so every
  // thread inherits the mask and none is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Result<kube::ClusterConfig> config = load_config(kubeconfig, context);
  if (!config.ok()) {
    spdlog::error("loading the cluster config: {}", config.status().message());
    return 2;
  }
  Result<std::unique_ptr<kube::RestClient>> client = kube::RestClient::create(*config);
  if (!client.ok()) {
    spdlog::error("creating the API client for {}: {}", config->server, client.status().message());
    return 2;
  }
  kube::RestClient& rest = **client;

  controller::ManagerOptions options;
  options.watch_namespace = watch_namespace;
  options.workers = workers;
  options.resync = seconds_flag(resync);
  options.leader_election.enabled = leader_elect;
  options.leader_election.lease_namespace =
      lease_namespace.empty() ? config->default_namespace : lease_namespace;
  options.leader_election.lease_duration = seconds_flag(lease_duration);
  options.leader_election.renew_deadline = seconds_flag(renew_deadline);
  options.leader_election.retry_period = seconds_flag(retry_period);
  std::atomic<bool> lost{false};
  options.on_lost_leadership = [&lost] {
    lost = true;
    kill(getpid(), SIGTERM);  // wakes sigwait() in main
  };

  // Declared before the manager, so it outlives the workers that call it.
  std::unique_ptr<controller::Reconciler> reconciler;
  controller::Manager manager(
      rest, [&reconciler](const std::string& key) { return reconciler->reconcile(key); }, options);
  controller::ReconcilerOptions reconciler_options;
  reconciler_options.build.default_image = image;
  controller::ControllerMetrics& metrics = manager.metrics();
  reconciler_options.on_pool_status = [&metrics](const controller::ClusterRef& ref,
                                                 const std::string& pool, int desired, int ready) {
    metrics.set_pool_replicas(ref.ns, ref.name, pool, desired, ready);
  };
  reconciler_options.on_autoscale = [&metrics](const controller::ClusterRef& ref,
                                               const controller::AutoscaleOutcome& out) {
    if (out.disabled_now) return metrics.forget_autoscaler(ref.ns, ref.name);
    if (out.metrics_checked) metrics.autoscaler_metrics_up(ref.ns, ref.name, out.metrics_up);
    for (const auto& [pool, pd] : out.decision.pools) {
      const auto before = out.previous.find(pool);
      metrics.autoscaler_decision(ref.ns, ref.name, pool,
                                  before == out.previous.end() ? pd.replicas : before->second,
                                  pd.replicas, pd.limited);
    }
  };
  reconciler_options.on_forget = [&metrics](const controller::ClusterRef& ref) {
    metrics.forget_cluster(ref.ns, ref.name);
  };
  reconciler =
      std::make_unique<controller::Reconciler>(rest, manager.cluster_getter(), reconciler_options);

  controller::ProbeServer probes(
      {.host = "0.0.0.0", .port = static_cast<uint16_t>(metrics_port)},
      [&manager] { return manager.render_metrics(); }, [&manager] { return manager.ready(); });
  if (Status st = probes.start(); !st.ok()) {
    spdlog::error("metrics server: {}", st.message());
    return 2;
  }
  spdlog::info("splitwise-controller {}: API server {}, metrics on :{}, leader election {}",
               manager.identity(), config->server, probes.port(),
               leader_elect ? "on (lease " + options.leader_election.lease_namespace + "/" +
                                  controller::kLeaseName + ")"
                            : "off");
  manager.start();

  int sig = 0;
  sigwait(&signals, &sig);
  if (lost) {
    spdlog::error("lost the leader lease; exiting so a fresh replica campaigns");
  } else {
    spdlog::info("signal {}: shutting down", sig);
  }
  manager.stop();
  probes.stop();
  return lost ? 1 : 0;
}
