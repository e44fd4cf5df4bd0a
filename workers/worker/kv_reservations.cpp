#include "workers/worker/kv_reservations.h"

#include <algorithm>

namespace splitwise::worker {

KvReservations::KvReservations(engine::Runner* runner, Events events)
    : runner_(runner), events_(std::move(events)) {}

transport::MemoryKind KvReservations::memory() const {
  return runner_->kv_memory().on_device ? transport::MemoryKind::kDevice
                                        : transport::MemoryKind::kHost;
}

int KvReservations::device() const { return runner_->kv_memory().device; }

void KvReservations::add(uint64_t id, std::vector<engine::BlockId> blocks) {
  const int layers = runner_->config().num_layers;
  Entry e;
  e.landed.assign(layers, std::vector<bool>(blocks.size(), false));
  e.blocks = std::move(blocks);
  std::lock_guard lock(mu_);
  entries_[id] = std::move(e);
}

bool KvReservations::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  return entries_.erase(id) > 0;
}

bool KvReservations::contains(uint64_t id) {
  std::lock_guard lock(mu_);
  return entries_.count(id) > 0;
}

std::optional<transport::KvSink::Destination> KvReservations::destination(
    transport::RequestId request, uint32_t layer, uint32_t index) {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(request);
  if (it == entries_.end() || layer >= it->second.landed.size() ||
      index >= it->second.blocks.size())
    return std::nullopt;
  const engine::BlockId block = it->second.blocks[index];
  return Destination{runner_->key_block(static_cast<int>(layer), block),
                     runner_->value_block(static_cast<int>(layer), block)};
}

void KvReservations::on_layer(transport::RequestId request, uint32_t layer, uint32_t first_block,
                              uint32_t num_blocks, uint64_t bytes) {
  {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(request);
    if (it != entries_.end())
      for (uint32_t b = first_block; b < first_block + num_blocks; ++b)
        it->second.landed[layer][b] = true;
  }
  if (events_.received) events_.received(bytes);
}

void KvReservations::on_done(transport::RequestId request, int32_t first_token) {
  std::string missing;
  {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(request);
    if (it == entries_.end()) return;  // cancelled meanwhile
    for (size_t l = 0; l < it->second.landed.size() && missing.empty(); ++l) {
      const auto& row = it->second.landed[l];
      if (std::find(row.begin(), row.end(), false) != row.end())
        missing = "layer " + std::to_string(l) + " did not fully arrive";
    }
    // From here on the engine owns the blocks: frames arriving late are rejected.
    entries_.erase(it);
  }
  if (missing.empty())
    events_.complete(request, first_token);
  else
    events_.failed(request, "KV handoff incomplete: " + missing);
}

void KvReservations::on_abort(transport::RequestId request) {
  if (remove(request)) events_.failed(request, "prompt worker aborted the KV handoff");
}

void KvReservations::on_rejected(transport::RequestId request, const std::string& reason) {
  if (request != 0 && remove(request)) events_.failed(request, "KV frame rejected: " + reason);
}

}  // namespace splitwise::worker
