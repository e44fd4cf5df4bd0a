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

// What both ends must agree on; sent in every frame and checked by the receiver.
struct KvLayout {
  uint32_t num_layers = 0;
  uint32_t block_size = 0;  // tokens per block
  uint32_t kv_dim = 0;      // kv_heads * head_dim
  // Bytes of one block's K (or V) in one layer (fp32).
  uint32_t half_block_bytes() const { return block_size * kv_dim * 4; }
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
