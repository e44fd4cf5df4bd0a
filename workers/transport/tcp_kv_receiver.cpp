// TcpKvReceiver: the token worker's end. One io_context thread owns the listener, every
// session and every sink call. A frame moves through: header -> validate -> payload into
// the session's staging buffer -> CRC -> all destinations looked up -> copy -> sink. Bytes
// reach the sink's memory only at the copy, after every check has passed.
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <cstring>
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

struct TcpKvReceiver::Impl {
  struct Session {
    explicit Session(tcp::socket s) : socket(std::move(s)) {
      error_code ec;
      const tcp::endpoint remote = socket.remote_endpoint(ec);
      peer = ec ? std::string("unknown peer")
                : remote.address().to_string() + ":" + std::to_string(remote.port());
    }
    tcp::socket socket;
    std::string peer;
    EncodedHeader header_bytes{};
    FrameHeader header;
    // Reused across frames: a layer's payload is the same size every time, so after the
    // first frame there is no allocation per layer.
    std::vector<std::byte> staging;
    std::vector<KvSink::Destination> destinations;
  };
  using SessionPtr = std::shared_ptr<Session>;

  Impl(KvLayout l, KvSink* s, std::string h, uint16_t p)
      : layout(l), sink(s), host(std::move(h)), requested_port(p), retry_timer(io) {}

  const KvLayout layout;
  KvSink* const sink;
  const std::string host;
  const uint16_t requested_port;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  asio::steady_timer retry_timer;  // backs off accept() errors such as EMFILE
  std::thread thread;
  std::mutex mu;         // serialises start() and stop()
  bool running = false;  // guarded by mu
  std::atomic<uint16_t> bound_port{0};
  bool stopping = false;          // receiver thread only (set before it starts)
  std::set<SessionPtr> sessions;  // receiver thread only
  std::atomic<uint64_t> frames_received{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> frames_rejected{0};

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
      auto session = std::make_shared<Session>(std::move(socket));
      sessions.insert(session);
      read_header(session);
      accept();
    });
  }

  void read_header(const SessionPtr& s) {
    asio::async_read(s->socket, asio::buffer(s->header_bytes), [this, s](error_code ec, size_t n) {
      bytes_received.fetch_add(n);
      if (stopping) return;
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
      if (!(h->layout == layout)) {
        return reject(s, h->request,
                      "KV layout mismatch: peer sends " + layout_string(h->layout) +
                          ", this worker holds " + layout_string(layout),
                      true);
      }
      read_payload(s);
    });
  }

  void read_payload(const SessionPtr& s) {
    const uint64_t bytes = s->header.payload_bytes;
    if (bytes == 0) return on_frame(s);
    if (s->staging.size() < bytes) s->staging.resize(bytes);
    asio::async_read(s->socket, asio::buffer(s->staging.data(), bytes),
                     [this, s, bytes](error_code ec, size_t n) {
                       bytes_received.fetch_add(n);
                       if (stopping) return;
                       if (ec) {
                         return reject(s, s->header.request,
                                       "truncated LAYER payload: " + std::to_string(n) + " of " +
                                           std::to_string(bytes) + " bytes (" + ec.message() + ")",
                                       true);
                       }
                       on_frame(s);
                     });
  }

  void on_frame(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    const uint32_t crc = crc32c(std::span(s->staging.data(), h.payload_bytes));
    if (crc != h.payload_crc) return reject(s, h.request, "payload checksum mismatch", true);
    switch (h.kind) {
      case FrameKind::kLayer:
        if (!deliver_layer(s)) break;
        frames_received.fetch_add(1);
        sink->on_layer(h.request, h.layer, h.first_block, h.num_blocks, h.payload_bytes);
        break;
      case FrameKind::kDone:
        frames_received.fetch_add(1);
        sink->on_done(h.request, h.first_token);
        break;
      case FrameKind::kAbort:
        frames_received.fetch_add(1);
        sink->on_abort(h.request);
        break;
    }
    read_header(s);
  }

  // All destinations first, then all copies: a frame whose last block has nowhere to go
  // must not have written its first. The stream stays in sync (the payload was consumed),
  // so the connection stays open.
  bool deliver_layer(const SessionPtr& s) {
    const FrameHeader& h = s->header;
    s->destinations.clear();
    for (uint32_t i = 0; i < h.num_blocks; ++i) {
      std::optional<KvSink::Destination> d =
          sink->destination(h.request, h.layer, h.first_block + i);
      if (!d || d->k == nullptr || d->v == nullptr) {
        reject(s, h.request,
               "no destination for block index " + std::to_string(h.first_block + i) +
                   " of layer " + std::to_string(h.layer) + " (request not reserved here?)",
               false);
        return false;
      }
      s->destinations.push_back(*d);
    }
    const size_t half = h.half_block_bytes;
    const std::byte* src = s->staging.data();
    for (const KvSink::Destination& d : s->destinations) {
      std::memcpy(d.k, src, half);
      std::memcpy(d.v, src + half, half);
      src += 2 * half;
    }
    return true;
  }

  void reject(const SessionPtr& s, RequestId request, const std::string& reason,
              bool close_connection) {
    frames_rejected.fetch_add(1);
    const std::string full = reason + " (from " + s->peer + ")";
    // A corrupt stream cannot be resynchronised safely, so its connection is dropped.
    spdlog::warn("KV frame rejected, request {}: {}{}", request, full,
                 close_connection ? "; closing connection" : "");
    sink->on_rejected(request, full);
    if (close_connection) close(s);
  }

  void close(const SessionPtr& s) {
    error_code ignored;
    s->socket.shutdown(tcp::socket::shutdown_both, ignored);
    s->socket.close(ignored);
    sessions.erase(s);
  }

  void shutdown() {
    stopping = true;
    error_code ignored;
    acceptor->close(ignored);
    retry_timer.cancel();
    for (const SessionPtr& s : sessions) s->socket.close(ignored);
    sessions.clear();
  }
};

TcpKvReceiver::TcpKvReceiver(KvLayout layout, KvSink* sink, std::string host, uint16_t port)
    : impl_(std::make_unique<Impl>(layout, sink, std::move(host), port)) {}

TcpKvReceiver::~TcpKvReceiver() { stop(); }

Status TcpKvReceiver::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.running) return Status();
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
}

uint16_t TcpKvReceiver::port() const { return impl_->bound_port.load(); }

void TcpKvReceiver::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

ReceiverStats TcpKvReceiver::stats() const {
  return {impl_->frames_received.load(), impl_->bytes_received.load(),
          impl_->frames_rejected.load()};
}

}  // namespace splitwise::transport
