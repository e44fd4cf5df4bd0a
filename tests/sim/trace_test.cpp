// Traces: loading the Azure LLM traces (figures from ../shared/data/README.md), errors
// that name file:line, windows, and synthetic arrivals whose rate, burstiness and
// lengths are measured rather than assumed.
#include "sim/trace.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util.h"

namespace splitwise::sim {
namespace {

constexpr const char* kConv = "data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
constexpr const char* kCode = "data/azure-llm-2023/AzureLLMInferenceTrace_code.csv";
constexpr const char* kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

std::filesystem::path write(const std::string& text) {
  const auto path = splitwise::testing::fresh_temp_dir() / "trace.csv";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Both middle elements for an even count, so the README's median holds either way.
std::pair<int, int> medians(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return {v[(v.size() - 1) / 2], v[v.size() / 2]};
}

void expect_sorted_from_zero(const std::vector<Request>& t) {
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.front().arrival_s, 0);
  for (size_t i = 1; i < t.size(); ++i) ASSERT_LE(t[i - 1].arrival_s, t[i].arrival_s) << "at " << i;
}

TEST(AzureTraceTest, ConversationTraceMatchesTheReadme) {
  SW_REQUIRE_SHARED(path, kConv);
  auto t = load_azure_trace(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->size(), 19366u);
  expect_sorted_from_zero(*t);
  std::vector<int> prompt, output;
  for (const Request& r : *t) {
    prompt.push_back(r.prompt_tokens);
    output.push_back(r.output_tokens);
    ASSERT_GE(r.output_tokens, 1);
  }
  EXPECT_EQ(medians(prompt), std::make_pair(1020, 1020));
  EXPECT_EQ(medians(output), std::make_pair(129, 129));
  // 18:15:46.68 to 19:14:08.40: the README's 58 minutes.
  EXPECT_NEAR(t->back().arrival_s, 3501.72, 0.01);
  EXPECT_NEAR(mean_rate(*t), 19365 / 3501.72, 1e-3);
}

TEST(AzureTraceTest, CodeTraceMatchesTheReadme) {
  SW_REQUIRE_SHARED(path, kCode);
  auto t = load_azure_trace(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->size(), 8819u);
  expect_sorted_from_zero(*t);
  std::vector<int> prompt, output;
  double max_gap = 0;
  for (size_t i = 0; i < t->size(); ++i) {
    prompt.push_back((*t)[i].prompt_tokens);
    output.push_back((*t)[i].output_tokens);
    if (i) max_gap = std::max(max_gap, (*t)[i].arrival_s - (*t)[i - 1].arrival_s);
  }
  EXPECT_EQ(medians(prompt), std::make_pair(1469, 1469));
  EXPECT_EQ(medians(output), std::make_pair(13, 13));
  EXPECT_NEAR(max_gap, 217, 1) << "the README's longest gap";
}

TEST(AzureTraceTest, SortsAndStartsAtTheFirstArrival) {
  const auto path = write(std::string(kHeader) +
                          "2023-11-16 18:00:05.5,30,3\n"
                          "2023-11-16 18:00:02.0,10,1\n"
                          "2023-11-16 18:00:03.0,20,2\n");
  auto t = load_azure_trace(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_EQ(t->size(), 3u);
  EXPECT_DOUBLE_EQ((*t)[0].arrival_s, 0);
  EXPECT_EQ((*t)[0].prompt_tokens, 10);
  EXPECT_DOUBLE_EQ((*t)[1].arrival_s, 1);
  EXPECT_EQ((*t)[1].prompt_tokens, 20);
  EXPECT_DOUBLE_EQ((*t)[2].arrival_s, 3.5);
  EXPECT_EQ((*t)[2].output_tokens, 3);
}

TEST(AzureTraceTest, TimestampsSpanMidnightMonthsAndYears) {
  const auto path = write(std::string(kHeader) +
                          "2023-12-31 23:59:59.5,10,1\n"
                          "2024-01-01 00:00:00.5,10,1\n"
                          "2024-03-01 00:00:00.5,10,1\n");
  auto t = load_azure_trace(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_NEAR((*t)[1].arrival_s, 1.0, 1e-6);
  // Jan 1 -> Mar 1 2024: 31 + 29 (leap year) days.
  EXPECT_NEAR((*t)[2].arrival_s, 1.0 + 60 * 86400.0, 1e-6);
}

TEST(AzureTraceTest, ZeroGeneratedTokensBecomesOneAndCrlfIsAccepted) {
  const auto path = write(std::string("TIMESTAMP,ContextTokens,GeneratedTokens\r\n") +
                          "2023-11-16 18:00:00.0,10,0\r\n");
  auto t = load_azure_trace(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ((*t)[0].output_tokens, 1) << "the prefill always yields one token";
}

TEST(AzureTraceTest, MalformedRowsNameFileAndLine) {
  const std::string good = "2023-11-16 18:00:00.0,10,5\n";
  for (const std::string bad : {"2023-11-16 18:00:01.0,10\n", "2023-11-16 18:00:01.0,1x,5\n",
                                "2023-11-16 18:00:01.0,10,5.5\n", "2023-13-16 18:00:01.0,10,5\n",
                                "yesterday,10,5\n", "2023-11-16 18:00:01.0,0,5\n",
                                "2023-11-16 18:00:01.0,10,-1\n", "2023-11-16 18:00:01.0,,5\n"}) {
    const auto path = write(std::string(kHeader) + good + bad + good);
    auto t = load_azure_trace(path);
    ASSERT_FALSE(t.ok()) << "accepted: " << bad;
    EXPECT_NE(t.status().message().find(path.string() + ":3:"), std::string::npos)
        << t.status().message();
  }
}

TEST(AzureTraceTest, BadHeaderEmptyOrMissingFileIsAnError) {
  EXPECT_FALSE(load_azure_trace(write("time,prompt,output\n2023-11-16 18:00:00.0,10,5\n")).ok());
  EXPECT_FALSE(load_azure_trace(write(kHeader)).ok());
  EXPECT_FALSE(load_azure_trace("/nonexistent/trace.csv").ok());
}

TEST(TraceWindowTest, HalfOpenAndShiftedToZero) {
  std::vector<Request> t;
  for (int i = 0; i < 10; ++i) t.push_back({static_cast<double>(i), 100 + i, i + 1});
  const auto w = window(t, 3, 4);
  ASSERT_EQ(w.size(), 4u);  // 3, 4, 5, 6; 7 is the excluded end
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(w[i].arrival_s, i);
    EXPECT_EQ(w[i].prompt_tokens, 103 + i);
    EXPECT_EQ(w[i].output_tokens, 4 + i);
  }
  EXPECT_TRUE(window(t, 20, 5).empty());
}

TEST(TraceRateTest, MeanRate) {
  std::vector<Request> t;
  for (int i = 0; i <= 10; ++i) t.push_back({0.5 * i, 1, 1});
  EXPECT_DOUBLE_EQ(mean_rate(t), 2);
  EXPECT_EQ(mean_rate({}), 0);
  EXPECT_EQ(mean_rate({{3, 1, 1}}), 0);
}

struct GapStats {
  double rate, cv;
};
GapStats measure(const std::vector<Request>& t, double duration) {
  std::vector<double> gaps;
  double prev = 0;
  for (const Request& r : t) {
    gaps.push_back(r.arrival_s - prev);
    prev = r.arrival_s;
  }
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= static_cast<double>(gaps.size());
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= static_cast<double>(gaps.size() - 1);
  return {static_cast<double>(t.size()) / duration, std::sqrt(var) / mean};
}

const std::vector<Request> kLengths = {{0, 100, 10}, {0, 200, 20}, {0, 300, 30}};

TEST(GenerateTest, PoissonRateAndCv) {
  const auto t = generate({20, 5000, 1, 7}, kLengths);
  const GapStats s = measure(t, 5000);
  // 100k arrivals: the count's sd is 0.3%, the CV estimate's about 1%.
  EXPECT_NEAR(s.rate, 20, 20 * 0.02);
  EXPECT_NEAR(s.cv, 1, 0.05);
  for (size_t i = 0; i < t.size(); ++i) {
    ASSERT_GE(t[i].arrival_s, 0);
    ASSERT_LT(t[i].arrival_s, 5000);
    if (i > 0) {
      ASSERT_LE(t[i - 1].arrival_s, t[i].arrival_s);
    }
  }
}

TEST(GenerateTest, HigherCvIsBurstierAtTheSameRate) {
  const GapStats poisson = measure(generate({20, 5000, 1, 3}, kLengths), 5000);
  const GapStats bursty = measure(generate({20, 5000, 3, 3}, kLengths), 5000);
  EXPECT_NEAR(bursty.rate, 20, 20 * 0.04);  // count sd grows with cv: ~1%
  EXPECT_NEAR(bursty.cv, 3, 0.3);
  EXPECT_GT(bursty.cv, 2 * poisson.cv);
  // cv < 1: more regular than Poisson.
  const GapStats regular = measure(generate({20, 5000, 0.5, 3}, kLengths), 5000);
  EXPECT_NEAR(regular.cv, 0.5, 0.05);
}

TEST(GenerateTest, LengthsArePairsDrawnFromTheSource) {
  const auto t = generate({50, 600, 1, 11}, kLengths);
  int count[3] = {0, 0, 0};
  for (const Request& r : t) {
    // (prompt, output) stays a pair: 100 always comes with 10, never with 20.
    ASSERT_EQ(r.output_tokens * 10, r.prompt_tokens);
    ASSERT_TRUE(r.prompt_tokens == 100 || r.prompt_tokens == 200 || r.prompt_tokens == 300);
    ++count[r.prompt_tokens / 100 - 1];
  }
  for (int c : count) EXPECT_NEAR(c, t.size() / 3.0, t.size() * 0.03);
}

TEST(GenerateTest, ConvLengthsKeepTheTraceMedians) {
  SW_REQUIRE_SHARED(path, kConv);
  auto trace = load_azure_trace(path);
  ASSERT_TRUE(trace.ok()) << trace.status().message();
  std::set<std::pair<int, int>> source;
  for (const Request& r : *trace) source.insert({r.prompt_tokens, r.output_tokens});
  const auto t = generate({10, 3000, 1, 5}, *trace);
  std::vector<int> prompt;
  for (const Request& r : t) {
    ASSERT_EQ(source.count({r.prompt_tokens, r.output_tokens}), 1u);
    prompt.push_back(r.prompt_tokens);
  }
  // 30k draws: the sample median is within a few percent of the trace's 1020.
  EXPECT_NEAR(medians(prompt).first, 1020, 60);
}

TEST(GenerateTest, SameSeedSameArrivalsOtherSeedOthers) {
  const auto a = generate({5, 100, 2, 42}, kLengths);
  const auto b = generate({5, 100, 2, 42}, kLengths);
  const auto c = generate({5, 100, 2, 43}, kLengths);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival_s, b[i].arrival_s);
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
  }
  EXPECT_TRUE(a.size() != c.size() || a.front().arrival_s != c.front().arrival_s);
}

TEST(GenerateTest, DegenerateInputsGiveNothing) {
  EXPECT_TRUE(generate({5, 100, 1, 1}, {}).empty());
  EXPECT_TRUE(generate({0, 100, 1, 1}, kLengths).empty());
  EXPECT_TRUE(generate({5, 0, 1, 1}, kLengths).empty());
}

}  // namespace
}  // namespace splitwise::sim
