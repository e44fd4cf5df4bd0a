#include "workers/engine/runner.h"

#include <string>

namespace splitwise::engine {

Status Runner::forward_sample(std::span<const SequenceChunk>, std::span<const SampleRow>,
                              std::vector<TokenId>*, const LayerListener&) {
  return Status::error("this backend does not sample on its device");
}

Status validate_batch(const ModelConfig& c, std::span<const SequenceChunk> batch, int num_kv_blocks,
                      int block_size) {
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceChunk& s = batch[i];
    const int n = static_cast<int>(s.tokens.size());
    const std::string where = "batch entry " + std::to_string(i);
    if (n == 0) return Status::error(where + ": no tokens");
    if (s.num_logits < 0 || s.num_logits > n)
      return Status::error(where + ": num_logits " + std::to_string(s.num_logits) +
                           " outside [0, " + std::to_string(n) + "]");
    if (s.start_pos < 0 || s.start_pos > c.max_position - n)
      return Status::error(where + ": positions up to " + std::to_string(s.start_pos + n) +
                           " exceed the model's context of " + std::to_string(c.max_position));
    const int blocks_needed = (s.start_pos + n + block_size - 1) / block_size;
    if (static_cast<int>(s.block_table.size()) < blocks_needed)
      return Status::error(where + ": block table has " + std::to_string(s.block_table.size()) +
                           " blocks, needs " + std::to_string(blocks_needed));
    for (BlockId b : s.block_table.first(blocks_needed))
      if (b < 0 || b >= num_kv_blocks)
        return Status::error(where + ": block id " + std::to_string(b) + " out of range");
    for (TokenId t : s.tokens)
      if (t < 0 || t >= c.vocab_size)
        return Status::error(where + ": token id " + std::to_string(t) + " outside vocabulary of " +
                             std::to_string(c.vocab_size));
  }
  return {};
}

}  // namespace splitwise::engine
