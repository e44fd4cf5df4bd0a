#include "workers/transport/nccl/cuda_device_copier.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "workers/transport/nccl/cuda_util.h"
#include "workers/transport/nccl/kv_pack.cuh"

namespace splitwise::transport::nccl {

struct CudaDeviceCopier::Impl {
  // One GPU, one direction: the copies of one lane run in order on its stream, so its one
  // device staging buffer is never overwritten while a copy still reads it.
  struct Lane {
    int device = 0;
    std::mutex mu;  // guards everything below
    cudaStream_t stream = nullptr;
    void* staging = nullptr;
    uint64_t staging_bytes = 0;
    std::vector<KvBlockAddr> addrs;
    std::vector<cudaEvent_t> free_events;
    std::vector<cudaEvent_t> all_events;
  };

  struct Pinned {
    std::byte* data = nullptr;
    size_t capacity = 0;
  };

  explicit Impl(size_t limit) : pinned_limit(limit) {}

  ~Impl() {
    for (auto& [key, lane] : lanes) {
      DeviceGuard guard(lane->device);
      cudaStreamSynchronize(lane->stream);
      if (lane->staging != nullptr) cudaFree(lane->staging);
      for (cudaEvent_t e : lane->all_events) cudaEventDestroy(e);
      cudaStreamDestroy(lane->stream);
    }
    for (auto& [bytes, p] : free_pinned) cudaFreeHost(p);
  }

  Result<Lane*> lane(int device, bool to_host) {
    std::lock_guard lock(mu);
    std::unique_ptr<Lane>& l = lanes[{device, to_host}];
    if (!l) {
      auto fresh = std::make_unique<Lane>();
      fresh->device = device;
      DeviceGuard guard(device);
      SW_RETURN_IF_ERROR(cuda_status(
          cudaStreamCreateWithFlags(&fresh->stream, cudaStreamNonBlocking), "creating a stream"));
      l = std::move(fresh);
    }
    return l.get();
  }

  // Caller holds lane.mu and has lane.device current.
  static Status ensure_staging(Lane& lane, uint64_t bytes) {
    if (lane.staging_bytes >= bytes) return Status();
    uint64_t want = 1 << 20;
    while (want < bytes) want *= 2;
    if (lane.staging != nullptr) SW_CUDA_CHECK(cudaFreeAsync(lane.staging, lane.stream));
    lane.staging = nullptr;
    lane.staging_bytes = 0;
    SW_RETURN_IF_ERROR(cuda_status(cudaMallocAsync(&lane.staging, want, lane.stream),
                                   "allocating device staging"));
    lane.staging_bytes = want;
    return Status();
  }

  // Caller holds lane.mu and has lane.device current.
  static cudaEvent_t take_event(Lane& lane) {
    if (!lane.free_events.empty()) {
      cudaEvent_t e = lane.free_events.back();
      lane.free_events.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    SW_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    lane.all_events.push_back(e);
    return e;
  }

  // A pooled page-locked buffer of at least `bytes`; a new one only if `grow` or the pool
  // stays within its limit. {nullptr, 0} when none.
  Pinned take_pinned(size_t bytes, bool grow) {
    size_t want = 1 << 16;
    while (want < bytes) want *= 2;
    {
      std::lock_guard lock(mu);
      auto it = free_pinned.lower_bound(bytes);
      if (it != free_pinned.end()) {
        const Pinned out{it->second, it->first};
        free_pinned.erase(it);
        return out;
      }
      if (!grow && pinned_total + want > pinned_limit) return {};
      pinned_total += want;
    }
    void* p = nullptr;
    if (cudaHostAlloc(&p, want, cudaHostAllocPortable) != cudaSuccess) {
      std::lock_guard lock(mu);
      pinned_total -= want;
      return {};
    }
    return {static_cast<std::byte*>(p), want};
  }
  void give_pinned(const Pinned& p) {
    std::lock_guard lock(mu);
    free_pinned.emplace(p.capacity, p.data);
  }

  // Enqueues pack + copy of `addrs` into `into` on the lane's stream, then records `done`.
  // Caller holds lane.mu and has lane.device current.
  static Status enqueue_copy(Lane& lane, const std::vector<KvBlockAddr>& addrs, uint32_t half,
                             std::byte* into, cudaEvent_t done) {
    const uint64_t bytes = uint64_t{addrs.size()} * 2 * half;
    SW_RETURN_IF_ERROR(ensure_staging(lane, bytes));
    kv_gather(addrs.data(), static_cast<uint32_t>(addrs.size()), half, lane.staging, lane.stream);
    if (bytes > 0) {
      SW_CUDA_CHECK(
          cudaMemcpyAsync(into, lane.staging, bytes, cudaMemcpyDeviceToHost, lane.stream));
    }
    SW_CUDA_CHECK(cudaEventRecord(done, lane.stream));
    return Status();
  }

  // One layer on its way to the host. Eager: its copy is already enqueued. Deferred: only
  // the wait for the runner's event is; wait() enqueues the copy (the transport thread,
  // just before the write), into a buffer it takes then.
  class Copy final : public DeviceCopier::HostCopy {
   public:
    Copy(std::shared_ptr<Impl> owner, Lane* lane, uint32_t half, uint64_t size, cudaEvent_t done,
         Pinned pinned, std::vector<KvBlockAddr> deferred)
        : owner_(std::move(owner)),
          lane_(lane),
          half_(half),
          size_(size),
          done_(done),
          pinned_(pinned),
          deferred_(std::move(deferred)) {}
    ~Copy() override {
      // The buffer goes back to the pool only once the GPU has stopped writing it.
      cudaEventSynchronize(done_);
      {
        std::lock_guard lock(lane_->mu);
        lane_->free_events.push_back(done_);
      }
      if (pinned_.data != nullptr) owner_->give_pinned(pinned_);
    }
    Status wait() override {
      if (pinned_.data == nullptr && size_ > 0) {
        pinned_ = owner_->take_pinned(size_, /*grow=*/true);
        if (pinned_.data == nullptr) return Status::error("no page-locked host memory");
        std::lock_guard lock(lane_->mu);
        DeviceGuard guard(lane_->device);
        SW_RETURN_IF_ERROR(enqueue_copy(*lane_, deferred_, half_, pinned_.data, done_));
      }
      return cuda_status(cudaEventSynchronize(done_), "device to host copy");
    }
    const std::byte* data() const override { return pinned_.data; }
    uint64_t size() const override { return size_; }

   private:
    std::shared_ptr<Impl> owner_;
    Lane* lane_;
    uint32_t half_;
    uint64_t size_;
    cudaEvent_t done_;
    Pinned pinned_;
    std::vector<KvBlockAddr> deferred_;
  };

  const size_t pinned_limit;
  std::mutex mu;  // guards lanes (the map, not the lanes), free_pinned and pinned_total
  std::map<std::pair<int, bool>, std::unique_ptr<Lane>> lanes;
  std::multimap<size_t, std::byte*> free_pinned;
  size_t pinned_total = 0;  // bytes of page-locked staging made, pooled or in use
};

CudaDeviceCopier::CudaDeviceCopier(size_t pinned_limit_bytes)
    : impl_(std::make_shared<Impl>(pinned_limit_bytes)) {}

CudaDeviceCopier::~CudaDeviceCopier() = default;

Result<std::unique_ptr<DeviceCopier::HostCopy>> CudaDeviceCopier::copy_to_host(
    const LayerBlocks& blocks, uint32_t half_block_bytes) {
  if (blocks.memory != MemoryKind::kDevice || blocks.device < 0) {
    return Status::error("copy_to_host needs blocks in device memory with a device");
  }
  Result<Impl::Lane*> lane_or = impl_->lane(blocks.device, /*to_host=*/true);
  if (!lane_or.ok()) return lane_or.status();
  Impl::Lane& lane = **lane_or;
  const uint32_t n = static_cast<uint32_t>(blocks.k_blocks.size());
  const uint64_t bytes = uint64_t{n} * 2 * half_block_bytes;
  std::vector<KvBlockAddr> addrs(n);
  for (uint32_t i = 0; i < n; ++i) {
    addrs[i] = {const_cast<std::byte*>(blocks.k_blocks[i]),
                const_cast<std::byte*>(blocks.v_blocks[i])};
  }
  const Impl::Pinned pinned = impl_->take_pinned(bytes, /*grow=*/false);
  std::lock_guard lock(lane.mu);
  DeviceGuard guard(lane.device);
  // Everything later on this stream (now or in a deferred wait()) runs after the layer's
  // KV is written; the runner may record its event again once this returns.
  if (blocks.ready_event != nullptr) {
    SW_CUDA_CHECK(
        cudaStreamWaitEvent(lane.stream, static_cast<cudaEvent_t>(blocks.ready_event), 0));
  }
  cudaEvent_t done = Impl::take_event(lane);
  if (pinned.data == nullptr) {  // over the pinned limit: copied when its write comes
    SW_CUDA_CHECK(cudaEventRecord(done, lane.stream));
    return std::unique_ptr<HostCopy>(std::make_unique<Impl::Copy>(
        impl_, &lane, half_block_bytes, bytes, done, Impl::Pinned{}, std::move(addrs)));
  }
  if (Status st = Impl::enqueue_copy(lane, addrs, half_block_bytes, pinned.data, done); !st.ok()) {
    SW_CUDA_CHECK(cudaEventRecord(done, lane.stream));
    lane.free_events.push_back(done);
    impl_->give_pinned(pinned);
    return st;
  }
  return std::unique_ptr<HostCopy>(std::make_unique<Impl::Copy>(
      impl_, &lane, half_block_bytes, bytes, done, pinned, std::vector<KvBlockAddr>{}));
}

std::byte* CudaDeviceCopier::alloc_host(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) return nullptr;
  return static_cast<std::byte*>(p);
}

void CudaDeviceCopier::free_host(std::byte* p) { cudaFreeHost(p); }

Status CudaDeviceCopier::copy_to_device(int device,
                                        std::span<const KvSink::Destination> destinations,
                                        uint32_t half_block_bytes, const std::byte* src) {
  Result<Impl::Lane*> lane_or = impl_->lane(device, /*to_host=*/false);
  if (!lane_or.ok()) return lane_or.status();
  Impl::Lane& lane = **lane_or;
  const uint32_t n = static_cast<uint32_t>(destinations.size());
  const uint64_t bytes = uint64_t{n} * 2 * half_block_bytes;
  if (bytes == 0) return Status();
  std::lock_guard lock(lane.mu);
  DeviceGuard guard(lane.device);
  SW_RETURN_IF_ERROR(Impl::ensure_staging(lane, bytes));
  SW_CUDA_CHECK(cudaMemcpyAsync(lane.staging, src, bytes, cudaMemcpyHostToDevice, lane.stream));
  lane.addrs.resize(n);
  for (uint32_t i = 0; i < n; ++i) lane.addrs[i] = {destinations[i].k, destinations[i].v};
  kv_scatter(lane.staging, lane.addrs.data(), n, half_block_bytes, lane.stream);
  // Synchronous by contract: the receiver tells the sink only once the bytes are there.
  return cuda_status(cudaStreamSynchronize(lane.stream), "host to device copy");
}

}  // namespace splitwise::transport::nccl
