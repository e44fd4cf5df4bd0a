// KV handoff over TCP (Boost.Asio), in the frame format of kv_frame.h. Each end runs its
// own io_context on its own thread, so neither the prompt worker's engine thread nor the
// token worker's decode loop ever blocks on the network.
//
// Delivery contract: a send's completion reports Status::ok once the whole frame has been
// handed to the kernel, not once the peer has written it. A failure names the endpoint.
// A connection that fails (refused, reset, timed out) fails every frame queued on it and is
// forgotten; the next send to that endpoint connects afresh, once. Frames of a request
// that were queued before a failure and after it may thus go down different connections;
// a prompt worker that sees a failed layer should abort the request rather than go on.
//
// KV in device memory (LayerBlocks::memory, KvSink::memory() == kDevice) goes through
// page-locked host staging by way of a DeviceCopier, which must then be given. A
// PeerLinkInitiator / PeerLinkAcceptor (peer_link.h) adds a second data path, negotiated on
// the connection itself; without one, a sender offers none and a receiver refuses HELLOs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "workers/engine/status.h"
#include "workers/transport/device_copier.h"
#include "workers/transport/kv_transport.h"
#include "workers/transport/peer_link.h"

namespace splitwise::transport {

struct SenderStats {
  uint64_t frames_sent = 0;  // LAYER, DONE, ABORT (HELLO is not counted)
  uint64_t bytes_sent = 0;   // headers + payloads, HELLO included
  uint64_t send_failures = 0;
  uint64_t out_of_band_frames = 0;  // LAYER headers whose payload went over a link
};

struct ReceiverStats {
  uint64_t frames_received = 0;  // frames delivered to the sink (LAYER, DONE, ABORT)
  uint64_t bytes_received = 0;   // every byte read off the network, rejected frames too
  uint64_t frames_rejected = 0;
  uint64_t out_of_band_frames = 0;  // LAYERs delivered whose payload came over a link
  uint64_t links_accepted = 0;      // HELLOs answered with ACCEPT
  uint64_t links_refused = 0;       // HELLOs answered with REFUSE
};

struct TcpSenderOptions {
  // Without a bound, a SYN to a host that vanished waits out the kernel's ~2 minutes.
  std::chrono::milliseconds connect_timeout{5000};
  // Copies LayerBlocks in device memory to host staging; without one they fail. Not owned.
  DeviceCopier* copier = nullptr;
  // Offers a link (HELLO) on every new connection. Not owned.
  PeerLinkInitiator* link = nullptr;
};

// The header of a LAYER whose payload travels over a connection's link.
struct OutOfBandLayer {
  RequestId request = 0;
  uint32_t layer = 0;
  uint32_t first_block = 0;
  uint32_t num_blocks = 0;
};

struct TcpReceiverOptions {
  // Copies payloads into a sink whose memory() is kDevice; start() fails without one when
  // the sink needs it. Not owned.
  DeviceCopier* copier = nullptr;
  // Decides on HELLOs and receives OUT_OF_BAND payloads; without one, every HELLO is
  // refused. Not owned.
  PeerLinkAcceptor* links = nullptr;
};

// One connection per endpoint, made on the first send (or connect()) and reused. Frames to
// one endpoint are written in the order send_* was called. Completions run on the sender's
// thread, except when the sender is not running: then they run at once on the caller's
// thread. A LAYER in device memory is copied to host staging before send_layer() returns
// (its ready_event is consumed then); its completion still waits for the write.
class TcpKvSender final : public KvSender {
 public:
  explicit TcpKvSender(KvLayout layout, TcpSenderOptions options = {});
  ~TcpKvSender() override;  // stop()s
  TcpKvSender(const TcpKvSender&) = delete;
  TcpKvSender& operator=(const TcpKvSender&) = delete;

  void start();
  // Fails every queued frame ("sender stopped"), closes connections, joins the thread.
  // Not from a completion callback: that runs on the thread stop() joins.
  void stop();

  void send_layer(const Endpoint& to, LayerBlocks blocks, Completion done) override;
  void send_done(const Endpoint& to, RequestId request, int32_t first_token,
                 Completion done) override;
  void send_abort(const Endpoint& to, RequestId request, Completion done) override;

  // Opens the connection to `to` (with its HELLO, given a link) without sending a frame.
  void connect(const Endpoint& to);
  // Sends the header of a LAYER whose payload goes over the link of `connection` (see
  // PeerLinkInitiator::hello). Fails, writing nothing, if `to`'s connection is no longer
  // that one: a header must never reach a receiver that has no link to pair it with.
  void send_out_of_band(const Endpoint& to, ConnectionId connection, const OutOfBandLayer& layer,
                        Completion done);

  // Closes `to`'s connection if it still is `connection` (a link on it broke and the
  // receiver must drop its half too); frames queued on it fail with `why`.
  void disconnect(const Endpoint& to, ConnectionId connection, const std::string& why);

  SenderStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Listens for senders and writes their blocks where the sink says. A frame's payload is
// checked in full before any byte reaches the sink's memory, so a rejected frame writes
// nothing. All sink calls come from the receiver's one thread, in each connection's frame
// order: a DONE or ABORT is delivered only after every LAYER before it has landed, also
// one whose payload is still on its way over a link.
class TcpKvReceiver {
 public:
  // `sink` must outlive the receiver. `host` is an address to bind ("0.0.0.0", "::",
  // "127.0.0.1"); port 0 picks a free one (see port()).
  TcpKvReceiver(KvLayout layout, KvSink* sink, std::string host = "0.0.0.0", uint16_t port = 0,
                TcpReceiverOptions options = {});
  ~TcpKvReceiver();  // stop()s
  TcpKvReceiver(const TcpKvReceiver&) = delete;
  TcpKvReceiver& operator=(const TcpKvReceiver&) = delete;

  // Binds and listens, then starts the thread; errors name the address (e.g. in use).
  Status start();
  // Closes the listener and every connection and joins the thread; a frame half-read at
  // that moment is dropped without a sink call. Not from a sink callback (same thread).
  void stop();

  // The bound port (the chosen one when constructed with 0); 0 before start().
  uint16_t port() const;
  ReceiverStats stats() const;

  // Runs `fn` on the receiver's thread between frames, once no write into the sink's
  // memory that began before the post is still going on (a TCP frame is copied within one
  // handler; a link's layers are waited for): the owner may then reuse blocks it withdrew
  // from the sink.
  void post(std::function<void()> fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::transport
