// Tokenizers: text <-> token ids for the two formats the engine loads
// (llama2.c tokenizer.bin and Hugging Face tokenizer.json byte-level BPE).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::engine {

using TokenId = int32_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads `path`: a tokenizer.json (Hugging Face) or a llama2.c tokenizer .bin, chosen by
  // content. `model_vocab_size` is the model's vocabulary: a tokenizer with ids the model
  // cannot embed is an error naming the file (llama2.c files also need it to parse).
  static Result<std::unique_ptr<Tokenizer>> load(const std::filesystem::path& path,
                                                 int model_vocab_size);

  virtual int vocab_size() const = 0;
  virtual std::optional<TokenId> bos_id() const = 0;
  virtual std::vector<TokenId> eos_ids() const = 0;
  virtual bool is_special(TokenId id) const = 0;

  // Text to ids; `add_bos` prepends BOS where the tokenizer has one.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_bos) const = 0;

  // The raw bytes `id` contributes to decoded text when it follows `prev` (-1: none).
  // May be part of a UTF-8 character; special tokens give "" when skip_special.
  virtual std::string token_bytes(TokenId prev, TokenId id, bool skip_special) const = 0;

  // Whole-sequence decode; invalid or incomplete UTF-8 becomes U+FFFD.
  std::string decode(std::span<const TokenId> ids, bool skip_special = true) const;
};

// Turns a stream of token ids into text that never ends inside a UTF-8 character:
// bytes of an unfinished character are held until the character completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // Text made complete by `id` (possibly empty).
  std::string push(TokenId id);
  // Whatever is held back, with an unfinished character replaced by U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  TokenId prev_ = -1;
  std::string pending_;  // bytes of an incomplete UTF-8 character
};

}  // namespace splitwise::engine
