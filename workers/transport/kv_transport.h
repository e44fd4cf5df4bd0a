// KV handoff between workers: a prompt worker sends each layer's K/V blocks of a
// request as soon as that layer is computed; a token worker writes them into blocks it
// reserved for the request. Moves bytes of named blocks; never schedules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::transport {

using RequestId = uint64_t;

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string str() const { return host + ":" + std::to_string(port); }
};

// How one block's K (or V) is laid out in memory. Workers of different formats cannot
// exchange KV: the bytes would land misshaped, so the receiver rejects such a peer.
enum class KvFormat : uint32_t {
  kCpuF32 = 0,   // CPU runner: K [kv_heads, head_dim, block_size], V [block_size, kv_dim]
  kGpuF32 = 1,   // CUDA runner: K and V [kv_heads, block_size, head_dim], fp32
  kGpuBf16 = 2,  // CUDA runner, same shape, bf16
};

// Where the bytes a LayerBlocks or a KvSink::Destination points at live.
enum class MemoryKind : uint8_t { kHost, kDevice };

// What both ends must agree on; sent in every frame and checked by the receiver.
struct KvLayout {
  uint32_t num_layers = 0;
  uint32_t block_size = 0;  // tokens per block
  uint32_t kv_dim = 0;      // kv_heads * head_dim
  KvFormat format = KvFormat::kCpuF32;
  uint32_t element_bytes() const { return format == KvFormat::kGpuBf16 ? 2 : 4; }
  // Bytes of one block's K (or V) in one layer.
  uint32_t half_block_bytes() const { return block_size * kv_dim * element_bytes(); }
  bool operator==(const KvLayout&) const = default;
};

// One layer's K and V for blocks [first_block, first_block + k_blocks.size()) of a
// request's block table (indices into the table, not block ids: ids are per worker).
// The pointed-to memory must stay valid until the send's completion callback runs.
struct LayerBlocks {
  RequestId request = 0;
  uint32_t layer = 0;
  uint32_t first_block = 0;
  std::vector<const std::byte*> k_blocks;  // each half_block_bytes long
  std::vector<const std::byte*> v_blocks;  // same count
  // kDevice: the pointers are CUDA device memory of GPU `device`, and `ready_event` (a
  // cudaEvent_t) is recorded after the layer's KV write was enqueued. The runner records
  // that event again in the next step, so send_layer() must consume it before returning
  // (cudaStreamWaitEvent on its own stream, or an enqueued device-to-host copy).
  MemoryKind memory = MemoryKind::kHost;
  int device = -1;
  void* ready_event = nullptr;
};

using Completion = std::function<void(Status)>;

// Sender side (prompt worker). Thread-safe; sends happen on the transport's own thread
// so the caller (the engine thread) goes on computing the next layer.
class KvSender {
 public:
  virtual ~KvSender() = default;
  virtual void send_layer(const Endpoint& to, LayerBlocks blocks, Completion done) = 0;
  // After every layer: the request's KV is complete; carries the first sampled token.
  virtual void send_done(const Endpoint& to, RequestId request, int32_t first_token,
                         Completion done) = 0;
  // Tells the receiver to drop the request (prompt worker gave up on it).
  virtual void send_abort(const Endpoint& to, RequestId request, Completion done) = 0;
};

// Receiver callbacks (token worker). Called on the transport's thread; implementations
// guard their own state.
class KvSink {
 public:
  virtual ~KvSink() = default;
  struct Destination {
    std::byte* k = nullptr;  // half_block_bytes
    std::byte* v = nullptr;
  };
  // Where every Destination points: host memory, or device memory of GPU device(). A
  // receiver writes device destinations through a DeviceCopier (TCP) or NCCL, never memcpy.
  virtual MemoryKind memory() const { return MemoryKind::kHost; }
  virtual int device() const { return -1; }
  // Where block `index` of `request`'s table lives in `layer`; nullopt when the request
  // is not reserved here or the index is out of its table (the frame is then rejected).
  virtual std::optional<Destination> destination(RequestId request, uint32_t layer,
                                                 uint32_t index) = 0;
  virtual void on_layer(RequestId request, uint32_t layer, uint32_t first_block,
                        uint32_t num_blocks, uint64_t bytes) = 0;
  virtual void on_done(RequestId request, int32_t first_token) = 0;
  virtual void on_abort(RequestId request) = 0;
  // A frame for `request` (0 when unknown) was rejected; nothing was written.
  virtual void on_rejected(RequestId request, const std::string& reason) = 0;
};

}  // namespace splitwise::transport
