// Prompt text of a given length in tokens, for the model the router serves. The router
// tokenizes the text itself, so the only way to send "a 120-token prompt" through an
// OpenAI text API is to find text that encodes to 120 tokens with the same tokenizer.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "workers/engine/tokenizer.h"

namespace splitwise::bench {

struct Prompt {
  std::string text;
  int tokens = 0;  // what the router will count: BOS + encode(text)
};

class PromptBuilder {
 public:
  // `tokenizer` must outlive the builder.
  explicit PromptBuilder(const engine::Tokenizer* tokenizer);

  // The longest prefix (in words) of a fixed story passage, repeated as needed, whose
  // encoding with BOS has at most `tokens` tokens. Cached by length: a trace slice has a
  // few hundred distinct lengths and each costs a binary search of encodes.
  const Prompt& get(int tokens);

 private:
  std::string prefix(size_t words) const;

  const engine::Tokenizer* tokenizer_;
  std::vector<std::string> words_;
  std::map<int, Prompt> cache_;
};

}  // namespace splitwise::bench
