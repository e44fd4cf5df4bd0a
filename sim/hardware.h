// What the simulator and planner know about models and machines: KV bytes per token
// (grouped-query attention included), weight bytes, and per-machine memory, bandwidth,
// cost and power. Figures for the paper's machines are from ../shared/data/README.md
// (cost, power) and the vendors' datasheets (memory, HBM and network bandwidth).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::sim {

struct ModelSpec {
  std::string name;   // as in perf_model.csv's `model` column
  double params = 0;  // parameters
  int layers = 0;
  int kv_heads = 0;  // grouped-query attention: fewer KV heads than query heads
  int head_dim = 0;
  int bytes_per_element = 2;  // fp16 / bf16 weights and KV

  double kv_bytes_per_token() const {
    return 2.0 * layers * kv_heads * head_dim * bytes_per_element;  // K and V
  }
  double weight_bytes() const { return params * bytes_per_element; }
};

// llama2-70b (GQA, 8 KV heads) and bloom-176b (MHA, 112 heads); error names the known.
Result<ModelSpec> model_spec(const std::string& name);

struct MachineSpec {
  std::string name;      // "a100", "h100", "h100cap"
  std::string hardware;  // perf_model.csv's `hardware` column
  int gpus = 8;
  double hbm_bytes_per_gpu = 80e9;
  double hbm_bandwidth_per_gpu = 0;  // bytes/s
  double link_bandwidth = 0;         // bytes/s out of (or into) one machine, for KV handoff
  // What a layer-wise KV handoff adds after the last layer's bytes have left (per-layer
  // synchronisation and the final layer's latency): the paper measured about 5 ms of
  // non-overlapped transfer on H100 and 8 ms on A100 machines.
  double kv_handoff_overhead_s = 0;
  double cost_per_hour = 0;  // $ per machine-hour
  double power = 0;          // the paper's power units per machine (DGX)
  double gpu_kw = 0;         // board power per GPU (datasheet; capped: 70%), for kW budgets
  // The GPU type an InferenceCluster pool names for it (spec.pools.*.gpuType).
  std::string gpu_type;
};

// "a100" (DGX-A100), "h100" (DGX-H100), "h100cap" (DGX-H100 capped at 70% power).
Result<MachineSpec> machine_spec(const std::string& name);
std::vector<std::string> machine_names();

}  // namespace splitwise::sim
