// Readers and rules shared by the tests that compare a runner with the reference outputs
// in ../shared/models/golden (CPU and CUDA runners alike).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "workers/engine/runner.h"
#include "workers/engine/tokenizer.h"

namespace splitwise::engine {

// run.c's dump: "LOGITS pos token v0 v1 ..." lines (TOK lines interleave and are skipped).
struct GoldenLogits {
  std::vector<TokenId> tokens;
  std::vector<std::vector<float>> rows;
};

inline GoldenLogits read_llama2c_logits(const std::filesystem::path& path) {
  GoldenLogits g;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag;
    int pos, token;
    ls >> tag >> pos >> token;
    if (tag != "LOGITS") continue;
    g.tokens.push_back(token);
    g.rows.emplace_back();
    float v;
    while (ls >> v) g.rows.back().push_back(v);
  }
  return g;
}

// Is `token` among the 5 largest entries of `logits`? (The rule serving engines use to
// compare with a low-precision reference.)
inline bool in_top5(const std::vector<float>& logits, TokenId token) {
  int larger = 0;
  for (float v : logits) larger += v > logits[token];
  return larger < 5;
}

// Logits of every position of `tokens` through `runner` (CPU or CUDA), run as one prefill
// chunk or one token a step. Blocks are taken in reverse order: a runner that ignores the
// table reads the wrong slots.
inline std::vector<std::vector<float>> run_logits(Runner& runner,
                                                  const std::vector<TokenId>& tokens,
                                                  bool incremental) {
  const int n = static_cast<int>(tokens.size());
  std::vector<BlockId> table((n + runner.block_size() - 1) / runner.block_size());
  for (int i = 0; i < static_cast<int>(table.size()); ++i)
    table[i] = runner.num_kv_blocks() - 1 - i;
  const int vocab = runner.config().vocab_size;
  std::vector<std::vector<float>> rows;
  std::vector<float> logits;
  if (!incremental) {
    SequenceChunk c{tokens, 0, table, n};
    EXPECT_TRUE(runner.forward({&c, 1}, &logits).ok());
    for (int i = 0; i < n; ++i)
      rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
    return rows;
  }
  for (int i = 0; i < n; ++i) {
    SequenceChunk c{std::span<const TokenId>(tokens).subspan(i, 1), i, table, 1};
    EXPECT_TRUE(runner.forward({&c, 1}, &logits).ok());
    rows.push_back(logits);
  }
  return rows;
}

}  // namespace splitwise::engine
