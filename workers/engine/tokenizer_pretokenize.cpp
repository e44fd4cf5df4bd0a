#include "workers/engine/tokenizer_pretokenize.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <cstdint>

#include "workers/engine/utf8.h"

namespace splitwise::engine {
namespace {

enum class Class : uint8_t { kLetter, kNumber, kSpace, kOther };

struct CodePoint {
  char32_t cp;
  Class cls;
  size_t offset;  // byte offset in the text
};

Class classify(char32_t cp) {
  const UChar32 c = static_cast<UChar32>(cp);
  if (u_isUWhiteSpace(c)) return Class::kSpace;
  const uint32_t mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return Class::kLetter;
  if (mask & U_GC_N_MASK) return Class::kNumber;
  return Class::kOther;
}

std::vector<CodePoint> code_points(std::string_view text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode_at(text, pos);
    // Callers pass valid UTF-8; stray bytes still get a piece of their own class.
    const char32_t cp = d.step == utf8::Step::kChar ? d.code_point : 0xFFFD;
    out.push_back({cp, classify(cp), pos});
    pos += d.length;
  }
  return out;
}

class Matcher {
 public:
  explicit Matcher(const std::vector<CodePoint>& c) : c_(c), n_(c.size()) {}

  size_t gpt2(size_t i) const {
    if (size_t end = contraction(i, false); end) return end;
    const size_t j = c_[i].cp == U' ' ? i + 1 : i;
    if (j < n_ && c_[j].cls != Class::kSpace) return run(j, c_[j].cls);
    return whitespace(i);
  }

  size_t llama3(size_t i, size_t max_digits) const {
    if (size_t end = contraction(i, true); end) return end;
    const Class cls = c_[i].cls;
    if (cls == Class::kLetter) return run(i, Class::kLetter);
    if (cls != Class::kNumber && !newline(i) && i + 1 < n_ && c_[i + 1].cls == Class::kLetter) {
      return run(i + 1, Class::kLetter);
    }
    if (cls == Class::kNumber) return std::min(run(i, Class::kNumber), i + max_digits);
    const size_t j = c_[i].cp == U' ' ? i + 1 : i;
    if (j < n_ && c_[j].cls == Class::kOther) {
      size_t k = run(j, Class::kOther);
      while (k < n_ && newline(k)) ++k;
      return k;
    }
    // \s*[\r\n]+ backtracks to the last line break of the whitespace run.
    const size_t k = run(i, Class::kSpace);
    for (size_t p = k; p > i; --p) {
      if (newline(p - 1)) return p;
    }
    return whitespace(i);
  }

 private:
  bool newline(size_t i) const { return c_[i].cp == U'\r' || c_[i].cp == U'\n'; }

  size_t run(size_t i, Class cls) const {
    while (i < n_ && c_[i].cls == cls) ++i;
    return i;
  }

  // 's 't 're 've 'm 'll 'd; returns the end or 0.
  size_t contraction(size_t i, bool fold_case) const {
    if (c_[i].cp != U'\'' || i + 1 >= n_) return 0;
    const auto lower = [&](size_t k) -> char32_t {
      if (k >= n_) return 0;
      const char32_t cp = c_[k].cp;
      if (!fold_case) return cp;
      if (cp == 0x17F) return U's';  // LATIN SMALL LETTER LONG S case-folds to 's'
      return cp >= U'A' && cp <= U'Z' ? cp + 32 : cp;
    };
    const char32_t a = lower(i + 1);
    if (a == U's' || a == U't' || a == U'm' || a == U'd') return i + 2;
    const char32_t b = lower(i + 2);
    if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) {
      return i + 3;
    }
    return 0;
  }

  // \s+(?!\S)|\s+ at a whitespace character: a run followed by text leaves its last
  // character to prefix the next piece.
  size_t whitespace(size_t i) const {
    const size_t k = run(i, Class::kSpace);
    if (k == n_ || k - i < 2) return std::max(k, i + 1);
    return k - 1;
  }

  const std::vector<CodePoint>& c_;
  size_t n_;
};

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

void split_text(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out) {
  const std::vector<CodePoint> cps = code_points(text);
  const Matcher m(cps);
  for (size_t i = 0; i < cps.size();) {
    size_t end = 0;
    switch (pattern) {
      case SplitPattern::kGpt2:
        end = m.gpt2(i);
        break;
      case SplitPattern::kLlama3:
        end = m.llama3(i, 3);
        break;
      case SplitPattern::kQwen2:
        end = m.llama3(i, 1);
        break;
    }
    const size_t begin_byte = cps[i].offset;
    const size_t end_byte = end < cps.size() ? cps[end].offset : text.size();
    out.push_back(text.substr(begin_byte, end_byte - begin_byte));
    i = end;
  }
}

}  // namespace splitwise::engine
