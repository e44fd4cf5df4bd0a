// TcpKvSender: the prompt worker's end. Everything below Impl's public entry points runs
// on the sender's own io_context thread, which alone owns the connection table; callers
// only post to it.
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "workers/transport/kv_frame.h"
#include "workers/transport/tcp_kv_transport.h"

namespace splitwise::transport {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

struct Frame {
  FrameHeader fields;  // payload_crc is filled in on the sender's thread
  EncodedHeader header{};
  LayerBlocks blocks;  // empty except for LAYER
  Completion done;
};

void finish(Frame& frame, const Status& status) {
  if (frame.done) frame.done(status);
}

}  // namespace

struct TcpKvSender::Impl {
  struct Connection {
    Connection(asio::io_context& io, const Endpoint& to)
        : endpoint(to), name(to.str()), socket(io), resolver(io), timer(io) {}
    Endpoint endpoint;
    std::string name;
    tcp::socket socket;
    tcp::resolver resolver;
    asio::steady_timer timer;  // connect timeout
    bool connected = false;
    bool writing = false;  // queue.front() is in an async_write
    bool dead = false;     // failed or stopped; handlers still in flight see this and return
    Status failure;        // why it died, for the frame whose write was in flight
    std::deque<Frame> queue;
    std::vector<asio::const_buffer> buffers;  // gather list of the frame being written
    std::array<std::byte, 1> probe{};         // target of the read that notices a dead peer
  };
  using ConnectionPtr = std::shared_ptr<Connection>;

  Impl(KvLayout l, TcpSenderOptions o) : layout(l), options(o) {}

  const KvLayout layout;
  const TcpSenderOptions options;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::mutex mu;         // guards running: posting is allowed only while the thread runs
  bool running = false;  // guarded by mu
  std::unordered_map<std::string, ConnectionPtr> connections;  // sender thread only
  std::atomic<uint64_t> frames_sent{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> send_failures{0};

  FrameHeader base_header(FrameKind kind, RequestId request) const {
    FrameHeader h;
    h.kind = kind;
    h.request = request;
    h.layout = layout;
    h.half_block_bytes = layout.half_block_bytes();
    return h;
  }

  // Any thread.
  void submit(const Endpoint& to, Frame frame) {
    {
      std::lock_guard lock(mu);
      if (running) {
        asio::post(io, [this, to, f = std::move(frame)]() mutable { enqueue(to, std::move(f)); });
        return;
      }
    }
    send_failures.fetch_add(1);
    finish(frame, Status::error("sending KV to " + to.str() + ": sender is not running"));
  }

  // The checks here guard the frame format's own limits; a caller that breaks them has a
  // bug, but failing the one send keeps the worker alive to report it.
  static Status check_layer(const LayerBlocks& b, const KvLayout& layout) {
    if (b.k_blocks.size() != b.v_blocks.size()) {
      return Status::error(std::to_string(b.k_blocks.size()) + " K blocks but " +
                           std::to_string(b.v_blocks.size()) + " V blocks");
    }
    if (b.k_blocks.size() > kMaxFrameBlocks) {
      return Status::error(std::to_string(b.k_blocks.size()) + " blocks in one frame (limit " +
                           std::to_string(kMaxFrameBlocks) + ")");
    }
    if (uint64_t{b.k_blocks.size()} * 2 * layout.half_block_bytes() > kMaxPayloadBytes) {
      return Status::error("layer payload over the 1 GiB frame limit");
    }
    if (b.layer >= layout.num_layers) {
      return Status::error("layer " + std::to_string(b.layer) + " of a " +
                           std::to_string(layout.num_layers) + "-layer layout");
    }
    for (size_t i = 0; i < b.k_blocks.size(); ++i) {
      if (b.k_blocks[i] == nullptr || b.v_blocks[i] == nullptr) {
        return Status::error("null block pointer at index " + std::to_string(i));
      }
    }
    return Status();
  }

  void enqueue(const Endpoint& to, Frame frame) {
    if (frame.fields.kind == FrameKind::kLayer) {
      Status st = check_layer(frame.blocks, layout);
      if (!st.ok()) {
        send_failures.fetch_add(1);
        finish(frame, st.with_context("sending KV to " + to.str() + ": invalid LAYER frame"));
        return;
      }
      // Checksummed here, not by the caller, so the engine thread does not pay for it.
      const size_t half = layout.half_block_bytes();
      uint32_t crc = 0;
      for (size_t i = 0; i < frame.blocks.k_blocks.size(); ++i) {
        crc = crc32c(std::span(frame.blocks.k_blocks[i], half), crc);
        crc = crc32c(std::span(frame.blocks.v_blocks[i], half), crc);
      }
      frame.fields.payload_crc = crc;
    }
    frame.header = encode_header(frame.fields);

    const std::string name = to.str();
    auto it = connections.find(name);
    if (it == connections.end()) {
      auto c = std::make_shared<Connection>(io, to);
      it = connections.emplace(name, c).first;
      c->queue.push_back(std::move(frame));
      connect(c);
      return;
    }
    it->second->queue.push_back(std::move(frame));
    write_next(it->second);
  }

  void connect(const ConnectionPtr& c) {
    c->timer.expires_after(options.connect_timeout);
    c->timer.async_wait([this, c](error_code ec) {
      if (ec || c->dead || c->connected) return;
      fail(c, "connect timed out after " + std::to_string(options.connect_timeout.count()) + " ms");
    });
    c->resolver.async_resolve(
        c->endpoint.host, std::to_string(c->endpoint.port),
        [this, c](error_code ec, const tcp::resolver::results_type& results) {
          if (c->dead) return;
          if (ec) return fail(c, "resolving host: " + ec.message());
          asio::async_connect(c->socket, results, [this, c](error_code ec, const tcp::endpoint&) {
            if (c->dead) return;
            if (ec) return fail(c, "connect: " + ec.message());
            c->connected = true;
            c->timer.cancel();
            // DONE frames are tiny and latency-critical (they gate the first decode step).
            error_code ignored;
            c->socket.set_option(tcp::no_delay(true), ignored);
            watch_peer(c);
            write_next(c);
          });
        });
  }

  // Receivers never send, so any completion of this read means the connection is gone;
  // noticing it here fails queued frames now instead of at some later write.
  void watch_peer(const ConnectionPtr& c) {
    c->socket.async_read_some(asio::buffer(c->probe), [this, c](error_code ec, size_t) {
      if (c->dead) return;
      if (ec == asio::error::eof) return fail(c, "receiver closed the connection");
      fail(c, ec ? "connection lost: " + ec.message() : "receiver sent unexpected bytes");
    });
  }

  void write_next(const ConnectionPtr& c) {
    if (!c->connected || c->writing || c->queue.empty()) return;
    c->writing = true;
    const Frame& f = c->queue.front();
    const size_t half = layout.half_block_bytes();
    c->buffers.clear();
    c->buffers.push_back(asio::buffer(f.header));
    for (size_t i = 0; i < f.blocks.k_blocks.size(); ++i) {
      c->buffers.push_back(asio::buffer(f.blocks.k_blocks[i], half));
      c->buffers.push_back(asio::buffer(f.blocks.v_blocks[i], half));
    }
    asio::async_write(c->socket, c->buffers, [this, c](error_code ec, size_t n) {
      if (!c->dead && ec) fail(c, "write: " + ec.message());
      c->writing = false;
      Frame sent = std::move(c->queue.front());
      c->queue.pop_front();
      if (ec) {
        // fail() left this frame to us: its blocks were in the socket's hands until now.
        send_failures.fetch_add(1);
        finish(sent, c->failure);
        return;
      }
      // Success even if the connection died meanwhile: every byte reached the kernel, which
      // still delivers it after close() (no SO_LINGER 0 here).
      frames_sent.fetch_add(1);
      bytes_sent.fetch_add(n);
      finish(sent, Status());
      if (!c->dead) write_next(c);
    });
  }

  void fail(const ConnectionPtr& c, const std::string& what) {
    if (c->dead) return;
    c->dead = true;
    c->failure = Status::error("sending KV to " + c->name + ": " + what);
    auto it = connections.find(c->name);
    if (it != connections.end() && it->second == c) connections.erase(it);
    error_code ignored;
    c->socket.close(ignored);
    c->resolver.cancel();
    c->timer.cancel();
    std::deque<Frame> failed;
    // The frame being written stays queued until its write handler runs, so the caller
    // cannot free its blocks while the socket might still read them.
    const size_t keep = c->writing ? 1 : 0;
    while (c->queue.size() > keep) {
      failed.push_back(std::move(c->queue.back()));
      c->queue.pop_back();
    }
    // An idle connection closing (a receiver restarting, our own stop) costs nothing; only
    // pending frames are worth a warning.
    const size_t pending = failed.size() + keep;
    spdlog::log(pending > 0 ? spdlog::level::warn : spdlog::level::debug,
                "{} ({} frames were pending)", c->failure.message(), pending);
    send_failures.fetch_add(failed.size());
    for (auto f = failed.rbegin(); f != failed.rend(); ++f) finish(*f, c->failure);
  }

  void shutdown() {
    auto all = std::move(connections);
    connections.clear();
    for (auto& [name, c] : all) fail(c, "sender stopped");
  }
};

TcpKvSender::TcpKvSender(KvLayout layout, TcpSenderOptions options)
    : impl_(std::make_unique<Impl>(layout, options)) {}

TcpKvSender::~TcpKvSender() { stop(); }

void TcpKvSender::start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->running) return;
  impl_->io.restart();
  impl_->work.emplace(impl_->io.get_executor());
  impl_->thread = std::thread([io = &impl_->io] { io->run(); });
  impl_->running = true;
}

void TcpKvSender::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->running) return;
    impl_->running = false;
    // Posted after every send that saw running == true, so those are queued first and
    // then failed with "sender stopped" rather than lost.
    asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
  }
  impl_->work.reset();
  impl_->thread.join();
}

void TcpKvSender::send_layer(const Endpoint& to, LayerBlocks blocks, Completion done) {
  Frame f;
  f.fields = impl_->base_header(FrameKind::kLayer, blocks.request);
  f.fields.layer = blocks.layer;
  f.fields.first_block = blocks.first_block;
  f.fields.num_blocks = static_cast<uint32_t>(blocks.k_blocks.size());
  f.fields.payload_bytes = uint64_t{f.fields.num_blocks} * 2 * f.fields.half_block_bytes;
  f.blocks = std::move(blocks);
  f.done = std::move(done);
  impl_->submit(to, std::move(f));
}

void TcpKvSender::send_done(const Endpoint& to, RequestId request, int32_t first_token,
                            Completion done) {
  Frame f;
  f.fields = impl_->base_header(FrameKind::kDone, request);
  f.fields.first_token = first_token;
  f.done = std::move(done);
  impl_->submit(to, std::move(f));
}

void TcpKvSender::send_abort(const Endpoint& to, RequestId request, Completion done) {
  Frame f;
  f.fields = impl_->base_header(FrameKind::kAbort, request);
  f.done = std::move(done);
  impl_->submit(to, std::move(f));
}

SenderStats TcpKvSender::stats() const {
  return {impl_->frames_sent.load(), impl_->bytes_sent.load(), impl_->send_failures.load()};
}

}  // namespace splitwise::transport
