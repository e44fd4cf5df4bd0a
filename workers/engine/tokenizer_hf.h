// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama 3, Qwen 2 style).
// Anything outside that family is refused at load with the component named, rather than
// silently tokenizing differently from the model's training.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "workers/engine/tokenizer.h"
#include "workers/engine/tokenizer_hash.h"
#include "workers/engine/tokenizer_pretokenize.h"

namespace splitwise::engine {

class HfBpeTokenizer final : public Tokenizer {
 public:
  // `json_text` is the file's contents; `name` names it in error messages.
  static Result<std::unique_ptr<HfBpeTokenizer>> parse(std::string_view json_text,
                                                       const std::string& name,
                                                       int model_vocab_size);

  int vocab_size() const override { return static_cast<int>(decoded_.size()); }
  std::optional<TokenId> bos_id() const override { return bos_; }
  std::vector<TokenId> eos_ids() const override { return eos_; }
  bool is_special(TokenId id) const override {
    return id >= 0 && id < vocab_size() && special_[id];
  }
  std::vector<TokenId> encode(std::string_view text, bool add_bos) const override;
  std::string token_bytes(TokenId prev, TokenId id, bool skip_special) const override;

  // Id of a token by its tokenizer.json spelling (vocab key or added-token content).
  std::optional<TokenId> token_to_id(std::string_view token) const;

 private:
  friend class HfBpeParser;

  // One pre-tokenizer step. ByteLevel is always the last one: after it the text is
  // byte-mapped, and no split pattern we implement applies to that alphabet.
  struct Stage {
    std::optional<SplitPattern> pattern;  // nullopt: the piece passes whole
    bool add_prefix_space = false;        // ByteLevel's: " " before a piece lacking one
  };
  struct Merge {
    uint32_t rank;
    TokenId merged;
  };
  struct AddedToken {
    std::string content;
    TokenId id;
  };

  HfBpeTokenizer() = default;
  void encode_piece(std::string_view piece, size_t stage, std::vector<TokenId>& out) const;
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;
  std::vector<TokenId> bpe(std::string_view word) const;

  std::vector<std::string> decoded_;  // id -> the bytes it decodes to
  std::vector<uint8_t> special_;      // id -> is a special added token
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id)
  std::array<TokenId, 256> byte_ids_{};         // -1 when a byte's character is not in vocab
  std::array<std::string, 256> byte_chars_;     // GPT-2 bytes_to_unicode, UTF-8 encoded
  std::array<std::vector<size_t>, 256> added_by_first_byte_;  // into added_, longest first
  std::vector<AddedToken> added_;
  std::vector<Stage> stages_;
  std::optional<TokenId> unk_;
  bool ignore_merges_ = false;
  std::optional<TokenId> bos_;
  std::vector<TokenId> eos_;

  // Real text repeats words constantly; caching each word's BPE makes encode near-linear.
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>>
      cache_;  // guarded by cache_mu_
};

}  // namespace splitwise::engine
