// Small CUDA helpers of the NCCL transport: a scoped current device, and CUDA/NCCL
// results turned into Status where the failure is the environment's (no GPU, no memory,
// peer gone), not a bug. Bugs still go through SW_CUDA_CHECK / SW_NCCL_CHECK.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "kernels/cuda/check.cuh"
#include "workers/engine/status.h"

namespace splitwise::transport::nccl {

// Makes `device` current for a scope and restores the caller's device after, so that a
// transport call on the engine thread leaves the runner's current device as it found it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    SW_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) SW_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

inline Status cuda_status(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status();
  return Status::error(what + ": " + cudaGetErrorString(e));
}

inline Status nccl_status(ncclResult_t r, ncclComm_t comm, const std::string& what) {
  if (r == ncclSuccess) return Status();
  std::string detail = ncclGetErrorString(r);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') detail += " (" + std::string(last) + ")";
  return Status::error(what + ": " + detail);
}

// NVLink multicast (NVLS) stays off unless the environment already says otherwise: the
// lent multi-GPU hosts require it off, and send/recv never uses it. Called before any
// communicator is made; setenv without overwrite, so an operator's choice wins.
void prepare_nccl_env();

// Why NCCL cannot carry KV on GPU `device` in this process (no driver, no such GPU,
// unusable NCCL library), or ok. Cheap: no communicator is made.
Status nccl_usable(int device);

}  // namespace splitwise::transport::nccl
