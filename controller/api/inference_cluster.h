// The InferenceCluster API (splitwise.io/v1alpha1) as C++ values: parsed from the object's
// JSON with the CRD's defaults applied, and validated with the CRD's rules (the operator
// re-checks them: an API server without the CRD's CEL support, or an object written before
// a rule existed, must still end in a condition naming the field, never in bad children).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::controller {

using Json = nlohmann::json;

inline constexpr const char* kGroup = "splitwise.io";
inline constexpr const char* kVersion = "v1alpha1";
inline constexpr const char* kKind = "InferenceCluster";

struct ModelSpec {
  std::string name;       // served model id
  std::string path;       // inside the volume
  std::string pvc;        // claim name, or
  std::string host_path;  // a node directory
};

struct PoolSpec {
  int replicas = 1;
  std::optional<int> min_replicas, max_replicas;
  std::string gpu_type;  // "" when only a nodeSelector places the pool
  int gpus_per_worker = 1;
  std::map<std::string, std::string> node_selector;
  Json affinity;     // null when absent
  Json tolerations;  // null when absent
  Json resources;    // null when absent
  std::string dtype = "bf16";
  int max_batch_tokens = 2048;
  int max_num_seqs = 256;
  std::optional<int> kv_cache_mb;

  bool on_gpu() const { return gpu_type != "CPU"; }
};

struct RouterSpec {
  int replicas = 1;
  std::string service_type = "ClusterIP";
  int port = 8000;
};

struct SloSpec {
  std::optional<double> ttft_seconds, tbt_seconds, e2e_seconds;
};

struct ClusterSpec {
  std::string image;
  ModelSpec model;
  std::map<std::string, PoolSpec> pools;  // "prompt", "token", "mixed" (present ones only)
  RouterSpec router;
  std::string kv_transfer = "tcp";
  SloSpec slo;
  Json autoscaling;  // kept as given
};

// A rule the spec breaks, with the field's path (e.g. "spec.pools.prompt.maxReplicas").
struct FieldError {
  std::string field;
  std::string message;
  std::string str() const { return field + ": " + message; }
};

// Reads `spec` (the object's .spec) with defaults applied. Wrong JSON types and unknown
// pool names are FieldErrors too, so one call reports everything at once.
struct ParsedSpec {
  ClusterSpec spec;
  std::vector<FieldError> errors;
};
ParsedSpec parse_spec(const Json& spec);

// The CRD's rules (CEL and schema) plus what the operator itself needs (e.g. NCCL needs
// GPU pools). Empty when the spec is valid.
std::vector<FieldError> validate(const ClusterSpec& spec);

// Values of the nvidia.com/gpu.product node label that a gpuType matches (GPU feature
// discovery's names); empty for CPU or an unknown type.
std::vector<std::string> gpu_product_labels(const std::string& gpu_type);
const std::vector<std::string>& known_gpu_types();

}  // namespace splitwise::controller
