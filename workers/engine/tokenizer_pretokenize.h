// Pre-tokenizer split patterns of byte-level BPE tokenizers, hand-written over code points
// (std::regex has no \p{L}/\p{N}); each recognised pattern string maps to one splitter.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace splitwise::engine {

enum class SplitPattern {
  kGpt2,    // GPT-2 / ByteLevel(use_regex=true)
  kLlama3,  // Llama 3 / cl100k: case-insensitive contractions, digits in groups of 3
  kQwen2,   // as kLlama3 but one digit per piece
};

inline constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The splitter for a tokenizer.json Split regex, or nullopt when it is not one we implement.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);

// Appends to `out` the consecutive matches of `pattern` in `text` (UTF-8). Every one of
// these patterns matches at any position, so the pieces cover `text` exactly.
void split_text(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out);

}  // namespace splitwise::engine
