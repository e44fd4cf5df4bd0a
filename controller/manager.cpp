#include "controller/manager.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <climits>
#include <exception>
#include <random>

#include "controller/api/inference_cluster.h"
#include "controller/kube/watch_event.h"

namespace splitwise::controller {

using nlohmann::json;

namespace {

std::string managed_by_selector() { return std::string(kManagedByLabel) + "=" + kManagedByValue; }

bool is_inference_cluster_ref(const json& ref) {
  if (!ref.is_object() || !ref.value("controller", false)) return false;
  if (ref.value("kind", "") != kKind) return false;
  const std::string api_version = ref.value("apiVersion", "");
  return api_version.rfind(std::string(kGroup) + "/", 0) == 0;
}

}  // namespace

std::optional<std::string> controller_owner_key(const json& object) {
  if (!object.is_object()) return std::nullopt;
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return std::nullopt;
  auto refs = meta->find("ownerReferences");
  if (refs == meta->end() || !refs->is_array()) return std::nullopt;
  for (const json& ref : *refs) {
    if (!is_inference_cluster_ref(ref)) continue;
    const std::string name = ref.value("name", "");
    if (name.empty()) continue;
    // Owner references never cross namespaces: the owner lives in the child's namespace.
    const std::string ns = meta->value("namespace", "");
    return ns.empty() ? name : ns + "/" + name;
  }
  return std::nullopt;
}

std::string default_identity() {
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "splitwise-controller");
  }
  std::random_device rd;
  std::uniform_int_distribution<uint32_t> dist;
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%08x", dist(rd));
  return std::string(host) + "_" + suffix;
}

const kube::Resource& inference_clusters_resource() {
  static const kube::Resource res{kGroup, kVersion, "inferenceclusters", true};
  return res;
}

const std::vector<kube::Resource>& child_resources() {
  static const std::vector<kube::Resource> res{
      {"apps", "v1", "deployments", true},
      {"", "v1", "services", true},
      {"", "v1", "configmaps", true},
  };
  return res;
}

Manager::Manager(kube::RestClient& client, ReconcileFn reconcile, ManagerOptions options)
    : client_(client),
      reconcile_(std::move(reconcile)),
      options_(std::move(options)),
      identity_(options_.leader_election.identity.empty() ? default_identity()
                                                          : options_.leader_election.identity) {
  auto watch_options = [this](const kube::Resource& res, std::string selector) {
    kube::ListWatcherOptions o;
    o.resource = res;
    o.ns = options_.watch_namespace;
    o.label_selector = std::move(selector);
    o.backoff = options_.informer_backoff;
    return o;
  };
  clusters_ = std::make_unique<kube::Informer>(
      client_, watch_options(inference_clusters_resource(), ""), options_.resync);
  clusters_->add_handlers({
      .on_add = [this](const json& obj) { enqueue(kube::object_key(obj)); },
      .on_update = [this](const json&, const json& obj) { enqueue(kube::object_key(obj)); },
      .on_delete = [this](const json& obj) { enqueue(kube::object_key(obj)); },
  });
  for (const kube::Resource& res : child_resources()) {
    auto informer =
        std::make_unique<kube::Informer>(client_, watch_options(res, managed_by_selector()));
    informer->add_handlers({
        .on_add = [this](const json& obj) { enqueue_owner(obj); },
        .on_update =
            [this](const json& old_obj, const json& obj) {
              // An owner reference that moved wakes both owners.
              if (controller_owner_key(old_obj) != controller_owner_key(obj)) {
                enqueue_owner(old_obj);
              }
              enqueue_owner(obj);
            },
        .on_delete = [this](const json& obj) { enqueue_owner(obj); },
    });
    children_.push_back(std::move(informer));
  }
  if (options_.leader_election.enabled) {
    const LeaderElectionOptions& le = options_.leader_election;
    lease_client_ = std::make_unique<kube::RestLeaseClient>(client_);
    kube::LeaderElectionConfig config;
    config.lease_namespace = le.lease_namespace;
    config.lease_name = le.lease_name;
    config.identity = identity_;
    config.lease_duration = le.lease_duration;
    config.renew_deadline = le.renew_deadline;
    config.retry_period = le.retry_period;
    config.release_on_stop = le.release_on_stop;
    config.on_started_leading = [this] { on_started_leading(); };
    config.on_stopped_leading = [this] { on_stopped_leading(); };
    config.on_new_leader = [this](const std::string& id) {
      if (id != identity_) spdlog::info("leader election: {} observes leader {}", identity_, id);
    };
    elector_ = std::make_unique<kube::LeaderElector>(*lease_client_, std::move(config));
  }
}

Manager::~Manager() { stop(); }

void Manager::start() {
  {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (started_) return;
    started_ = true;
  }
  spdlog::info("manager {}: watching InferenceClusters in {}, {} workers", identity_,
               options_.watch_namespace.empty() ? "all namespaces" : options_.watch_namespace,
               options_.workers);
  clusters_->start();
  for (auto& informer : children_) informer->start();
  if (elector_) {
    elector_thread_ = std::thread([this] { elector_->run(); });
  } else {
    on_started_leading();
  }
}

void Manager::stop() {
  if (stopping_.exchange(true)) return;
  stop_workers();  // in-flight reconciles finish before the lease can go to someone else
  if (elector_) {
    elector_->stop();  // releases the lease when held (release_on_stop)
    if (elector_thread_.joinable()) elector_thread_.join();
  }
  leading_ = false;
  metrics_.set_leader(false);
  clusters_->stop();
  for (auto& informer : children_) informer->stop();
  spdlog::info("manager {}: stopped", identity_);
}

bool Manager::synced() const {
  if (!clusters_->synced()) return false;
  for (const auto& informer : children_) {
    if (!informer->synced()) return false;
  }
  return true;
}

bool Manager::wait_for_sync(std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        until - std::chrono::steady_clock::now()));
  };
  if (!clusters_->wait_for_sync(left())) return false;
  for (const auto& informer : children_) {
    if (!informer->wait_for_sync(left())) return false;
  }
  return true;
}

bool Manager::running() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queue_ != nullptr;
}

std::optional<json> Manager::get_cluster(const std::string& key) const {
  return clusters_->get(key);
}

std::string Manager::render_metrics() {
  std::size_t depth = 0;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (queue_) depth = queue_->len();
  }
  metrics_.set_queue_depth(depth);
  return metrics_.render();
}

void Manager::enqueue(const std::string& key) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (queue_) queue_->add(key);
}

void Manager::enqueue_owner(const json& object) {
  if (auto key = controller_owner_key(object)) enqueue(*key);
}

void Manager::on_started_leading() {
  leading_ = true;
  metrics_.set_leader(true);
  start_workers();
}

void Manager::on_stopped_leading() {
  leading_ = false;
  metrics_.set_leader(false);
  stop_workers();
  if (stopping_) return;
  spdlog::error("manager {}: lost leadership of {}/{}; workers stopped", identity_,
                options_.leader_election.lease_namespace, options_.leader_election.lease_name);
  if (options_.on_lost_leadership) options_.on_lost_leadership();
}

void Manager::start_workers() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (stopping_ || !workers_.empty()) return;
  auto queue = std::make_shared<kube::WorkQueue>(options_.queue);
  {
    std::lock_guard<std::mutex> qlock(queue_mu_);
    queue_ = queue;
  }
  // A new term starts with a full pass: events seen while standing by were not queued.
  for (const json& cluster : clusters_->list()) queue->add(kube::object_key(cluster));
  const int n = std::max(1, options_.workers);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this, queue] { worker_loop(queue); });
  spdlog::info("manager {}: {} workers started", identity_, n);
}

void Manager::stop_workers() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  std::shared_ptr<kube::WorkQueue> queue;
  {
    std::lock_guard<std::mutex> qlock(queue_mu_);
    queue = std::move(queue_);
    queue_.reset();
  }
  if (queue) queue->shutdown();
  for (auto& t : workers_) t.join();  // each finishes the reconcile it is in
  if (!workers_.empty()) spdlog::info("manager {}: workers stopped", identity_);
  workers_.clear();
}

void Manager::worker_loop(std::shared_ptr<kube::WorkQueue> queue) {
  // controller-runtime's WaitForCacheSync: a reconcile must not read a half-loaded cache
  // (a cluster missing from it looks deleted).
  while (!synced()) {
    if (queue->shutting_down()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  while (std::optional<std::string> key = queue->get()) process(*queue, *key);
}

void Manager::process(kube::WorkQueue& queue, const std::string& key) {
  const auto start = std::chrono::steady_clock::now();
  kube::ApiResult<ReconcileResult> result = kube::ApiError{500, "InternalError", "not run"};
  try {
    result = reconcile_(key);
  } catch (const std::exception& e) {
    // controller-runtime recovers a panicking reconciler the same way: an error, retried.
    result = kube::ApiError{500, "InternalError", std::string("reconcile threw: ") + e.what()};
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long ms = static_cast<long>(seconds * 1000);
  if (!result.ok()) {
    const auto delay = queue.next_delay(key);
    queue.add_rate_limited(key);
    metrics_.retried();
    metrics_.observe_reconcile("error", seconds);
    spdlog::warn("reconcile {}: error after {} ms: {} (retry {} in {} ms)", key, ms,
                 result.error().to_string(), queue.num_requeues(key), delay.count());
  } else if (result->requeue_after.count() > 0) {
    queue.forget(key);
    queue.add_after(key, result->requeue_after);
    metrics_.observe_reconcile("requeue", seconds);
    spdlog::debug("reconcile {}: ok in {} ms, requeue in {} ms", key, ms,
                  result->requeue_after.count());
  } else {
    queue.forget(key);
    metrics_.observe_reconcile("success", seconds);
    spdlog::debug("reconcile {}: ok in {} ms", key, ms);
  }
  queue.done(key);
}

}  // namespace splitwise::controller
