// KV handoff GPU to GPU over NCCL, with the TCP transport as control stream and fallback.
//
// Per peer (token worker endpoint) the sender keeps one TCP connection. Its first frame is
// a HELLO with a fresh ncclUniqueId; a receiver that has a GPU, a device-memory sink and a
// working NCCL answers ACCEPT, and both ends create a two-rank communicator on their own
// threads (non-blocking, at most init_timeout). Until the link is up, and for good if it
// never comes up (no GPU, refused, timeout, error), a layer travels as an ordinary TCP
// frame with its payload, device memory staged through CudaDeviceCopier; the sender logs
// one warning per peer saying why. Once up, send_layer() on the engine thread enqueues,
// behind the layer's ready_event: a gather of its blocks into a staging ring, ncclSend on
// the peer's own streams (a slow peer stalls no other), and posts the LAYER header (marked
// OUT_OF_BAND) to the TCP thread in the same order as the sends, since NCCL pairs sends
// and receives in order. The receiver, on each such header, looks up the destinations,
// enqueues ncclRecv and a scatter into the blocks, and tells the sink once they are done;
// DONE and ABORT wait behind layers still in flight.
//
// Completions: a NCCL layer's completion runs once its header has been written and its
// GPU work (gather and send) has finished, on the sender's TCP or poller thread. The
// LayerBlocks memory must stay valid until then (the KvSender contract).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "workers/transport/tcp_kv_transport.h"

namespace splitwise::transport::nccl {

// How KV to one peer travels.
enum class LinkKind {
  kNone,     // no connection yet
  kPending,  // HELLO sent or communicator being made: layers go over TCP meanwhile
  kNccl,     // device layers go over NCCL
  kTcp,      // fell back (or NCCL is off): every layer goes over TCP
};
const char* link_kind_name(LinkKind kind);

struct LinkInfo {
  LinkKind kind = LinkKind::kNone;
  std::string reason;  // kTcp: why NCCL is not used
};

struct NcclSenderOptions {
  int device = 0;        // the GPU of the KV cache; LayerBlocks of another GPU go over TCP
  bool use_nccl = true;  // false: TCP only (device KV still staged by the copier), no warning
  std::chrono::milliseconds init_timeout{20000};
  std::chrono::milliseconds connect_timeout{5000};
  // Page-locked staging for layers that go over TCP (see CudaDeviceCopier).
  size_t pinned_staging_bytes = size_t{256} << 20;
};

struct NcclSenderStats {
  SenderStats tcp;           // the control connection and TCP frames
  uint64_t nccl_layers = 0;  // layers whose payload went over NCCL
  uint64_t nccl_bytes = 0;
  uint64_t tcp_layers = 0;  // layers whose payload went over TCP (fallback, link not up yet)
  uint64_t tcp_bytes = 0;
  uint64_t links_up = 0;   // communicators made
  uint64_t fallbacks = 0;  // times a peer was put on TCP (refused, set-up failed, broke)
};

class NcclKvSender final : public KvSender {
 public:
  NcclKvSender(KvLayout layout, NcclSenderOptions options = {});
  ~NcclKvSender() override;  // stop()s
  NcclKvSender(const NcclKvSender&) = delete;
  NcclKvSender& operator=(const NcclKvSender&) = delete;

  // Checks once whether this process can use NCCL at all (GPU, library); if not, logs one
  // warning and sends everything over TCP.
  void start();
  // Fails queued frames, aborts every link (ending sends still on the GPU) and waits for
  // their completions. Not from a completion callback.
  void stop();

  // Opens the connection to `to` and starts its NCCL set-up now rather than at the first
  // send, so that the first request's layers can already take the link.
  void connect(const Endpoint& to);

  void send_layer(const Endpoint& to, LayerBlocks blocks, Completion done) override;
  void send_done(const Endpoint& to, RequestId request, int32_t first_token,
                 Completion done) override;
  void send_abort(const Endpoint& to, RequestId request, Completion done) override;

  LinkInfo link(const Endpoint& to) const;
  // Waits until `to`'s link is decided (kNccl or kTcp), at most `timeout`.
  LinkInfo wait_for_link(const Endpoint& to, std::chrono::milliseconds timeout) const;
  // Why NCCL is off for every peer; "" when it may be used.
  std::string disabled_reason() const;
  NcclSenderStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct NcclReceiverOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 0;        // 0 picks a free one (see port())
  bool accept_nccl = true;  // false: refuse every HELLO (TCP only)
  std::chrono::milliseconds init_timeout{20000};
};

struct NcclReceiverStats {
  ReceiverStats tcp;         // frames_received includes NCCL layers
  uint64_t nccl_layers = 0;  // layers received over NCCL
  uint64_t nccl_bytes = 0;
  uint64_t links_up = 0;
  uint64_t links_failed = 0;  // accepted, but the communicator never came up
};

// The token worker's end: a TcpKvReceiver that accepts NCCL links when the sink's memory is
// on a GPU (KvSink::memory() == kDevice, on GPU sink->device()), and copies TCP payloads to
// the device otherwise. Sink calls come from the receiver's one thread, as with TCP.
class NcclKvReceiver {
 public:
  // `sink` must outlive the receiver.
  NcclKvReceiver(KvLayout layout, KvSink* sink, NcclReceiverOptions options = {});
  ~NcclKvReceiver();  // stop()s
  NcclKvReceiver(const NcclKvReceiver&) = delete;
  NcclKvReceiver& operator=(const NcclKvReceiver&) = delete;

  Status start();
  // Closes every connection, aborts every link, and returns once no GPU write into the
  // sink's memory is in flight. Not from a sink callback.
  void stop();

  uint16_t port() const;
  // As TcpKvReceiver::post: `fn` runs once no write into the sink's memory that began
  // before the post (NCCL layers included) is still going on.
  void post(std::function<void()> fn);
  NcclReceiverStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::transport::nccl
