// Extension points through which a second data path (NCCL, in workers/transport/nccl/)
// rides on the TCP transport's connections: the TCP connection stays the control stream
// (HELLO/ACCEPT/REFUSE set-up, every header, DONE and ABORT, in order) while LAYER
// payloads marked OUT_OF_BAND travel over the link. A link lives and dies with its
// connection. This header needs no CUDA.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "workers/engine/status.h"
#include "workers/transport/kv_frame.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::transport {

// Identifies one TCP connection for its lifetime; never reused within a process.
using ConnectionId = uint64_t;
using HelloPayload = std::array<std::byte, kHelloPayloadBytes>;

// Sender side. Every call comes from the TcpKvSender's thread and must not block long.
class PeerLinkInitiator {
 public:
  virtual ~PeerLinkInitiator() = default;
  // A new connection to `to` is being opened: the HELLO to send first, or nullopt to offer
  // no link (the connection then carries plain frames only).
  virtual std::optional<HelloPayload> hello(const Endpoint& to, ConnectionId connection) = 0;
  // The receiver's answer to that HELLO: ok for ACCEPT, else REFUSE's reason.
  virtual void on_reply(const Endpoint& to, ConnectionId connection, const Status& reply) = 0;
  // The connection failed or the sender stopped (after a HELLO was sent): its link must go,
  // and any send still in flight on it must end (NCCL: abort the communicator).
  virtual void on_closed(const Endpoint& to, ConnectionId connection, const Status& why) = 0;
};

// Receiver side. Every call comes from the TcpKvReceiver's thread.
class PeerLinkAcceptor {
 public:
  // Reports that an out-of-band payload is in place (ok) or will never be (error). May be
  // called from any thread, exactly once per receive_layer().
  using Landed = std::function<void(Status)>;

  virtual ~PeerLinkAcceptor() = default;
  // A HELLO on `connection` from `peer` (for messages), whose layout already matched ours:
  // ok sends ACCEPT (the link is then being set up), an error sends REFUSE with its text.
  virtual Status on_hello(ConnectionId connection, const std::string& peer,
                          std::span<const std::byte, kHelloPayloadBytes> hello) = 0;
  // An OUT_OF_BAND LAYER `header` on an accepted connection: receive its payload
  // (header.payload_bytes, wire order) into `destinations`, or receive and drop it when
  // `destinations` is empty (the sender's send must still be matched). Links deliver in
  // the order receive_layer() was called.
  virtual void receive_layer(ConnectionId connection, const FrameHeader& header,
                             std::span<const KvSink::Destination> destinations, Landed landed) = 0;
  // `connection` closed. Layers still in flight on its link must still report `landed`
  // (an error is fine), and nothing may write into their destinations afterwards.
  virtual void on_closed(ConnectionId connection) = 0;
};

}  // namespace splitwise::transport
