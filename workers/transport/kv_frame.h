// Wire format of the KV handoff (version 2). One TCP stream carries a sequence of frames;
// every frame is a fixed 64-byte header followed by the payload the header announces.
//
// All integers are little-endian, whatever the host. Header layout (byte offsets):
//
//   off size field             meaning
//    0   4   magic             "SWKV"; lets a receiver tell a stray client from a peer
//    4   2   version   u16     2; a receiver rejects any other (no silent reinterpretation)
//    6   2   kind      u16     1 LAYER, 2 DONE, 3 ABORT (sender -> receiver),
//                              4 HELLO (sender -> receiver), 5 ACCEPT, 6 REFUSE (back)
//    8   8   request   u64     request id (the router's); 0 for HELLO, ACCEPT, REFUSE
//   16   4   layer     u32     LAYER: model layer of the payload; else 0
//   20   4   first_block u32   LAYER: index of the first block in the request's table
//   24   4   num_blocks u32    LAYER: blocks in the payload (<= 65536); else 0
//   28   4   half_block_bytes  LAYER: bytes of one block's K (= its V's); else any
//   32   4   num_layers u32    \  the sender's KvLayout (in ACCEPT and REFUSE, the
//   36   4   block_size u32     > receiver's): a receiver whose layout differs rejects the
//   40   4   kv_dim    u32     /  peer, since its bytes would land misshaped
//   44   4   first_token i32   DONE: the first sampled token; else 0
//   48   4   payload_bytes u32 LAYER: num_blocks * 2 * half_block_bytes (<= 1 GiB);
//                              HELLO: 128; REFUSE: reason length (<= 1024); else 0
//   52   2   format    u16     the layout's KvFormat (0 cpu-f32, 1 gpu-f32, 2 gpu-bf16):
//                              part of the layout check, and the element size
//   54   2   flags     u16     bit 0 OUT_OF_BAND (LAYER only): the payload travels over the
//                              connection's NCCL link, not this stream; no bytes follow
//   56   4   payload_crc u32   CRC32C (Castagnoli) of the bytes that follow (0 for none)
//   60   4   header_crc u32    CRC32C of bytes [0, 60)
//
// Version 1 had payload_bytes as a u64 at 48 and no format or flags; the magic, version
// and header CRC stay where they were, so each version names the other's as unsupported.
//
// LAYER payload: for each block in order, its K bytes then its V bytes. Host blocks are
// written straight from (and into) the KV cache, so a frame never needs a contiguous copy
// on the sender; device blocks are packed into page-locked staging (device_copier.h). Both
// checksums are CRC32C because x86 computes it in hardware (SSE4.2) at many GB/s, so verifying a
// layer costs little next to moving it. An OUT_OF_BAND LAYER carries no checksum: NCCL moves those
// bytes GPU to GPU and the CPU never sees them.
//
// NCCL set-up, on the connection that will carry the control frames: the sender's first
// frame is HELLO, whose payload is the 128-byte ncclUniqueId of a two-rank communicator
// (sender rank 0, receiver rank 1). The receiver answers ACCEPT (both then create the
// communicator) or REFUSE with a reason in text; the sender sends ordinary frames in the
// meantime and keeps doing so if the link never comes up. Only ACCEPT and REFUSE travel
// from receiver to sender.
//
// A header that fails decode_header() means the stream itself can no longer be trusted
// (framing is lost), so a receiver closes the connection instead of trying to resync.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "workers/engine/status.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::transport {

inline constexpr std::array<std::byte, 4> kFrameMagic = {std::byte{'S'}, std::byte{'W'},
                                                         std::byte{'K'}, std::byte{'V'}};
inline constexpr uint16_t kFrameVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 64;
// Bounds that no legitimate frame reaches; they keep a lying header from making the
// receiver allocate or wait for absurd amounts.
inline constexpr uint32_t kMaxFrameBlocks = 65536;
inline constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 30;
// HELLO's payload: an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), opaque to this library.
inline constexpr size_t kHelloPayloadBytes = 128;
inline constexpr size_t kMaxRefuseReasonBytes = 1024;
// Where the header CRC lives: bytes before it are covered by it.
inline constexpr size_t kHeaderCrcOffset = 60;

enum class FrameKind : uint16_t {
  kLayer = 1,
  kDone = 2,
  kAbort = 3,
  kHello = 4,
  kAccept = 5,
  kRefuse = 6,
};
inline constexpr uint16_t kFrameFlagOutOfBand = 1;

const char* frame_kind_name(FrameKind kind);
const char* kv_format_name(KvFormat format);

struct FrameHeader {
  FrameKind kind = FrameKind::kLayer;
  RequestId request = 0;
  uint32_t layer = 0;
  uint32_t first_block = 0;
  uint32_t num_blocks = 0;
  uint32_t half_block_bytes = 0;
  KvLayout layout;
  int32_t first_token = 0;
  uint16_t flags = 0;          // kFrameFlag*
  uint64_t payload_bytes = 0;  // stored as u32 on the wire (the 1 GiB limit fits)
  uint32_t payload_crc = 0;

  bool out_of_band() const { return (flags & kFrameFlagOutOfBand) != 0; }
  // Bytes that follow the header on the stream (none for an OUT_OF_BAND LAYER).
  uint64_t stream_payload_bytes() const { return out_of_band() ? 0 : payload_bytes; }
};

using EncodedHeader = std::array<std::byte, kFrameHeaderBytes>;

// Serialises `header` and appends its header CRC. Does not validate: tests use it to build
// deliberately bad frames.
EncodedHeader encode_header(const FrameHeader& header);

// Parses and validates one header: magic, version, kind, header CRC, format, flags, the
// payload length implied by the kind, and the limits above. Errors say what was wrong,
// for the log.
Result<FrameHeader> decode_header(std::span<const std::byte> bytes);

// What a LAYER must satisfy to fit the frame format (K and V counts equal, block and
// payload limits, layer in range, no null pointer). A caller that breaks it has a bug, but
// failing the one send keeps the worker alive to report it.
Status check_layer_blocks(const LayerBlocks& blocks, const KvLayout& layout);

// "{layers 32, block_size 16, kv_dim 1024, format gpu-bf16}", for messages.
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
