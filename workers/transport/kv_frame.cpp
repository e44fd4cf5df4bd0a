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
constexpr size_t kOffFormat = 52;
constexpr size_t kOffFlags = 54;
constexpr size_t kOffPayloadCrc = 56;
constexpr size_t kOffHeaderCrc = kHeaderCrcOffset;
static_assert(kOffHeaderCrc + 4 == kFrameHeaderBytes);
static_assert(kMaxPayloadBytes <= UINT32_MAX, "payload_bytes is a u32 on the wire");

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
    case FrameKind::kHello:
      return "HELLO";
    case FrameKind::kAccept:
      return "ACCEPT";
    case FrameKind::kRefuse:
      return "REFUSE";
  }
  return "UNKNOWN";
}

const char* kv_format_name(KvFormat format) {
  switch (format) {
    case KvFormat::kCpuF32:
      return "cpu-f32";
    case KvFormat::kGpuF32:
      return "gpu-f32";
    case KvFormat::kGpuBf16:
      return "gpu-bf16";
  }
  return "unknown";
}

std::string layout_string(const KvLayout& layout) {
  return "{layers " + std::to_string(layout.num_layers) + ", block_size " +
         std::to_string(layout.block_size) + ", kv_dim " + std::to_string(layout.kv_dim) +
         ", format " + kv_format_name(layout.format) + "}";
}

Status check_layer_blocks(const LayerBlocks& b, const KvLayout& layout) {
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
  store_le<uint32_t>(&out[kOffPayloadBytes], static_cast<uint32_t>(h.payload_bytes));
  store_le<uint16_t>(&out[kOffFormat], static_cast<uint16_t>(h.layout.format));
  store_le<uint16_t>(&out[kOffFlags], h.flags);
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
  if (kind < 1 || kind > 6) return Status::error("unknown frame kind " + std::to_string(kind));
  const uint16_t format = load_le<uint16_t>(&b[kOffFormat]);
  if (format > static_cast<uint16_t>(KvFormat::kGpuBf16)) {
    return Status::error("unknown KV format " + std::to_string(format));
  }

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
  h.layout.format = static_cast<KvFormat>(format);
  h.first_token = static_cast<int32_t>(load_le<uint32_t>(&b[kOffFirstToken]));
  h.payload_bytes = load_le<uint32_t>(&b[kOffPayloadBytes]);
  h.flags = load_le<uint16_t>(&b[kOffFlags]);
  h.payload_crc = load_le<uint32_t>(&b[kOffPayloadCrc]);

  const std::string name = frame_kind_name(h.kind);
  if (h.flags & ~kFrameFlagOutOfBand) {
    return Status::error(name + " frame with unknown flags " + std::to_string(h.flags));
  }
  if (h.out_of_band() && h.kind != FrameKind::kLayer) {
    return Status::error(name + " frame marked out-of-band (only LAYER payloads can be)");
  }
  if (h.kind != FrameKind::kLayer) {
    if (h.num_blocks != 0) {
      return Status::error(name + " frame with " + std::to_string(h.num_blocks) + " blocks");
    }
    uint64_t min_payload = 0, max_payload = 0;
    if (h.kind == FrameKind::kHello) min_payload = max_payload = kHelloPayloadBytes;
    if (h.kind == FrameKind::kRefuse) max_payload = kMaxRefuseReasonBytes;
    if (h.payload_bytes < min_payload || h.payload_bytes > max_payload) {
      return Status::error(name + " frame with a payload of " + std::to_string(h.payload_bytes) +
                           " bytes (expected " +
                           (min_payload == max_payload ? std::to_string(max_payload)
                                                       : "at most " + std::to_string(max_payload)) +
                           ")");
    }
    return h;
  }
  if (h.num_blocks > kMaxFrameBlocks) {
    return Status::error("LAYER frame with " + std::to_string(h.num_blocks) + " blocks (limit " +
                         std::to_string(kMaxFrameBlocks) + ")");
  }
  // num_blocks <= 2^16 (checked above) and half_block_bytes < 2^32: the product fits in 49 bits.
  const uint64_t expected = uint64_t{h.num_blocks} * 2 * h.half_block_bytes;
  if (expected > kMaxPayloadBytes) {
    return Status::error("LAYER payload of " + std::to_string(expected) +
                         " bytes exceeds the 1 GiB limit");
  }
  if (h.payload_bytes != expected) {
    return Status::error("LAYER payload length " + std::to_string(h.payload_bytes) +
                         " != num_blocks * 2 * half_block_bytes = " + std::to_string(expected));
  }
  if (h.out_of_band() && h.payload_crc != 0) {
    return Status::error("out-of-band LAYER frame with a payload checksum");
  }
  const uint64_t layout_half =
      uint64_t{h.layout.block_size} * h.layout.kv_dim * h.layout.element_bytes();
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
