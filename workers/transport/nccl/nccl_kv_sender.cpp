// NcclKvSender: a TcpKvSender for the control stream and the fallback, plus one NcclLink
// per peer connection. The TCP thread negotiates (it is the PeerLinkInitiator); each
// link's own thread makes the communicator; the engine thread enqueues the GPU work and
// posts headers; the poller thread reports GPU completion.
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "workers/transport/nccl/cuda_device_copier.h"
#include "workers/transport/nccl/cuda_util.h"
#include "workers/transport/nccl/event_poller.h"
#include "workers/transport/nccl/nccl_kv_transport.h"
#include "workers/transport/nccl/nccl_link.h"

namespace splitwise::transport::nccl {

const char* link_kind_name(LinkKind kind) {
  switch (kind) {
    case LinkKind::kNone:
      return "none";
    case LinkKind::kPending:
      return "pending";
    case LinkKind::kNccl:
      return "nccl";
    case LinkKind::kTcp:
      return "tcp";
  }
  return "unknown";
}

namespace {

// A NCCL layer is complete when both its header is written and its GPU work is done.
class Join {
 public:
  explicit Join(Completion done) : done_(std::move(done)) {}
  void arrive(const Status& st) {
    Completion fire;
    Status result;
    {
      std::lock_guard lock(mu_);
      if (!st.ok() && status_.ok()) status_ = st;
      if (--left_ > 0) return;
      fire = std::move(done_);
      result = status_;
    }
    if (fire) fire(result);
  }

 private:
  std::mutex mu_;
  int left_ = 2;   // guarded by mu_
  Status status_;  // guarded by mu_: the first failure
  Completion done_;
};

}  // namespace

struct NcclKvSender::Impl final : PeerLinkInitiator {
  struct Peer {
    explicit Peer(std::string n) : name(std::move(n)) {}
    const std::string name;
    // Held across a layer's ncclSend and its header post, so that headers reach the TCP
    // thread in send order; guards everything below.
    std::mutex mu;
    ConnectionId connection = 0;  // the connection whose HELLO is current
    ncclUniqueId id{};
    std::shared_ptr<NcclLink> link;
    LinkKind kind = LinkKind::kNone;
    std::string reason;
    bool warned = false;
  };
  using PeerPtr = std::shared_ptr<Peer>;

  Impl(KvLayout l, NcclSenderOptions o)
      : layout(l),
        options(o),
        copier(o.pinned_staging_bytes),
        tracker(std::make_shared<LinkTracker>()),
        tcp(l, TcpSenderOptions{o.connect_timeout, &copier, this}) {}

  const KvLayout layout;
  const NcclSenderOptions options;
  CudaDeviceCopier copier;
  std::shared_ptr<LinkTracker> tracker;
  EventPoller poller;
  TcpKvSender tcp;  // last: stopped and destroyed before what its callbacks use

  mutable std::mutex mu;  // guards peers and disabled
  std::unordered_map<std::string, PeerPtr> peers;
  std::string disabled;  // why NCCL is off for everyone; "" when on

  std::mutex flight_mu;
  std::condition_variable flight_cv;
  int in_flight = 0;  // NCCL layers whose GPU completion is pending; guarded by flight_mu

  std::atomic<uint64_t> nccl_layers{0}, nccl_bytes{0}, tcp_layers{0}, tcp_bytes{0};
  std::atomic<uint64_t> links_up{0}, fallbacks{0};

  PeerPtr peer_for(const Endpoint& to) {
    std::lock_guard lock(mu);
    PeerPtr& p = peers[to.str()];
    if (!p) p = std::make_shared<Peer>(to.str());
    return p;
  }
  PeerPtr find_peer(const Endpoint& to) const {
    std::lock_guard lock(mu);
    auto it = peers.find(to.str());
    return it == peers.end() ? nullptr : it->second;
  }
  std::string disabled_reason() const {
    std::lock_guard lock(mu);
    return disabled;
  }

  // Caller holds p.mu.
  void fall_back(Peer& p, const std::string& why) {
    p.kind = LinkKind::kTcp;
    p.reason = why;
    fallbacks.fetch_add(1);
    if (!p.warned) {
      p.warned = true;
      spdlog::warn("KV to {}: not using NCCL ({}); KV goes over TCP", p.name, why);
    }
  }

  // PeerLinkInitiator, on the TCP thread.
  std::optional<HelloPayload> hello(const Endpoint& to, ConnectionId connection) override {
    const std::string off = disabled_reason();
    if (!off.empty()) return std::nullopt;
    PeerPtr p = peer_for(to);
    prepare_nccl_env();
    ncclUniqueId id;
    const ncclResult_t r = ncclGetUniqueId(&id);
    std::lock_guard lock(p->mu);
    if (p->link) {  // a link of an older connection that was never told to go
      p->link->abort("superseded by a new connection");
      p->link.reset();
    }
    p->connection = connection;
    if (r != ncclSuccess) {
      fall_back(*p, nccl_status(r, nullptr, "ncclGetUniqueId").message());
      return std::nullopt;
    }
    p->id = id;
    p->kind = LinkKind::kPending;
    HelloPayload out;
    static_assert(sizeof(ncclUniqueId) == kHelloPayloadBytes);
    std::memcpy(out.data(), &id, sizeof(id));
    return out;
  }

  void on_reply(const Endpoint& to, ConnectionId connection, const Status& reply) override {
    PeerPtr p = find_peer(to);
    if (!p) return;
    std::lock_guard lock(p->mu);
    if (p->connection != connection) return;
    if (!reply.ok()) return fall_back(*p, "the receiver refused: " + reply.message());
    auto link =
        std::make_shared<NcclLink>(NcclLink::Role::kSender, options.device, p->name, tracker);
    p->link = link;
    std::weak_ptr<Peer> weak = p;
    NcclLink* raw = link.get();
    link->start(p->id, options.init_timeout, [this, weak, connection, raw](Status st) {
      on_link_ready(weak, connection, raw, st);
    });
  }

  void on_closed(const Endpoint& to, ConnectionId connection, const Status& why) override {
    PeerPtr p = find_peer(to);
    if (!p) return;
    std::lock_guard lock(p->mu);
    if (p->connection != connection) return;
    if (p->link) {
      // Ends sends still on the GPU: their completions then report the failure.
      p->link->abort("control connection closed: " + why.message());
      p->link.reset();
    }
    if (p->kind != LinkKind::kTcp) p->kind = LinkKind::kNone;  // the next connection asks again
  }

  // On the link's thread. Keeps p->link either way: dropping the last reference here would
  // destroy the link on its own thread.
  void on_link_ready(const std::weak_ptr<Peer>& weak, ConnectionId connection, NcclLink* link,
                     const Status& st) {
    PeerPtr p = weak.lock();
    if (!p) return;
    std::lock_guard lock(p->mu);
    if (p->connection != connection || p->link.get() != link) return;
    if (!st.ok()) return fall_back(*p, "NCCL set-up failed: " + st.message());
    p->kind = LinkKind::kNccl;
    links_up.fetch_add(1);
    spdlog::info("KV to {}: NCCL link up (GPU {})", p->name, options.device);
  }

  // On the caller's (engine) thread. True when the layer went over NCCL.
  bool try_nccl(const Endpoint& to, LayerBlocks& blocks, Completion& done) {
    if (blocks.memory != MemoryKind::kDevice || !options.use_nccl) return false;
    if (blocks.k_blocks.empty() || blocks.device != options.device) return false;
    if (!check_layer_blocks(blocks, layout).ok()) return false;  // TCP reports the error
    PeerPtr p = find_peer(to);
    if (!p) return false;
    std::lock_guard lock(p->mu);
    if (p->kind != LinkKind::kNccl || !p->link) return false;
    const uint32_t half = layout.half_block_bytes();
    Result<cudaEvent_t> sent = p->link->send(blocks, half);
    if (!sent.ok()) {
      // The link is broken; the receiver's half must go too, or it would wait forever for
      // sends that never come. The layer itself still goes, over TCP.
      fall_back(*p, "NCCL send failed: " + sent.status().message());
      p->link->abort(sent.status().message());
      tcp.disconnect(to, p->connection, "NCCL link broke: " + sent.status().message());
      return false;
    }
    auto join = std::make_shared<Join>(std::move(done));
    {
      std::lock_guard flight(flight_mu);
      ++in_flight;
    }
    poller.watch(*sent, [this, link = p->link, event = *sent, join](Status st) {
      link->recycle(event);
      if (st.ok() && link->failed()) {
        st = Status::error("NCCL link to " + link->peer() + " failed: " + link->failure());
      }
      join->arrive(st);
      {
        std::lock_guard flight(flight_mu);
        --in_flight;
      }
      flight_cv.notify_all();
    });
    const uint32_t n = static_cast<uint32_t>(blocks.k_blocks.size());
    tcp.send_out_of_band(to, p->connection, {blocks.request, blocks.layer, blocks.first_block, n},
                         [join](Status st) { join->arrive(st); });
    nccl_layers.fetch_add(1);
    nccl_bytes.fetch_add(uint64_t{n} * 2 * half);
    return true;
  }

  void stop() {
    tcp.stop();  // fails queued frames; every connection with a link is told to close
    std::vector<PeerPtr> all;
    {
      std::lock_guard lock(mu);
      for (auto& [name, p] : peers) all.push_back(p);
    }
    for (const PeerPtr& p : all) {
      std::lock_guard lock(p->mu);
      if (p->link) p->link->abort("sender stopped");
      p->link.reset();
      if (p->kind != LinkKind::kTcp) p->kind = LinkKind::kNone;
    }
    {
      // Aborted communicators end their sends, so every completion comes.
      std::unique_lock lock(flight_mu);
      if (!flight_cv.wait_for(lock, std::chrono::seconds(30), [&] { return in_flight == 0; })) {
        spdlog::error("KV sender stop: {} NCCL layers never completed", in_flight);
      }
    }
    if (!tracker->wait_idle(std::chrono::seconds(30))) {
      spdlog::error("KV sender stop: NCCL links still tearing down after 30 s");
    }
  }
};

NcclKvSender::NcclKvSender(KvLayout layout, NcclSenderOptions options)
    : impl_(std::make_unique<Impl>(layout, options)) {}

NcclKvSender::~NcclKvSender() { stop(); }

void NcclKvSender::start() {
  std::string off;
  if (impl_->options.use_nccl) {
    const Status usable = nccl_usable(impl_->options.device);
    if (!usable.ok()) {
      off = usable.message();
      spdlog::warn("KV sender: NCCL unavailable ({}); KV goes over TCP", off);
    }
  } else {
    off = "NCCL turned off (use_nccl = false)";
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->disabled = off;
  }
  impl_->tcp.start();
}

void NcclKvSender::stop() { impl_->stop(); }

void NcclKvSender::connect(const Endpoint& to) {
  if (impl_->disabled_reason().empty()) impl_->peer_for(to);
  impl_->tcp.connect(to);
}

void NcclKvSender::send_layer(const Endpoint& to, LayerBlocks blocks, Completion done) {
  if (impl_->try_nccl(to, blocks, done)) return;
  const uint64_t bytes = uint64_t{blocks.k_blocks.size()} * 2 * impl_->layout.half_block_bytes();
  impl_->tcp_layers.fetch_add(1);
  impl_->tcp_bytes.fetch_add(bytes);
  impl_->tcp.send_layer(to, std::move(blocks), std::move(done));
}

void NcclKvSender::send_done(const Endpoint& to, RequestId request, int32_t first_token,
                             Completion done) {
  impl_->tcp.send_done(to, request, first_token, std::move(done));
}

void NcclKvSender::send_abort(const Endpoint& to, RequestId request, Completion done) {
  impl_->tcp.send_abort(to, request, std::move(done));
}

LinkInfo NcclKvSender::link(const Endpoint& to) const {
  const std::string off = impl_->disabled_reason();
  if (!off.empty()) return {LinkKind::kTcp, off};
  Impl::PeerPtr p = impl_->find_peer(to);
  if (!p) return {};
  std::lock_guard lock(p->mu);
  return {p->kind, p->reason};
}

LinkInfo NcclKvSender::wait_for_link(const Endpoint& to, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    LinkInfo info = link(to);
    if (info.kind == LinkKind::kNccl || info.kind == LinkKind::kTcp) return info;
    if (std::chrono::steady_clock::now() > deadline) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string NcclKvSender::disabled_reason() const { return impl_->disabled_reason(); }

NcclSenderStats NcclKvSender::stats() const {
  NcclSenderStats s;
  s.tcp = impl_->tcp.stats();
  s.nccl_layers = impl_->nccl_layers.load();
  s.nccl_bytes = impl_->nccl_bytes.load();
  s.tcp_layers = impl_->tcp_layers.load();
  s.tcp_bytes = impl_->tcp_bytes.load();
  s.links_up = impl_->links_up.load();
  s.fallbacks = impl_->fallbacks.load();
  return s;
}

}  // namespace splitwise::transport::nccl
