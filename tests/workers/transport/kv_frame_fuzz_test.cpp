// Fuzzes the frame decoder and a live receiver with garbage and with valid frames that
// were mutated (bit flips, truncation, extension, field changes with a re-sealed header
// CRC so the field checks themselves are reached). The receiver must never write outside
// the blocks reserved for a request, never write anything for a frame it rejects, and
// keep accepting valid frames afterwards.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <random>

#include "tests/workers/transport/transport_test_util.h"
#include "workers/transport/tcp_kv_transport.h"

namespace splitwise::transport {
namespace {

using testing::FakeKvSink;
using Event = FakeKvSink::Event;

const KvLayout kLayout{2, 2, 2};  // half block = 16 bytes: small frames, many iterations
constexpr int kIterations = 20000;
constexpr auto kReceiverBudget = std::chrono::seconds(4);

// Header fields as (offset, size), for mutations that keep the header CRC valid.
constexpr std::pair<size_t, size_t> kFields[] = {{4, 2},  {6, 2},  {8, 8},  {16, 4}, {20, 4},
                                                 {24, 4}, {28, 4}, {32, 4}, {36, 4}, {40, 4},
                                                 {44, 4}, {48, 4}, {52, 2}, {54, 2}, {56, 4}};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // A valid frame: mostly LAYERs for requests 1 and 2 (reserved) and 3 (not), with block
  // ranges that sometimes run past the reservation.
  std::vector<std::byte> valid_frame() {
    const uint64_t pick = below(10);
    FrameHeader h;
    h.layout = kLayout;
    h.request = 1 + below(3);
    if (pick < 7) {
      h = testing::layer_header(kLayout, h.request, below(kLayout.num_layers), below(6), below(5));
      return testing::make_frame(h, testing::random_bytes(rng_, h.num_blocks * 32));
    }
    if (pick == 9 && below(2)) {  // a HELLO: answered with REFUSE, the stream goes on
      h.kind = FrameKind::kHello;
      h.request = 0;
      return testing::make_frame(h, testing::random_bytes(rng_, kHelloPayloadBytes));
    }
    h.kind = pick < 8 ? FrameKind::kDone : FrameKind::kAbort;
    h.first_token = static_cast<int32_t>(rng_());
    return testing::make_frame(h, {});
  }

  // An interesting value for a field: boundaries more often than uniform noise.
  uint64_t field_value() {
    static constexpr uint64_t kEdges[] = {
        0, 1, 2, 3, 16, 32, 65535, 65536, 65537, 1u << 30, ~0u, ~0ull, 0x80000000, 0x7FFFFFFF};
    return below(2) ? kEdges[below(std::size(kEdges))] : rng_();
  }

  // Mutates `bytes` in place; returns whether a header byte (first 64) changed by bit flips
  // only, in which case the CRC must catch it.
  bool mutate(std::vector<std::byte>& bytes) {
    switch (below(6)) {
      case 0: {  // 1 to 3 bit flips: CRC32C detects all of these
        bool header_only = true;
        const uint64_t flips = 1 + below(3);
        std::vector<size_t> bits;
        for (uint64_t i = 0; i < flips; ++i) {
          size_t bit;
          do bit = below(bytes.size() * 8);
          while (std::find(bits.begin(), bits.end(), bit) != bits.end());
          bits.push_back(bit);
          bytes[bit / 8] ^= std::byte(1u << (bit % 8));
          header_only = header_only && bit / 8 < kFrameHeaderBytes;
        }
        return header_only;
      }
      case 1:  // truncation
        bytes.resize(below(bytes.size()));
        return false;
      case 2: {  // extension with noise (or with a second valid frame's start)
        auto tail = below(2) ? testing::random_bytes(rng_, 1 + below(100)) : valid_frame();
        if (!tail.empty() && below(2)) tail.resize(below(tail.size()));
        bytes.insert(bytes.end(), tail.begin(), tail.end());
        return false;
      }
      case 3: {  // field rewrite, header CRC re-sealed
        const auto [off, size] = kFields[below(std::size(kFields))];
        const uint64_t v = field_value();
        for (size_t i = 0; i < size; ++i) bytes[off + i] = static_cast<std::byte>(v >> (8 * i));
        const uint32_t crc = crc32c(std::span(bytes.data(), kHeaderCrcOffset));
        for (int i = 0; i < 4; ++i) {
          bytes[kHeaderCrcOffset + i] = static_cast<std::byte>(crc >> (8 * i));
        }
        return false;
      }
      case 4:  // pure garbage
        bytes = testing::random_bytes(rng_, below(200));
        return false;
      default:  // left valid, so accepted frames are interleaved with the bad ones
        return false;
    }
  }

 private:
  std::mt19937_64 rng_;
};

// Whatever decode_header accepts must be internally consistent.
void expect_sane(const FrameHeader& h) {
  ASSERT_GE(static_cast<int>(h.kind), 1);
  ASSERT_LE(static_cast<int>(h.kind), 6);
  ASSERT_LE(static_cast<int>(h.layout.format), 2);
  if (h.kind != FrameKind::kLayer) {
    ASSERT_EQ(h.flags, 0u);
    ASSERT_EQ(h.num_blocks, 0u);
    if (h.kind == FrameKind::kHello) {
      ASSERT_EQ(h.payload_bytes, kHelloPayloadBytes);
    } else if (h.kind == FrameKind::kRefuse) {
      ASSERT_LE(h.payload_bytes, kMaxRefuseReasonBytes);
    } else {
      ASSERT_EQ(h.payload_bytes, 0u);
    }
    return;
  }
  ASSERT_EQ(h.flags & ~kFrameFlagOutOfBand, 0u);
  ASSERT_LE(h.num_blocks, kMaxFrameBlocks);
  ASSERT_LE(h.payload_bytes, kMaxPayloadBytes);
  ASSERT_EQ(h.payload_bytes, uint64_t{h.num_blocks} * 2 * h.half_block_bytes);
  ASSERT_LT(h.layer, h.layout.num_layers);
}

TEST(KvFrameFuzzTest, DecoderRejectsCorruptionAndNeverAcceptsNonsense) {
  Mutator m(1234);
  int accepted = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::vector<std::byte> bytes = m.valid_frame();
    bytes.resize(kFrameHeaderBytes);  // the header alone
    const bool must_reject = m.mutate(bytes);
    Result<FrameHeader> r = decode_header(bytes);
    if (must_reject) {
      ASSERT_FALSE(r.ok()) << "iteration " << i;
    }
    if (r.ok()) {
      ++accepted;
      expect_sane(*r);
    }
  }
  EXPECT_GT(accepted, 0);  // the unmutated share
}

TEST(KvFrameFuzzTest, ReceiverWritesOnlyReservedBlocksAndSurvives) {
  // 20000 rejections would each log a warning; the sink records them instead.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);
  FakeKvSink sink(kLayout, 16);
  ASSERT_TRUE(sink.reserve(1, 4));
  ASSERT_TRUE(sink.reserve(2, 4));
  TcpKvReceiver receiver(kLayout, &sink, "127.0.0.1", 0);
  ASSERT_TRUE(receiver.start().ok());

  Mutator m(99);
  std::vector<std::byte> pool = sink.snapshot();
  size_t layers_seen = 0;
  int iterations = 0;
  const auto deadline = std::chrono::steady_clock::now() + kReceiverBudget;
  for (; iterations < kIterations && std::chrono::steady_clock::now() < deadline; ++iterations) {
    std::vector<std::byte> stream;
    for (uint64_t n = 1 + m.below(3); n > 0; --n) {
      const auto f = m.valid_frame();
      stream.insert(stream.end(), f.begin(), f.end());
    }
    m.mutate(stream);
    // Returns once the receiver has closed the connection, i.e. finished with the stream.
    ASSERT_TRUE(testing::raw_exchange(receiver.port(), stream)) << "iteration " << iterations;
    ASSERT_TRUE(sink.untouched_outside_reservations()) << "iteration " << iterations;
    const size_t layers = sink.count(Event::kLayer);
    std::vector<std::byte> now = sink.snapshot();
    if (layers == layers_seen) {
      ASSERT_EQ(now, pool) << "a rejected frame wrote, iteration " << iterations;
    }
    layers_seen = layers;
    pool = std::move(now);
  }
  spdlog::set_level(level);
  RecordProperty("receiver_iterations", iterations);
  std::printf("receiver fuzz: %d iterations, %zu layers accepted, %zu frames rejected\n",
              iterations, layers_seen, sink.count(Event::kRejected));
  EXPECT_GE(iterations, 1000);
  EXPECT_GT(sink.count(Event::kRejected), 0u);
  EXPECT_EQ(receiver.stats().frames_rejected, sink.count(Event::kRejected));

  // Valid frames from a real sender, on a new connection, still land exactly.
  std::mt19937_64 rng(5);
  std::vector<std::vector<std::byte>> k, v;
  for (int i = 0; i < 2 * 4; ++i) {
    k.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
    v.push_back(testing::random_bytes(rng, kLayout.half_block_bytes()));
  }
  TcpKvSender sender(kLayout);
  sender.start();
  const size_t before = sink.count(Event::kLayer);
  std::promise<Status> sent[2];
  for (uint32_t l = 0; l < 2; ++l) {
    LayerBlocks lb{1, l, 0, {}, {}};
    for (int b = 0; b < 4; ++b) {
      lb.k_blocks.push_back(k[l * 4 + b].data());
      lb.v_blocks.push_back(v[l * 4 + b].data());
    }
    sender.send_layer({"127.0.0.1", receiver.port()}, std::move(lb),
                      [&sent = sent[l]](Status s) { sent.set_value(s); });
  }
  for (auto& p : sent) {
    const Status s = p.get_future().get();
    EXPECT_TRUE(s.ok()) << s.message();
  }
  ASSERT_TRUE(sink.wait_for(Event::kLayer, before + 2));
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t b = 0; b < 4; ++b) {
      std::vector<std::byte> want = k[l * 4 + b];
      want.insert(want.end(), v[l * 4 + b].begin(), v[l * 4 + b].end());
      EXPECT_EQ(sink.block(1, l, b), want);
    }
  }
  EXPECT_TRUE(sink.untouched_outside_reservations());
}

}  // namespace
}  // namespace splitwise::transport
