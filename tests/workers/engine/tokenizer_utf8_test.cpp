// UTF-8 helpers: replacement follows Unicode's "maximal subpart" practice (one U+FFFD per
// maximal ill-formed subsequence), the same count ICU and browsers produce.
#include "workers/engine/utf8.h"

#include <gtest/gtest.h>

namespace splitwise::engine::utf8 {
namespace {

const std::string R(kReplacement);

TEST(TokenizerUtf8, DecodesEveryScalarValueItEncodes) {
  for (char32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x3000 ? 1 : 97)) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    append(s, cp);
    const Decoded d = decode_at(s, 0);
    ASSERT_EQ(d.step, Step::kChar) << static_cast<uint32_t>(cp);
    ASSERT_EQ(d.length, s.size());
    ASSERT_EQ(d.code_point, cp);
  }
}

TEST(TokenizerUtf8, SanitizeReplacesMaximalSubparts) {
  EXPECT_EQ(sanitize("plain"), "plain");
  EXPECT_EQ(sanitize("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(sanitize("\xF0\x9F\x98"
                     "A"),
            R + "A");                                      // truncated 4-byte character
  EXPECT_EQ(sanitize("\xC0\xAF"), R + R);                  // overlong lead
  EXPECT_EQ(sanitize("\xE0\x80\x80"), R + R + R);          // overlong 3-byte
  EXPECT_EQ(sanitize("\xED\xA0\x80"), R + R + R);          // surrogate
  EXPECT_EQ(sanitize("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(sanitize("\x80\xBF"), R + R);                  // stray continuations
  EXPECT_EQ(sanitize("a\xE6\x97"), "a" + R);               // incomplete at the end
  EXPECT_EQ(sanitize("\xFF"), R);
}

TEST(TokenizerUtf8, CompletePrefixHoldsOnlyAnUnfinishedTail) {
  EXPECT_EQ(complete_prefix(""), 0u);
  EXPECT_EQ(complete_prefix("ab"), 2u);
  EXPECT_EQ(complete_prefix("a\xF0\x9F\x98"), 1u);
  EXPECT_EQ(complete_prefix("a\xF0\x9F\x98\x80"), 5u);
  EXPECT_EQ(complete_prefix("a\xFF"), 2u);      // invalid is not incomplete: no waiting
  EXPECT_EQ(complete_prefix("a\xE0\x80"), 3u);  // cannot complete: E0 needs A0..BF next
  EXPECT_EQ(complete_prefix("\xE6"), 0u);
}

TEST(TokenizerUtf8, AppendComplete) {
  std::string out;
  EXPECT_EQ(append_complete("x\xFFy\xE6\x97", out), 3u);
  EXPECT_EQ(out, "x" + R + "y");
}

TEST(TokenizerUtf8, IsValid) {
  EXPECT_TRUE(is_valid(""));
  EXPECT_TRUE(is_valid("東京 😀"));
  EXPECT_FALSE(is_valid("\xE6\x97"));
  EXPECT_FALSE(is_valid("\xED\xA0\x80"));
}

}  // namespace
}  // namespace splitwise::engine::utf8
