// Token worker side of the KV handoff: the blocks reserved for each incoming request,
// and which layers have landed. Implements the transport's KvSink; called on the
// receiver's thread, read and changed by the engine thread, so everything is guarded.
#pragma once

#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "workers/engine/runner.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::worker {

class KvReservations : public transport::KvSink {
 public:
  struct Events {
    // All layers of every block have landed and the prompt worker sent the first token.
    std::function<void(uint64_t id, int32_t first_token)> complete;
    // The handoff failed (rejected frame, abort from the prompt worker, missing layers).
    std::function<void(uint64_t id, const std::string& reason)> failed;
    std::function<void(uint64_t bytes)> received;
  };

  // `runner` provides the KV memory; its addresses never change.
  KvReservations(engine::Runner* runner, Events events);

  void add(uint64_t id, std::vector<engine::BlockId> blocks);
  // Forgets `id`: later frames for it are rejected. Returns false if it was not there.
  bool remove(uint64_t id);
  bool contains(uint64_t id);

  std::optional<Destination> destination(transport::RequestId request, uint32_t layer,
                                         uint32_t index) override;
  void on_layer(transport::RequestId request, uint32_t layer, uint32_t first_block,
                uint32_t num_blocks, uint64_t bytes) override;
  void on_done(transport::RequestId request, int32_t first_token) override;
  void on_abort(transport::RequestId request) override;
  void on_rejected(transport::RequestId request, const std::string& reason) override;
  // Where the runner keeps its KV (a GPU runner's blocks are device memory).
  transport::MemoryKind memory() const override;
  int device() const override;

 private:
  struct Entry {
    std::vector<engine::BlockId> blocks;
    std::vector<std::vector<bool>> landed;  // [layer][block]
  };

  engine::Runner* runner_;
  Events events_;
  std::mutex mu_;
  std::unordered_map<uint64_t, Entry> entries_;  // guarded by mu_
};

}  // namespace splitwise::worker
