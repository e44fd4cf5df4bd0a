// One NCCL link: a two-rank communicator (sender rank 0, receiver rank 1) tied to one TCP
// control connection, with its streams, staging ring and events. Both transports use it.
//
// Threads: the link's own thread creates the communicator (non-blocking, polled against a
// deadline, aborted past it), splits a blocking child off it for the data (on a
// non-blocking communicator every send costs a NCCL helper thread), runs a warm-up
// exchange, reports, then waits to be told to abort. Never the engine thread. send()/receive() run
// on the caller's thread (the engine thread, the receiver's thread) and only enqueue work. The
// thread holds a reference to the link, so a link lives until its thread has finished with the
// communicator.
//
// Per layer, on the sending side (the receiving side mirrors it):
//   stage stream:  wait ready_event, wait moved[slot] -> gather into ring[slot] -> staged[slot]
//   xfer stream:   wait staged[slot] -> ncclSend(ring[slot]) -> moved[slot], done event
// Two slots let the gather of layer L+1 run while layer L is on the wire, so a layer costs
// max(gather, transfer) rather than their sum.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "workers/engine/status.h"
#include "workers/transport/kv_transport.h"
#include "workers/transport/nccl/kv_pack.cuh"

namespace splitwise::transport::nccl {

// Counts live links so that an owner can wait, at stop(), for every link thread to have
// let go of its communicator before the process moves on.
class LinkTracker {
 public:
  void add();
  void remove();
  // True once no link is alive, false after `timeout`.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int live_ = 0;  // guarded by mu_
};

class NcclLink : public std::enable_shared_from_this<NcclLink> {
 public:
  enum class Role { kSender = 0, kReceiver = 1 };  // = NCCL rank
  static constexpr int kSlots = 2;

  // `peer` names the other end in messages. Makes no CUDA call.
  NcclLink(Role role, int device, std::string peer, std::shared_ptr<LinkTracker> tracker);
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // Starts the link's thread: communicator, warm-up, then `ready(status)` on that thread.
  // `ready` must not drop the caller's last reference to the link.
  void start(const ncclUniqueId& id, std::chrono::milliseconds timeout,
             std::function<void(Status)> ready);
  // Any thread, any time: the link is done for; its thread aborts the communicator, which
  // ends every send/receive still on the GPU (their done events then complete).
  void abort(const std::string& why);

  bool up() const { return up_.load(); }
  bool failed() const { return failed_.load(); }
  std::string failure() const;
  int device() const { return device_; }
  const std::string& peer() const { return peer_; }

  // Sender, one caller at a time (NcclKvSender holds its peer's lock): packs `blocks` and
  // sends them; returns an event recorded after the send, to watch and then recycle(). The
  // ready_event has been waited on (enqueued) when this returns.
  Result<cudaEvent_t> send(const LayerBlocks& blocks, uint32_t half_block_bytes);
  // Receiver, one caller at a time: receives `bytes` and scatters them into `destinations`
  // (empty: received and dropped). Returns the event recorded after the scatter.
  Result<cudaEvent_t> receive(uint64_t bytes, std::span<const KvSink::Destination> destinations,
                              uint32_t half_block_bytes);
  void recycle(cudaEvent_t event);

 private:
  void run(ncclUniqueId id, std::chrono::milliseconds timeout);
  Status create_comm(const ncclUniqueId& id, std::chrono::steady_clock::time_point deadline);
  Status create_resources();
  Status warm_up(std::chrono::steady_clock::time_point deadline);
  // Waits out an ncclInProgress (the data communicator is blocking, so this only guards
  // against one that is not). Caller holds mu_.
  Status settle(ncclResult_t r, const std::string& what,
                std::chrono::steady_clock::time_point deadline);
  Status ensure_slot(int slot, uint64_t bytes, cudaStream_t stream);
  void fail(const std::string& why);
  bool abort_requested();
  cudaEvent_t take_event();

  const Role role_;
  const int device_;
  const std::string peer_;
  const std::shared_ptr<LinkTracker> tracker_;
  std::function<void(Status)> ready_;  // link thread only

  std::atomic<bool> up_{false};
  std::atomic<bool> failed_{false};
  mutable std::mutex failure_mu_;
  std::string failure_;  // guarded by failure_mu_

  std::mutex signal_mu_;
  std::condition_variable signal_cv_;
  bool abort_requested_ = false;  // guarded by signal_mu_
  std::string abort_reason_;      // guarded by signal_mu_

  // Communicator and GPU resources: created on the link thread before up_, then used under
  // mu_ (send/receive/abort never overlap; NCCL calls on one communicator must not).
  std::mutex mu_;
  ncclComm_t parent_ = nullptr;  // non-blocking, made first (deadline); idle once split
  ncclComm_t comm_ = nullptr;    // blocking, split off the parent: carries the data
  bool comm_aborted_ = false;
  cudaStream_t stage_ = nullptr;  // gather (sender) or scatter (receiver)
  cudaStream_t xfer_ = nullptr;   // ncclSend / ncclRecv
  std::array<void*, kSlots> ring_{};
  std::array<uint64_t, kSlots> ring_bytes_{};
  std::array<cudaEvent_t, kSlots> staged_{};  // ring[slot] packed (sender) / unpacked (receiver)
  std::array<cudaEvent_t, kSlots> moved_{};   // ring[slot] sent (sender) / received (receiver)
  int next_slot_ = 0;
  void* warm_ = nullptr;
  std::vector<KvBlockAddr> addrs_;  // reused per layer
  std::mutex events_mu_;
  std::vector<cudaEvent_t> free_events_;  // guarded by events_mu_
  std::vector<cudaEvent_t> all_events_;   // guarded by events_mu_
};

}  // namespace splitwise::transport::nccl
