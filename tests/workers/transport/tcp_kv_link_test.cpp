// The TCP transport's extension points, on the CPU: HELLO/ACCEPT/REFUSE on the control
// connection, OUT_OF_BAND LAYERs carried by a fake link (an in-process queue standing in
// for NCCL, landing payloads late on its own thread), and device memory through a fake
// DeviceCopier. The NCCL and CUDA implementations are tested in *_gpu_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "tests/workers/transport/transport_test_util.h"
#include "workers/transport/tcp_kv_transport.h"

namespace splitwise::transport {
namespace {

using testing::FakeKvSink;
using Event = FakeKvSink::Event;
using namespace std::chrono_literals;

const KvLayout kLayout{4, 4, 8, KvFormat::kGpuBf16};  // half block = 4 * 8 * 2 = 64 bytes

HelloPayload test_hello() {
  HelloPayload h;
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::byte>(i * 7);
  return h;
}

// Payloads "sent" over the link, in order, as NCCL would match them.
struct FakeWire {
  std::mutex mu;
  std::deque<std::vector<std::byte>> payloads;  // guarded by mu
  void push(std::vector<std::byte> p) {
    std::lock_guard lock(mu);
    payloads.push_back(std::move(p));
  }
  std::vector<std::byte> pop() {
    std::lock_guard lock(mu);
    if (payloads.empty()) return {};
    auto p = std::move(payloads.front());
    payloads.pop_front();
    return p;
  }
};

class FakeInitiator final : public PeerLinkInitiator {
 public:
  explicit FakeInitiator(bool offer = true) : offer_(offer) {}
  std::optional<HelloPayload> hello(const Endpoint&, ConnectionId c) override {
    std::lock_guard lock(mu_);
    connection_ = c;
    if (!offer_) return std::nullopt;
    return test_hello();
  }
  void on_reply(const Endpoint&, ConnectionId c, const Status& reply) override {
    std::lock_guard lock(mu_);
    replies_.push_back(reply);
    cv_.notify_all();
  }
  void on_closed(const Endpoint&, ConnectionId c, const Status& why) override {
    std::lock_guard lock(mu_);
    closed_.push_back({c, why.message()});
    cv_.notify_all();
  }
  // The first reply (ok: ACCEPT) and its connection; fails the test on timeout.
  std::pair<Status, ConnectionId> wait_reply() {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, 10s, [&] { return !replies_.empty(); }));
    if (replies_.empty()) return {Status::error("no reply"), 0};
    return {replies_.front(), connection_};
  }
  bool wait_closed() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return !closed_.empty(); });
  }
  std::vector<std::pair<ConnectionId, std::string>> closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }
  size_t replies() {
    std::lock_guard lock(mu_);
    return replies_.size();
  }

 private:
  const bool offer_;
  std::mutex mu_;
  std::condition_variable cv_;
  ConnectionId connection_ = 0;
  std::vector<Status> replies_;
  std::vector<std::pair<ConnectionId, std::string>> closed_;
};

// Receives from the wire at receive_layer() time (that is the order NCCL matches in) and
// lands each payload `delay` later on its own thread, one after another like a stream.
class FakeAcceptor final : public PeerLinkAcceptor {
 public:
  FakeAcceptor(FakeWire* wire, std::chrono::milliseconds delay, bool accept = true)
      : wire_(wire), delay_(delay), accept_(accept), worker_([this] { run(); }) {}
  ~FakeAcceptor() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  Status on_hello(ConnectionId c, const std::string& peer,
                  std::span<const std::byte, kHelloPayloadBytes> hello) override {
    const HelloPayload want = test_hello();
    if (!std::equal(hello.begin(), hello.end(), want.begin())) {
      return Status::error("HELLO payload garbled");
    }
    if (!accept_) return Status::error("test receiver refuses links");
    return Status();
  }
  void receive_layer(ConnectionId c, const FrameHeader& h, std::span<const KvSink::Destination> dst,
                     Landed landed) override {
    Job job{wire_->pop(), {dst.begin(), dst.end()}, h.half_block_bytes, std::move(landed)};
    {
      std::lock_guard lock(mu_);
      ++started_;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_all();
  }
  void on_closed(ConnectionId c) override {
    std::lock_guard lock(mu_);
    ++closed_;
  }

  void fail_next() { fail_next_ = true; }
  int started() {
    std::lock_guard lock(mu_);
    return started_;
  }
  int landed() { return landed_.load(); }
  int closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

 private:
  struct Job {
    std::vector<std::byte> payload;
    std::vector<KvSink::Destination> dst;
    uint32_t half;
    Landed landed;
  };
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      std::this_thread::sleep_for(delay_);
      if (fail_next_.exchange(false)) {
        job.landed(Status::error("fake link broke"));
      } else {
        const std::byte* src = job.payload.data();
        for (const KvSink::Destination& d : job.dst) {
          std::memcpy(d.k, src, job.half);
          std::memcpy(d.v, src + job.half, job.half);
          src += 2 * job.half;
        }
        ++landed_;
        job.landed(Status());
      }
      lock.lock();
    }
  }

  FakeWire* const wire_;
  const std::chrono::milliseconds delay_;
  const bool accept_;
  std::atomic<bool> fail_next_{false};
  std::atomic<int> landed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  int started_ = 0;       // guarded by mu_
  int closed_ = 0;        // guarded by mu_
  bool stop_ = false;     // guarded by mu_
  std::thread worker_;
};

// "Device" memory that is host memory: checks the transport routes kDevice through the
// copier, consumes the ready event inside send_layer, and stages payloads page-locked.
// Every other copy is deferred, as CudaDeviceCopier does past its pinned limit: its bytes
// (and data()) exist only once wait() has run.
class FakeDeviceCopier final : public DeviceCopier {
 public:
  class Copy final : public HostCopy {
   public:
    Copy(const LayerBlocks& b, uint32_t half, bool deferred, FakeDeviceCopier* owner)
        : k_(b.k_blocks), v_(b.v_blocks), half_(half), owner_(owner) {
      if (!deferred) gather();
    }
    Status wait() override {
      ++owner_->waits;
      if (bytes_.empty()) gather();
      return Status();
    }
    const std::byte* data() const override { return bytes_.empty() ? nullptr : bytes_.data(); }
    uint64_t size() const override { return k_.size() * 2 * half_; }

   private:
    void gather() {
      bytes_.resize(size());
      for (size_t i = 0; i < k_.size(); ++i) {
        std::memcpy(bytes_.data() + 2 * i * half_, k_[i], half_);
        std::memcpy(bytes_.data() + (2 * i + 1) * half_, v_[i], half_);
      }
    }
    std::vector<const std::byte*> k_, v_;
    uint32_t half_;
    std::vector<std::byte> bytes_;
    FakeDeviceCopier* owner_;
  };

  Result<std::unique_ptr<HostCopy>> copy_to_host(const LayerBlocks& b, uint32_t half) override {
    if (b.memory != MemoryKind::kDevice) return Status::error("not device memory");
    events_seen.push_back(b.ready_event);  // the caller's thread, inside send_layer
    const bool deferred = to_host++ % 2 == 1;
    return std::unique_ptr<HostCopy>(std::make_unique<Copy>(b, half, deferred, this));
  }
  std::byte* alloc_host(size_t bytes) override {
    ++pinned_allocs;
    return new std::byte[bytes];
  }
  void free_host(std::byte* p) override {
    ++pinned_frees;
    delete[] p;
  }
  Status copy_to_device(int device, std::span<const KvSink::Destination> dst, uint32_t half,
                        const std::byte* src) override {
    last_device = device;
    for (const KvSink::Destination& d : dst) {
      std::memcpy(d.k, src, half);
      std::memcpy(d.v, src + half, half);
      src += 2 * half;
    }
    ++to_device;
    return Status();
  }

  std::vector<void*> events_seen;  // engine thread only in these tests
  std::atomic<int> to_host{0}, waits{0}, to_device{0}, pinned_allocs{0}, pinned_frees{0};
  std::atomic<int> last_device{-1};
};

struct Source {
  Source(std::mt19937_64& rng, uint32_t blocks) : num_blocks(blocks) {
    for (uint32_t i = 0; i < kLayout.num_layers * blocks; ++i) {
      k.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
      v.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
    }
  }
  LayerBlocks layer(RequestId r, uint32_t l) const {
    LayerBlocks lb{r, l, 0, {}, {}};
    for (uint32_t b = 0; b < num_blocks; ++b) {
      lb.k_blocks.push_back(k[l * num_blocks + b].data());
      lb.v_blocks.push_back(v[l * num_blocks + b].data());
    }
    return lb;
  }
  std::vector<std::byte> packed(uint32_t l) const {  // wire order
    std::vector<std::byte> out;
    for (uint32_t b = 0; b < num_blocks; ++b) {
      out.insert(out.end(), k[l * num_blocks + b].begin(), k[l * num_blocks + b].end());
      out.insert(out.end(), v[l * num_blocks + b].begin(), v[l * num_blocks + b].end());
    }
    return out;
  }
  std::vector<std::byte> expected(uint32_t l, uint32_t b) const {
    std::vector<std::byte> out = k[l * num_blocks + b];
    out.insert(out.end(), v[l * num_blocks + b].begin(), v[l * num_blocks + b].end());
    return out;
  }
  uint32_t num_blocks;
  std::vector<std::vector<std::byte>> k, v;
};

Completion into(std::promise<Status>& p) {
  return [&p](Status s) { p.set_value(std::move(s)); };
}

class LinkTest : public ::testing::Test {
 protected:
  void start(std::chrono::milliseconds delay, bool accept = true) {
    acceptor_ = std::make_unique<FakeAcceptor>(&wire_, delay, accept);
    receiver_ = std::make_unique<TcpKvReceiver>(kLayout, &sink_, "127.0.0.1", 0,
                                                TcpReceiverOptions{nullptr, acceptor_.get()});
    ASSERT_TRUE(receiver_->start().ok());
    to_ = {"127.0.0.1", receiver_->port()};
    sender_.start();
    sender_.connect(to_);
    auto [reply, conn] = initiator_.wait_reply();
    reply_ = reply;
    conn_ = conn;
  }
  // What a NCCL sender does per layer: the payload onto the link, then its header, in order.
  void send_oob(const Source& src, RequestId r, uint32_t l, Completion done) {
    wire_.push(src.packed(l));
    sender_.send_out_of_band(to_, conn_, {r, l, 0, src.num_blocks}, std::move(done));
  }
  void TearDown() override {
    sender_.stop();
    if (receiver_) receiver_->stop();
  }

  FakeKvSink sink_{kLayout, 64};
  FakeWire wire_;
  FakeInitiator initiator_;
  std::unique_ptr<FakeAcceptor> acceptor_;
  std::unique_ptr<TcpKvReceiver> receiver_;
  TcpKvSender sender_{kLayout,
                      TcpSenderOptions{std::chrono::milliseconds(5000), nullptr, &initiator_}};
  Endpoint to_;
  Status reply_;
  ConnectionId conn_ = 0;
  std::mt19937_64 rng_{3};
};

TEST_F(LinkTest, AcceptedLinkCarriesLayersAndDoneWaitsForThem) {
  start(30ms);
  ASSERT_TRUE(reply_.ok()) << reply_.message();
  ASSERT_NE(conn_, 0u);
  ASSERT_TRUE(sink_.reserve(1, 3));
  const Source src(rng_, 3);
  std::promise<Status> sent[5];
  for (uint32_t l = 0; l < kLayout.num_layers; ++l) send_oob(src, 1, l, into(sent[l]));
  // DONE follows right behind the headers on TCP, long before the link lands the layers.
  sender_.send_done(to_, 1, 99, into(sent[4]));
  for (auto& p : sent) EXPECT_TRUE(p.get_future().get().ok());
  ASSERT_TRUE(sink_.wait_for(Event::kDone, 1));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 5u);
  for (uint32_t l = 0; l < 4; ++l) {
    EXPECT_EQ(events[l].kind, Event::kLayer);
    EXPECT_EQ(events[l].layer, l);
    EXPECT_EQ(events[l].bytes, 3u * 2 * kLayout.half_block_bytes());
    for (uint32_t b = 0; b < 3; ++b) EXPECT_EQ(sink_.block(1, l, b), src.expected(l, b));
  }
  EXPECT_EQ(events[4].kind, Event::kDone);
  EXPECT_EQ(events[4].first_token, 99);
  EXPECT_TRUE(sink_.untouched_outside_reservations());
  EXPECT_EQ(acceptor_->landed(), 4);
  EXPECT_EQ(sender_.stats().out_of_band_frames, 4u);
  EXPECT_EQ(sender_.stats().frames_sent, 5u);  // the HELLO is not a frame of a request
  EXPECT_EQ(sender_.stats().bytes_sent, 6 * kFrameHeaderBytes + kHelloPayloadBytes);
  EXPECT_EQ(receiver_->stats().out_of_band_frames, 4u);
  EXPECT_EQ(receiver_->stats().frames_received, 5u);
  EXPECT_EQ(receiver_->stats().links_accepted, 1u);
}

TEST_F(LinkTest, PlainAndOutOfBandLayersMixInOrder) {
  start(20ms);
  ASSERT_TRUE(reply_.ok());
  ASSERT_TRUE(sink_.reserve(2, 2));
  const Source src(rng_, 2);
  std::promise<Status> sent[5];
  // Layers 0 and 2 over the link, 1 and 3 inline: as when a link comes up mid-request.
  send_oob(src, 2, 0, into(sent[0]));
  sender_.send_layer(to_, src.layer(2, 1), into(sent[1]));
  send_oob(src, 2, 2, into(sent[2]));
  sender_.send_layer(to_, src.layer(2, 3), into(sent[3]));
  sender_.send_done(to_, 2, 5, into(sent[4]));
  for (auto& p : sent) EXPECT_TRUE(p.get_future().get().ok());
  ASSERT_TRUE(sink_.wait_for(Event::kDone, 1));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 5u);
  for (uint32_t l = 0; l < 4; ++l) {
    EXPECT_EQ(events[l].kind, Event::kLayer);
    EXPECT_EQ(events[l].layer, l) << "sink calls must keep frame order";
    for (uint32_t b = 0; b < 2; ++b) EXPECT_EQ(sink_.block(2, l, b), src.expected(l, b));
  }
}

TEST_F(LinkTest, PostWaitsForLayersStillLanding) {
  start(200ms);
  ASSERT_TRUE(sink_.reserve(3, 1));
  const Source src(rng_, 1);
  std::promise<Status> sent;
  send_oob(src, 3, 0, into(sent));
  EXPECT_TRUE(sent.get_future().get().ok());
  for (int i = 0; i < 500 && acceptor_->started() == 0; ++i) std::this_thread::sleep_for(2ms);
  ASSERT_EQ(acceptor_->started(), 1);
  // The owner withdraws the request here: its blocks may be reused only after the write.
  std::promise<int> landed_when_run;
  receiver_->post([&] { landed_when_run.set_value(acceptor_->landed()); });
  EXPECT_EQ(landed_when_run.get_future().get(), 1);
  // With nothing in flight, a post runs at once.
  std::promise<void> ran;
  receiver_->post([&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(5s), std::future_status::ready);
}

TEST_F(LinkTest, OutOfBandLayerWithoutDestinationIsDrainedAndRejected) {
  start(5ms);
  ASSERT_TRUE(sink_.reserve(4, 1));
  const Source src(rng_, 1);
  std::promise<Status> a, b;
  send_oob(src, 777, 0, into(a));  // not reserved: the payload is taken off the link anyway
  send_oob(src, 4, 1, into(b));    // so this one still pairs with its own payload
  EXPECT_TRUE(a.get_future().get().ok());
  EXPECT_TRUE(b.get_future().get().ok());
  ASSERT_TRUE(sink_.wait_for(Event::kLayer, 1));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Event::kRejected);
  EXPECT_EQ(events[0].request, 777u);
  EXPECT_NE(events[0].reason.find("no destination"), std::string::npos) << events[0].reason;
  EXPECT_EQ(events[1].kind, Event::kLayer);
  EXPECT_EQ(sink_.block(4, 1, 0), src.expected(1, 0));
  EXPECT_TRUE(wire_.pop().empty());  // both payloads were taken off the link
  EXPECT_TRUE(sink_.untouched_outside_reservations());
}

TEST_F(LinkTest, BrokenLinkRejectsTheLayerAndClosesTheConnection) {
  start(5ms);
  ASSERT_TRUE(sink_.reserve(5, 1));
  const Source src(rng_, 1);
  acceptor_->fail_next();
  std::promise<Status> sent;
  send_oob(src, 5, 0, into(sent));
  EXPECT_TRUE(sent.get_future().get().ok());  // the header was written; the link failed later
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 1));
  EXPECT_NE(sink_.events()[0].reason.find("fake link broke"), std::string::npos);
  // The sender hears the connection close and tells its link to go.
  ASSERT_TRUE(initiator_.wait_closed());
  EXPECT_EQ(initiator_.closed()[0].first, conn_);
  for (int i = 0; i < 500 && acceptor_->closed() == 0; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_EQ(acceptor_->closed(), 1);
  // A header bound to the dead connection is never written to a new one.
  std::promise<Status> stale;
  send_oob(src, 5, 1, into(stale));
  const Status s = stale.get_future().get();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("connection of its link is gone"), std::string::npos) << s.message();
}

TEST_F(LinkTest, RefusedHelloLeavesPlainFramesWorking) {
  start(5ms, /*accept=*/false);
  ASSERT_FALSE(reply_.ok());
  EXPECT_NE(reply_.message().find("test receiver refuses links"), std::string::npos)
      << reply_.message();
  ASSERT_TRUE(sink_.reserve(6, 2));
  const Source src(rng_, 2);
  std::promise<Status> a, b;
  sender_.send_layer(to_, src.layer(6, 0), into(a));
  sender_.send_done(to_, 6, 1, into(b));
  EXPECT_TRUE(a.get_future().get().ok());
  EXPECT_TRUE(b.get_future().get().ok());
  ASSERT_TRUE(sink_.wait_for(Event::kDone, 1));
  EXPECT_EQ(sink_.block(6, 0, 1), src.expected(0, 1));
  EXPECT_EQ(receiver_->stats().links_refused, 1u);

  // A sender that sends an out-of-band header anyway has lost track: the stream is dropped.
  std::promise<Status> c;
  send_oob(src, 6, 1, into(c));
  c.get_future().get();
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 1));
  EXPECT_NE(sink_.events().back().reason.find("without an accepted link"), std::string::npos);
}

TEST(LinkHelloTest, ReceiverWithoutLinksRefusesAndFramesStillArrive) {
  FakeKvSink sink(kLayout, 8);
  TcpKvReceiver receiver(kLayout, &sink, "127.0.0.1", 0);
  ASSERT_TRUE(receiver.start().ok());
  FakeInitiator initiator;
  TcpKvSender sender(kLayout, {std::chrono::milliseconds(5000), nullptr, &initiator});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  ASSERT_TRUE(sink.reserve(1, 1));
  std::mt19937_64 rng(1);
  const Source src(rng, 1);
  std::promise<Status> a;
  sender.send_layer(to, src.layer(1, 2), into(a));  // opens the connection: HELLO goes first
  EXPECT_TRUE(a.get_future().get().ok());
  auto [reply, conn] = initiator.wait_reply();
  EXPECT_FALSE(reply.ok());
  EXPECT_NE(reply.message().find("takes no NCCL link"), std::string::npos) << reply.message();
  ASSERT_TRUE(sink.wait_for(Event::kLayer, 1));
  EXPECT_EQ(sink.block(1, 2, 0), src.expected(2, 0));
  EXPECT_EQ(receiver.stats().links_refused, 1u);
  EXPECT_EQ(receiver.stats().frames_rejected, 0u);
  EXPECT_EQ(initiator.replies(), 1u);
  sender.stop();
  // Stopping closes the connection: the initiator is told, so a link would be torn down.
  ASSERT_TRUE(initiator.wait_closed());
  EXPECT_NE(initiator.closed()[0].second.find("sender stopped"), std::string::npos);
}

TEST(LinkHelloTest, SenderWithoutOfferSendsNoHello) {
  FakeKvSink sink(kLayout, 8);
  FakeWire wire;
  FakeAcceptor acceptor(&wire, 0ms);
  TcpKvReceiver receiver(kLayout, &sink, "127.0.0.1", 0, {nullptr, &acceptor});
  ASSERT_TRUE(receiver.start().ok());
  FakeInitiator initiator(/*offer=*/false);
  TcpKvSender sender(kLayout, {std::chrono::milliseconds(5000), nullptr, &initiator});
  sender.start();
  std::promise<Status> a;
  sender.send_abort({"127.0.0.1", receiver.port()}, 3, into(a));
  EXPECT_TRUE(a.get_future().get().ok());
  ASSERT_TRUE(sink.wait_for(Event::kAbort, 1));
  EXPECT_EQ(receiver.stats().links_accepted + receiver.stats().links_refused, 0u);
  EXPECT_EQ(sender.stats().bytes_sent, kFrameHeaderBytes);
  sender.stop();
  EXPECT_TRUE(initiator.closed().empty());  // no HELLO, no link to tear down
}

TEST(DeviceCopierTest, DeviceLayersTravelThroughTheCopierOnBothEnds) {
  FakeDeviceCopier copier;
  FakeKvSink sink(kLayout, 16, 7, MemoryKind::kDevice, /*device=*/1);
  TcpKvReceiver receiver(kLayout, &sink, "127.0.0.1", 0, {&copier, nullptr});
  ASSERT_TRUE(receiver.start().ok());
  TcpKvSender sender(kLayout, {std::chrono::milliseconds(5000), &copier, nullptr});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  ASSERT_TRUE(sink.reserve(8, 3));
  std::mt19937_64 rng(8);
  const Source src(rng, 3);
  int events[4];
  std::promise<Status> sent[5];
  for (uint32_t l = 0; l < 4; ++l) {
    LayerBlocks lb = src.layer(8, l);
    lb.memory = MemoryKind::kDevice;
    lb.device = 0;
    lb.ready_event = &events[l];
    sender.send_layer(to, std::move(lb), into(sent[l]));
    // Consumed before send_layer returned: the runner may record the event again now.
    ASSERT_EQ(copier.events_seen.size(), l + 1);
    EXPECT_EQ(copier.events_seen[l], &events[l]);
  }
  sender.send_done(to, 8, 4, into(sent[4]));
  for (auto& p : sent) EXPECT_TRUE(p.get_future().get().ok());
  ASSERT_TRUE(sink.wait_for(Event::kDone, 1));
  for (uint32_t l = 0; l < 4; ++l) {
    for (uint32_t b = 0; b < 3; ++b) EXPECT_EQ(sink.block(8, l, b), src.expected(l, b));
  }
  EXPECT_EQ(copier.to_host, 4);
  EXPECT_EQ(copier.waits, 4);  // the transport thread waited for each copy before writing
  EXPECT_EQ(copier.to_device, 4);
  EXPECT_EQ(copier.last_device, 1);
  EXPECT_GE(copier.pinned_allocs, 1);  // payloads were read into page-locked staging
  EXPECT_TRUE(sink.untouched_outside_reservations());
  sender.stop();
  receiver.stop();
}

TEST(DeviceCopierTest, DeviceMemoryWithoutACopierIsAnError) {
  FakeKvSink device_sink(kLayout, 4, 7, MemoryKind::kDevice, 0);
  TcpKvReceiver receiver(kLayout, &device_sink, "127.0.0.1", 0);
  const Status st = receiver.start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("DeviceCopier"), std::string::npos) << st.message();

  TcpKvSender sender(kLayout);
  sender.start();
  std::vector<std::byte> k(kLayout.half_block_bytes()), v(kLayout.half_block_bytes());
  LayerBlocks lb{1, 0, 0, {k.data()}, {v.data()}};
  lb.memory = MemoryKind::kDevice;
  std::promise<Status> p;
  sender.send_layer({"127.0.0.1", 1}, std::move(lb), into(p));
  const Status s = p.get_future().get();
  EXPECT_NE(s.message().find("no DeviceCopier"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace splitwise::transport
