// How the TCP transport moves KV that lives in GPU memory: through page-locked host
// staging, by a copier that knows CUDA. The TCP library itself stays CUDA-free (CPU-only
// workers build it without CUDA); the CUDA implementation is CudaDeviceCopier in
// workers/transport/nccl/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "workers/engine/status.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::transport {

class DeviceCopier {
 public:
  // One layer's bytes on their way from device memory to the host, in wire order
  // ([num_blocks][K | V], each half_block_bytes). Destroying it returns its staging.
  class HostCopy {
   public:
    virtual ~HostCopy() = default;
    // Blocks until the bytes are in host memory (the transport thread calls this just
    // before it checksums and writes them; a copier may start the copy only then). An
    // error means the copy failed.
    virtual Status wait() = 0;
    // Valid once wait() has succeeded.
    virtual const std::byte* data() const = 0;
    virtual uint64_t size() const = 0;
  };

  virtual ~DeviceCopier() = default;

  // Sender, on the caller's (engine) thread: enqueues the copy of `blocks` (kDevice) to
  // host staging behind blocks.ready_event and returns at once. The event has been
  // consumed when this returns, so the runner may record it again.
  virtual Result<std::unique_ptr<HostCopy>> copy_to_host(const LayerBlocks& blocks,
                                                         uint32_t half_block_bytes) = 0;

  // Receiver: page-locked host memory that payloads are read into, so the copy to the
  // device runs at full bus speed. nullptr when none can be had.
  virtual std::byte* alloc_host(size_t bytes) = 0;
  virtual void free_host(std::byte* p) = 0;

  // Receiver, on its thread: copies `src` (wire order) into `destinations`, device memory
  // of GPU `device`, and returns once every byte is there.
  virtual Status copy_to_device(int device, std::span<const KvSink::Destination> destinations,
                                uint32_t half_block_bytes, const std::byte* src) = 0;
};

}  // namespace splitwise::transport
