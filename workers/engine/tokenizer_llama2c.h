// The llama2.c tokenizer.bin format (SentencePiece pieces and scores, exported by
// llama2.c's tokenizer.py) with encoding identical to run.c's encode().
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "workers/engine/tokenizer.h"
#include "workers/engine/tokenizer_hash.h"

namespace splitwise::engine {

class Llama2cTokenizer final : public Tokenizer {
 public:
  static constexpr TokenId kUnk = 0;
  static constexpr TokenId kBos = 1;
  static constexpr TokenId kEos = 2;
  static constexpr TokenId kFirstByte = 3;  // ids 3..258 are the pieces <0x00>..<0xFF>

  // `data` is the whole file; `name` names it in error messages. The format has no token
  // count, so `model_vocab_size` says how many entries to read.
  static Result<std::unique_ptr<Llama2cTokenizer>> parse(std::string_view data,
                                                         const std::string& name,
                                                         int model_vocab_size);

  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  std::optional<TokenId> bos_id() const override { return kBos; }
  std::vector<TokenId> eos_ids() const override { return {kEos}; }
  bool is_special(TokenId id) const override { return id >= kUnk && id <= kEos; }
  std::vector<TokenId> encode(std::string_view text, bool add_bos) const override;
  std::string token_bytes(TokenId prev, TokenId id, bool skip_special) const override;

  const std::string& piece(TokenId id) const { return pieces_[id]; }
  float score(TokenId id) const { return scores_[id]; }
  // Id of a piece, or -1 (run.c's str_lookup).
  TokenId lookup(std::string_view piece) const;

 private:
  Llama2cTokenizer() = default;
  void merge_pairs(std::vector<TokenId>& tokens) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> ids_;
};

}  // namespace splitwise::engine
