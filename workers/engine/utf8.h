// UTF-8 helpers for tokenizers: token pieces are raw bytes that may split a character,
// while text handed to callers must be valid UTF-8.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace splitwise::engine::utf8 {

// U+FFFD REPLACEMENT CHARACTER, encoded.
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

enum class Step {
  kChar,        // a well-formed character of `length` bytes
  kInvalid,     // an ill-formed sequence of `length` bytes (its maximal subpart), one U+FFFD
  kIncomplete,  // the input ends inside a character that may still complete
};

struct Decoded {
  Step step;
  size_t length;
  char32_t code_point;  // valid only for kChar
};

// Decodes the sequence starting at s[pos] (pos < s.size()). Ill-formed input is consumed
// as Unicode's "maximal subparts" so replacement matches what browsers and ICU produce.
Decoded decode_at(std::string_view s, size_t pos);

// Length of the longest prefix that does not end inside an incomplete character.
size_t complete_prefix(std::string_view s);

bool is_valid(std::string_view s);

// Appends the complete part of `s` to `out` with ill-formed sequences replaced by U+FFFD;
// returns the bytes consumed (everything except an incomplete trailing character).
size_t append_complete(std::string_view s, std::string& out);

// `s` with every ill-formed or incomplete sequence replaced by U+FFFD.
std::string sanitize(std::string_view s);

void append(std::string& out, char32_t code_point);

}  // namespace splitwise::engine::utf8
