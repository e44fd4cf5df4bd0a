#include "bench/load/prompts.h"

#include <algorithm>
#include <sstream>

namespace splitwise::bench {
namespace {

// TinyStories-like prose: the small models this benchmark targets were trained on such
// text, so greedy continuations stay ordinary text instead of degenerate byte soup, and
// nearly every word is one or two tokens, so the search below can land within a token.
constexpr const char* kPassage =
    "Once upon a time there was a little girl named Lily. She liked to play in the park "
    "with her red ball. One day the sun was warm and the birds sang in the tall trees. "
    "Lily saw a small dog under a bench. The dog was sad because it was lost. Lily gave "
    "the dog some of her bread and said, do not be scared, I will help you find your home. "
    "They walked past the pond and the big green hill. A kind old man waved at them and "
    "smiled. He knew the dog and showed Lily the way to a blue house. The dog barked with "
    "joy and ran to a boy at the door. The boy hugged the dog and thanked Lily. From that "
    "day on they were good friends and played together every day.";

}  // namespace

PromptBuilder::PromptBuilder(const engine::Tokenizer* tokenizer) : tokenizer_(tokenizer) {
  std::istringstream in(kPassage);
  for (std::string w; in >> w;) words_.push_back(w);
}

std::string PromptBuilder::prefix(size_t words) const {
  std::string text;
  for (size_t i = 0; i < words; ++i) {
    if (i) text += ' ';
    text += words_[i % words_.size()];
  }
  return text;
}

const Prompt& PromptBuilder::get(int tokens) {
  if (auto it = cache_.find(tokens); it != cache_.end()) return it->second;
  auto count = [&](size_t words) {
    return static_cast<int>(tokenizer_->encode(prefix(words), /*add_bos=*/true).size());
  };
  // Every word adds at least one token, so `tokens` words is an upper bound; token counts
  // grow with the word count, so a binary search finds the longest prefix that fits.
  size_t lo = 1, hi = static_cast<size_t>(std::max(tokens, 1));
  if (count(lo) > tokens) hi = lo;  // even one word is too long: send it anyway
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    if (count(mid) <= tokens)
      lo = mid;
    else
      hi = mid - 1;
  }
  Prompt p{prefix(lo), count(lo)};
  // A two-token word can leave the prefix one short; " a" is one token in llama2.c-style
  // vocabularies, and is kept only where it really adds exactly one.
  for (int tries = 0; p.tokens < tokens && tries < 4; ++tries) {
    std::string longer = p.text + " a";
    const int n = static_cast<int>(tokenizer_->encode(longer, /*add_bos=*/true).size());
    if (n != p.tokens + 1) break;
    p = Prompt{std::move(longer), n};
  }
  return cache_.emplace(tokens, std::move(p)).first->second;
}

}  // namespace splitwise::bench
