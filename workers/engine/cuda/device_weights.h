// Model weights in GPU memory, in the CUDA runner's storage type. Same row-major [out, in]
// layout and fused QKV / gate-up matrices as the CPU backend (workers/engine/weights.h).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.cuh"
#include "workers/engine/model_config.h"
#include "workers/engine/status.h"
#include "workers/engine/weights.h"

namespace splitwise::engine::cuda {

using kernels::cuda::DType;

struct DeviceLayer {
  void* attn_norm = nullptr;  // [hidden]
  void* wqkv = nullptr;       // [q_dim + 2 * kv_dim, hidden]
  void* wo = nullptr;         // [hidden, q_dim]
  void* ffn_norm = nullptr;   // [hidden]
  void* w_gate_up = nullptr;  // [2 * intermediate, hidden]
  void* w_down = nullptr;     // [hidden, intermediate]
};

class DeviceWeights {
 public:
  // Copies host weights to GPU `device` (current device), converting to `dtype`.
  static Result<std::unique_ptr<DeviceWeights>> upload(const ModelWeights& weights, DType dtype);
  // Random weights of `config`'s shapes, made on the GPU (benchmarks: no host copy of an
  // 8B-parameter model). Scaled like a trained model's (about 1/sqrt(fan-in)), so
  // activations stay in range; never zeros.
  static Result<std::unique_ptr<DeviceWeights>> random(const ModelConfig& config, DType dtype,
                                                       uint64_t seed);

  const ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return bytes_; }

  void* embed = nullptr;  // [vocab, hidden]
  std::vector<DeviceLayer> layers;
  void* final_norm = nullptr;  // [hidden]
  void* lm_head = nullptr;     // [vocab, hidden] (the embedding when tied)

 private:
  DeviceWeights(const ModelConfig& config, DType dtype) : config_(config), dtype_(dtype) {}
  // Allocates every tensor in one buffer; fails with a readable message when the GPU lacks
  // the memory.
  Status allocate(bool tied);

  ModelConfig config_;
  DType dtype_;
  size_t bytes_ = 0;
  kernels::cuda::DeviceBuffer storage_;
};

}  // namespace splitwise::engine::cuda
