#include "workers/engine/utf8.h"

#include <cstdint>

namespace splitwise::engine::utf8 {

Decoded decode_at(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return {Step::kChar, 1, lead};

  // The second byte's range depends on the lead: it is what rules out overlong forms,
  // surrogates and code points above U+10FFFF.
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
    cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    cp = lead & 0x0F;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    cp = lead & 0x07;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return {Step::kInvalid, 1, 0};
  }
  for (size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) return {Step::kIncomplete, k, 0};
    const uint8_t b = byte(pos + k);
    if (b < lo || b > hi) return {Step::kInvalid, k, 0};
    cp = (cp << 6) | (b & 0x3F);
    lo = 0x80;
    hi = 0xBF;
  }
  return {Step::kChar, need + 1, cp};
}

size_t complete_prefix(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const Decoded d = decode_at(s, pos);
    if (d.step == Step::kIncomplete) break;
    pos += d.length;
  }
  return pos;
}

bool is_valid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const Decoded d = decode_at(s, pos);
    if (d.step != Step::kChar) return false;
    pos += d.length;
  }
  return true;
}

size_t append_complete(std::string_view s, std::string& out) {
  size_t pos = 0;
  while (pos < s.size()) {
    const Decoded d = decode_at(s, pos);
    if (d.step == Step::kIncomplete) break;
    if (d.step == Step::kChar) {
      out.append(s.substr(pos, d.length));
    } else {
      out.append(kReplacement);
    }
    pos += d.length;
  }
  return pos;
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (append_complete(s, out) < s.size()) out.append(kReplacement);
  return out;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace splitwise::engine::utf8
