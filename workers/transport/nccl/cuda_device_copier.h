// The CUDA DeviceCopier: device KV to and from page-locked host staging for the TCP
// transport (the fallback when no NCCL link can be had). Per GPU and direction it keeps a
// copy stream and a device staging buffer; a layer's blocks are packed into that buffer by
// one kernel launch (kv_pack.cuh) and moved by one cudaMemcpyAsync, instead of one small
// copy per block on the engine thread.
#pragma once

#include <memory>

#include "workers/transport/device_copier.h"

namespace splitwise::transport::nccl {

class CudaDeviceCopier final : public DeviceCopier {
 public:
  // Page-locked staging kept for copies to the host. Up to this much, a layer is copied
  // as soon as send_layer() hands it over; past it (the network is slower than the
  // engine), the copy waits until the transport is about to write that layer, so a slow
  // peer costs no more pinned memory than this. Page-locking is slow (~1 ms per 8 MiB),
  // and the pool keeps what it made.
  static constexpr size_t kDefaultPinnedLimit = size_t{256} << 20;

  // Makes no CUDA call until first used, so it can be built where there is no GPU.
  explicit CudaDeviceCopier(size_t pinned_limit_bytes = kDefaultPinnedLimit);
  ~CudaDeviceCopier() override;
  CudaDeviceCopier(const CudaDeviceCopier&) = delete;
  CudaDeviceCopier& operator=(const CudaDeviceCopier&) = delete;

  // Engine thread: enqueues the wait for blocks.ready_event on the copy stream of
  // blocks.device and, within the pinned limit, the pack and copy into pooled page-locked
  // memory; returns at once.
  Result<std::unique_ptr<HostCopy>> copy_to_host(const LayerBlocks& blocks,
                                                 uint32_t half_block_bytes) override;
  std::byte* alloc_host(size_t bytes) override;
  void free_host(std::byte* p) override;
  Status copy_to_device(int device, std::span<const KvSink::Destination> destinations,
                        uint32_t half_block_bytes, const std::byte* src) override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with HostCopy objects that outlive a call
};

}  // namespace splitwise::transport::nccl
