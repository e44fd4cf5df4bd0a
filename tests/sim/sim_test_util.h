// Synthetic models, machines and clusters for the simulator's tests: numbers chosen so
// that every expected time can be worked out by hand from the formulas in the comments.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "sim/cluster_sim.h"
#include "sim/perf_model.h"
#include "sim/trace.h"

namespace splitwise::sim::simtest {

// KV bytes per token of toy_model(): K and V x 10 layers x 1 head x 64 dims x 2 bytes.
inline constexpr double kToyKvBytes = 2 * 10 * 1 * 64 * 2;  // 2560
inline constexpr double kToyLayers = 10;
inline constexpr double kToyOverheadS = 0.005;

// No weights, so a machine's whole HBM is KV: capacity is exact and easy to choose.
inline ModelSpec toy_model() { return ModelSpec{"toy", 0, 10, 1, 64, 2}; }

// One GPU holding exactly `kv_tokens` tokens of toy KV (with kv_memory_fraction 1).
inline MachineSpec toy_machine(int64_t kv_tokens, double link_bytes_per_s = 1e9) {
  MachineSpec m;
  m.name = "toy";
  m.hardware = "toy-gpu";
  m.gpus = 1;
  m.hbm_bytes_per_gpu = static_cast<double>(kv_tokens) * kToyKvBytes;
  m.hbm_bandwidth_per_gpu = 1e12;
  m.link_bandwidth = link_bytes_per_s;
  m.kv_handoff_overhead_s = kToyOverheadS;
  m.cost_per_hour = 10;
  m.power = 5;
  m.gpu_type = "TOY";
  return m;
}

// prompt_ms(x) = 10 + 0.01 x (x >= 0); decode_ms(b, ctx) = 20 + kv_ms_per_token * ctx
// for any batch b (measured at reference context 0, so KV reads are all "extra").
inline std::shared_ptr<const PerfModel> toy_perf(double kv_ms_per_token = 0) {
  return std::make_shared<const PerfModel>(Curve({{0, 10}, {1000, 20}}), Curve({{1, 20}}), 0,
                                           kv_ms_per_token);
}
inline double toy_prompt_s(int tokens) { return (10 + 0.01 * tokens) / 1e3; }
inline constexpr double kToyDecodeS = 0.020;

// Pools in order: prompt (machines 0..prompt-1), then token machines.
inline ClusterSpec split_spec(int prompt, int token, int64_t kv_tokens, double link = 1e9,
                              double kv_ms_per_token = 0) {
  ClusterSpec spec;
  spec.model = toy_model();
  spec.kv_memory_fraction = 1.0;
  auto perf = toy_perf(kv_ms_per_token);
  spec.pools.push_back({"prompt", Role::kPrompt, toy_machine(kv_tokens, link), perf, prompt});
  spec.pools.push_back({"token", Role::kToken, toy_machine(kv_tokens, link), perf, token});
  return spec;
}

inline ClusterSpec mixed_spec(int machines, int64_t kv_tokens) {
  ClusterSpec spec;
  spec.model = toy_model();
  spec.kv_memory_fraction = 1.0;
  spec.pools.push_back({"mixed", Role::kMixed, toy_machine(kv_tokens), toy_perf(), machines});
  return spec;
}

inline Request req(double arrival_s, int prompt, int output) {
  return Request{arrival_s, prompt, output};
}

}  // namespace splitwise::sim::simtest
