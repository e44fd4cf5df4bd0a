// StopMatcher against a one-character-at-a-time reference over every short string and
// every way of chunking it, plus UTF-8 and API edge cases.
#include "workers/router/stop_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "workers/engine/utf8.h"

namespace splitwise::router {
namespace {

struct Expected {
  std::string text;
  int stop_index = -1;
};

// The definition itself: scan ends e = 1..n; at the first e where some stop string ends,
// the longest such one is the match.
Expected reference(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t e = 1; e <= text.size(); ++e) {
    int best = -1;
    for (size_t i = 0; i < stops.size(); ++i) {
      const std::string& s = stops[i];
      if (s.empty() || s.size() > e || text.compare(e - s.size(), s.size(), s) != 0) continue;
      if (best < 0 || s.size() > stops[best].size()) best = static_cast<int>(i);
    }
    if (best >= 0) return {text.substr(0, e - stops[best].size()), best};
  }
  return {text, -1};
}

size_t max_stop(const std::vector<std::string>& stops) {
  size_t m = 0;
  for (const auto& s : stops) m = std::max(m, s.size());
  return m;
}

// Runs `text` cut after every position whose bit is set in `cuts`.
void check_chunking(const std::string& text, unsigned cuts, const std::vector<std::string>& stops) {
  StopMatcher m(stops);
  std::string got;
  bool stopped = false;
  int index = -1;
  size_t start = 0;
  for (size_t i = 1; i <= text.size(); ++i) {
    if (i != text.size() && !(cuts & (1u << (i - 1)))) continue;
    StopMatcher::Output out = m.push(std::string_view(text).substr(start, i - start));
    start = i;
    ASSERT_FALSE(stopped && !out.text.empty()) << "text after the stop";
    got += out.text;
    if (out.stopped && !stopped) index = out.stop_index;
    stopped = stopped || out.stopped;
    // Holds back only what could still become a stop string.
    if (!stopped && max_stop(stops) > 0) {
      ASSERT_LT(m.held_bytes(), max_stop(stops));
    }
    if (stops.empty()) {
      ASSERT_EQ(m.held_bytes(), 0u);
    }
  }
  if (!stopped) got += m.flush();
  const Expected want = reference(text, stops);
  ASSERT_EQ(got, want.text) << "text '" << text << "' cuts " << cuts;
  ASSERT_EQ(index, want.stop_index) << "text '" << text << "' cuts " << cuts;
}

void exhaustive(const std::vector<std::string>& stops, size_t max_len) {
  const std::string alphabet = "abc";
  std::vector<std::string> texts = {""};
  for (size_t len = 1; len <= max_len; ++len) {
    std::vector<std::string> next;
    for (const auto& t : texts)
      if (t.size() == len - 1)
        for (char c : alphabet) next.push_back(t + c);
    texts.insert(texts.end(), next.begin(), next.end());
  }
  for (const auto& t : texts) {
    const unsigned chunkings = t.empty() ? 1u : 1u << (t.size() - 1);
    for (unsigned cuts = 0; cuts < chunkings; ++cuts) {
      check_chunking(t, cuts, stops);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(StopMatcher, OverlappingStopsEveryStringEveryChunking) { exhaustive({"ab", "abc", "b"}, 7); }

TEST(StopMatcher, LongAndSelfOverlappingStopsEveryStringEveryChunking) {
  exhaustive({"aab", "abab", "cc"}, 8);
  exhaustive({"abcab"}, 8);
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) { exhaustive({}, 5); }

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
  exhaustive({"", "ca"}, 5);
  StopMatcher m({""});
  EXPECT_EQ(m.push("abc").text, "abc");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, LongerStopWinsWhenBothCompleteTogether) {
  // "ab" and "b" both complete at the same character: the emitted text ends before "ab".
  StopMatcher m({"b", "ab"});
  auto out = m.push("xa");
  EXPECT_EQ(out.text, "x");
  out = m.push("b");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(out.stop_index, 1);
}

TEST(StopMatcher, ShorterStopThatCompletesFirstWins) {
  // "abc" can never match while "ab" is a stop: "ab" completes first.
  StopMatcher m({"abc", "ab"});
  auto out = m.push("abc");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(out.stop_index, 1);
}

TEST(StopMatcher, StopAtTheVeryStart) {
  StopMatcher m({"###"});
  auto out = m.push("###");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSpanningManyPushes) {
  StopMatcher m({"<|end|>"});
  std::string got;
  for (std::string piece : {"Hello", " <", "|", "e", "n", "d", "|"}) {
    auto out = m.push(piece);
    EXPECT_FALSE(out.stopped);
    got += out.text;
  }
  EXPECT_EQ(got, "Hello ");
  EXPECT_EQ(m.held_bytes(), 6u);
  auto out = m.push(">tail");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(got + out.text, "Hello ");
  // Nothing more after the stop, whatever comes.
  out = m.push("more");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, FalseStartIsReleasedOnceItCannotMatch) {
  StopMatcher m({"<|end|>"});
  EXPECT_EQ(m.push("a<|e").text, "a");
  EXPECT_EQ(m.push("x").text, "<|ex");
  EXPECT_EQ(m.push("<|").text, "");
  EXPECT_EQ(m.flush(), "<|");
}

TEST(StopMatcher, NeverSplitsAUtf8Character) {
  // Stops sharing lead or continuation bytes with the text: "é" is C3 A9, "é!" and
  // "ü" (C3 BC) start with the same lead byte; "€" (E2 82 AC).
  const std::vector<std::string> stops = {"\xC3\xA9!", "\xC3\xBC", "\xE2\x82\xAC\xE2\x82\xAC"};
  const std::vector<std::string> chars = {"a",        "\xC3\xA9", "!", "\xE2\x82\xAC",
                                          "\xC3\xBC", "\xC3\xA8"};
  // Every sequence of four characters, one character per push.
  for (int code = 0; code < 6 * 6 * 6 * 6; ++code) {
    StopMatcher m(stops);
    std::string text, got;
    for (int c = code, i = 0; i < 4; ++i, c /= 6) {
      text += chars[c % 6];
      auto out = m.push(chars[c % 6]);
      ASSERT_TRUE(engine::utf8::is_valid(out.text)) << text;
      got += out.text;
    }
    got += m.flush();
    ASSERT_EQ(got, reference(text, stops).text) << text;
  }
}

}  // namespace
}  // namespace splitwise::router
