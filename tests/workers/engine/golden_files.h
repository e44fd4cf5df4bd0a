// Readers and rules shared by the tests that compare a runner with the reference outputs
// in ../shared/models/golden (CPU and CUDA runners alike).
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

}  // namespace splitwise::engine
