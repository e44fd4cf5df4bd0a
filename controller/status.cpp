#include "controller/status.h"

#include <chrono>
#include <ctime>
#include <set>

namespace splitwise::controller {

namespace {

int int_at(const Json& object, const char* section, const char* field) {
  if (!object.is_object()) return 0;
  auto s = object.find(section);
  if (s == object.end() || !s->is_object()) return 0;
  auto f = s->find(field);
  return f != s->end() && f->is_number_integer() ? f->get<int>() : 0;
}

std::string str_at(const Json& object, const char* field) {
  if (!object.is_object()) return "";
  auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string pod_name(const Json& pod) {
  return pod.is_object() ? str_at(pod.value("metadata", Json::object()), "name") : "";
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

struct ComponentState {
  int replicas = 0, ready = 0, updated = 0, desired = 0;
  bool rolling = false;
};

ComponentState component_state(const ComponentObservation& c) {
  ComponentState s;
  s.desired = c.desired;
  if (!c.deployment.is_object()) {
    s.rolling = c.desired > 0;  // not created yet (or deleted by hand): on its way
    return s;
  }
  s.replicas = int_at(c.deployment, "status", "replicas");
  s.ready = int_at(c.deployment, "status", "readyReplicas");
  s.updated = int_at(c.deployment, "status", "updatedReplicas");
  const Json& meta = c.deployment.value("metadata", Json::object());
  const int64_t generation = meta.value("generation", int64_t{0});
  const Json& status = c.deployment.value("status", Json::object());
  const int64_t observed = status.is_object() ? status.value("observedGeneration", int64_t{0}) : 0;
  // The Deployment controller has not seen the latest spec, new pods are not all there,
  // or old pods still run next to the new ones.
  s.rolling = observed < generation || s.updated < s.desired || s.replicas > s.updated;
  return s;
}

// The prompt (token) pool's counts; a mixed pool stands in when the cluster has none.
const ComponentState* role_state(const std::vector<ComponentObservation>& components,
                                 const std::vector<ComponentState>& states, const char* role) {
  const ComponentState* mixed = nullptr;
  for (size_t i = 0; i < components.size(); ++i) {
    if (components[i].name == role) return &states[i];
    if (components[i].name == "mixed") mixed = &states[i];
  }
  return mixed;
}

Json keep_or_default(const Json& current, const Condition& fallback, int64_t generation,
                     const std::string& now, Json conditions) {
  const Json* have = find_condition(current, fallback.type);
  if (have != nullptr) return conditions;  // another writer (or an earlier pass) owns it
  return set_condition(std::move(conditions), fallback, generation, now);
}

}  // namespace

std::string ready_fraction(int ready, int desired) {
  return std::to_string(ready) + "/" + std::to_string(desired);
}

std::string rfc3339_now() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const Json* find_condition(const Json& status, const std::string& type) {
  if (!status.is_object()) return nullptr;
  auto it = status.find("conditions");
  if (it == status.end() || !it->is_array()) return nullptr;
  for (const auto& c : *it) {
    if (c.is_object() && str_at(c, "type") == type) return &c;
  }
  return nullptr;
}

Json set_condition(Json conditions, const Condition& c, int64_t generation,
                   const std::string& now) {
  if (!conditions.is_array()) conditions = Json::array();
  Json next = {{"type", c.type},
               {"status", c.status},
               {"reason", c.reason},
               {"message", c.message},
               {"observedGeneration", generation},
               {"lastTransitionTime", now}};
  for (auto& have : conditions) {
    if (!have.is_object() || str_at(have, "type") != c.type) continue;
    const std::string since = str_at(have, "lastTransitionTime");
    if (str_at(have, "status") == c.status && !since.empty()) next["lastTransitionTime"] = since;
    have = std::move(next);
    return conditions;
  }
  conditions.push_back(std::move(next));
  return conditions;
}

PodDiagnosis diagnose_pods(const std::vector<Json>& pods) {
  PodDiagnosis d;
  for (const auto& pod : pods) {
    if (!pod.is_object()) continue;
    if (pod.value("metadata", Json::object()).contains("deletionTimestamp")) continue;
    const Json& status = pod.value("status", Json::object());
    if (!status.is_object()) continue;
    const std::string name = pod_name(pod);
    if (str_at(status, "phase") == "Pending") ++d.pending;
    for (const auto& c : status.value("conditions", Json::array())) {
      if (str_at(c, "type") == "PodScheduled" && str_at(c, "status") == "False" &&
          str_at(c, "reason") == "Unschedulable") {
        d.unschedulable.push_back("pod " + name + ": " + str_at(c, "message"));
      }
    }
    for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
      for (const auto& cs : status.value(list, Json::array())) {
        if (!cs.is_object()) continue;
        const Json& waiting = cs.value("state", Json::object()).value("waiting", Json::object());
        const bool backoff = str_at(waiting, "reason") == "CrashLoopBackOff";
        const int restarts = cs.value("restartCount", 0);
        if (!backoff && restarts < kCrashRestartThreshold) continue;
        // No restart count in the text: it would change the condition (a status write
        // and an event) on every restart.
        std::string what = "pod " + name + " container " + str_at(cs, "name") + ": " +
                           (backoff ? "CrashLoopBackOff" : "restarting repeatedly");
        const std::string last = str_at(
            cs.value("lastState", Json::object()).value("terminated", Json::object()), "reason");
        if (!last.empty()) what += ", last exit " + last;
        d.crashing.push_back(std::move(what));
      }
    }
  }
  return d;
}

ComputedStatus compute_status(const StatusInput& in) {
  ComputedStatus out;
  Json status = in.current.is_object() ? in.current : Json::object();
  std::vector<ComponentState> states;
  Json pools = Json::object();
  std::vector<std::string> not_ready, rolling, capacity, crashes;
  bool all_ready = true;
  int total_desired = 0;
  for (const auto& c : in.components) {
    states.push_back(component_state(c));
    const ComponentState& s = states.back();
    if (c.name != "router")
      pools[c.name] = {{"replicas", s.replicas}, {"ready", s.ready}, {"desired", s.desired}};
    total_desired += s.desired;
    if (s.ready < s.desired) {
      all_ready = false;
      not_ready.push_back(c.name + " " + ready_fraction(s.ready, s.desired));
    }
    if (s.rolling) {
      rolling.push_back(c.name + " (" + ready_fraction(s.updated, s.desired) + " updated)");
    }
    PodDiagnosis d = diagnose_pods(c.pods);
    if (d.pending > 0) out.pods_pending = true;
    if (!d.unschedulable.empty()) {
      capacity.push_back("pool " + c.name + ": " + std::to_string(d.unschedulable.size()) +
                         " pod(s) unschedulable (no matching nodes / insufficient capacity): " +
                         join(d.unschedulable, "; "));
    }
    if (!d.crashing.empty()) crashes.push_back("pool " + c.name + ": " + join(d.crashing, "; "));
  }
  const bool ready = all_ready && total_desired > 0;
  out.progressing = !rolling.empty();

  status["observedGeneration"] = in.generation;
  if (const ComponentState* p = role_state(in.components, states, "prompt"))
    status["promptReady"] = ready_fraction(p->ready, p->desired);
  const ComponentState* token = role_state(in.components, states, "token");
  if (token != nullptr) status["tokenReady"] = ready_fraction(token->ready, token->desired);
  status["endpoint"] =
      router_name(in.ref) + "." + in.ref.ns + ".svc:" + std::to_string(in.spec.router.port);
  status["pools"] = pools;

  Condition ready_c{kReady, ready ? "True" : "False", ready ? "AllReady" : "PoolsNotReady",
                    ready ? "every pool and the router are ready"
                          : (not_ready.empty() ? "no replicas requested"
                                               : "not ready: " + join(not_ready, ", "))};
  Condition progressing_c{kProgressing, out.progressing ? "True" : "False",
                          out.progressing ? "RollingOut" : "Stable",
                          out.progressing ? "rolling out: " + join(rolling, ", ")
                                          : "every Deployment runs its latest spec"};
  // Capacity first: crashes of pods that did schedule do not explain the missing ones.
  if (!capacity.empty()) {
    std::vector<std::string> all = capacity;
    all.insert(all.end(), crashes.begin(), crashes.end());
    out.degraded = {kDegraded, "True", kReasonInsufficientCapacity, join(all, "; ")};
  } else if (!crashes.empty()) {
    out.degraded = {kDegraded, "True", kReasonCrashLooping, join(crashes, "; ")};
  } else {
    out.degraded = {kDegraded, "False", kReasonAsExpected, "no capacity or crash problems seen"};
  }

  Condition kv_c{kKvTransportReady, "True", "", ""};
  const bool nccl = in.spec.kv_transfer == "nccl";
  bool cpu_pool = false;
  for (const auto& [name, p] : in.spec.pools) cpu_pool = cpu_pool || !p.on_gpu();
  if (nccl && cpu_pool) {
    kv_c = {kKvTransportReady, "False", "NcclNeedsGpus",
            "kvTransfer nccl needs every pool on GPUs; use tcp for CPU pools"};
  } else if (token == nullptr || token->ready == 0 || token->ready < token->desired) {
    kv_c = {kKvTransportReady, "Unknown", "WaitingForTokenPool",
            "the KV transport is checked once the token pool is ready"};
  } else {
    kv_c.reason = nccl ? "Nccl" : "Tcp";
    kv_c.message = "KV caches move from prompt to token workers over " + in.spec.kv_transfer;
  }

  Json conditions = status.value("conditions", Json::array());
  for (const Condition& c : {ready_c, progressing_c, out.degraded, kv_c})
    conditions = set_condition(std::move(conditions), c, in.generation, in.now);
  // The autoscaler owns ScalingLimited; the reconciler only makes sure it is present.
  conditions = keep_or_default(status,
                               {kScalingLimited, "False", "WithinLimits",
                                "replicas are within minReplicas/maxReplicas and the budget"},
                               in.generation, in.now, std::move(conditions));
  status["conditions"] = std::move(conditions);
  out.status = std::move(status);
  return out;
}

std::string invalid_spec_message(const std::vector<FieldError>& errors) {
  std::vector<std::string> parts;
  std::set<std::string> seen;
  for (const auto& e : errors) {
    if (seen.insert(e.str()).second) parts.push_back(e.str());
  }
  return join(parts, "; ");
}

Json invalid_spec_status(const Json& current, int64_t generation,
                         const std::vector<FieldError>& errors, const std::string& now) {
  Json status = current.is_object() ? current : Json::object();
  status["observedGeneration"] = generation;
  Json conditions = status.value("conditions", Json::array());
  const std::string message = invalid_spec_message(errors);
  conditions = set_condition(
      std::move(conditions),
      {kReady, "False", kReasonInvalidSpec, "the spec is invalid; children are left as they are"},
      generation, now);
  conditions = set_condition(
      std::move(conditions),
      {kProgressing, "False", kReasonInvalidSpec, "nothing is rolled out until the spec is fixed"},
      generation, now);
  conditions = set_condition(std::move(conditions),
                             {kDegraded, "True", kReasonInvalidSpec, message}, generation, now);
  conditions = keep_or_default(
      status, {kKvTransportReady, "Unknown", kReasonInvalidSpec, "the spec is invalid"}, generation,
      now, std::move(conditions));
  conditions = keep_or_default(status,
                               {kScalingLimited, "False", "WithinLimits",
                                "replicas are within minReplicas/maxReplicas and the budget"},
                               generation, now, std::move(conditions));
  status["conditions"] = std::move(conditions);
  return status;
}

}  // namespace splitwise::controller
