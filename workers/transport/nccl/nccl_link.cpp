#include "workers/transport/nccl/nccl_link.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <thread>

#include "workers/transport/nccl/cuda_util.h"

namespace splitwise::transport::nccl {

using Clock = std::chrono::steady_clock;

void prepare_nccl_env() { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); }

Status nccl_usable(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    return Status::error(std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")");
  }
  if (n == 0) return Status::error("no CUDA device");
  if (device < 0 || device >= n) {
    return Status::error("GPU " + std::to_string(device) + " not present (" + std::to_string(n) +
                         " visible)");
  }
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return Status::error("NCCL library unusable");
  return Status();
}

void LinkTracker::add() {
  std::lock_guard lock(mu_);
  ++live_;
}

void LinkTracker::remove() {
  {
    std::lock_guard lock(mu_);
    --live_;
  }
  cv_.notify_all();
}

bool LinkTracker::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return live_ == 0; });
}

NcclLink::NcclLink(Role role, int device, std::string peer, std::shared_ptr<LinkTracker> tracker)
    : role_(role), device_(device), peer_(std::move(peer)), tracker_(std::move(tracker)) {
  if (tracker_) tracker_->add();
}

NcclLink::~NcclLink() {
  // Runs after the link's thread let go (it holds a reference), so nothing else uses the
  // communicator: abort it if still alive, then wait out the streams and free everything.
  if (comm_ != nullptr && !comm_aborted_) ncclCommAbort(comm_);
  if (parent_ != nullptr) ncclCommAbort(parent_);
  if (stage_ != nullptr || xfer_ != nullptr) {
    DeviceGuard guard(device_);
    for (cudaStream_t s : {stage_, xfer_}) {
      if (s != nullptr) cudaStreamSynchronize(s);
    }
    for (void* p : ring_) {
      if (p != nullptr) cudaFree(p);
    }
    if (warm_ != nullptr) cudaFree(warm_);
    for (cudaEvent_t e : staged_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    for (cudaEvent_t e : moved_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    for (cudaEvent_t e : all_events_) cudaEventDestroy(e);
    for (cudaStream_t s : {stage_, xfer_}) {
      if (s != nullptr) cudaStreamDestroy(s);
    }
  }
  if (tracker_) tracker_->remove();
}

void NcclLink::start(const ncclUniqueId& id, std::chrono::milliseconds timeout,
                     std::function<void(Status)> ready) {
  ready_ = std::move(ready);
  // Detached: the thread owns a reference, so the link (and its communicator) outlives it
  // however the owners let go, and no owner ever blocks joining a slow abort.
  std::thread([self = shared_from_this(), id, timeout] { self->run(id, timeout); }).detach();
}

void NcclLink::abort(const std::string& why) {
  fail(why);
  {
    std::lock_guard lock(signal_mu_);
    if (abort_requested_) return;
    abort_requested_ = true;
    abort_reason_ = why;
  }
  signal_cv_.notify_all();
}

bool NcclLink::abort_requested() {
  std::lock_guard lock(signal_mu_);
  return abort_requested_;
}

std::string NcclLink::failure() const {
  std::lock_guard lock(failure_mu_);
  return failure_;
}

void NcclLink::fail(const std::string& why) {
  {
    std::lock_guard lock(failure_mu_);
    if (failure_.empty()) failure_ = why;
  }
  failed_ = true;
}

void NcclLink::run(ncclUniqueId id, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Status st = cuda_status(cudaSetDevice(device_), "selecting GPU " + std::to_string(device_));
  if (st.ok()) st = create_resources();
  if (st.ok()) st = create_comm(id, deadline);
  if (st.ok()) st = warm_up(deadline);
  if (st.ok() && abort_requested()) st = Status::error("aborted while setting up");
  if (st.ok()) {
    up_ = true;
  } else {
    fail(st.message());
  }
  auto ready = std::move(ready_);
  if (ready) ready(st);
  if (st.ok()) {
    std::unique_lock lock(signal_mu_);
    signal_cv_.wait(lock, [&] { return abort_requested_; });
  }
  // Failed set-up or asked to: end the communicator here, off every caller's thread.
  std::lock_guard lock(mu_);
  if (comm_ != nullptr && !comm_aborted_) {
    ncclCommAbort(comm_);
    comm_aborted_ = true;
  }
  if (parent_ != nullptr) ncclCommAbort(parent_);
  parent_ = nullptr;
}

Status NcclLink::create_resources() {
  std::lock_guard lock(mu_);
  SW_RETURN_IF_ERROR(
      cuda_status(cudaStreamCreateWithFlags(&stage_, cudaStreamNonBlocking), "creating a stream"));
  SW_RETURN_IF_ERROR(
      cuda_status(cudaStreamCreateWithFlags(&xfer_, cudaStreamNonBlocking), "creating a stream"));
  for (int s = 0; s < kSlots; ++s) {
    SW_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&staged_[s], cudaEventDisableTiming),
                                   "creating an event"));
    SW_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&moved_[s], cudaEventDisableTiming),
                                   "creating an event"));
  }
  return cuda_status(cudaMalloc(&warm_, 16), "allocating the warm-up buffer");
}

Status NcclLink::create_comm(const ncclUniqueId& id, Clock::time_point deadline) {
  prepare_nccl_env();
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so that a peer that never joins costs a timeout, not a hang
  std::lock_guard lock(mu_);
  ncclComm_t& parent = parent_;
  ncclResult_t r = ncclCommInitRankConfig(&parent, 2, id, static_cast<int>(role_), &config);
  const auto give_up = [&](Status why) {
    if (parent != nullptr) ncclCommAbort(parent);
    parent = nullptr;
    return why;
  };
  if (r != ncclSuccess && r != ncclInProgress) {
    return give_up(nccl_status(r, parent, "ncclCommInitRankConfig"));
  }
  while (true) {
    ncclResult_t state = ncclInProgress;
    r = ncclCommGetAsyncError(parent, &state);
    if (r != ncclSuccess) return give_up(nccl_status(r, parent, "ncclCommGetAsyncError"));
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) {
      return give_up(nccl_status(state, parent, "creating the communicator"));
    }
    if (Clock::now() > deadline) {
      return give_up(Status::error("creating the communicator timed out (the peer never joined)"));
    }
    if (abort_requested()) return give_up(Status::error("aborted while creating the communicator"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // On a non-blocking communicator every ncclSend/ncclRecv returns ncclInProgress and
  // completes on a thread NCCL starts for it (~200 us per layer on the engine thread,
  // measured). So a child split off with a blocking config carries the data; the split
  // itself runs in the parent's non-blocking mode, under the same deadline. The parent
  // stays, idle, until the link ends (aborting it while the child lives is not something
  // NCCL documents as safe).
  ncclConfig_t blocking = NCCL_CONFIG_INITIALIZER;
  blocking.blocking = 1;
  // The split runs as a job of the parent's (non-blocking) group: it returns at once, and
  // NCCL stores the child into comm_ (a member, so it outlives this frame) only once the
  // job has finished, which the parent's async state reports.
  comm_ = nullptr;
  r = ncclCommSplit(parent, 0, static_cast<int>(role_), &comm_, &blocking);
  while (r == ncclSuccess || r == ncclInProgress) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(parent, &state);
    r = q != ncclSuccess ? q : state;
    if (r != ncclInProgress) break;
    // Aborting the parent also ends the child's set-up (NCCL links their abort flags).
    if (Clock::now() > deadline) {
      return give_up(Status::error("splitting the communicator timed out"));
    }
    if (abort_requested()) return give_up(Status::error("aborted while splitting"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (r != ncclSuccess || comm_ == nullptr) {
    Status why = r != ncclSuccess ? nccl_status(r, parent, "ncclCommSplit")
                                  : Status::error("ncclCommSplit made no communicator");
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    return give_up(why);
  }
  return Status();
}

Status NcclLink::settle(ncclResult_t r, const std::string& what, Clock::time_point deadline) {
  while (r == ncclInProgress) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) return nccl_status(q, comm_, what);
    if (state != ncclInProgress) {
      r = state;
      break;
    }
    if (Clock::now() > deadline) return Status::error(what + ": timed out");
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return nccl_status(r, comm_, what);
}

// NCCL connects a peer's channels lazily, at its first send/receive. Doing that here, on
// the link's thread, means no send on the engine thread ever waits for connection set-up.
Status NcclLink::warm_up(Clock::time_point deadline) {
  cudaEvent_t done = nullptr;
  {
    std::lock_guard lock(mu_);
    const ncclResult_t r = role_ == Role::kSender ? ncclSend(warm_, 1, ncclUint8, 1, comm_, xfer_)
                                                  : ncclRecv(warm_, 1, ncclUint8, 0, comm_, xfer_);
    SW_RETURN_IF_ERROR(settle(r, "warm-up exchange", deadline));
    done = take_event();
    SW_RETURN_IF_ERROR(cuda_status(cudaEventRecord(done, xfer_), "recording an event"));
  }
  while (true) {
    const cudaError_t e = cudaEventQuery(done);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) return cuda_status(e, "warm-up exchange");
    if (Clock::now() > deadline) return Status::error("warm-up exchange timed out");
    if (abort_requested()) return Status::error("aborted during the warm-up exchange");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  recycle(done);
  return Status();
}

Status NcclLink::ensure_slot(int slot, uint64_t bytes, cudaStream_t stream) {
  if (ring_bytes_[slot] >= bytes) return Status();
  // Powers of two: a ring grows a handful of times over a worker's life, never per layer.
  uint64_t want = 1 << 20;
  while (want < bytes) want *= 2;
  if (ring_[slot] != nullptr) SW_CUDA_CHECK(cudaFreeAsync(ring_[slot], stream));
  ring_[slot] = nullptr;
  ring_bytes_[slot] = 0;
  SW_RETURN_IF_ERROR(cuda_status(cudaMallocAsync(&ring_[slot], want, stream),
                                 "allocating " + std::to_string(want) + " bytes of staging"));
  ring_bytes_[slot] = want;
  return Status();
}

cudaEvent_t NcclLink::take_event() {
  std::lock_guard lock(events_mu_);
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  SW_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  all_events_.push_back(e);
  return e;
}

void NcclLink::recycle(cudaEvent_t event) {
  std::lock_guard lock(events_mu_);
  free_events_.push_back(event);
}

Result<cudaEvent_t> NcclLink::send(const LayerBlocks& blocks, uint32_t half_block_bytes) {
  std::lock_guard lock(mu_);
  if (!up_ || failed_) return Status::error("NCCL link to " + peer_ + " is down: " + failure());
  DeviceGuard guard(device_);
  const uint32_t n = static_cast<uint32_t>(blocks.k_blocks.size());
  const uint64_t bytes = uint64_t{n} * 2 * half_block_bytes;
  const int slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % kSlots;
  // Reuse ring[slot] only once its previous send has left it.
  SW_CUDA_CHECK(cudaStreamWaitEvent(stage_, moved_[slot], 0));
  if (Status st = ensure_slot(slot, bytes, stage_); !st.ok()) return st;
  if (blocks.ready_event != nullptr) {
    SW_CUDA_CHECK(cudaStreamWaitEvent(stage_, static_cast<cudaEvent_t>(blocks.ready_event), 0));
  }
  addrs_.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    addrs_[i] = {const_cast<std::byte*>(blocks.k_blocks[i]),
                 const_cast<std::byte*>(blocks.v_blocks[i])};
  }
  kv_gather(addrs_.data(), n, half_block_bytes, ring_[slot], stage_);
  SW_CUDA_CHECK(cudaEventRecord(staged_[slot], stage_));
  SW_CUDA_CHECK(cudaStreamWaitEvent(xfer_, staged_[slot], 0));
  const Status st = settle(ncclSend(ring_[slot], bytes, ncclUint8, 1, comm_, xfer_), "ncclSend",
                           Clock::now() + std::chrono::seconds(20));
  if (!st.ok()) {
    fail(st.message());
    return st;
  }
  SW_CUDA_CHECK(cudaEventRecord(moved_[slot], xfer_));
  cudaEvent_t done = take_event();
  SW_CUDA_CHECK(cudaEventRecord(done, xfer_));
  return done;
}

Result<cudaEvent_t> NcclLink::receive(uint64_t bytes,
                                      std::span<const KvSink::Destination> destinations,
                                      uint32_t half_block_bytes) {
  std::lock_guard lock(mu_);
  if (!up_ || failed_) return Status::error("NCCL link from " + peer_ + " is down: " + failure());
  DeviceGuard guard(device_);
  const int slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % kSlots;
  // Receive into ring[slot] only once the previous scatter out of it has finished.
  SW_CUDA_CHECK(cudaStreamWaitEvent(xfer_, staged_[slot], 0));
  if (Status st = ensure_slot(slot, bytes, xfer_); !st.ok()) return st;
  const Status st = settle(ncclRecv(ring_[slot], bytes, ncclUint8, 0, comm_, xfer_), "ncclRecv",
                           Clock::now() + std::chrono::seconds(20));
  if (!st.ok()) {
    fail(st.message());
    return st;
  }
  SW_CUDA_CHECK(cudaEventRecord(moved_[slot], xfer_));
  SW_CUDA_CHECK(cudaStreamWaitEvent(stage_, moved_[slot], 0));
  const uint32_t n = static_cast<uint32_t>(destinations.size());
  addrs_.resize(n);
  for (uint32_t i = 0; i < n; ++i) addrs_[i] = {destinations[i].k, destinations[i].v};
  kv_scatter(ring_[slot], addrs_.data(), n, half_block_bytes, stage_);
  SW_CUDA_CHECK(cudaEventRecord(staged_[slot], stage_));
  cudaEvent_t done = take_event();
  SW_CUDA_CHECK(cudaEventRecord(done, stage_));
  return done;
}

}  // namespace splitwise::transport::nccl
