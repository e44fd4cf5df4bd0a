#include "workers/engine/tokenizer_hf.h"
#include "workers/engine/tokenizer_merge.h"

#include <queue>

#include "workers/engine/utf8.h"

namespace splitwise::engine {
namespace {

// Bounds the word cache; a long-running router sees an open-ended set of words.
constexpr size_t kMaxCachedWords = 1 << 16;

}  // namespace

std::optional<TokenId> HfBpeTokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& t : added_) {
    if (t.content == token) return t.id;
  }
  if (const auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::vector<TokenId> HfBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::string sanitized;
  if (!utf8::is_valid(text)) {
    sanitized = utf8::sanitize(text);
    text = sanitized;
  }
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_) out.push_back(*bos_);
  // Added tokens are matched literally before pre-tokenization (leftmost, then longest),
  // so "<|eot_id|>" in a chat template is one token and splits the text around it.
  size_t segment = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* match = nullptr;
    for (size_t k : added_by_first_byte_[static_cast<uint8_t>(text[i])]) {
      if (text.compare(i, added_[k].content.size(), added_[k].content) == 0) {
        match = &added_[k];
        break;
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    encode_piece(text.substr(segment, i - segment), 0, out);
    out.push_back(match->id);
    i += match->content.size();
    segment = i;
  }
  encode_piece(text.substr(segment), 0, out);
  return out;
}

void HfBpeTokenizer::encode_piece(std::string_view piece, size_t stage,
                                  std::vector<TokenId>& out) const {
  if (piece.empty()) return;
  if (stage == stages_.size()) {
    encode_word(piece, out);
    return;
  }
  const Stage& s = stages_[stage];
  std::string prefixed;
  if (s.add_prefix_space && piece.front() != ' ') {
    prefixed = " ";
    prefixed += piece;
    piece = prefixed;
  }
  if (!s.pattern) {
    encode_piece(piece, stage + 1, out);
    return;
  }
  std::vector<std::string_view> parts;
  split_text(piece, *s.pattern, parts);
  for (std::string_view part : parts) encode_piece(part, stage + 1, out);
}

void HfBpeTokenizer::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<TokenId> ids = bpe(word);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kMaxCachedWords) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

// Applies the lowest-ranked merge among adjacent symbols, leftmost on ties, until none
// applies: the order HF tokenizers' BPE uses, kept in a heap over a linked list.
std::vector<TokenId> HfBpeTokenizer::bpe(std::string_view word) const {
  if (ignore_merges_) {
    std::string mapped;
    for (char b : word) mapped += byte_chars_[static_cast<uint8_t>(b)];
    if (const auto it = vocab_.find(mapped); it != vocab_.end()) return {it->second};
  }
  std::vector<TokenId> sym;
  sym.reserve(word.size());
  for (char b : word) {
    const TokenId id = byte_ids_[static_cast<uint8_t>(b)];
    if (id >= 0) {
      sym.push_back(id);
    } else if (unk_) {
      sym.push_back(*unk_);
    }  // HF drops a character that is neither in the vocab nor coverable by unk
  }
  // Lower merge rank first: the rank, negated, is the priority.
  merge_best_pairs<int64_t>(sym, [&](TokenId left, TokenId right) {
    const uint64_t key =
        (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
    const auto it = merges_.find(key);
    return it == merges_.end() ? std::nullopt
                               : std::optional(std::pair<int64_t, TokenId>(
                                     -static_cast<int64_t>(it->second.rank), it->second.merged));
  });
  return sym;
}

std::string HfBpeTokenizer::token_bytes(TokenId prev, TokenId id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) return {};
  if (skip_special && special_[id]) return {};
  return decoded_[id];
}

}  // namespace splitwise::engine
