#include "workers/engine/kv_cache.h"

#include <algorithm>

#include "workers/engine/status.h"

namespace splitwise::engine {

BlockPool::BlockPool(int num_blocks, int block_size)
    : block_size_(block_size), ref_counts_(num_blocks, 0) {
  SW_CHECK(num_blocks >= 0 && block_size > 0);
  free_.reserve(num_blocks);
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

int BlockPool::ref_count(BlockId id) const {
  SW_CHECK(id >= 0 && id < num_blocks());
  return ref_counts_[id];
}

bool BlockPool::allocate(int n, std::vector<BlockId>* out) {
  if (n > num_free()) return false;
  for (int i = 0; i < n; ++i) {
    const BlockId id = free_.back();
    free_.pop_back();
    ref_counts_[id] = 1;
    out->push_back(id);
  }
  return true;
}

void BlockPool::retain(BlockId id) {
  SW_CHECK(ref_count(id) > 0);
  ++ref_counts_[id];
}

void BlockPool::release(BlockId id) {
  SW_CHECK(ref_count(id) > 0);
  if (--ref_counts_[id] == 0) free_.push_back(id);
}

int KvCacheManager::blocks_missing(SeqId seq, int num_tokens) const {
  const auto it = tables_.find(seq);
  const int have = it == tables_.end() ? 0 : static_cast<int>(it->second.size());
  const int need = blocks_for(num_tokens);
  return need > have ? need - have : 0;
}

bool KvCacheManager::reserve(SeqId seq, int num_tokens) {
  const int missing = blocks_missing(seq, num_tokens);
  if (missing == 0) {
    tables_.try_emplace(seq);
    return true;
  }
  std::vector<BlockId>& table = tables_[seq];
  if (!pool_->allocate(missing, &table)) {
    if (table.empty()) tables_.erase(seq);
    return false;
  }
  return true;
}

void KvCacheManager::share_prefix(SeqId parent, SeqId child, int num_tokens) {
  const std::vector<BlockId>& src = block_table(parent);
  SW_CHECK(!has(child));
  const int full = std::min<int>(num_tokens / block_size(), static_cast<int>(src.size()));
  std::vector<BlockId>& dst = tables_[child];
  for (int i = 0; i < full; ++i) {
    pool_->retain(src[i]);
    dst.push_back(src[i]);
  }
}

const std::vector<BlockId>& KvCacheManager::block_table(SeqId seq) const {
  const auto it = tables_.find(seq);
  SW_CHECK(it != tables_.end());
  return it->second;
}

void KvCacheManager::free(SeqId seq) {
  const auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  for (BlockId id : it->second) pool_->release(id);
  tables_.erase(it);
}

}  // namespace splitwise::engine
