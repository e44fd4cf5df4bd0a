// Wire format of the KV handoff (version 1). One TCP stream carries a sequence of frames;
// every frame is a fixed 64-byte header followed by `payload_bytes` of payload.
//
// All integers are little-endian, whatever the host. Header layout (byte offsets):
//
//   off size field             meaning
//    0   4   magic             "SWKV"; lets a receiver tell a stray client from a peer
//    4   2   version   u16     1; a receiver rejects any other (no silent reinterpretation)
//    6   2   kind      u16     1 = LAYER, 2 = DONE, 3 = ABORT
//    8   8   request   u64     request id (the router's)
//   16   4   layer     u32     LAYER: model layer of the payload; else 0
//   20   4   first_block u32   LAYER: index of the first block in the request's table
//   24   4   num_blocks u32    LAYER: blocks in the payload (<= 65536); else 0
//   28   4   half_block_bytes  LAYER: bytes of one block's K (= its V's); else any
//   32   4   num_layers u32    \  the sender's KvLayout: a receiver whose own layout differs
//   36   4   block_size u32     > rejects the peer, since its bytes would land misshaped
//   40   4   kv_dim    u32     /
//   44   4   first_token i32   DONE: the first sampled token; else 0
//   48   8   payload_bytes u64 LAYER: num_blocks * 2 * half_block_bytes (<= 1 GiB); else 0
//   56   4   payload_crc u32   CRC32C (Castagnoli) of the payload (0 for an empty one)
//   60   4   header_crc u32    CRC32C of bytes [0, 60)
//
// LAYER payload: for each block in order, its K bytes then its V bytes. Blocks are written
// straight from (and into) the KV cache, so a frame never needs a contiguous copy on the
// sender. Both checksums are CRC32C because x86 computes it in hardware (SSE4.2) at many
// GB/s, so verifying a layer costs little next to moving it.
//
// A header that fails decode_header() means the stream itself can no longer be trusted
// (framing is lost), so a receiver closes the connection instead of trying to resync.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "workers/engine/status.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::transport {

inline constexpr std::array<std::byte, 4> kFrameMagic = {std::byte{'S'}, std::byte{'W'},
                                                         std::byte{'K'}, std::byte{'V'}};
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 64;
// Bounds that no legitimate frame reaches; they keep a lying header from making the
// receiver allocate or wait for absurd amounts.
inline constexpr uint32_t kMaxFrameBlocks = 65536;
inline constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 30;

enum class FrameKind : uint16_t { kLayer = 1, kDone = 2, kAbort = 3 };

const char* frame_kind_name(FrameKind kind);

struct FrameHeader {
  FrameKind kind = FrameKind::kLayer;
  RequestId request = 0;
  uint32_t layer = 0;
  uint32_t first_block = 0;
  uint32_t num_blocks = 0;
  uint32_t half_block_bytes = 0;
  KvLayout layout;
  int32_t first_token = 0;
  uint64_t payload_bytes = 0;
  uint32_t payload_crc = 0;
};

using EncodedHeader = std::array<std::byte, kFrameHeaderBytes>;

// Serialises `header` and appends its header CRC. Does not validate: tests use it to build
// deliberately bad frames.
EncodedHeader encode_header(const FrameHeader& header);

// Parses and validates one header: magic, version, kind, header CRC, the payload length
// implied by the kind, and the limits above. Errors say what was wrong, for the log.
Result<FrameHeader> decode_header(std::span<const std::byte> bytes);

bool operator==(const KvLayout& a, const KvLayout& b);
std::string layout_string(const KvLayout& layout);

// CRC32C with the usual conventions (init and final xor ~0), so crc32c("123456789") ==
// 0xE3069283. `crc` is a previous result to continue from, which lets a payload spread
// over many blocks be checksummed without joining them.
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0);
// The table-driven version, on every CPU; crc32c() uses it when SSE4.2 is not compiled in.
uint32_t crc32c_portable(std::span<const std::byte> data, uint32_t crc = 0);
// Whether crc32c() runs on the SSE4.2 instruction (decided at compile time: -march).
bool crc32c_hardware();

}  // namespace splitwise::transport
