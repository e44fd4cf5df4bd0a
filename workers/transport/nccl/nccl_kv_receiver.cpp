// NcclKvReceiver: a TcpKvReceiver whose PeerLinkAcceptor makes one NcclLink per accepted
// connection. The receiver thread decides on HELLOs and enqueues receives; each link's
// thread makes its communicator; the poller thread reports landed layers back to the
// receiver thread, which hands them to the sink in frame order.
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "workers/transport/nccl/cuda_device_copier.h"
#include "workers/transport/nccl/cuda_util.h"
#include "workers/transport/nccl/event_poller.h"
#include "workers/transport/nccl/nccl_kv_transport.h"
#include "workers/transport/nccl/nccl_link.h"

namespace splitwise::transport::nccl {

struct NcclKvReceiver::Impl final : PeerLinkAcceptor {
  // A layer whose header came before its link was up: received once it is, in order.
  struct Parked {
    FrameHeader header;
    std::vector<KvSink::Destination> destinations;
    Landed landed;
  };
  struct Conn {
    std::mutex mu;  // guards everything below; receives on one link never overlap
    std::shared_ptr<NcclLink> link;
    bool ready = false;
    bool failed = false;
    std::string failure;
    std::deque<Parked> parked;
  };
  using ConnPtr = std::shared_ptr<Conn>;

  Impl(KvLayout l, KvSink* s, NcclReceiverOptions o)
      : layout(l),
        sink(s),
        options(std::move(o)),
        tracker(std::make_shared<LinkTracker>()),
        tcp(l, s, options.host, options.port, TcpReceiverOptions{&copier, this}) {}

  const KvLayout layout;
  KvSink* const sink;
  const NcclReceiverOptions options;
  CudaDeviceCopier copier;
  std::shared_ptr<LinkTracker> tracker;
  EventPoller poller;
  std::unordered_map<ConnectionId, ConnPtr> conns;  // receiver thread (stop() after it)

  std::mutex flight_mu;
  std::condition_variable flight_cv;
  int in_flight = 0;  // guarded by flight_mu

  std::atomic<uint64_t> nccl_layers{0}, nccl_bytes{0}, links_up{0}, links_failed{0};
  TcpKvReceiver tcp;  // last: stopped and destroyed before what its callbacks use

  Status on_hello(ConnectionId connection, const std::string& peer,
                  std::span<const std::byte, kHelloPayloadBytes> hello) override {
    if (!options.accept_nccl) return Status::error("NCCL is turned off on this receiver");
    if (sink->memory() != MemoryKind::kDevice) {
      return Status::error("this receiver's KV cache is in host memory");
    }
    SW_RETURN_IF_ERROR(nccl_usable(sink->device()));
    ncclUniqueId id;
    static_assert(sizeof(id) == kHelloPayloadBytes);
    std::memcpy(&id, hello.data(), sizeof(id));
    auto c = std::make_shared<Conn>();
    c->link = std::make_shared<NcclLink>(NcclLink::Role::kReceiver, sink->device(), peer, tracker);
    conns[connection] = c;
    std::weak_ptr<Conn> weak = c;
    c->link->start(id, options.init_timeout, [this, weak, peer](Status st) {
      if (ConnPtr c = weak.lock()) on_link_ready(*c, peer, st);
    });
    return Status();
  }

  // On the link's thread.
  void on_link_ready(Conn& c, const std::string& peer, const Status& st) {
    std::lock_guard lock(c.mu);
    if (st.ok() && !c.failed) {
      c.ready = true;
      links_up.fetch_add(1);
      spdlog::info("KV from {}: NCCL link up (GPU {})", peer, sink->device());
    } else if (!c.failed) {
      c.failed = true;
      c.failure = "NCCL set-up failed: " + st.message();
      links_failed.fetch_add(1);
      spdlog::warn("KV from {}: {}; layers come over TCP", peer, c.failure);
    }
    for (Parked& p : c.parked) issue(c, p.header, p.destinations, std::move(p.landed));
    c.parked.clear();
  }

  void receive_layer(ConnectionId connection, const FrameHeader& header,
                     std::span<const KvSink::Destination> destinations, Landed landed) override {
    auto it = conns.find(connection);
    if (it == conns.end()) return landed(Status::error("no NCCL link on this connection"));
    Conn& c = *it->second;
    std::lock_guard lock(c.mu);
    if (!c.ready && !c.failed) {
      c.parked.push_back({header, {destinations.begin(), destinations.end()}, std::move(landed)});
      return;
    }
    issue(c, header, destinations, std::move(landed));
  }

  // Caller holds c.mu.
  void issue(Conn& c, const FrameHeader& h, std::span<const KvSink::Destination> destinations,
             Landed landed) {
    if (c.failed) return landed(Status::error(c.failure));
    Result<cudaEvent_t> done = c.link->receive(h.payload_bytes, destinations, h.half_block_bytes);
    if (!done.ok()) {
      c.failed = true;
      c.failure = done.status().message();
      c.link->abort(c.failure);
      return landed(done.status());
    }
    {
      std::lock_guard flight(flight_mu);
      ++in_flight;
    }
    poller.watch(*done, [this, link = c.link, event = *done, landed = std::move(landed),
                         bytes = h.payload_bytes](Status st) {
      link->recycle(event);
      if (st.ok() && link->failed()) {
        st = Status::error("NCCL link from " + link->peer() + " failed: " + link->failure());
      }
      if (st.ok()) {
        nccl_layers.fetch_add(1);
        nccl_bytes.fetch_add(bytes);
      }
      landed(st);
      {
        std::lock_guard flight(flight_mu);
        --in_flight;
      }
      flight_cv.notify_all();
    });
  }

  void on_closed(ConnectionId connection) override {
    auto it = conns.find(connection);
    if (it == conns.end()) return;
    ConnPtr c = it->second;
    conns.erase(it);
    std::lock_guard lock(c->mu);
    if (!c->failed) {
      c->failed = true;
      c->failure = "control connection closed";
    }
    // Ends receives still on the GPU; their landed reports then say so.
    c->link->abort(c->failure);
    for (Parked& p : c->parked) p.landed(Status::error(c->failure));
    c->parked.clear();
  }

  void stop() {
    tcp.stop();  // every accepted connection is closed: on_closed aborts its link
    for (auto& [id, c] : conns) {
      std::lock_guard lock(c->mu);
      c->failed = true;
      c->link->abort("receiver stopped");
      for (Parked& p : c->parked) p.landed(Status::error("receiver stopped"));
      c->parked.clear();
    }
    conns.clear();
    {
      std::unique_lock lock(flight_mu);
      if (!flight_cv.wait_for(lock, std::chrono::seconds(30), [&] { return in_flight == 0; })) {
        spdlog::error("KV receiver stop: {} NCCL layers never completed", in_flight);
      }
    }
    if (!tracker->wait_idle(std::chrono::seconds(30))) {
      spdlog::error("KV receiver stop: NCCL links still tearing down after 30 s");
    }
  }
};

NcclKvReceiver::NcclKvReceiver(KvLayout layout, KvSink* sink, NcclReceiverOptions options)
    : impl_(std::make_unique<Impl>(layout, sink, std::move(options))) {}

NcclKvReceiver::~NcclKvReceiver() { stop(); }

Status NcclKvReceiver::start() { return impl_->tcp.start(); }

void NcclKvReceiver::stop() { impl_->stop(); }

uint16_t NcclKvReceiver::port() const { return impl_->tcp.port(); }

void NcclKvReceiver::post(std::function<void()> fn) { impl_->tcp.post(std::move(fn)); }

NcclReceiverStats NcclKvReceiver::stats() const {
  NcclReceiverStats s;
  s.tcp = impl_->tcp.stats();
  s.nccl_layers = impl_->nccl_layers.load();
  s.nccl_bytes = impl_->nccl_bytes.load();
  s.links_up = impl_->links_up.load();
  s.links_failed = impl_->links_failed.load();
  return s;
}

}  // namespace splitwise::transport::nccl
