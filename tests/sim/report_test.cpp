// Report: nearest-rank percentiles, slowdown SLOs against a synthetic reference machine
// (prefill 100 ms, decode 10 ms, whatever the length), cost and power from machine
// uptime, and the CSV and SVG files a run writes.
#include "sim/report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/sim_test_util.h"
#include "tests/test_util.h"

namespace splitwise::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(PercentilesTest, NearestRankOnSmallVectors) {
  Percentiles p = percentiles({10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  EXPECT_EQ(p.p50, 5);  // rank ceil(0.5 x 10) = 5
  EXPECT_EQ(p.p90, 9);
  EXPECT_EQ(p.p99, 10);
  p = percentiles({3, 1, 2});
  EXPECT_EQ(p.p50, 2);  // rank ceil(1.5) = 2
  EXPECT_EQ(p.p90, 3);
  EXPECT_EQ(p.p99, 3);
  p = percentiles({7});
  EXPECT_EQ(p.p50, 7);
  EXPECT_EQ(p.p99, 7);
  p = percentiles({});
  EXPECT_EQ(p.p50, 0);
  EXPECT_EQ(p.p99, 0);
}

TEST(PercentilesTest, NearestRankForEverySizeUpTo300) {
  // Rank ceil(q n), computed in integers so floating-point q x n cannot hide an
  // off-by-one; values shuffled so the order of the input does not matter.
  std::mt19937 rng(1);
  for (int n = 1; n <= 300; ++n) {
    std::vector<double> v(n);
    std::iota(v.begin(), v.end(), 1.0);
    std::shuffle(v.begin(), v.end(), rng);
    const Percentiles p = percentiles(v);
    EXPECT_EQ(p.p50, (n + 1) / 2) << n;
    EXPECT_EQ(p.p90, (9 * n + 9) / 10) << n;
    EXPECT_EQ(p.p99, (99 * n + 99) / 100) << n;
  }
}

TEST(PercentilesTest, InfinitiesAreTheSlowest) {
  std::vector<double> v(99, 1.0);
  v.push_back(kInf);
  EXPECT_EQ(percentiles(v).p99, 1);  // 1 miss in 100: p99 still holds
  v[0] = kInf;
  EXPECT_EQ(percentiles(v).p99, kInf);  // 2 in 100: it does not
  EXPECT_EQ(percentiles(v).p50, 1);
}

// --- summarize -------------------------------------------------------------------

const PerfModel kReference(Curve({{0, 100}}), Curve({{1, 10}}), 0, 0);

ClusterSpec one_pool_spec() { return simtest::mixed_spec(1, 100000); }

// A request of 100 prompt tokens and 11 output tokens, arriving at `at`, whose TTFT and
// TBT are the reference's (0.1 s, 0.01 s) times the given slowdowns.
RequestRecord record(double at, double ttft_slow, double tbt_slow) {
  RequestRecord r;
  r.arrival = at;
  r.prompt_tokens = 100;
  r.output_tokens = 11;
  r.prompt_machine = 0;
  r.first_token = at + 0.1 * ttft_slow;
  r.finish = r.first_token + 10 * 0.01 * tbt_slow;
  return r;
}

Report summarize_records(const std::vector<RequestRecord>& records, double end_s = 10) {
  return summarize(records, {}, one_pool_spec(), kReference, SloSpec{}, end_s);
}

TEST(SummarizeTest, ReferenceSpeedMeetsEverySlo) {
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 10; ++i) recs.push_back(record(i, 1, 1));
  const Report r = summarize_records(recs, 10);
  EXPECT_EQ(r.requests, 10);
  EXPECT_EQ(r.completed, 10);
  EXPECT_TRUE(r.slo_met);
  EXPECT_EQ(r.slo_verdict, "ok");
  EXPECT_NEAR(r.ttft_s.p50, 0.1, 1e-12);
  EXPECT_NEAR(r.tbt_s.p99, 0.01, 1e-12);
  EXPECT_NEAR(r.e2e_s.p50, 0.2, 1e-12);
  EXPECT_NEAR(r.ttft_slow.p99, 1, 1e-12);
  EXPECT_NEAR(r.e2e_slow.p99, 1, 1e-12);
  EXPECT_EQ(r.duration_s, 9);  // the last arrival
  EXPECT_NEAR(r.throughput_rps, 1, 1e-12);
  EXPECT_NEAR(r.output_tokens_per_s, 11, 1e-12);
}

TEST(SummarizeTest, VerdictNamesTheFirstMissedSlo) {
  std::vector<RequestRecord> recs;
  // TBT 1.3x everywhere (limit 1.25x at p50); E2E (0.1 + 0.13) / 0.2 = 1.15x holds.
  for (int i = 0; i < 10; ++i) recs.push_back(record(i, 1, 1.3));
  Report r = summarize_records(recs);
  EXPECT_FALSE(r.slo_met);
  EXPECT_EQ(r.slo_verdict, "TBT p50 slowdown 1.30x > 1.25x");
  // One TTFT of 7x in 10 is the p99 (limit 6x): TTFT is checked before TBT.
  recs[3] = record(3, 7, 1.3);
  r = summarize_records(recs);
  EXPECT_EQ(r.slo_verdict, "TTFT p99 slowdown 7.00x > 6.00x");
  EXPECT_NE(format_report(r).find("missed: TTFT p99"), std::string::npos) << format_report(r);
}

TEST(SummarizeTest, UnfinishedAndRejectedRequestsAreMisses) {
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 9; ++i) recs.push_back(record(i, 1, 1));
  RequestRecord stuck = record(9, 1, 1);
  stuck.finish = -1;  // got its first token, never finished
  recs.push_back(stuck);
  Report r = summarize_records(recs);
  EXPECT_EQ(r.requests, 10);
  EXPECT_EQ(r.completed, 9);
  EXPECT_FALSE(r.slo_met);
  EXPECT_EQ(r.tbt_slow.p99, kInf);
  EXPECT_EQ(r.slo_verdict.rfind("TBT p99", 0), 0u) << r.slo_verdict;

  RequestRecord rejected = record(9, 1, 1);
  rejected.first_token = rejected.finish = -1;
  rejected.rejected = true;
  recs.back() = rejected;
  r = summarize_records(recs);
  EXPECT_EQ(r.rejected, 1);
  EXPECT_EQ(r.completed, 9);
  EXPECT_EQ(r.ttft_slow.p99, kInf);
  EXPECT_EQ(r.slo_verdict.rfind("TTFT p99", 0), 0u) << r.slo_verdict;
  // Throughput counts what finished.
  EXPECT_NEAR(r.throughput_rps, 0.9, 1e-12);
}

TEST(SummarizeTest, KvTailOnlyOverSplitRequestsAndPreemptionsSum) {
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 4; ++i) {
    recs.push_back(record(i, 1, 1));
    recs.back().preemptions = i;
  }
  recs[0].token_machine = 1;
  recs[0].kv_tail_s = 0.005;
  recs[1].token_machine = 1;
  recs[1].kv_tail_s = 0.007;
  const Report r = summarize_records(recs);
  EXPECT_EQ(r.kv_tail_s.p50, 0.005);
  EXPECT_EQ(r.kv_tail_s.p99, 0.007);
  EXPECT_EQ(r.preemptions, 6);
}

TEST(SummarizeTest, CostAndPowerFromMachineUptime) {
  ClusterSpec spec = one_pool_spec();  // pool 0: 10 $/h, 5 power units
  spec.pools.push_back(spec.pools[0]);
  spec.pools[1].machine.cost_per_hour = 20;
  spec.pools[1].machine.power = 8;
  const std::vector<MachineStats> machines = {
      {.pool = 0, .started = 0, .stopped = -1},       // up the whole hour
      {.pool = 0, .started = 1800, .stopped = 2700},  // a quarter of it
      {.pool = 1, .started = 0, .stopped = -1}};
  const Report r = summarize({}, machines, spec, kReference, SloSpec{}, 3600);
  EXPECT_NEAR(r.machine_hours, 2.25, 1e-12);
  EXPECT_NEAR(r.cost_usd, 10 + 2.5 + 20, 1e-9);
  EXPECT_NEAR(r.cost_per_hour, 32.5, 1e-9);
  EXPECT_NEAR(r.mean_power, 5 + 1.25 + 8, 1e-9);
  EXPECT_FALSE(r.slo_met);
  EXPECT_EQ(r.slo_verdict, "no requests");
  // Over two hours the first and third machines cost twice as much; per hour, the same
  // less the second machine's share.
  const Report two = summarize({}, machines, spec, kReference, SloSpec{}, 7200);
  EXPECT_NEAR(two.cost_usd, 20 + 2.5 + 40, 1e-9);
  EXPECT_NEAR(two.cost_per_hour, (20 + 2.5 + 40) / 2, 1e-9);
}

// --- Files -------------------------------------------------------------------------

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) out.push_back(part);
  return out;
}

bool is_number(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(v);
}

TEST(RequestsCsvTest, OneParseableRowPerRequest) {
  std::vector<RequestRecord> recs = {record(0, 1, 1), record(1, 2, 1), record(2, 1, 1)};
  recs[0].token_machine = 3;
  recs[0].kv_tail_s = 0.005;
  recs[1].rejected = true;
  recs[1].first_token = recs[1].finish = -1;
  recs[2].finish = -1;
  const auto path = splitwise::testing::fresh_temp_dir() / "requests.csv";
  ASSERT_TRUE(write_requests_csv(path, recs).ok());
  const auto lines = split(splitwise::testing::read_file(path), '\n');
  ASSERT_EQ(lines.size(), 4u);
  const auto header = split(lines[0], ',');
  ASSERT_EQ(header.size(), 12u);
  EXPECT_EQ(header.front(), "id");
  EXPECT_EQ(header.back(), "status");
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto cells = split(lines[i], ',');
    ASSERT_EQ(cells.size(), header.size()) << lines[i];
    for (size_t c = 0; c + 1 < cells.size(); ++c) EXPECT_TRUE(is_number(cells[c])) << lines[i];
  }
  const auto row0 = split(lines[1], ',');
  EXPECT_EQ(row0[0], "0");
  EXPECT_NEAR(std::stod(row0[4]), 0.1, 1e-6);  // ttft_s
  EXPECT_NEAR(std::stod(row0[6]), 0.2, 1e-6);  // e2e_s
  EXPECT_EQ(row0[8], "3");
  EXPECT_EQ(row0[11], "ok");
  EXPECT_EQ(split(lines[2], ',')[4], "-1.000000");
  EXPECT_EQ(split(lines[2], ',')[11], "rejected");
  EXPECT_EQ(split(lines[3], ',')[11], "unfinished");
  EXPECT_FALSE(write_requests_csv("/nonexistent/dir/requests.csv", recs).ok());
}

// A small well-formedness check: tags nest, one <svg> root, '&' only in entities,
// no '<' in text or attribute values. Returns "" when well formed, else the problem.
std::string xml_problem(const std::string& doc) {
  std::vector<std::string> open;
  bool root_seen = false;
  static const std::regex entity("^&(amp|lt|gt|quot|apos|#[0-9]+);");
  for (size_t i = 0; i < doc.size(); ++i) {
    if (doc[i] == '&' && !std::regex_search(doc.substr(i, 8), entity))
      return "bare '&' at " + std::to_string(i);
    if (doc[i] != '<') {
      if (open.empty() && root_seen && !std::isspace(static_cast<unsigned char>(doc[i])))
        return "text after the root element";
      continue;
    }
    if (open.empty() && root_seen) return "second root element at " + std::to_string(i);
    // The tag ends at the first '>' outside a quoted attribute value.
    size_t j = i + 1;
    char quote = 0;
    for (; j < doc.size() && (quote || doc[j] != '>'); ++j) {
      if (quote && doc[j] == '<') return "'<' in an attribute value at " + std::to_string(j);
      if (doc[j] == quote)
        quote = 0;
      else if (!quote && (doc[j] == '\'' || doc[j] == '"'))
        quote = doc[j];
    }
    if (j == doc.size()) return "unterminated tag at " + std::to_string(i);
    std::string tag = doc.substr(i + 1, j - i - 1);
    const bool closing = !tag.empty() && tag[0] == '/';
    const bool self_closing = !tag.empty() && tag.back() == '/';
    std::string name = tag.substr(closing, tag.find_first_of(" \t\n/", closing) - closing);
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0])))
      return "bad tag '" + tag + "' at " + std::to_string(i);
    if (closing) {
      if (open.empty() || open.back() != name) return "mismatched </" + name + ">";
      open.pop_back();
    } else if (!self_closing) {
      if (open.empty() && name != "svg") return "root is <" + name + ">, not <svg>";
      open.push_back(name);
    } else if (open.empty()) {
      return "self-closing root <" + name + ">";
    }
    root_seen = true;
    i = j;
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  return root_seen ? "" : "no root element";
}

TEST(LatencySvgTest, XmlCheckerCatchesBrokenDocuments) {
  // The checker itself must be able to fail, or the SVG tests prove nothing.
  EXPECT_EQ(xml_problem("<svg a='1'><text>x &amp; y</text><line/></svg>\n"), "");
  EXPECT_NE(xml_problem("<svg><text>x & y</text></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text>a < b</text></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text></svg>"), "");
  EXPECT_NE(xml_problem("<html></html>"), "");
}

std::vector<RequestRecord> two_minutes_of_records() {
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 120; ++i) recs.push_back(record(i, 1 + (i % 7), 1 + 0.1 * (i % 3)));
  recs[5].finish = -1;  // unfinished ones are left out of the chart, not plotted as -1
  recs[6].output_tokens = 1;
  return recs;
}

TEST(LatencySvgTest, WritesAWellFormedChartWithOnePointPerBin) {
  const auto path = splitwise::testing::fresh_temp_dir() / "latency.svg";
  ASSERT_TRUE(write_latency_svg(path, two_minutes_of_records(), 10, "splitwise-hh conv").ok());
  const std::string svg = splitwise::testing::read_file(path);
  EXPECT_EQ(xml_problem(svg), "") << svg;
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("splitwise-hh conv"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  // Four series (TTFT and TBT, p50 and p99), each with a point per 10 s bin: 12 bins.
  static const std::regex polyline("<polyline[^>]*points='([^']*)'");
  int series = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), polyline);
       it != std::sregex_iterator(); ++it, ++series) {
    const auto points = split((*it)[1].str(), ' ');
    int n = 0;
    for (const auto& pt : points) {
      if (pt.empty()) continue;
      const auto xy = split(pt, ',');
      ASSERT_EQ(xy.size(), 2u) << pt;
      ASSERT_TRUE(is_number(xy[0]) && is_number(xy[1])) << pt;
      EXPECT_GE(std::stod(xy[0]), 0);
      EXPECT_LE(std::stod(xy[0]), 900);
      EXPECT_GE(std::stod(xy[1]), 0);
      EXPECT_LE(std::stod(xy[1]), 420);
      ++n;
    }
    EXPECT_EQ(n, 12) << "series " << series;
  }
  EXPECT_EQ(series, 4);
}

TEST(LatencySvgTest, EmptyRunStillWritesAWellFormedChart) {
  const auto path = splitwise::testing::fresh_temp_dir() / "latency.svg";
  ASSERT_TRUE(write_latency_svg(path, {}, 10, "empty").ok());
  EXPECT_EQ(xml_problem(splitwise::testing::read_file(path)), "");
  EXPECT_FALSE(write_latency_svg("/nonexistent/dir/x.svg", {}, 10, "t").ok());
}

// Titles come from user input (design, model, and a trace that may be any CSV path):
// characters special to XML must be escaped, or the chart will not open.
TEST(LatencySvgTest, TitleWithXmlSpecialCharactersIsEscaped) {
  const auto path = splitwise::testing::fresh_temp_dir() / "latency.svg";
  ASSERT_TRUE(
      write_latency_svg(path, two_minutes_of_records(), 10, "H100 & A100 <prompt/token>").ok());
  EXPECT_EQ(xml_problem(splitwise::testing::read_file(path)), "");
}

}  // namespace
}  // namespace splitwise::sim
