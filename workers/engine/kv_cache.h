// Paged KV cache bookkeeping: a pool of fixed-size blocks handed out by id, and
// per-sequence block tables. No model memory lives here: the model runner owns the
// storage and indexes it by block id, so the same tables drive CPU, GPU and transport.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

namespace splitwise::engine {

using BlockId = int32_t;
using SeqId = int64_t;

// Reference-counted block ids. A block returns to the free list when its last holder
// releases it, which lets sequences share a prefix without copying it.
class BlockPool {
 public:
  BlockPool(int num_blocks, int block_size);

  int num_blocks() const { return static_cast<int>(ref_counts_.size()); }
  int block_size() const { return block_size_; }
  int num_free() const { return static_cast<int>(free_.size()); }
  int ref_count(BlockId id) const;

  // All `n` blocks or none: a partial grant would strand blocks on a sequence that
  // still cannot run. Returns false when there is no room.
  bool allocate(int n, std::vector<BlockId>* out);
  void retain(BlockId id);
  void release(BlockId id);

 private:
  int block_size_;
  std::vector<int32_t> ref_counts_;
  std::vector<BlockId> free_;  // LIFO: recently freed blocks are likely still in cache
};

// Block tables of live sequences on one BlockPool.
class KvCacheManager {
 public:
  explicit KvCacheManager(BlockPool* pool) : pool_(pool) {}

  int block_size() const { return pool_->block_size(); }
  int num_free_blocks() const { return pool_->num_free(); }
  int num_blocks() const { return pool_->num_blocks(); }
  int blocks_for(int num_tokens) const { return (num_tokens + block_size() - 1) / block_size(); }

  // Extra blocks `seq` needs to hold `num_tokens` tokens in total.
  int blocks_missing(SeqId seq, int num_tokens) const;

  // Grows `seq`'s table to hold `num_tokens` tokens. On no room, changes nothing and
  // returns false: the caller (the scheduler) decides whether to wait or preempt.
  bool reserve(SeqId seq, int num_tokens);

  // Gives `child` the blocks of `parent` that are full at `num_tokens`, shared by
  // reference count (a common prompt prefix stored once). Shared blocks are read-only:
  // the child computes from the shared length on, into blocks of its own.
  void share_prefix(SeqId parent, SeqId child, int num_tokens);

  const std::vector<BlockId>& block_table(SeqId seq) const;
  bool has(SeqId seq) const { return tables_.count(seq) != 0; }

  // Releases every block of `seq`; unknown ids are ignored so cancel paths can be blunt.
  void free(SeqId seq);

 private:
  BlockPool* pool_;
  std::unordered_map<SeqId, std::vector<BlockId>> tables_;
};

}  // namespace splitwise::engine
