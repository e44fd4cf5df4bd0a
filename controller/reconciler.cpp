#include "controller/reconciler.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <set>

#include "controller/autoscaling_spec.h"
#include "controller/status.h"

namespace splitwise::controller {

namespace {

using kube::ApiError;
using kube::ApiResult;
using kube::ApiStatus;
using kube::Resource;

const Resource kClusters{kGroup, kVersion, "inferenceclusters", true};
const Resource kDeployments{"apps", "v1", "deployments", true};
const Resource kServices{"", "v1", "services", true};
const Resource kConfigMaps{"", "v1", "configmaps", true};
const Resource kServiceMonitors{"monitoring.coreos.com", "v1", "servicemonitors", true};
const Resource kPods{"", "v1", "pods", true};
const Resource kEvents{"", "v1", "events", true};

constexpr const char* kComponent = "splitwise-operator";
constexpr size_t kMaxEventMessage = 1024;  // the apiserver rejects longer Event messages

const Resource& resource_of_kind(const std::string& kind) {
  if (kind == "Deployment") return kDeployments;
  if (kind == "Service") return kServices;
  if (kind == "ConfigMap") return kConfigMaps;
  if (kind == "ServiceMonitor") return kServiceMonitors;
  SW_CHECK(false && "a builder made a child of an unknown kind");
  return kConfigMaps;
}

std::string meta_str(const Json& object, const char* field) {
  const Json& m = object.value("metadata", Json::object());
  auto it = m.find(field);
  return it != m.end() && it->is_string() ? it->get<std::string>() : "";
}

// "Deployment/llama3-8b-ha-prompt": children are unique by kind and name in a namespace.
std::string child_id(const Json& object) {
  return object.value("kind", "") + "/" + meta_str(object, "name");
}
std::string child_label(const std::string& id) {
  std::string s = id;
  s[s.find('/')] = ' ';
  return s;
}

std::string content_hash(const Json& object) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : object.dump()) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// A controller ownerReference to the cluster with this uid: only such children are ours
// to delete.
bool controlled_by(const Json& object, const std::string& uid) {
  const Json& m = object.value("metadata", Json::object());
  for (const auto& ref : m.value("ownerReferences", Json::array())) {
    if (ref.is_object() && ref.value("uid", "") == uid && ref.value("controller", false))
      return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

}  // namespace

// Everything one pass knows about its cluster.
struct Reconciler::Pass {
  std::string key, ns, name;
  Json cluster;
  ClusterRef ref;
  int64_t generation = 0;
  ClusterSpec spec;
  AutoscalingSpec autoscaling;
  ClusterMemory memory;
};

Reconciler::Reconciler(kube::RestClient& client,
                       std::function<std::optional<Json>(const std::string& key)> get_cluster,
                       ReconcilerOptions options)
    : client_(client), get_cluster_(std::move(get_cluster)), options_(std::move(options)) {
  auto source = options_.load_source ? options_.load_source : std::make_shared<HttpLoadSource>();
  auto clock = options_.clock_s ? options_.clock_s : [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  autoscale_ = std::make_unique<AutoscaleStep>(std::move(source), std::move(clock));
}

ApiResult<ReconcileResult> Reconciler::reconcile(const std::string& key) {
  std::optional<Json> cluster = get_cluster_(key);
  if (!cluster || !cluster->is_object()) {
    // Deleted: the garbage collector removes the children through their owner references.
    {
      std::lock_guard lock(mu_);
      memory_.erase(key);
    }
    autoscale_->forget(key);
    if (options_.on_forget) {
      const size_t slash = key.find('/');
      options_.on_forget({key.substr(slash + 1), key.substr(0, slash), ""});
    }
    return ReconcileResult{};
  }
  if (cluster->value("metadata", Json::object()).contains("deletionTimestamp"))
    return ReconcileResult{};

  Pass pass;
  pass.key = key;
  pass.cluster = std::move(*cluster);
  pass.ref = cluster_ref(pass.cluster);
  pass.ns = pass.ref.ns;
  pass.name = pass.ref.name;
  pass.generation = pass.cluster["metadata"].value("generation", int64_t{0});
  {
    std::lock_guard lock(mu_);
    ClusterMemory& m = memory_[key];
    if (m.uid != pass.ref.uid) m = ClusterMemory{pass.ref.uid, {}};
    pass.memory = m;
  }

  ParsedSpec parsed = parse_spec(pass.cluster.value("spec", Json::object()));
  std::vector<FieldError> errors = parsed.errors;
  // Validation of a spec that did not parse would judge defaults, not the user's values.
  if (errors.empty()) errors = validate(parsed.spec);
  if (errors.empty()) {
    auto autoscaling = parse_autoscaling(parsed.spec.autoscaling, &errors);
    if (autoscaling.ok()) pass.autoscaling = *autoscaling;
  }
  pass.spec = std::move(parsed.spec);

  ApiResult<ReconcileResult> result =
      errors.empty() ? reconcile_valid(pass) : reconcile_invalid(pass, errors);
  {
    // Applies that succeeded before an error are remembered too.
    std::lock_guard lock(mu_);
    memory_[key] = std::move(pass.memory);
  }
  return result;
}

ApiResult<ReconcileResult> Reconciler::reconcile_invalid(Pass& pass,
                                                         const std::vector<FieldError>& errors) {
  const std::string now = rfc3339_now();
  const std::string message = invalid_spec_message(errors);
  bool written = false;
  Json previous;
  ApiStatus st = write_status(
      pass,
      [&](const Json& current) {
        return invalid_spec_status(current, pass.generation, errors, now);
      },
      &written, &previous);
  if (!st.ok()) return st.error();
  const Json* before = find_condition(previous, kDegraded);
  const bool same = before != nullptr && before->value("reason", "") == kReasonInvalidSpec &&
                    before->value("message", "") == message;
  if (written && !same) {
    spdlog::warn("InferenceCluster {}: invalid spec: {}", pass.key, message);
    emit_event(pass, "Warning", kReasonInvalidSpec, message);
  }
  return ReconcileResult{};
}

ApiResult<ReconcileResult> Reconciler::reconcile_valid(Pass& pass) {
  const bool monitoring = service_monitors_served();

  // The children as the server has them now, by label; one list per kind.
  std::map<std::string, Json> live;
  const std::string selector = "splitwise.io/cluster=" + pass.name;
  std::vector<std::pair<const Resource*, const char*>> kinds = {
      {&kConfigMaps, "ConfigMap"}, {&kDeployments, "Deployment"}, {&kServices, "Service"}};
  if (monitoring) kinds.push_back({&kServiceMonitors, "ServiceMonitor"});
  for (const auto& [res, kind] : kinds) {
    kube::ListOptions opts;
    opts.label_selector = selector;
    auto listed = client_.list(*res, pass.ns, opts);
    if (!listed.ok()) return listed.error();
    for (auto item : listed->value("items", Json::array())) {
      item["kind"] = kind;              // list items may omit their kind
      std::string id = child_id(item);  // before the move: `=` evaluates its right side first
      live[id] = std::move(item);
    }
  }

  auto deployment = [&](const std::string& name) {
    auto it = live.find("Deployment/" + name);
    return it == live.end() ? Json() : it->second;
  };
  // The autoscaler's replicas replace the spec's for the pools it sizes.
  std::map<std::string, int> live_replicas, ready;
  for (const auto& [pool, p] : pass.spec.pools) {
    const Json d = deployment(pool_name(pass.ref, pool));
    if (d.is_null()) continue;
    live_replicas[pool] = d.value("spec", Json::object()).value("replicas", p.replicas);
    ready[pool] = d.value("status", Json::object()).value("readyReplicas", 0);
  }
  const AutoscaleOutcome scaled =
      autoscale_->run(pass.key, pass.ref, pass.spec, pass.autoscaling, live_replicas, ready);
  for (const auto& [pool, n] : scaled.replicas) pass.spec.pools[pool].replicas = n;
  if (scaled.disabled_now && options_.on_autoscale) options_.on_autoscale(pass.ref, scaled);
  if (scaled.decided) {
    for (const auto& e : scaled.events) {
      spdlog::info("InferenceCluster {}: {}: {}", pass.key, e.reason, e.message);
      emit_event(pass, e.type, e.reason, e.message);
    }
    if (options_.on_autoscale) options_.on_autoscale(pass.ref, scaled);
  }

  std::vector<Json> wanted = build_children(pass.ref, pass.spec, options_.build, monitoring);
  if (ApiStatus st = apply_children(pass, wanted, live); !st.ok()) return st.error();
  if (ApiStatus st = remove_unwanted(pass, wanted, live); !st.ok()) return st.error();

  // Pods, for the capacity and crash diagnosis.
  kube::ListOptions pod_opts;
  pod_opts.label_selector = selector;
  auto pods = client_.list(kPods, pass.ns, pod_opts);
  if (!pods.ok()) return pods.error();
  std::map<std::string, std::vector<Json>> pods_by_component;
  for (const auto& pod : pods->value("items", Json::array())) {
    const Json& labels = pod.value("metadata", Json::object()).value("labels", Json::object());
    pods_by_component[labels.value("splitwise.io/component", "")].push_back(pod);
  }

  StatusInput in;
  in.generation = pass.generation;
  in.ref = pass.ref;
  in.spec = pass.spec;
  in.now = rfc3339_now();
  for (const auto& [pool, p] : pass.spec.pools) {
    in.components.push_back(
        {pool, p.replicas, deployment(pool_name(pass.ref, pool)), pods_by_component[pool]});
  }
  in.components.push_back({"router", pass.spec.router.replicas, deployment(router_name(pass.ref)),
                           pods_by_component["router"]});

  ComputedStatus computed;
  bool written = false;
  Json previous;
  ApiStatus st = write_status(
      pass,
      [&](const Json& current) {
        in.current = current;
        computed = compute_status(in);
        if (scaled.enabled)
          computed.status["conditions"] =
              set_condition(computed.status.value("conditions", Json::array()),
                            scaled.scaling_limited, pass.generation, in.now);
        return computed.status;
      },
      &written, &previous);
  if (!st.ok()) return st.error();

  const Condition& d = computed.degraded;
  const Json* before = find_condition(previous, kDegraded);
  const bool changed = before == nullptr || before->value("reason", "") != d.reason ||
                       before->value("message", "") != d.message;
  if (written && changed && d.status == "True") emit_event(pass, "Warning", d.reason, d.message);

  if (options_.on_pool_status) {
    const Json& pools = computed.status.value("pools", Json::object());
    for (const auto& [pool, p] : pools.items())
      options_.on_pool_status(pass.ref, pool, p.value("desired", 0), p.value("ready", 0));
  }

  ReconcileResult result;
  if (computed.progressing || computed.pods_pending || d.status == "True")
    result.requeue_after = options_.requeue_while_progressing;
  if (scaled.enabled) {
    // The next autoscaling decision is due then, whatever else happens.
    const auto due = std::chrono::milliseconds(static_cast<int64_t>(scaled.requeue_s * 1000) + 1);
    if (result.requeue_after.count() == 0 || due < result.requeue_after) result.requeue_after = due;
  }
  return result;
}

ApiStatus Reconciler::apply_children(Pass& pass, const std::vector<Json>& wanted,
                                     std::map<std::string, Json>& live) {
  std::vector<std::string> changed;
  bool created_any = false;
  for (const Json& child : wanted) {
    const std::string id = child_id(child);
    const std::string hash = content_hash(child);
    auto have = live.find(id);
    auto last = pass.memory.applied.find(id);
    // Unchanged intent and nobody touched the object since: the apply would be a no-op.
    if (have != live.end() && last != pass.memory.applied.end() && last->second.hash == hash &&
        meta_str(have->second, "resourceVersion") == last->second.resource_version)
      continue;
    auto applied = client_.apply(resource_of_kind(child.value("kind", "")), pass.ns, child,
                                 options_.field_manager, /*force=*/true);
    if (!applied.ok()) return applied.error();
    const std::string rv = meta_str(*applied, "resourceVersion");
    const bool created = have == live.end();
    if (created || meta_str(have->second, "resourceVersion") != rv)
      changed.push_back(child_label(id) + (created ? " (created)" : ""));
    created_any = created_any || created;
    pass.memory.applied[id] = {hash, rv};
    live[id] = std::move(*applied);
  }
  if (!changed.empty()) {
    std::string message = "applied " + std::to_string(changed.size()) + " of " +
                          std::to_string(wanted.size()) + " children: " + join(changed);
    spdlog::info("InferenceCluster {}: {}", pass.key, message);
    emit_event(pass, "Normal", created_any ? "Created" : "Updated", message);
  }
  return kube::Empty{};
}

ApiStatus Reconciler::remove_unwanted(Pass& pass, const std::vector<Json>& wanted,
                                      const std::map<std::string, Json>& live) {
  std::set<std::string> keep;
  for (const Json& child : wanted) keep.insert(child_id(child));
  std::vector<std::string> removed;
  for (const auto& [id, object] : live) {
    if (keep.count(id) || !controlled_by(object, pass.ref.uid)) continue;
    auto r = client_.remove(resource_of_kind(object.value("kind", "")), pass.ns,
                            meta_str(object, "name"));
    if (!r.ok() && !r.error().is_not_found()) return r.error();
    pass.memory.applied.erase(id);
    removed.push_back(child_label(id));
  }
  if (!removed.empty()) {
    std::string message = "deleted children no longer wanted: " + join(removed);
    spdlog::info("InferenceCluster {}: {}", pass.key, message);
    emit_event(pass, "Normal", "Deleted", message);
  }
  return kube::Empty{};
}

ApiStatus Reconciler::write_status(Pass& pass, const std::function<Json(const Json&)>& compute,
                                   bool* written, Json* previous) {
  *written = false;
  Json object = pass.cluster;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Json current = object.value("status", Json());
    Json next = compute(current);
    if (next == current) return kube::Empty{};
    object["status"] = next;
    auto r = client_.update_status(kClusters, pass.ns, object);
    if (r.ok()) {
      *written = true;
      *previous = std::move(current);
      return kube::Empty{};
    }
    // A stale cache object: re-read the latest and try once more.
    if (!r.error().is_conflict() || attempt == 1) return r.error();
    auto fresh = client_.get(kClusters, pass.ns, pass.name);
    if (!fresh.ok()) return fresh.error().is_not_found() ? ApiStatus(kube::Empty{}) : fresh.error();
    if (meta_str(*fresh, "uid") != pass.ref.uid) return kube::Empty{};  // deleted and recreated
    object = std::move(*fresh);
  }
  return kube::Empty{};
}

void Reconciler::emit_event(const Pass& pass, const std::string& type, const std::string& reason,
                            const std::string& message) {
  static std::atomic<uint64_t> sequence{0};
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  char suffix[40];
  std::snprintf(suffix, sizeof suffix, ".%llx%llx", static_cast<unsigned long long>(nanos),
                static_cast<unsigned long long>(sequence++ % 4096));
  const std::string now = rfc3339_now();
  Json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", pass.name + suffix}, {"namespace", pass.ns}}},
                {"involvedObject",
                 {{"apiVersion", std::string(kGroup) + "/" + kVersion},
                  {"kind", kKind},
                  {"name", pass.name},
                  {"namespace", pass.ns},
                  {"uid", pass.ref.uid},
                  {"resourceVersion", meta_str(pass.cluster, "resourceVersion")}}},
                {"reason", reason},
                {"message", message.substr(0, kMaxEventMessage)},
                {"type", type},
                {"source", {{"component", kComponent}}},
                {"reportingComponent", kComponent},
                {"firstTimestamp", now},
                {"lastTimestamp", now},
                {"count", 1}};
  // Events are best effort: a lost one must not fail (and so repeat) the pass.
  auto r = client_.create(kEvents, pass.ns, event);
  if (!r.ok())
    spdlog::warn("InferenceCluster {}: event {} not recorded: {}", pass.key, reason,
                 r.error().to_string());
}

bool Reconciler::service_monitors_served() {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (monitoring_ && now - monitoring_checked_ < kDiscoveryTtl) return *monitoring_;
  }
  auto found = client_.discover("monitoring.coreos.com", "v1", "servicemonitors");
  std::lock_guard lock(mu_);
  if (found.ok()) {
    monitoring_ = *found;
    monitoring_checked_ = now;
  }
  // A failed discovery keeps the last answer (none yet: no ServiceMonitor this pass).
  return monitoring_.value_or(false);
}

}  // namespace splitwise::controller
