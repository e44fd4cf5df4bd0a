#include "workers/transport/kv_frame.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace splitwise::transport {
namespace {

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

const KvLayout kLayout{32, 16, 1024};  // half block = 16 * 1024 * 4 = 64 KiB (cpu-f32)

FrameHeader sample_layer() {
  FrameHeader h;
  h.kind = FrameKind::kLayer;
  h.request = 0x0102030405060708ull;
  h.layer = 31;
  h.first_block = 5;
  h.num_blocks = 3;
  h.half_block_bytes = kLayout.half_block_bytes();
  h.layout = kLayout;
  h.payload_bytes = 3ull * 2 * kLayout.half_block_bytes();
  h.payload_crc = 0xDEADBEEF;
  return h;
}

// Rewrites bytes [off, off + value.size()) and re-seals the header CRC, so the decoder's
// field checks (not the CRC) must catch the change.
EncodedHeader patched(EncodedHeader h, size_t off, std::vector<uint8_t> value) {
  for (size_t i = 0; i < value.size(); ++i) h[off + i] = std::byte{value[i]};
  const uint32_t crc = crc32c(std::span(h.data(), kHeaderCrcOffset));
  for (int i = 0; i < 4; ++i) h[kHeaderCrcOffset + i] = static_cast<std::byte>(crc >> (8 * i));
  return h;
}

void expect_rejected(const EncodedHeader& h, const std::string& fragment) {
  Result<FrameHeader> r = decode_header(h);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

TEST(Crc32cTest, KnownVectors) {
  const auto check = [](const std::vector<std::byte>& data, uint32_t want) {
    EXPECT_EQ(crc32c(data), want);
    EXPECT_EQ(crc32c_portable(data), want);
  };
  check(bytes_of("123456789"), 0xE3069283u);
  check({}, 0u);
  // RFC 3720 (iSCSI) appendix B.4 vectors.
  check(std::vector<std::byte>(32, std::byte{0x00}), 0x8A9136AAu);
  check(std::vector<std::byte>(32, std::byte{0xFF}), 0x62A8AB43u);
  std::vector<std::byte> ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = std::byte(i);
  check(ascending, 0x46DD794Eu);
  RecordProperty("crc32c_hardware", crc32c_hardware() ? "sse4.2" : "table");
}

TEST(Crc32cTest, HardwareAndTableAgreeOnEveryLengthAndAlignment) {
  std::mt19937_64 rng(1);
  std::vector<std::byte> buf(300);
  for (auto& b : buf) b = static_cast<std::byte>(rng());
  for (size_t off = 0; off < 8; ++off) {
    for (size_t len = 0; len + off <= buf.size(); ++len) {
      const std::span<const std::byte> s(buf.data() + off, len);
      ASSERT_EQ(crc32c(s), crc32c_portable(s)) << "off " << off << " len " << len;
    }
  }
}

TEST(Crc32cTest, ContinuesAcrossPieces) {
  const auto all = bytes_of("the quick brown fox jumps over the lazy dog");
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    const std::span<const std::byte> a(all.data(), cut), b(all.data() + cut, all.size() - cut);
    EXPECT_EQ(crc32c(b, crc32c(a)), crc32c(all));
    EXPECT_EQ(crc32c_portable(b, crc32c_portable(a)), crc32c(all));
  }
}

TEST(KvFrameTest, RoundTripsEveryKind) {
  const FrameHeader layer = sample_layer();
  FrameHeader done;
  done.kind = FrameKind::kDone;
  done.request = 77;
  done.first_token = -12345;
  done.layout = kLayout;
  FrameHeader abort;
  abort.kind = FrameKind::kAbort;
  abort.request = ~0ull;
  abort.layout = kLayout;
  FrameHeader oob = sample_layer();
  oob.flags = kFrameFlagOutOfBand;
  oob.payload_crc = 0;
  oob.layout.format = KvFormat::kGpuBf16;
  oob.half_block_bytes = oob.layout.half_block_bytes();
  oob.payload_bytes = uint64_t{oob.num_blocks} * 2 * oob.half_block_bytes;
  FrameHeader hello;
  hello.kind = FrameKind::kHello;
  hello.layout = oob.layout;
  hello.payload_bytes = kHelloPayloadBytes;
  hello.payload_crc = 77;
  FrameHeader accept;
  accept.kind = FrameKind::kAccept;
  accept.layout = kLayout;
  FrameHeader refuse;
  refuse.kind = FrameKind::kRefuse;
  refuse.layout = kLayout;
  refuse.payload_bytes = kMaxRefuseReasonBytes;
  for (const FrameHeader& h : {layer, done, abort, oob, hello, accept, refuse}) {
    Result<FrameHeader> r = decode_header(encode_header(h));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->kind, h.kind);
    EXPECT_EQ(r->request, h.request);
    EXPECT_EQ(r->layer, h.layer);
    EXPECT_EQ(r->first_block, h.first_block);
    EXPECT_EQ(r->num_blocks, h.num_blocks);
    EXPECT_EQ(r->half_block_bytes, h.half_block_bytes);
    EXPECT_TRUE(r->layout == h.layout);
    EXPECT_EQ(r->first_token, h.first_token);
    EXPECT_EQ(r->flags, h.flags);
    EXPECT_EQ(r->payload_bytes, h.payload_bytes);
    EXPECT_EQ(r->stream_payload_bytes(), h.out_of_band() ? 0 : h.payload_bytes);
    EXPECT_EQ(r->payload_crc, h.payload_crc);
  }
}

// Pins the documented byte layout, so a refactor cannot change the wire format unseen.
TEST(KvFrameTest, LittleEndianLayout) {
  const EncodedHeader h = encode_header(sample_layer());
  const auto at = [&](size_t i) { return static_cast<unsigned>(h[i]); };
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h.data()), 4), "SWKV");
  EXPECT_EQ(at(4), 2u);  // version
  EXPECT_EQ(at(5), 0u);
  EXPECT_EQ(at(6), 1u);                                      // kind LAYER
  for (int i = 0; i < 8; ++i) EXPECT_EQ(at(8 + i), 8u - i);  // request 0x0102..08
  EXPECT_EQ(at(16), 31u);                                    // layer
  EXPECT_EQ(at(20), 5u);                                     // first_block
  EXPECT_EQ(at(24), 3u);                                     // num_blocks
  EXPECT_EQ(at(30), 1u);                                     // half_block_bytes 0x10000
  EXPECT_EQ(at(32), 32u);                                    // num_layers
  EXPECT_EQ(at(36), 16u);                                    // block_size
  EXPECT_EQ(at(41), 4u);                                     // kv_dim 0x400
  EXPECT_EQ(at(50), 6u);                                     // payload 0x60000 (u32)
  EXPECT_EQ(at(51), 0u);
  EXPECT_EQ(at(52), 0u);     // format cpu-f32
  EXPECT_EQ(at(54), 0u);     // flags
  EXPECT_EQ(at(56), 0xEFu);  // payload crc, low byte first
  EXPECT_EQ(at(59), 0xDEu);

  FrameHeader oob = sample_layer();
  oob.layout.format = KvFormat::kGpuBf16;
  oob.half_block_bytes = oob.layout.half_block_bytes();
  oob.payload_bytes = uint64_t{oob.num_blocks} * 2 * oob.half_block_bytes;
  oob.flags = kFrameFlagOutOfBand;
  oob.payload_crc = 0;
  const EncodedHeader o = encode_header(oob);
  EXPECT_EQ(static_cast<unsigned>(o[52]), 2u);     // format gpu-bf16
  EXPECT_EQ(static_cast<unsigned>(o[54]), 1u);     // OUT_OF_BAND
  EXPECT_EQ(static_cast<unsigned>(o[29]), 0x80u);  // half_block_bytes 0x8000
  EXPECT_TRUE(decode_header(o).ok());
}

TEST(KvFrameTest, FormatSetsTheElementSizeAndUnknownFormatsAreRejected) {
  FrameHeader h = sample_layer();
  h.layout.format = KvFormat::kGpuBf16;  // same shape, half the bytes
  expect_rejected(encode_header(h), "half_block_bytes");
  h.half_block_bytes /= 2;
  h.payload_bytes /= 2;
  ASSERT_TRUE(decode_header(encode_header(h)).ok());
  EXPECT_EQ(decode_header(encode_header(h))->layout.format, KvFormat::kGpuBf16);
  h.layout.format = KvFormat::kGpuF32;
  expect_rejected(encode_header(h), "half_block_bytes");
  expect_rejected(patched(encode_header(sample_layer()), 52, {3, 0}), "unknown KV format 3");
  EXPECT_NE(layout_string(h.layout).find("gpu-f32"), std::string::npos);
}

TEST(KvFrameTest, FlagsAndLinkFramesAreChecked) {
  const EncodedHeader good = encode_header(sample_layer());
  expect_rejected(patched(good, 54, {2, 0}), "unknown flags");
  // An out-of-band LAYER carries no checksum: nothing follows it on the stream.
  FrameHeader oob = sample_layer();
  oob.flags = kFrameFlagOutOfBand;
  expect_rejected(encode_header(oob), "checksum");
  oob.payload_crc = 0;
  EXPECT_TRUE(decode_header(encode_header(oob)).ok());
  oob.payload_bytes += 1;
  expect_rejected(encode_header(oob), "payload length");

  FrameHeader done;
  done.kind = FrameKind::kDone;
  done.layout = kLayout;
  done.flags = kFrameFlagOutOfBand;
  expect_rejected(encode_header(done), "out-of-band");

  FrameHeader hello;
  hello.kind = FrameKind::kHello;
  hello.layout = kLayout;
  hello.payload_bytes = kHelloPayloadBytes - 1;
  expect_rejected(encode_header(hello), "HELLO frame with a payload of 127 bytes (expected 128)");
  hello.payload_bytes = kHelloPayloadBytes;
  hello.num_blocks = 1;
  expect_rejected(encode_header(hello), "HELLO frame with 1 blocks");

  FrameHeader refuse;
  refuse.kind = FrameKind::kRefuse;
  refuse.layout = kLayout;
  refuse.payload_bytes = kMaxRefuseReasonBytes + 1;
  expect_rejected(encode_header(refuse), "at most 1024");
  FrameHeader accept = refuse;
  accept.kind = FrameKind::kAccept;
  accept.payload_bytes = 1;
  expect_rejected(encode_header(accept), "ACCEPT frame with a payload");
}

TEST(KvFrameTest, EverySingleByteCorruptionIsRejected) {
  const EncodedHeader good = encode_header(sample_layer());
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) {
    for (int x = 1; x < 256; ++x) {
      EncodedHeader bad = good;
      bad[i] ^= std::byte(x);
      ASSERT_FALSE(decode_header(bad).ok()) << "byte " << i << " xor " << x;
    }
  }
}

TEST(KvFrameTest, RejectsWrongMagicVersionAndKind) {
  const EncodedHeader good = encode_header(sample_layer());
  expect_rejected(patched(good, 0, {'S', 'W', 'K', 'X'}), "magic");
  expect_rejected(patched(good, 4, {1, 0}), "version 1");  // the v1 format: named, not misread
  expect_rejected(patched(good, 4, {0, 1}), "version 256");
  expect_rejected(patched(good, 6, {0, 0}), "kind 0");
  expect_rejected(patched(good, 6, {7, 0}), "kind 7");
  EncodedHeader bad_crc = good;
  bad_crc[kHeaderCrcOffset + 1] ^= std::byte{1};
  expect_rejected(bad_crc, "checksum");
  EXPECT_TRUE(decode_header(patched(good, 0, {})).ok());  // re-sealing alone breaks nothing
}

TEST(KvFrameTest, RejectsInconsistentPayloadLengths) {
  FrameHeader h = sample_layer();
  h.payload_bytes += 1;
  expect_rejected(encode_header(h), "payload length");
  h = sample_layer();
  h.num_blocks = 2;  // payload still sized for 3
  expect_rejected(encode_header(h), "payload length");

  FrameHeader done;
  done.kind = FrameKind::kDone;
  done.layout = kLayout;
  done.payload_bytes = 8;
  expect_rejected(encode_header(done), "DONE frame with a payload");
  FrameHeader abort = done;
  abort.kind = FrameKind::kAbort;
  abort.payload_bytes = 0;
  abort.num_blocks = 1;
  expect_rejected(encode_header(abort), "ABORT frame with 1 blocks");
}

TEST(KvFrameTest, RejectsFramesBeyondLimits) {
  FrameHeader h = sample_layer();
  h.num_blocks = kMaxFrameBlocks + 1;
  h.payload_bytes = uint64_t{h.num_blocks} * 2 * h.half_block_bytes;
  expect_rejected(encode_header(h), "blocks");
  h.num_blocks = kMaxFrameBlocks;  // 65536 * 2 * 64 KiB = 8 GiB
  h.payload_bytes = uint64_t{h.num_blocks} * 2 * h.half_block_bytes;
  expect_rejected(encode_header(h), "1 GiB");

  h = sample_layer();
  h.layer = kLayout.num_layers;
  expect_rejected(encode_header(h), "layer 32");
  h = sample_layer();
  h.half_block_bytes /= 2;
  h.payload_bytes /= 2;
  expect_rejected(encode_header(h), "half_block_bytes");
  h = sample_layer();
  h.first_block = UINT32_MAX - 1;
  expect_rejected(encode_header(h), "overflows");
  h.first_block = UINT32_MAX - 2;  // the last three indices: fine
  EXPECT_TRUE(decode_header(encode_header(h)).ok());
}

TEST(KvFrameTest, RejectsShortInput) {
  const EncodedHeader good = encode_header(sample_layer());
  for (size_t n = 0; n < kFrameHeaderBytes; ++n) {
    EXPECT_FALSE(decode_header(std::span(good.data(), n)).ok()) << n;
  }
}

}  // namespace
}  // namespace splitwise::transport
