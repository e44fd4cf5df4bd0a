#include "workers/transport/tcp_kv_transport.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <future>
#include <random>
#include <thread>

#include "tests/workers/transport/transport_test_util.h"

namespace splitwise::transport {
namespace {

using testing::FakeKvSink;
using Event = FakeKvSink::Event;

const KvLayout kLayout{5, 4, 8};  // half block = 4 * 8 * 4 = 128 bytes

// One request's source KV: [layer][block] -> K and V, random bytes.
struct SourceKv {
  SourceKv(std::mt19937_64& rng, uint32_t blocks) {
    for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
      for (uint32_t b = 0; b < blocks; ++b) {
        k.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
        v.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
      }
    }
    num_blocks = blocks;
  }
  LayerBlocks layer(RequestId r, uint32_t l, uint32_t first, uint32_t count) const {
    LayerBlocks lb{r, l, first, {}, {}};
    for (uint32_t b = first; b < first + count; ++b) {
      lb.k_blocks.push_back(k[l * num_blocks + b].data());
      lb.v_blocks.push_back(v[l * num_blocks + b].data());
    }
    return lb;
  }
  std::vector<std::byte> expected(uint32_t l, uint32_t b) const {
    std::vector<std::byte> out = k[l * num_blocks + b];
    out.insert(out.end(), v[l * num_blocks + b].begin(), v[l * num_blocks + b].end());
    return out;
  }
  uint32_t num_blocks;
  std::vector<std::vector<std::byte>> k, v;
};

// Collects completions so a test can wait for all of them.
class Completions {
 public:
  Completion add() {
    auto p = std::make_shared<std::promise<Status>>();
    futures_.push_back(p->get_future());
    return [p](Status s) { p->set_value(std::move(s)); };
  }
  std::vector<Status> wait() {
    std::vector<Status> out;
    for (auto& f : futures_) {
      EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
      out.push_back(f.get());
    }
    futures_.clear();
    return out;
  }

 private:
  std::vector<std::future<Status>> futures_;
};

// A port nothing listens on: bound once by the kernel's choice, then released.
uint16_t closed_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

class TcpKvTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(receiver_.start().ok());
    to_ = {"127.0.0.1", receiver_.port()};
    sender_.start();
  }
  FakeKvSink sink_{kLayout, 256};
  TcpKvReceiver receiver_{kLayout, &sink_, "127.0.0.1", 0};
  TcpKvSender sender_{kLayout};
  Endpoint to_;
  std::mt19937_64 rng_{42};
};

TEST_F(TcpKvTransportTest, LayersLandInTheReservedBlocks) {
  ASSERT_NE(receiver_.port(), 0);
  ASSERT_TRUE(sink_.reserve(42, 7));
  const SourceKv src(rng_, 7);
  Completions done;
  for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
    // Two frames per layer: exercises first_block != 0.
    sender_.send_layer(to_, src.layer(42, l, 0, 3), done.add());
    sender_.send_layer(to_, src.layer(42, l, 3, 4), done.add());
  }
  sender_.send_done(to_, 42, 31337, done.add());
  for (const Status& s : done.wait()) EXPECT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(sink_.wait_for(Event::kDone, 1));

  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 11u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(events[i].kind, Event::kLayer);
    EXPECT_EQ(events[i].request, 42u);
    EXPECT_EQ(events[i].layer, i / 2);
    EXPECT_EQ(events[i].first_block, i % 2 ? 3u : 0u);
    EXPECT_EQ(events[i].num_blocks, i % 2 ? 4u : 3u);
    EXPECT_EQ(events[i].bytes, events[i].num_blocks * 2 * kLayout.half_block_bytes());
  }
  EXPECT_EQ(events[10].first_token, 31337);
  for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
    for (uint32_t b = 0; b < 7; ++b) EXPECT_EQ(sink_.block(42, l, b), src.expected(l, b));
  }
  EXPECT_TRUE(sink_.untouched_outside_reservations());

  const uint64_t wire = 11 * kFrameHeaderBytes + 5 * 7 * 2 * kLayout.half_block_bytes();
  EXPECT_EQ(sender_.stats().frames_sent, 11u);
  EXPECT_EQ(sender_.stats().bytes_sent, wire);
  EXPECT_EQ(sender_.stats().send_failures, 0u);
  EXPECT_EQ(receiver_.stats().frames_received, 11u);
  EXPECT_EQ(receiver_.stats().bytes_received, wire);
  EXPECT_EQ(receiver_.stats().frames_rejected, 0u);
}

TEST_F(TcpKvTransportTest, ManyRequestsInterleavedFromTwoSenders) {
  TcpKvSender second(kLayout);
  second.start();
  constexpr int kRequests = 24;
  std::vector<SourceKv> sources;
  for (int r = 0; r < kRequests; ++r) {
    ASSERT_TRUE(sink_.reserve(100 + r, 1 + r % 5));
    sources.emplace_back(rng_, 1 + r % 5);
  }
  // Each sender thread walks layers outermost, so requests interleave on the wire.
  auto run = [&](TcpKvSender& s, int parity, Completions& done) {
    for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
      for (int r = parity; r < kRequests; r += 2) {
        s.send_layer(to_, sources[r].layer(100 + r, l, 0, sources[r].num_blocks), done.add());
      }
    }
    for (int r = parity; r < kRequests; r += 2) s.send_done(to_, 100 + r, r, done.add());
  };
  Completions d0, d1;
  std::thread t0([&] { run(sender_, 0, d0); });
  std::thread t1([&] { run(second, 1, d1); });
  t0.join();
  t1.join();
  for (Completions* d : {&d0, &d1}) {
    for (const Status& s : d->wait()) EXPECT_TRUE(s.ok()) << s.message();
  }
  ASSERT_TRUE(sink_.wait_for(Event::kDone, kRequests));
  EXPECT_EQ(sink_.count(Event::kLayer), kRequests * kLayout.num_layers);
  for (int r = 0; r < kRequests; ++r) {
    for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
      for (uint32_t b = 0; b < sources[r].num_blocks; ++b) {
        ASSERT_EQ(sink_.block(100 + r, l, b), sources[r].expected(l, b)) << r << " " << l;
      }
    }
  }
  for (const Event& e : sink_.events()) {
    if (e.kind == Event::kDone) {
      EXPECT_EQ(e.first_token, static_cast<int32_t>(e.request - 100));
    }
  }
  EXPECT_TRUE(sink_.untouched_outside_reservations());
}

TEST_F(TcpKvTransportTest, AbortIsDelivered) {
  std::promise<Status> p;
  sender_.send_abort(to_, 9, [&](Status s) { p.set_value(s); });
  EXPECT_TRUE(p.get_future().get().ok());
  ASSERT_TRUE(sink_.wait_for(Event::kAbort, 1));
  EXPECT_EQ(sink_.events()[0].request, 9u);
}

TEST_F(TcpKvTransportTest, UnknownRequestIsRejectedButConnectionStaysUsable) {
  ASSERT_TRUE(sink_.reserve(1, 2));
  const SourceKv src(rng_, 3);
  const auto before = sink_.snapshot();
  Completions done;
  sender_.send_layer(to_, src.layer(555, 0, 0, 2), done.add());  // not reserved
  sender_.send_layer(to_, src.layer(1, 0, 0, 3), done.add());    // index 2 is past the table
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 2));
  EXPECT_EQ(sink_.snapshot(), before);  // not even the blocks that had somewhere to go
  sender_.send_layer(to_, src.layer(1, 0, 0, 2), done.add());  // same connection, fine
  for (const Status& s : done.wait()) EXPECT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(sink_.wait_for(Event::kLayer, 1));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, Event::kRejected);
  EXPECT_EQ(events[0].request, 555u);
  EXPECT_NE(events[0].reason.find("no destination"), std::string::npos) << events[0].reason;
  EXPECT_EQ(events[1].kind, Event::kRejected);
  EXPECT_EQ(events[1].request, 1u);
  EXPECT_EQ(events[2].kind, Event::kLayer);
  EXPECT_EQ(sink_.block(1, 0, 0), src.expected(0, 0));
  EXPECT_EQ(sink_.block(1, 0, 1), src.expected(0, 1));
  EXPECT_EQ(receiver_.stats().frames_rejected, 2u);
  EXPECT_EQ(receiver_.stats().frames_received, 1u);
  EXPECT_EQ(sender_.stats().frames_sent, 3u);
  EXPECT_EQ(sender_.stats().send_failures, 0u);
  EXPECT_TRUE(sink_.untouched_outside_reservations());
}

TEST_F(TcpKvTransportTest, ClosedPortFailsNamingTheEndpointAndLaterSendsReconnect) {
  const uint16_t port = closed_port();
  const Endpoint nowhere{"127.0.0.1", port};
  std::promise<Status> p1, p2;
  sender_.send_done(nowhere, 1, 0, [&](Status s) { p1.set_value(s); });
  sender_.send_done(nowhere, 2, 0, [&](Status s) { p2.set_value(s); });
  for (auto* p : {&p1, &p2}) {
    const Status s = p->get_future().get();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << s.message();
  }
  EXPECT_EQ(sender_.stats().send_failures, 2u);

  // Something now listens there: the next send connects afresh and is delivered.
  FakeKvSink sink2(kLayout, 4);
  TcpKvReceiver late(kLayout, &sink2, "127.0.0.1", port);
  ASSERT_TRUE(late.start().ok());
  std::promise<Status> p3;
  sender_.send_done(nowhere, 3, 17, [&](Status s) { p3.set_value(s); });
  EXPECT_TRUE(p3.get_future().get().ok());
  ASSERT_TRUE(sink2.wait_for(Event::kDone, 1));
  EXPECT_EQ(sink2.events()[0].first_token, 17);
}

TEST_F(TcpKvTransportTest, MismatchedLayoutIsRejectedAndNothingWritten) {
  const KvLayout other{6, 4, 8};  // one more layer than the receiver holds
  std::vector<std::byte> k(kLayout.half_block_bytes()), v(kLayout.half_block_bytes());
  TcpKvSender wrong(other);  // after k and v: they must outlive its sends
  wrong.start();
  ASSERT_TRUE(sink_.reserve(5, 2));
  const auto before = sink_.snapshot();
  wrong.send_layer(to_, {5, 0, 0, {k.data()}, {v.data()}}, [](Status) {});
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 1));
  const Event e = sink_.events()[0];
  EXPECT_EQ(e.request, 5u);
  EXPECT_NE(e.reason.find("layout mismatch"), std::string::npos) << e.reason;
  EXPECT_EQ(sink_.snapshot(), before);
  EXPECT_EQ(receiver_.stats().frames_rejected, 1u);

  // Every frame from that peer is refused, DONE included: its KV cannot be trusted.
  // (A send may race the sender noticing the closed connection and fail; try again.)
  for (int attempt = 0; attempt < 50 && sink_.count(Event::kRejected) < 2; ++attempt) {
    wrong.send_done(to_, 5, 0, [](Status) {});
    sink_.wait_for(Event::kRejected, 2, std::chrono::milliseconds(100));
  }
  ASSERT_GE(sink_.count(Event::kRejected), 2u);
  EXPECT_EQ(sink_.count(Event::kDone), 0u);
  EXPECT_EQ(receiver_.stats().frames_received, 0u);
}

TEST_F(TcpKvTransportTest, MismatchedFormatIsRejectedNamingBothFormats) {
  // Same shape, other element type: a bf16 CUDA worker talking to an fp32 CPU worker.
  KvLayout gpu = kLayout;
  gpu.format = KvFormat::kGpuBf16;
  std::vector<std::byte> k(gpu.half_block_bytes()), v(gpu.half_block_bytes());
  TcpKvSender wrong(gpu);
  wrong.start();
  ASSERT_TRUE(sink_.reserve(5, 2));
  const auto before = sink_.snapshot();
  wrong.send_layer(to_, {5, 0, 0, {k.data()}, {v.data()}}, [](Status) {});
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 1));
  const Event e = sink_.events()[0];
  EXPECT_EQ(e.request, 5u);
  EXPECT_NE(e.reason.find("KV format mismatch: peer sends gpu-bf16, this worker holds cpu-f32"),
            std::string::npos)
      << e.reason;
  EXPECT_EQ(sink_.snapshot(), before);
  EXPECT_EQ(receiver_.stats().frames_received, 0u);
}

TEST_F(TcpKvTransportTest, TruncatedAndCorruptFramesWriteNothing) {
  ASSERT_TRUE(sink_.reserve(8, 2));
  const auto before = sink_.snapshot();
  const auto payload = testing::random_bytes(rng_, 2 * 2 * kLayout.half_block_bytes());
  const auto frame = testing::make_frame(testing::layer_header(kLayout, 8, 1, 0, 2), payload);
  // Cut inside the header, at its end, and inside the payload.
  for (size_t cut : {size_t{10}, kFrameHeaderBytes, frame.size() - 1}) {
    ASSERT_TRUE(testing::raw_exchange(receiver_.port(), std::span(frame.data(), cut)));
  }
  auto corrupt = frame;
  corrupt.back() ^= std::byte{0x40};
  ASSERT_TRUE(testing::raw_exchange(receiver_.port(), corrupt));
  ASSERT_TRUE(sink_.wait_for(Event::kRejected, 4));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_NE(events[0].reason.find("truncated frame header"), std::string::npos);
  EXPECT_NE(events[1].reason.find("truncated LAYER payload: 0 of"), std::string::npos);
  EXPECT_NE(events[2].reason.find("truncated LAYER payload"), std::string::npos);
  EXPECT_NE(events[3].reason.find("payload checksum"), std::string::npos);
  EXPECT_EQ(sink_.snapshot(), before);
  // And the intact frame still lands.
  ASSERT_TRUE(testing::raw_exchange(receiver_.port(), frame));
  ASSERT_TRUE(sink_.wait_for(Event::kLayer, 1));
}

TEST(TcpKvSenderTest, FailsWhenNotRunningOrInvalid) {
  TcpKvSender sender(kLayout);
  std::promise<Status> p;
  sender.send_abort({"127.0.0.1", 1}, 1, [&](Status s) { p.set_value(s); });
  EXPECT_NE(p.get_future().get().message().find("not running"), std::string::npos);

  sender.start();
  std::vector<std::byte> k(kLayout.half_block_bytes());
  std::promise<Status> q;
  sender.send_layer({"127.0.0.1", 1}, {1, 0, 0, {k.data()}, {}}, [&](Status s) { q.set_value(s); });
  const Status s = q.get_future().get();
  EXPECT_NE(s.message().find("1 K blocks but 0 V blocks"), std::string::npos) << s.message();
  sender.stop();
  EXPECT_EQ(sender.stats().send_failures, 2u);
}

TEST(TcpKvSenderTest, StopFailsFramesStillInFlight) {
  // A listener that never accepts: the connection completes in its backlog, then the
  // socket buffers fill and the write stalls, as with a receiver that stopped reading.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor stuck(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const KvLayout big{1, 16, 256};  // 16 KiB half blocks
  std::vector<std::byte> block(big.half_block_bytes());
  LayerBlocks lb{1, 0, 0, {}, {}};
  for (int i = 0; i < 2048; ++i) {  // 64 MiB on the wire, from one buffer
    lb.k_blocks.push_back(block.data());
    lb.v_blocks.push_back(block.data());
  }
  TcpKvSender sender(big);
  sender.start();
  std::promise<Status> first, second;
  const Endpoint to{"127.0.0.1", stuck.local_endpoint().port()};
  sender.send_layer(to, lb, [&](Status s) { first.set_value(s); });
  sender.send_done(to, 1, 0, [&](Status s) { second.set_value(s); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  sender.stop();
  for (auto* p : {&first, &second}) {
    auto f = p->get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
    const Status s = f.get();
    EXPECT_NE(s.message().find("sender stopped"), std::string::npos) << s.message();
  }
  EXPECT_EQ(sender.stats().send_failures, 2u);
  EXPECT_EQ(sender.stats().frames_sent, 0u);
}

TEST(TcpKvReceiverTest, BindErrorsAreReported) {
  FakeKvSink sink(kLayout, 1);
  TcpKvReceiver a(kLayout, &sink, "127.0.0.1", 0);
  ASSERT_TRUE(a.start().ok());
  TcpKvReceiver b(kLayout, &sink, "127.0.0.1", a.port());
  const Status s = b.start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::to_string(a.port())), std::string::npos) << s.message();
  TcpKvReceiver c(kLayout, &sink, "not-an-ip", 0);
  EXPECT_FALSE(c.start().ok());
}

}  // namespace
}  // namespace splitwise::transport
