#include "workers/transport/kv_frame.h"

#include <cstring>
#include <string>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace splitwise::transport {
namespace {

// Header field offsets; the table in kv_frame.h is the reference.
constexpr size_t kOffVersion = 4;
constexpr size_t kOffKind = 6;
constexpr size_t kOffRequest = 8;
constexpr size_t kOffLayer = 16;
constexpr size_t kOffFirstBlock = 20;
constexpr size_t kOffNumBlocks = 24;
constexpr size_t kOffHalfBlock = 28;
constexpr size_t kOffNumLayers = 32;
constexpr size_t kOffBlockSize = 36;
constexpr size_t kOffKvDim = 40;
constexpr size_t kOffFirstToken = 44;
constexpr size_t kOffPayloadBytes = 48;
constexpr size_t kOffPayloadCrc = 56;
constexpr size_t kOffHeaderCrc = 60;
static_assert(kOffHeaderCrc + 4 == kFrameHeaderBytes);

// Byte-wise little-endian access: explicit shifts keep the format independent of the
// host's byte order and of alignment.
template <typename T>
void store_le(std::byte* out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out[i] = static_cast<std::byte>(static_cast<uint64_t>(value) >> (8 * i));
  }
}

template <typename T>
T load_le(const std::byte* in) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<uint64_t>(in[i]) << (8 * i);
  }
  return static_cast<T>(value);
}

// Slicing-by-8 tables for the reflected Castagnoli polynomial: eight bytes per step keeps
// the fallback within a few times of the hardware instruction.
struct Crc32cTables {
  uint32_t t[8][256];
  constexpr Crc32cTables() : t{} {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t crc = i;
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
      t[0][i] = crc;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    }
  }
};
constexpr Crc32cTables kCrcTables;

uint32_t crc32c_table_raw(const std::byte* p, size_t n, uint32_t crc) {
  const auto& t = kCrcTables.t;
  while (n >= 8) {
    const uint32_t lo = load_le<uint32_t>(p) ^ crc;
    const uint32_t hi = load_le<uint32_t>(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ static_cast<uint32_t>(*p++)) & 0xFF];
  return crc;
}

#if defined(__SSE4_2__)
uint32_t crc32c_sse42_raw(const std::byte* p, size_t n, uint32_t crc) {
  uint64_t crc64 = crc;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);  // unaligned-safe; x86 is little-endian like the CRC's order
    crc64 = _mm_crc32_u64(crc64, word);
    p += 8;
    n -= 8;
  }
  crc = static_cast<uint32_t>(crc64);
  while (n-- > 0) crc = _mm_crc32_u8(crc, static_cast<uint8_t>(*p++));
  return crc;
}
#endif

}  // namespace

uint32_t crc32c_portable(std::span<const std::byte> data, uint32_t crc) {
  return ~crc32c_table_raw(data.data(), data.size(), ~crc);
}

uint32_t crc32c(std::span<const std::byte> data, uint32_t crc) {
#if defined(__SSE4_2__)
  return ~crc32c_sse42_raw(data.data(), data.size(), ~crc);
#else
  return crc32c_portable(data, crc);
#endif
}

bool crc32c_hardware() {
#if defined(__SSE4_2__)
  return true;
#else
  return false;
#endif
}

const char* frame_kind_name(FrameKind kind) {
  switch (kind) {
    case FrameKind::kLayer:
      return "LAYER";
    case FrameKind::kDone:
      return "DONE";
    case FrameKind::kAbort:
      return "ABORT";
  }
  return "UNKNOWN";
}

bool operator==(const KvLayout& a, const KvLayout& b) {
  return a.num_layers == b.num_layers && a.block_size == b.block_size && a.kv_dim == b.kv_dim;
}

std::string layout_string(const KvLayout& layout) {
  return "{layers " + std::to_string(layout.num_layers) + ", block_size " +
         std::to_string(layout.block_size) + ", kv_dim " + std::to_string(layout.kv_dim) + "}";
}

EncodedHeader encode_header(const FrameHeader& h) {
  EncodedHeader out{};
  std::memcpy(out.data(), kFrameMagic.data(), kFrameMagic.size());
  store_le<uint16_t>(&out[kOffVersion], kFrameVersion);
  store_le<uint16_t>(&out[kOffKind], static_cast<uint16_t>(h.kind));
  store_le<uint64_t>(&out[kOffRequest], h.request);
  store_le<uint32_t>(&out[kOffLayer], h.layer);
  store_le<uint32_t>(&out[kOffFirstBlock], h.first_block);
  store_le<uint32_t>(&out[kOffNumBlocks], h.num_blocks);
  store_le<uint32_t>(&out[kOffHalfBlock], h.half_block_bytes);
  store_le<uint32_t>(&out[kOffNumLayers], h.layout.num_layers);
  store_le<uint32_t>(&out[kOffBlockSize], h.layout.block_size);
  store_le<uint32_t>(&out[kOffKvDim], h.layout.kv_dim);
  store_le<uint32_t>(&out[kOffFirstToken], static_cast<uint32_t>(h.first_token));
  store_le<uint64_t>(&out[kOffPayloadBytes], h.payload_bytes);
  store_le<uint32_t>(&out[kOffPayloadCrc], h.payload_crc);
  store_le<uint32_t>(&out[kOffHeaderCrc], crc32c(std::span(out.data(), kOffHeaderCrc)));
  return out;
}

Result<FrameHeader> decode_header(std::span<const std::byte> bytes) {
  if (bytes.size() < kFrameHeaderBytes) {
    return Status::error("frame header too short: " + std::to_string(bytes.size()) + " of " +
                         std::to_string(kFrameHeaderBytes) + " bytes");
  }
  const std::byte* b = bytes.data();
  if (std::memcmp(b, kFrameMagic.data(), kFrameMagic.size()) != 0) {
    return Status::error("bad frame magic (peer is not a splitwise KV sender?)");
  }
  // The CRC comes before field checks so that a corrupted field is reported as corruption,
  // not as a strange value.
  const uint32_t want_crc = load_le<uint32_t>(&b[kOffHeaderCrc]);
  const uint32_t got_crc = crc32c(std::span(b, kOffHeaderCrc));
  if (want_crc != got_crc) return Status::error("frame header checksum mismatch");
  const uint16_t version = load_le<uint16_t>(&b[kOffVersion]);
  if (version != kFrameVersion) {
    return Status::error("unsupported frame version " + std::to_string(version) +
                         " (this build speaks " + std::to_string(kFrameVersion) + ")");
  }
  const uint16_t kind = load_le<uint16_t>(&b[kOffKind]);
  if (kind < 1 || kind > 3) return Status::error("unknown frame kind " + std::to_string(kind));

  FrameHeader h;
  h.kind = static_cast<FrameKind>(kind);
  h.request = load_le<uint64_t>(&b[kOffRequest]);
  h.layer = load_le<uint32_t>(&b[kOffLayer]);
  h.first_block = load_le<uint32_t>(&b[kOffFirstBlock]);
  h.num_blocks = load_le<uint32_t>(&b[kOffNumBlocks]);
  h.half_block_bytes = load_le<uint32_t>(&b[kOffHalfBlock]);
  h.layout.num_layers = load_le<uint32_t>(&b[kOffNumLayers]);
  h.layout.block_size = load_le<uint32_t>(&b[kOffBlockSize]);
  h.layout.kv_dim = load_le<uint32_t>(&b[kOffKvDim]);
  h.first_token = static_cast<int32_t>(load_le<uint32_t>(&b[kOffFirstToken]));
  h.payload_bytes = load_le<uint64_t>(&b[kOffPayloadBytes]);
  h.payload_crc = load_le<uint32_t>(&b[kOffPayloadCrc]);

  if (h.kind != FrameKind::kLayer) {
    if (h.num_blocks != 0 || h.payload_bytes != 0) {
      return Status::error(std::string(frame_kind_name(h.kind)) + " frame with a payload (" +
                           std::to_string(h.payload_bytes) + " bytes)");
    }
    return h;
  }
  if (h.num_blocks > kMaxFrameBlocks) {
    return Status::error("LAYER frame with " + std::to_string(h.num_blocks) + " blocks (limit " +
                         std::to_string(kMaxFrameBlocks) + ")");
  }
  // num_blocks <= 2^16 (checked above) and half_block_bytes < 2^32: the product fits in 49 bits.
  const uint64_t expected = uint64_t{h.num_blocks} * 2 * h.half_block_bytes;
  if (h.payload_bytes != expected) {
    return Status::error("LAYER payload length " + std::to_string(h.payload_bytes) +
                         " != num_blocks * 2 * half_block_bytes = " + std::to_string(expected));
  }
  if (h.payload_bytes > kMaxPayloadBytes) {
    return Status::error("LAYER payload of " + std::to_string(h.payload_bytes) +
                         " bytes exceeds the 1 GiB limit");
  }
  const uint64_t layout_half =
      uint64_t{h.layout.block_size} * h.layout.kv_dim * 4;  // fp32, as KvLayout says
  if (h.half_block_bytes != layout_half) {
    return Status::error("LAYER half_block_bytes " + std::to_string(h.half_block_bytes) +
                         " disagrees with the sender's layout " + layout_string(h.layout));
  }
  if (h.layer >= h.layout.num_layers) {
    return Status::error("LAYER frame for layer " + std::to_string(h.layer) + " of a " +
                         std::to_string(h.layout.num_layers) + "-layer model");
  }
  if (uint64_t{h.first_block} + h.num_blocks > uint64_t{UINT32_MAX} + 1) {
    return Status::error("LAYER block range overflows the 32-bit block index");
  }
  return h;
}

}  // namespace splitwise::transport
