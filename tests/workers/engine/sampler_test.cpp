#include "workers/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace splitwise::engine {
namespace {

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s(SamplingParams{});
  const std::vector<float> logits{0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(logits, 0), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42};
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = 0.1f * static_cast<float>(i % 7);
  Sampler a(p), b(p);
  std::vector<TokenId> ta, tb;
  for (int i = 0; i < 100; ++i) {
    ta.push_back(a.sample(logits, i));
    tb.push_back(b.sample(logits, i));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 43;
  Sampler c(p);
  std::vector<TokenId> tc;
  for (int i = 0; i < 100; ++i) tc.push_back(c.sample(logits, i));
  EXPECT_NE(ta, tc);
}

TEST(Sampler, DrawDependsOnlyOnSeedAndIndex) {
  // A sequence moved to another worker resumes with a fresh Sampler: token n must come
  // out the same as from the Sampler that drew tokens 0..n-1.
  SamplingParams p{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 11};
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = 0.05f * static_cast<float>(i % 13);
  Sampler long_lived(p);
  std::vector<TokenId> a;
  for (int i = 0; i < 50; ++i) a.push_back(long_lived.sample(logits, i));
  Sampler fresh(p);
  EXPECT_EQ(fresh.sample(logits, 37), a[37]);
  // Draws are uniform: the mean of many is near 0.5.
  double sum = 0;
  for (int i = 0; i < 10000; ++i) sum += uniform_at(3, i);
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
}

TEST(Sampler, TopKNeverLeavesTheTopK) {
  Sampler s({.temperature = 5.0f, .top_k = 2, .top_p = 1.0f, .seed = 1});
  const std::vector<float> logits{1.0f, 4.0f, 3.0f, 0.0f, 2.0f};
  for (int i = 0; i < 500; ++i) {
    const TokenId t = s.sample(logits, i);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // Probabilities 0.5, 0.3, 0.2 (logits are their logs): top_p 0.7 keeps {0, 1}.
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.7f, .seed = 3});
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  std::map<TokenId, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(logits, i)];
  EXPECT_EQ(seen.count(2), 0u);
  // Renormalised 0.5 / 0.8 = 0.625.
  EXPECT_NEAR(seen[0] / 2000.0, 0.625, 0.04);
}

TEST(Sampler, TemperatureOneFollowsTheDistribution) {
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 9});
  const std::vector<float> logits{std::log(0.7f), std::log(0.2f), std::log(0.1f)};
  std::map<TokenId, int> seen;
  const int n = 5000;
  for (int i = 0; i < n; ++i) ++seen[s.sample(logits, i)];
  EXPECT_NEAR(seen[0] / double(n), 0.7, 0.03);
  EXPECT_NEAR(seen[1] / double(n), 0.2, 0.03);
  EXPECT_NEAR(seen[2] / double(n), 0.1, 0.03);
}

TEST(Sampler, TinyTemperatureIsGreedyNotNan) {
  // 1/1e-40 is inf in float: without the greedy cut-off every weight would be NaN.
  Sampler s({.temperature = 1e-40f, .top_k = 0, .top_p = 1.0f, .seed = 5});
  const std::vector<float> logits{0.5f, 2.0f, 1.0f};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(logits, i), 1);
}

TEST(Sampler, RejectsMeaninglessParameters) {
  EXPECT_FALSE(validate_sampling({.temperature = -1.0f}).ok());
  EXPECT_FALSE(validate_sampling({.temperature = 1.0f, .top_k = -2}).ok());
  EXPECT_FALSE(validate_sampling({.temperature = 1.0f, .top_k = 0, .top_p = 0.0f}).ok());
  EXPECT_FALSE(validate_sampling({.temperature = 1.0f, .top_k = 0, .top_p = 1.5f}).ok());
  EXPECT_TRUE(validate_sampling({.temperature = 0.7f, .top_k = 40, .top_p = 0.9f}).ok());
}

}  // namespace
}  // namespace splitwise::engine
