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
  LayerBlocks blocks;  // empty except for a LAYER with its payload on the stream
  // Device KV on its way to host staging; blocks then point into it.
  std::unique_ptr<DeviceCopier::HostCopy> host_copy;
  std::vector<std::byte> owned_payload;  // HELLO's
  std::optional<ConnectionId> bound;     // out-of-band header: only on this connection
  Status invalid;                        // the caller's frame was bad: fail it, send nothing
  bool sealed = false;                   // header encoded (a LAYER's once its payload is known)
  Completion done;
};

void finish(Frame& frame, const Status& status) {
  if (frame.done) frame.done(status);
}

}  // namespace

struct TcpKvSender::Impl {
  struct Connection {
    Connection(asio::io_context& io, const Endpoint& to, ConnectionId i)
        : endpoint(to), name(to.str()), id(i), socket(io), resolver(io), timer(io) {}
    Endpoint endpoint;
    std::string name;
    ConnectionId id;
    tcp::socket socket;
    tcp::resolver resolver;
    asio::steady_timer timer;  // connect timeout
    bool connected = false;
    bool writing = false;  // queue.front() is in an async_write
    bool dead = false;     // failed or stopped; handlers still in flight see this and return
    Status failure;        // why it died, for the frame whose write was in flight
    std::deque<Frame> queue;
    std::vector<asio::const_buffer> buffers;  // gather list of the frame being written
    bool hello_sent = false;                  // a HELLO is queued first: the link was offered
    bool replied = false;                     // the receiver answered it
    EncodedHeader reply_header{};             // what the receiver sends back (ACCEPT/REFUSE)
    FrameHeader reply;
    std::vector<std::byte> reply_payload;
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
  std::atomic<uint64_t> out_of_band_frames{0};

  FrameHeader base_header(FrameKind kind, RequestId request) const {
    FrameHeader h;
    h.kind = kind;
    h.request = request;
    h.layout = layout;
    h.half_block_bytes = layout.half_block_bytes();
    return h;
  }

  // Any thread: runs `fn` on the sender's thread; false when the sender is not running.
  bool run_on_thread(std::function<void()> fn) {
    std::lock_guard lock(mu);
    if (!running) return false;
    asio::post(io, std::move(fn));
    return true;
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

  void enqueue(const Endpoint& to, Frame frame) {
    const std::string name = to.str();
    if (!frame.invalid.ok()) {
      send_failures.fetch_add(1);
      return finish(frame, frame.invalid.with_context("sending KV to " + name));
    }
    if (frame.bound) {
      auto it = connections.find(name);
      if (it == connections.end() || it->second->id != *frame.bound || it->second->dead) {
        send_failures.fetch_add(1);
        return finish(
            frame, Status::error("sending KV to " + name + ": the connection of its link is gone"));
      }
    }
    // A LAYER with its payload is sealed when its turn to be written comes (seal()).
    if (frame.bound || frame.fields.kind != FrameKind::kLayer) {
      frame.header = encode_header(frame.fields);
      frame.sealed = true;
    }
    const ConnectionPtr c = connection_to(to);
    c->queue.push_back(std::move(frame));
    write_next(c);
  }

  // The live connection to `to`, opened (HELLO queued first, given a link) if there is none.
  ConnectionPtr connection_to(const Endpoint& to) {
    const std::string name = to.str();
    if (auto it = connections.find(name); it != connections.end()) return it->second;
    static std::atomic<ConnectionId> next_id{1};  // process-wide: ids are never reused
    auto c = std::make_shared<Connection>(io, to, next_id.fetch_add(1));
    connections.emplace(name, c);
    if (options.link != nullptr) {
      if (std::optional<HelloPayload> hello = options.link->hello(to, c->id)) {
        Frame f;
        f.fields = base_header(FrameKind::kHello, 0);
        f.fields.half_block_bytes = 0;
        f.owned_payload.assign(hello->begin(), hello->end());
        f.fields.payload_bytes = f.owned_payload.size();
        f.fields.payload_crc = crc32c(f.owned_payload);
        f.header = encode_header(f.fields);
        f.sealed = true;
        c->queue.push_back(std::move(f));
        c->hello_sent = true;
      }
    }
    connect(c);
    return c;
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
            read_reply(c);
            write_next(c);
          });
        });
  }

  // A receiver sends only the answer to a HELLO. Any other completion of this read means
  // the connection is gone; noticing it here fails queued frames now instead of at some
  // later write.
  void read_reply(const ConnectionPtr& c) {
    asio::async_read(c->socket, asio::buffer(c->reply_header), [this, c](error_code ec, size_t) {
      if (c->dead) return;
      if (ec == asio::error::eof) return fail(c, "receiver closed the connection");
      if (ec) return fail(c, "connection lost: " + ec.message());
      Result<FrameHeader> h = decode_header(c->reply_header);
      if (!h.ok()) return fail(c, "bad frame from the receiver: " + h.status().message());
      const bool is_reply = h->kind == FrameKind::kAccept || h->kind == FrameKind::kRefuse;
      if (!is_reply || !c->hello_sent || c->replied) {
        return fail(
            c, std::string("receiver sent an unexpected ") + frame_kind_name(h->kind) + " frame");
      }
      c->reply = *h;
      c->reply_payload.resize(h->payload_bytes);
      asio::async_read(c->socket, asio::buffer(c->reply_payload), [this, c](error_code ec, size_t) {
        if (c->dead) return;
        if (ec) return fail(c, "connection lost: " + ec.message());
        if (crc32c(c->reply_payload) != c->reply.payload_crc) {
          return fail(c, "checksum mismatch in the receiver's reply");
        }
        c->replied = true;
        Status reply;
        if (c->reply.kind == FrameKind::kRefuse) {
          reply = Status::error(std::string(reinterpret_cast<const char*>(c->reply_payload.data()),
                                            c->reply_payload.size()));
        } else if (!(c->reply.layout == layout)) {
          reply = Status::error("receiver accepted with layout " + layout_string(c->reply.layout) +
                                ", not ours " + layout_string(layout));
        }
        if (options.link != nullptr) options.link->on_reply(c->endpoint, c->id, reply);
        read_reply(c);
      });
    });
  }

  // Checksums a LAYER's payload and encodes its header, here and not on the caller's
  // thread, so the engine thread does not pay for it. Device KV is waited for here, just
  // before its write: a copier may stage it only now, which bounds its host staging to
  // the frames being written rather than every frame queued.
  Status seal(Frame& f) {
    const size_t half = layout.half_block_bytes();
    if (f.host_copy) {
      SW_RETURN_IF_ERROR(f.host_copy->wait().with_context("device to host copy"));
      // From here on the frame reads the staging, in wire order: [block][K | V].
      const std::byte* p = f.host_copy->data();
      for (size_t i = 0; i < f.blocks.k_blocks.size(); ++i) {
        f.blocks.k_blocks[i] = p + (2 * i) * half;
        f.blocks.v_blocks[i] = p + (2 * i + 1) * half;
      }
      f.blocks.memory = MemoryKind::kHost;
    }
    uint32_t crc = 0;
    for (size_t i = 0; i < f.blocks.k_blocks.size(); ++i) {
      crc = crc32c(std::span(f.blocks.k_blocks[i], half), crc);
      crc = crc32c(std::span(f.blocks.v_blocks[i], half), crc);
    }
    f.fields.payload_crc = crc;
    f.header = encode_header(f.fields);
    f.sealed = true;
    return Status();
  }

  void write_next(const ConnectionPtr& c) {
    if (!c->connected || c->writing) return;
    while (!c->queue.empty() && !c->queue.front().sealed) {
      const Status st = seal(c->queue.front());
      if (st.ok()) break;
      Frame bad = std::move(c->queue.front());
      c->queue.pop_front();
      send_failures.fetch_add(1);
      finish(bad, st.with_context("sending KV to " + c->name));
    }
    if (c->queue.empty()) return;
    c->writing = true;
    const Frame& f = c->queue.front();
    const size_t half = layout.half_block_bytes();
    c->buffers.clear();
    c->buffers.push_back(asio::buffer(f.header));
    if (!f.owned_payload.empty()) c->buffers.push_back(asio::buffer(f.owned_payload));
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
      if (sent.fields.kind != FrameKind::kHello) frames_sent.fetch_add(1);
      if (sent.fields.out_of_band()) out_of_band_frames.fetch_add(1);
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
    // After the frames: a link's sends end (abort) only once no header is left to pair.
    if (c->hello_sent && options.link != nullptr) {
      options.link->on_closed(c->endpoint, c->id, c->failure);
    }
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
  f.done = std::move(done);
  // Checked here, on the caller's thread, so that a bad frame never starts a device copy.
  f.invalid = check_layer_blocks(blocks, impl_->layout).with_context("invalid LAYER frame");
  if (f.invalid.ok() && blocks.memory == MemoryKind::kDevice) {
    DeviceCopier* copier = impl_->options.copier;
    if (copier == nullptr) {
      f.invalid = Status::error("LAYER in device memory, but the sender has no DeviceCopier");
    } else {
      const uint32_t half = impl_->layout.half_block_bytes();
      auto copy = copier->copy_to_host(blocks, half);
      if (!copy.ok()) {
        f.invalid = copy.status().with_context("device to host copy");
      } else {
        f.host_copy = std::move(*copy);  // seal() points the blocks into it
      }
    }
  }
  f.blocks = std::move(blocks);
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

void TcpKvSender::connect(const Endpoint& to) {
  impl_->run_on_thread([impl = impl_.get(), to] { impl->connection_to(to); });
}

void TcpKvSender::disconnect(const Endpoint& to, ConnectionId connection, const std::string& why) {
  impl_->run_on_thread([impl = impl_.get(), name = to.str(), connection, why] {
    auto it = impl->connections.find(name);
    if (it != impl->connections.end() && it->second->id == connection) impl->fail(it->second, why);
  });
}

void TcpKvSender::send_out_of_band(const Endpoint& to, ConnectionId connection,
                                   const OutOfBandLayer& layer, Completion done) {
  Frame f;
  f.fields = impl_->base_header(FrameKind::kLayer, layer.request);
  f.fields.layer = layer.layer;
  f.fields.first_block = layer.first_block;
  f.fields.num_blocks = layer.num_blocks;
  f.fields.payload_bytes = uint64_t{layer.num_blocks} * 2 * f.fields.half_block_bytes;
  f.fields.flags = kFrameFlagOutOfBand;
  f.bound = connection;
  if (layer.layer >= impl_->layout.num_layers || layer.num_blocks > kMaxFrameBlocks ||
      f.fields.payload_bytes > kMaxPayloadBytes) {
    f.invalid =
        Status::error("invalid out-of-band LAYER header (layer " + std::to_string(layer.layer) +
                      ", " + std::to_string(layer.num_blocks) + " blocks)");
  }
  f.done = std::move(done);
  impl_->submit(to, std::move(f));
}

SenderStats TcpKvSender::stats() const {
  return {impl_->frames_sent.load(), impl_->bytes_sent.load(), impl_->send_failures.load(),
          impl_->out_of_band_frames.load()};
}

}  // namespace splitwise::transport
