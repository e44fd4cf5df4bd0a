// The BPE merge loop both tokenizer formats share: repeatedly merge the best adjacent
// pair. A heap of candidate pairs over a linked list keeps it O(n log n) where a rescan
// after every merge (llama2.c's run.c) is quadratic; the chosen merge is the same at
// every step because list order equals original position order.
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

#include "workers/engine/tokenizer.h"

namespace splitwise::engine {

// `find(left_id, right_id)` returns {priority, merged id}, or nullopt when the pair does
// not merge. The highest priority merges first; among equals, the leftmost.
template <typename Priority, typename FindMerge>
void merge_best_pairs(std::vector<TokenId>& tokens, FindMerge find) {
  const int n = static_cast<int>(tokens.size());
  if (n < 2) return;
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    Priority priority;
    int left, right;
    TokenId left_id, right_id, merged;
  };
  const auto worse = [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::optional<std::pair<Priority, TokenId>> m = find(tokens[left], tokens[right]);
    if (m) heap.push({m->first, left, right, tokens[left], tokens[right], m->second});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);

  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // Stale when either side was merged away or changed since the pair was queued.
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        tokens[c.left] != c.left_id || tokens[c.right] != c.right_id) {
      continue;
    }
    tokens[c.left] = c.merged;
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  int out = 0;
  for (int i = 0; i < n; ++i)
    if (alive[i]) tokens[out++] = tokens[i];
  tokens.resize(out);
}

}  // namespace splitwise::engine
