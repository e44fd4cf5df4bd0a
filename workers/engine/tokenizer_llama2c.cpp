#include "workers/engine/tokenizer_llama2c.h"
#include "workers/engine/tokenizer_merge.h"

#include <cstdint>
#include <cstring>
#include <queue>

namespace splitwise::engine {
namespace {

// run.c starts its best score here, so a pair scoring at or below it never merges.
constexpr float kNoScore = -1e10f;

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  template <typename T>
  bool read(T& out) {
    if (data_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&out, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool read_bytes(size_t n, std::string& out) {
    if (data_.size() - pos_ < n) return false;
    out.assign(data_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Pieces "<0xXX>" stand for the raw byte XX (SentencePiece byte fallback).
int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

Result<std::unique_ptr<Llama2cTokenizer>> Llama2cTokenizer::parse(std::string_view data,
                                                                  const std::string& name,
                                                                  int model_vocab_size) {
  const auto fail = [&](const std::string& what) { return Status::error(name + ": " + what); };
  if (model_vocab_size <= 0) {
    return fail("model vocabulary size must be positive, got " + std::to_string(model_vocab_size));
  }
  Reader in(data);
  int32_t max_token_length = 0;
  if (!in.read(max_token_length)) return fail("file too short for a llama2.c tokenizer header");
  if (max_token_length <= 0) {
    return fail("invalid max_token_length " + std::to_string(max_token_length));
  }
  std::unique_ptr<Llama2cTokenizer> tok(new Llama2cTokenizer());
  tok->pieces_.resize(model_vocab_size);
  tok->scores_.resize(model_vocab_size);
  tok->ids_.reserve(model_vocab_size);
  for (int i = 0; i < model_vocab_size; ++i) {
    int32_t len = 0;
    if (!in.read(tok->scores_[i]) || !in.read(len)) {
      return fail("file ends at token " + std::to_string(i) + " of " +
                  std::to_string(model_vocab_size) +
                  " (truncated, or the model's vocabulary is larger than the tokenizer's)");
    }
    if (len < 0 || len > max_token_length) {
      return fail("token " + std::to_string(i) + " has length " + std::to_string(len) +
                  " outside [0, max_token_length " + std::to_string(max_token_length) + "]");
    }
    if (!in.read_bytes(static_cast<size_t>(len), tok->pieces_[i])) {
      return fail("file ends inside token " + std::to_string(i) + " (truncated)");
    }
    // Keep the first id of a duplicated piece so lookups are deterministic.
    tok->ids_.try_emplace(tok->pieces_[i], i);
  }
  if (in.remaining() != 0) {
    return fail("tokenizer has more tokens than the model's vocabulary (" +
                std::to_string(model_vocab_size) + ")");
  }
  return tok;
}

TokenId Llama2cTokenizer::lookup(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<TokenId> Llama2cTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<TokenId> tokens;
  tokens.reserve(text.size() + 2);
  if (add_bos) tokens.push_back(kBos);
  // SentencePiece's add_dummy_prefix: words are trained with a leading space.
  if (!text.empty()) {
    if (const TokenId space = lookup(" "); space >= 0) tokens.push_back(space);
  }
  // Group bytes the way run.c does (a lead byte plus up to three continuation bytes, even
  // when ill-formed) so that byte fallback matches it exactly.
  std::string buf;
  const auto is_cont = [](char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; };
  for (size_t c = 0; c < text.size(); ++c) {
    if (!is_cont(text[c])) buf.clear();
    buf.push_back(text[c]);
    if (c + 1 < text.size() && is_cont(text[c + 1]) && buf.size() < 4) continue;
    if (const TokenId id = lookup(buf); id >= 0) {
      tokens.push_back(id);
    } else {
      for (char b : buf) tokens.push_back(static_cast<uint8_t>(b) + kFirstByte);
    }
    buf.clear();
  }
  merge_pairs(tokens);
  return tokens;
}

// Same merges as run.c (highest score, leftmost on ties), without its quadratic rescan.
void Llama2cTokenizer::merge_pairs(std::vector<TokenId>& tokens) const {
  std::string buf;
  merge_best_pairs<float>(tokens, [&](TokenId left, TokenId right) {
    buf.assign(pieces_[left]);
    buf.append(pieces_[right]);
    const TokenId merged = lookup(buf);
    return merged < 0 || !(scores_[merged] > kNoScore)
               ? std::nullopt
               : std::optional(std::pair<float, TokenId>(scores_[merged], merged));
  });
}

std::string Llama2cTokenizer::token_bytes(TokenId prev, TokenId id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) return {};
  if (skip_special && is_special(id)) return {};
  std::string_view piece = pieces_[id];
  // SentencePiece's dummy prefix: the first word after BOS carries a space nobody typed.
  if (prev == kBos && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
  if (const int byte = byte_piece_value(piece); byte >= 0) {
    return std::string(1, static_cast<char>(byte));
  }
  return std::string(piece);
}

}  // namespace splitwise::engine
