// TcpKvReceiver: the token worker's end. One io_context thread owns the listener, every
// session and every sink call. A frame moves through: header -> validate -> payload into
// the session's staging buffer -> CRC -> all destinations looked up -> copy -> sink. Bytes
// reach the sink's memory only at the copy, after every check has passed. An OUT_OF_BAND
// LAYER has no payload here: the link receives it, and its sink call waits in the session's
// delivery queue, which keeps every sink call in frame order.
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "workers/transport/kv_frame.h"
#include "workers/transport/tcp_kv_transport.h"

namespace splitwise::transport {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Receive buffer of one session: page-locked (from the copier) when the sink's memory is
// on a GPU, so the copy there runs at bus speed; plain memory otherwise.
class Staging {
 public:
  explicit Staging(DeviceCopier* pinned_from) : copier_(pinned_from) {}
  ~Staging() { release(); }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  std::byte* data() { return copier_ ? pinned_ : plain_.data(); }
  // Grows to at least `bytes`; false when page-locked memory cannot be had.
  bool reserve(size_t bytes) {
    if (!copier_) {
      if (plain_.size() < bytes) plain_.resize(bytes);
      return true;
    }
    if (capacity_ >= bytes) return true;
    release();
    pinned_ = copier_->alloc_host(bytes);
    capacity_ = pinned_ ? bytes : 0;
    return pinned_ != nullptr;
  }

 private:
  void release() {
    if (pinned_) copier_->free_host(pinned_);
    pinned_ = nullptr;
    capacity_ = 0;
  }
  DeviceCopier* const copier_;
  std::vector<std::byte> plain_;
  std::byte* pinned_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace

struct TcpKvReceiver::Impl {
  // A sink call waiting for its turn: frames' effects reach the sink in frame order.
  struct Delivery {
    enum Kind { kLayer, kDone, kAbort, kRejected } kind = kLayer;
    FrameHeader header;
    bool ready = true;  // false while an out-of-band payload is in flight
    bool out_of_band = false;
    std::string reject_reason;  // kRejected, or an out-of-band LAYER that had nowhere to go
    Status landed;              // out-of-band: how the link's receive ended
  };

  struct Session {
    Session(tcp::socket s, ConnectionId i, DeviceCopier* pinned_from)
        : socket(std::move(s)), id(i), staging(pinned_from) {
      error_code ec;
      const tcp::endpoint remote = socket.remote_endpoint(ec);
      peer = ec ? std::string("unknown peer")
                : remote.address().to_string() + ":" + std::to_string(remote.port());
    }
    tcp::socket socket;
    const ConnectionId id;
    std::string peer;
    EncodedHeader header_bytes{};
    FrameHeader header;
    // Reused across frames: a layer's payload is the same size every time, so after the
    // first frame there is no allocation per layer.
    Staging staging;
    std::vector<KvSink::Destination> destinations;
    std::deque<Delivery> deliveries;  // front first
    bool closed = false;
    bool hello_seen = false;
    bool link_accepted = false;
    std::deque<std::vector<std::byte>> replies;  // ACCEPT / REFUSE frames to write
    bool writing = false;
  };
  using SessionPtr = std::shared_ptr<Session>;

  // Lets a link report a landed payload from any thread, and makes reports that come after
  // stop() go nowhere instead of into a dead io_context.
  struct Gate {
    std::mutex mu;
    Impl* impl = nullptr;  // guarded by mu; null once stopped
  };

  Impl(KvLayout l, KvSink* s, std::string h, uint16_t p, TcpReceiverOptions o)
      : layout(l),
        sink(s),
        host(std::move(h)),
        requested_port(p),
        options(o),
        sink_memory(s->memory()),
        sink_device(s->device()),
        retry_timer(io) {}

  const KvLayout layout;
  KvSink* const sink;
  const std::string host;
  const uint16_t requested_port;
  const TcpReceiverOptions options;
  const MemoryKind sink_memory;
  const int sink_device;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  asio::steady_timer retry_timer;  // backs off accept() errors such as EMFILE
  std::thread thread;
  std::mutex mu;               // serialises start() and stop()
  bool running = false;        // guarded by mu
  std::shared_ptr<Gate> gate;  // replaced at each start()
  std::atomic<uint16_t> bound_port{0};
  bool stopping = false;             // receiver thread only (set before it starts)
  std::set<SessionPtr> sessions;     // receiver thread only
  ConnectionId next_connection = 1;  // receiver thread only
  // Out-of-band layers whose payload is still being written, by sequence number, and the
  // post()ed functions waiting for those before them. Receiver thread only.
  uint64_t next_seq = 1;
  std::set<uint64_t> in_flight;
  std::deque<std::pair<uint64_t, std::function<void()>>> barriers;
  std::atomic<uint64_t> frames_received{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> frames_rejected{0};
  std::atomic<uint64_t> out_of_band_frames{0};
  std::atomic<uint64_t> links_accepted{0};
  std::atomic<uint64_t> links_refused{0};

  DeviceCopier* pinned_source() const {
    return sink_memory == MemoryKind::kDevice ? options.copier : nullptr;
  }

  void accept() {
    acceptor->async_accept([this](error_code ec, tcp::socket socket) {
      if (stopping) return;
      if (ec) {
        spdlog::warn("KV receiver on port {}: accept failed: {}", bound_port.load(), ec.message());
        retry_timer.expires_after(std::chrono::milliseconds(100));
        retry_timer.async_wait([this](error_code ec) {
          if (!ec && !stopping) accept();
        });
        return;
      }
      auto session =
          std::make_shared<Session>(std::move(socket), next_connection++, pinned_source());
      sessions.insert(session);
      read_header(session);
      accept();
    });
  }

  void read_header(const SessionPtr& s) {
    asio::async_read(s->socket, asio::buffer(s->header_bytes), [this, s](error_code ec, size_t n) {
      bytes_received.fetch_add(n);
      if (stopping || s->closed) return;
      if (ec) {
        // Nothing read: the peer went away between frames, which loses nothing.
        if (n == 0) return close(s);
        return reject(s, 0,
                      "truncated frame header: " + std::to_string(n) + " of " +
                          std::to_string(kFrameHeaderBytes) + " bytes (" + ec.message() + ")",
                      /*close_connection=*/true);
      }
      Result<FrameHeader> h = decode_header(s->header_bytes);
      if (!h.ok()) return reject(s, 0, h.status().message(), true);
      s->header = *h;
      // The request id is trustworthy here (the header CRC passed), so name it.
      if (!(h->layout == layout)) return reject(s, h->request, mismatch(h->layout), true);
      read_payload(s);
    });
  }

  std::string mismatch(const KvLayout& peer) const {
    if (peer.format != layout.format) {
      return std::string("KV format mismatch: peer sends ") + kv_format_name(peer.format) +
             ", this worker holds " + kv_format_name(layout.format) + " (peer " +
             layout_string(peer) + ", here " + layout_string(layout) + ")";
    }
    return "KV layout mismatch: peer sends " + layout_string(peer) + ", this worker holds " +
           layout_string(layout);
  }

  void read_payload(const SessionPtr& s) {
    const uint64_t bytes = s->header.stream_payload_bytes();
    if (bytes == 0) return on_frame(s);
    if (!s->staging.reserve(bytes)) {
      return reject(s, s->header.request,
                    "no page-locked memory for a " + std::to_string(bytes) + "-byte payload", true);
    }
    asio::async_read(s->socket, asio::buffer(s->staging.data(), bytes),
                     [this, s, bytes](error_code ec, size_t n) {
                       bytes_received.fetch_add(n);
                       if (stopping || s->closed) return;
                       if (ec) {
                         return reject(s, s->header.request,
                                       "truncated " + std::string(frame_kind_name(s->header.kind)) +
                                           " payload: " + std::to_string(n) + " of " +
                                           std::to_string(bytes) + " bytes (" + ec.message() + ")",
                                       true);
                       }
                       on_frame(s);
                     });
  }

  void on_frame(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    const uint64_t bytes = h.stream_payload_bytes();
    const uint32_t crc = bytes == 0 ? 0 : crc32c(std::span(s->staging.data(), bytes));
    if (crc != h.payload_crc) return reject(s, h.request, "payload checksum mismatch", true);
    Delivery d;
    d.header = h;
    switch (h.kind) {
      case FrameKind::kLayer:
        if (h.out_of_band()) {
          if (!start_out_of_band(s)) return;  // rejected and closed
          break;
        }
        if (std::string why = deliver_layer(s); !why.empty()) {
          reject(s, h.request, why, false);
          break;
        }
        push(s, std::move(d));
        break;
      case FrameKind::kDone:
        d.kind = Delivery::kDone;
        push(s, std::move(d));
        break;
      case FrameKind::kAbort:
        d.kind = Delivery::kAbort;
        push(s, std::move(d));
        break;
      case FrameKind::kHello:
        if (!on_hello(s)) return;
        break;
      case FrameKind::kAccept:
      case FrameKind::kRefuse:
        return reject(
            s, 0, std::string("a sender sent ") + frame_kind_name(h.kind) + " (only receivers do)",
            true);
    }
    read_header(s);
  }

  // All destinations first, then all copies: a frame whose last block has nowhere to go
  // must not have written its first. The stream stays in sync (the payload was consumed),
  // so the connection stays open. Returns why the frame is rejected, or "".
  std::string deliver_layer(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    if (std::string why = resolve_destinations(s); !why.empty()) return why;
    const size_t half = h.half_block_bytes;
    const std::byte* src = s->staging.data();
    if (sink_memory == MemoryKind::kDevice) {
      // start() made sure there is a copier.
      Status st =
          options.copier->copy_to_device(sink_device, s->destinations, h.half_block_bytes, src);
      return st.ok() ? "" : "copy to device failed: " + st.message();
    }
    for (const KvSink::Destination& d : s->destinations) {
      std::memcpy(d.k, src, half);
      std::memcpy(d.v, src + half, half);
      src += 2 * half;
    }
    return "";
  }

  std::string resolve_destinations(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    s->destinations.clear();
    for (uint32_t i = 0; i < h.num_blocks; ++i) {
      std::optional<KvSink::Destination> d =
          sink->destination(h.request, h.layer, h.first_block + i);
      if (!d || d->k == nullptr || d->v == nullptr) {
        s->destinations.clear();
        return "no destination for block index " + std::to_string(h.first_block + i) +
               " of layer " + std::to_string(h.layer) + " (request not reserved here?)";
      }
      s->destinations.push_back(*d);
    }
    return "";
  }

  // An OUT_OF_BAND LAYER: the link receives it; the sink hears of it once it has landed.
  bool start_out_of_band(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    if (!s->link_accepted || options.links == nullptr) {
      reject(s, h.request, "out-of-band LAYER on a connection without an accepted link", true);
      return false;
    }
    Delivery d;
    d.header = h;
    d.out_of_band = true;
    d.ready = false;
    // With nowhere to go the payload is still received (the sender's send must be matched)
    // and dropped; the frame is then rejected in its turn.
    d.reject_reason = resolve_destinations(s);
    const uint64_t seq = next_seq++;
    in_flight.insert(seq);
    push(s, std::move(d));
    Delivery* slot = &s->deliveries.back();  // deque: stays put while others are appended
    auto g = gate;
    options.links->receive_layer(s->id, h, s->destinations, [g, s, slot, seq](Status st) {
      std::lock_guard lock(g->mu);
      if (g->impl == nullptr) return;
      Impl* impl = g->impl;
      asio::post(impl->io, [impl, s, slot, seq, st = std::move(st)]() mutable {
        impl->on_landed(s, slot, seq, std::move(st));
      });
    });
    return true;
  }

  void on_landed(const SessionPtr& s, Delivery* d, uint64_t seq, Status st) {
    d->ready = true;
    d->landed = std::move(st);
    in_flight.erase(seq);
    pump(s);
    run_barriers();
  }

  bool on_hello(const SessionPtr& s) {
    if (s->hello_seen) {
      reject(s, 0, "second HELLO on one connection", true);
      return false;
    }
    s->hello_seen = true;
    Status answer = Status::error("this receiver takes no NCCL link");
    if (options.links != nullptr) {
      answer = options.links->on_hello(
          s->id, s->peer,
          std::span<const std::byte, kHelloPayloadBytes>(s->staging.data(), kHelloPayloadBytes));
    }
    FrameHeader reply;
    reply.layout = layout;
    std::vector<std::byte> reason;
    if (answer.ok()) {
      reply.kind = FrameKind::kAccept;
      s->link_accepted = true;
      links_accepted.fetch_add(1);
    } else {
      reply.kind = FrameKind::kRefuse;
      const std::string& m = answer.message();
      const size_t n = std::min(m.size(), kMaxRefuseReasonBytes);
      reason.resize(n);
      std::memcpy(reason.data(), m.data(), n);
      links_refused.fetch_add(1);
      spdlog::info("KV receiver: refused a NCCL link from {}: {}", s->peer, m);
    }
    reply.payload_bytes = reason.size();
    reply.payload_crc = crc32c(reason);
    const EncodedHeader header = encode_header(reply);
    std::vector<std::byte> bytes(header.begin(), header.end());
    bytes.insert(bytes.end(), reason.begin(), reason.end());
    s->replies.push_back(std::move(bytes));
    write_replies(s);
    return true;
  }

  void write_replies(const SessionPtr& s) {
    if (s->writing || s->replies.empty() || s->closed) return;
    s->writing = true;
    asio::async_write(s->socket, asio::buffer(s->replies.front()),
                      [this, s](error_code ec, size_t) {
                        s->writing = false;
                        s->replies.pop_front();
                        if (stopping || s->closed) return;
                        // A sender that cannot hear us has gone; its reads will tell the rest.
                        if (ec) return close(s);
                        write_replies(s);
                      });
  }

  void push(const SessionPtr& s, Delivery d) {
    s->deliveries.push_back(std::move(d));
    pump(s);
  }

  // Hands the sink every delivery at the front whose bytes are in place.
  void pump(const SessionPtr& s) {
    while (!s->deliveries.empty() && s->deliveries.front().ready) {
      Delivery d = std::move(s->deliveries.front());
      s->deliveries.pop_front();
      deliver(s, d);
    }
  }

  void deliver(const SessionPtr& s, const Delivery& d) {
    const FrameHeader& h = d.header;
    switch (d.kind) {
      case Delivery::kLayer:
        if (d.out_of_band && !d.landed.ok()) {
          // The link broke: what reached the blocks is unknown, and the stream of headers
          // no longer pairs with the link, so the connection goes too.
          return reject_now(s, h.request, "out-of-band payload lost: " + d.landed.message(), true);
        }
        if (!d.reject_reason.empty()) return reject_now(s, h.request, d.reject_reason, false);
        frames_received.fetch_add(1);
        if (d.out_of_band) out_of_band_frames.fetch_add(1);
        sink->on_layer(h.request, h.layer, h.first_block, h.num_blocks, h.payload_bytes);
        return;
      case Delivery::kDone:
        frames_received.fetch_add(1);
        sink->on_done(h.request, h.first_token);
        return;
      case Delivery::kAbort:
        frames_received.fetch_add(1);
        sink->on_abort(h.request);
        return;
      case Delivery::kRejected:
        frames_rejected.fetch_add(1);
        sink->on_rejected(h.request, d.reject_reason);
        return;
    }
  }

  // Queues the rejection behind the frames before it (a sink that frees blocks on a
  // rejection must not do so while an earlier layer still writes them) and, for a corrupt
  // stream, which cannot be resynchronised safely, drops the connection now.
  void reject(const SessionPtr& s, RequestId request, const std::string& reason,
              bool close_connection) {
    const std::string full = reason + " (from " + s->peer + ")";
    spdlog::warn("KV frame rejected, request {}: {}{}", request, full,
                 close_connection ? "; closing connection" : "");
    Delivery d;
    d.kind = Delivery::kRejected;
    d.header.request = request;
    d.reject_reason = full;
    push(s, std::move(d));
    if (close_connection) close(s);
  }

  // For a delivery already at the front (pump): the sink hears of it at once.
  void reject_now(const SessionPtr& s, RequestId request, const std::string& reason,
                  bool close_connection) {
    const std::string full = reason + " (from " + s->peer + ")";
    spdlog::warn("KV frame rejected, request {}: {}{}", request, full,
                 close_connection ? "; closing connection" : "");
    frames_rejected.fetch_add(1);
    sink->on_rejected(request, full);
    if (close_connection) close(s);
  }

  void close(const SessionPtr& s) {
    if (s->closed) return;
    s->closed = true;
    error_code ignored;
    s->socket.shutdown(tcp::socket::shutdown_both, ignored);
    s->socket.close(ignored);
    sessions.erase(s);
    // Layers in flight on the link still land (or fail) and are delivered in their turn.
    if (s->link_accepted && options.links != nullptr) options.links->on_closed(s->id);
  }

  void run_barriers() {
    const uint64_t oldest = in_flight.empty() ? UINT64_MAX : *in_flight.begin();
    while (!barriers.empty() && barriers.front().first <= oldest) {
      auto fn = std::move(barriers.front().second);
      barriers.pop_front();
      fn();
    }
  }

  void shutdown() {
    stopping = true;
    error_code ignored;
    acceptor->close(ignored);
    retry_timer.cancel();
    auto all = std::move(sessions);
    sessions.clear();
    for (const SessionPtr& s : all) {
      s->closed = true;
      s->socket.close(ignored);
      if (s->link_accepted && options.links != nullptr) options.links->on_closed(s->id);
    }
    barriers.clear();
  }
};

TcpKvReceiver::TcpKvReceiver(KvLayout layout, KvSink* sink, std::string host, uint16_t port,
                             TcpReceiverOptions options)
    : impl_(std::make_unique<Impl>(layout, sink, std::move(host), port, options)) {}

TcpKvReceiver::~TcpKvReceiver() { stop(); }

Status TcpKvReceiver::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.running) return Status();
  if (m.sink_memory == MemoryKind::kDevice && m.options.copier == nullptr) {
    return Status::error(
        "KV receiver: the sink's blocks are in device memory, but no "
        "DeviceCopier was given");
  }
  const std::string where = m.host + ":" + std::to_string(m.requested_port);
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(m.host, ec);
  if (ec) return Status::error("KV receiver: listen address '" + m.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, m.requested_port);
  m.acceptor.emplace(m.io);
  // reuse_address: a restarted worker can rebind while old connections sit in TIME_WAIT.
  m.acceptor->open(endpoint.protocol(), ec);
  if (!ec) m.acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(endpoint, ec);
  if (!ec) m.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    m.acceptor.reset();
    return Status::error("KV receiver: listening on " + where + ": " + ec.message());
  }
  m.bound_port = m.acceptor->local_endpoint(ec).port();
  m.io.restart();
  m.stopping = false;
  m.gate = std::make_shared<Impl::Gate>();
  m.gate->impl = &m;
  m.work.emplace(m.io.get_executor());
  m.accept();
  m.thread = std::thread([io = &m.io] { io->run(); });
  m.running = true;
  return Status();
}

void TcpKvReceiver::stop() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (!m.running) return;
  m.running = false;
  asio::post(m.io, [impl = impl_.get()] { impl->shutdown(); });
  m.work.reset();
  m.thread.join();
  m.acceptor.reset();
  {
    std::lock_guard gate_lock(m.gate->mu);
    m.gate->impl = nullptr;
  }
}

uint16_t TcpKvReceiver::port() const { return impl_->bound_port.load(); }

void TcpKvReceiver::post(std::function<void()> fn) {
  asio::post(impl_->io, [impl = impl_.get(), fn = std::move(fn)]() mutable {
    if (impl->in_flight.empty()) return fn();
    impl->barriers.emplace_back(impl->next_seq, std::move(fn));
  });
}

ReceiverStats TcpKvReceiver::stats() const {
  return {impl_->frames_received.load(), impl_->bytes_received.load(),
          impl_->frames_rejected.load(), impl_->out_of_band_frames.load(),
          impl_->links_accepted.load(),  impl_->links_refused.load()};
}

}  // namespace splitwise::transport
