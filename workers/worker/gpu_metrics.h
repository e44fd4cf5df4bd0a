// GPU utilization, memory, power and energy of the worker's GPUs, read through NVML, as
// splitwise_gpu_* Prometheus metrics.
#pragma once

#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace splitwise::worker {

// NVML is loaded at run time (dlopen), so the worker builds without the CUDA toolkit and
// runs without a driver: with no NVML, update() does nothing and splitwise_gpu_nvml_up is 0,
// so a dashboard can tell "no data" from "zero".
//
// `devices` are NVML indices. NVML numbers GPUs in PCI bus order and ignores
// CUDA_VISIBLE_DEVICES, while CUDA numbers them fastest first: run the worker with
// CUDA_DEVICE_ORDER=PCI_BUS_ID and no CUDA_VISIBLE_DEVICES remapping (or, under
// Kubernetes, let the device plugin expose only the pod's GPUs, which both number from 0)
// for an index to name the same GPU in both.
//
// `registry` must outlive this object: the gauges live in it. Nothing here throws or
// aborts on a missing driver, a bad index or a failed read.
class GpuMetrics {
 public:
  explicit GpuMetrics(prometheus::Registry& registry, std::vector<int> devices,
                      std::string library = "libnvidia-ml.so.1");
  ~GpuMetrics();
  GpuMetrics(const GpuMetrics&) = delete;
  GpuMetrics& operator=(const GpuMetrics&) = delete;

  // True when NVML loaded and every listed GPU was found. When some indices are out of
  // range this is false, yet the GPUs that were found are still read.
  bool available() const;
  // Why available() is false, in words a person can act on; empty when it is true.
  const std::string& unavailable_reason() const;

  // Reads every listed GPU and sets its metrics. `generated_tokens_total` is the worker's
  // cumulative count of generated tokens, for the energy-per-token gauge. Meant to run
  // periodically (each scrape or each second); thread-safe, and safe to run while the
  // registry is being collected.
  void update(int64_t generated_tokens_total);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::worker
