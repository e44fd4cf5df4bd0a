// The status of an InferenceCluster, computed from what its children report: per-pool
// replica counts and the conditions Ready, Progressing, Degraded, KVTransportReady and
// ScalingLimited. Pure functions of their inputs (the clock comes in as `now`), so every
// rule is tested without an API server; the reconciler only gathers inputs and writes
// the result when it differs from what the object holds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/api/inference_cluster.h"
#include "controller/builders.h"

namespace splitwise::controller {

inline constexpr const char* kReady = "Ready";
inline constexpr const char* kProgressing = "Progressing";
inline constexpr const char* kDegraded = "Degraded";
inline constexpr const char* kKvTransportReady = "KVTransportReady";
inline constexpr const char* kScalingLimited = "ScalingLimited";

// Degraded reasons: a person must tell capacity problems from crashes from bad specs.
inline constexpr const char* kReasonInvalidSpec = "InvalidSpec";
inline constexpr const char* kReasonInsufficientCapacity = "InsufficientCapacity";
inline constexpr const char* kReasonCrashLooping = "CrashLooping";
inline constexpr const char* kReasonAsExpected = "AsExpected";

// A container restarted this often counts as crashing even between CrashLoopBackOff waits.
inline constexpr int kCrashRestartThreshold = 5;

struct Condition {
  std::string type;
  std::string status;  // "True", "False", "Unknown"
  std::string reason;
  std::string message;
};

// One pool ("prompt", "token", "mixed") or the router: its Deployment as last read from
// the server (null when absent) and its pods.
struct ComponentObservation {
  std::string name;
  int desired = 0;  // replicas the spec asks for
  Json deployment;
  std::vector<Json> pods;
};

struct StatusInput {
  int64_t generation = 0;  // metadata.generation of the cluster
  ClusterRef ref;
  ClusterSpec spec;
  std::vector<ComponentObservation> components;  // pools in spec order, then the router
  Json current;                                  // the object's .status now; null when it has none
  std::string now;  // RFC 3339, stamped on conditions whose status changes
};

// What the pods of one component say about capacity and crashes.
struct PodDiagnosis {
  int pending = 0;
  std::vector<std::string> unschedulable;  // "pod <name>: <scheduler message>"
  std::vector<std::string> crashing;       // "pod <name> container <c>: CrashLoopBackOff, ..."
};
PodDiagnosis diagnose_pods(const std::vector<Json>& pods);

struct ComputedStatus {
  Json status;                // the whole .status to write (fields others own are kept)
  bool progressing = false;   // a Deployment is rolling out
  bool pods_pending = false;  // some pod waits for a node
  Condition degraded;         // as set in `status`, for the reconciler's events
};
ComputedStatus compute_status(const StatusInput& in);

// Status for a spec that fails validation: Ready=False and Degraded=True with reason
// InvalidSpec and a message naming every bad field; pool counts are left as they were.
Json invalid_spec_status(const Json& current, int64_t generation,
                         const std::vector<FieldError>& errors, const std::string& now);
std::string invalid_spec_message(const std::vector<FieldError>& errors);

// Sets `c` in a conditions array (added when absent). lastTransitionTime moves to `now`
// only when the status changes; observedGeneration is always `generation`.
Json set_condition(Json conditions, const Condition& c, int64_t generation, const std::string& now);
// The condition of `type` in status.conditions, or nullptr.
const Json* find_condition(const Json& status, const std::string& type);

// "ready/desired", e.g. "2/3".
std::string ready_fraction(int ready, int desired);
// The current time as RFC 3339 in UTC, second precision (what metav1.Time serializes).
std::string rfc3339_now();

}  // namespace splitwise::controller
