// PerfModel: the Curve's interpolation rules, the decode model's KV-read term, and loading
// the Splitwise profile (../shared/data/splitwise-sim-profiles/perf_model.csv). Expected
// values on the real profile are recomputed here from the CSV's rows, independently of
// the loader.
#include "sim/perf_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sim/hardware.h"
#include "tests/test_util.h"

namespace splitwise::sim {
namespace {

constexpr const char* kProfile = "data/splitwise-sim-profiles/perf_model.csv";
constexpr const char* kHeader =
    "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,"
    "token_time,e2e_time,tensor_parallel";

TEST(CurveTest, EmptyCurveIsZero) {
  Curve c;
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c(5), 0);
}

TEST(CurveTest, SinglePointIsConstant) {
  Curve c({{4, 7}});
  EXPECT_EQ(c(0), 7);
  EXPECT_EQ(c(4), 7);
  EXPECT_EQ(c(1e6), 7);
}

TEST(CurveTest, InterpolatesClampsBelowAndExtrapolatesAbove) {
  Curve c({{10, 100}, {20, 200}, {40, 300}});
  EXPECT_DOUBLE_EQ(c(10), 100);
  EXPECT_DOUBLE_EQ(c(15), 150);
  EXPECT_DOUBLE_EQ(c(20), 200);
  EXPECT_DOUBLE_EQ(c(30), 250);
  EXPECT_DOUBLE_EQ(c(40), 300);
  // Below the first point: the first value, not an extrapolation towards zero.
  EXPECT_DOUBLE_EQ(c(0), 100);
  EXPECT_DOUBLE_EQ(c(-5), 100);
  // Above the last: the last segment's slope (5 per unit) continues.
  EXPECT_DOUBLE_EQ(c(60), 400);
}

TEST(CurveTest, SortsPointsGivenOutOfOrder) {
  Curve c({{40, 300}, {10, 100}, {20, 200}});
  ASSERT_EQ(c.points().size(), 3u);
  EXPECT_EQ(c.points().front().first, 10);
  EXPECT_DOUBLE_EQ(c(15), 150);
  EXPECT_DOUBLE_EQ(c(30), 250);
}

TEST(CurveTest, MonotonicFixUpNeverRewardsBiggerBatches) {
  // A noisy profile: 20 measured faster than 10. The fix-up lifts it to 100.
  Curve c({{10, 100}, {20, 80}, {40, 300}});
  EXPECT_DOUBLE_EQ(c.points()[1].second, 100);
  EXPECT_DOUBLE_EQ(c(15), 100);
  EXPECT_DOUBLE_EQ(c(20), 100);
  EXPECT_DOUBLE_EQ(c(30), 200);
  double prev = c(0);
  for (double x = 0; x <= 100; x += 0.5) {
    EXPECT_GE(c(x), prev) << "at " << x;
    prev = c(x);
  }
}

TEST(PerfModelTest, DecodeAddsKvReadsBeyondTheReferenceContext) {
  // decode_(b) = 10 + 2 b; measured at 100 tokens per sequence; 0.01 ms per KV token.
  PerfModel m(Curve({{0, 5}}), Curve({{1, 12}, {11, 32}}), 100, 0.01);
  EXPECT_EQ(m.decode_ms(0, 1000), 0);
  // Batch 4 at exactly the reference context (400 tokens): the curve alone.
  EXPECT_DOUBLE_EQ(m.decode_ms(4, 400), 18);
  // 1000 tokens more than measured: + 10 ms of KV reads.
  EXPECT_DOUBLE_EQ(m.decode_ms(4, 1400), 28);
  // Shorter contexts save KV reads, but never below half the measured time (weights).
  EXPECT_DOUBLE_EQ(m.decode_ms(4, 200), 16);
  EXPECT_DOUBLE_EQ(m.decode_ms(4, 0), 14);
  EXPECT_DOUBLE_EQ(m.decode_ms(1, 0), 11);
  PerfModel steep(Curve({{0, 5}}), Curve({{1, 12}}), 1000, 0.1);
  EXPECT_DOUBLE_EQ(steep.decode_ms(1, 0), 6);  // 12 - 100 would be negative: clamped
}

TEST(PerfModelTest, MixedIterationRidesDecodesInThePrefillGemm) {
  PerfModel m(Curve({{0, 10}, {1000, 20}}), Curve({{1, 30}}), 0, 0.01);
  // 500 prefill + 4 decode rows through the GEMMs, plus the decodes' 2000 tokens of KV.
  EXPECT_DOUBLE_EQ(m.mixed_ms(500, 4, 2000), 10 + 0.01 * 504 + 0.01 * 2000);
  // No prefill: a plain decode iteration.
  EXPECT_DOUBLE_EQ(m.mixed_ms(0, 4, 2000), m.decode_ms(4, 2000));
}

TEST(HardwareTest, KvBytesPerTokenFollowGqa) {
  auto llama = model_spec("llama2-70b");
  auto bloom = model_spec("bloom-176b");
  ASSERT_TRUE(llama.ok() && bloom.ok());
  // 2 (K, V) x 80 layers x 8 KV heads x 128 x 2 bytes.
  EXPECT_EQ(llama->kv_bytes_per_token(), 327680);
  // 2 x 70 layers x 112 heads x 128 x 2 bytes: no GQA, 12x llama's per token.
  EXPECT_EQ(bloom->kv_bytes_per_token(), 4014080);
  EXPECT_FALSE(model_spec("gpt-5").ok());
  auto tpu = machine_spec("tpu");
  ASSERT_FALSE(tpu.ok());
  EXPECT_NE(tpu.status().message().find("h100"), std::string::npos) << "names the known";
}

// --- The real profile ------------------------------------------------------------

struct CsvRow {
  std::string model, hardware;
  double prompt, batch, tokens, prompt_ms, token_ms;
  int tp;
};

std::vector<CsvRow> read_rows(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header, in the documented column order
  std::vector<CsvRow> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) c.push_back(cell);
    if (c.size() < 11) continue;
    rows.push_back({c[0], c[1], std::stod(c[2]), std::stod(c[3]), std::stod(c[4]), std::stod(c[7]),
                    std::stod(c[8]), std::stoi(c[10])});
  }
  return rows;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

PerfModel load(const std::filesystem::path& csv, const std::string& model,
               const std::string& machine, int tp = 0) {
  auto m = PerfModel::from_csv(csv, *model_spec(model), *machine_spec(machine), tp);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return std::move(m).value();
}

TEST(PerfModelCsvTest, PromptTimeAtATablePointIsTheMedianOfItsRows) {
  SW_REQUIRE_SHARED(csv, kProfile);
  const auto rows = read_rows(csv);
  // 2048 batch tokens: the prompt sweep (2048 x 1) and the batch sweep (512 x 4).
  std::vector<double> at2048;
  double below_max = 0;  // largest median below 2048, for the fix-up precondition
  std::map<double, std::vector<double>> by_tokens;
  for (const CsvRow& r : rows)
    if (r.model == "llama2-70b" && r.hardware == "h100-80gb" && r.tp == 8)
      by_tokens[r.prompt * r.batch].push_back(r.prompt_ms);
  ASSERT_EQ(by_tokens[2048].size(), 10u);
  for (auto& [x, ys] : by_tokens)
    if (x < 2048) below_max = std::max(below_max, median(ys));
  const double expected = median(by_tokens[2048]);
  ASSERT_LT(below_max, expected) << "the monotonic fix-up would move this point";

  const PerfModel m = load(csv, "llama2-70b", "h100");
  EXPECT_EQ(m.info().tensor_parallel, 8) << "0 selects the largest TP present";
  EXPECT_EQ(m.info().rows, 105);
  EXPECT_NEAR(m.prompt_ms(2048), expected, 1e-9);
}

TEST(PerfModelCsvTest, PromptTimeNeverDecreasesWithTokens) {
  SW_REQUIRE_SHARED(csv, kProfile);
  for (const char* machine : {"a100", "h100", "h100cap"}) {
    const PerfModel m = load(csv, "llama2-70b", machine);
    double prev = 0;
    for (int64_t x = 1; x <= 40000; x += 7) {
      ASSERT_GE(m.prompt_ms(x), prev) << machine << " at " << x << " tokens";
      prev = m.prompt_ms(x);
    }
  }
}

TEST(PerfModelCsvTest, DecodeAtTheReferenceContextIsTheMedianOfTheBatchSweep) {
  SW_REQUIRE_SHARED(csv, kProfile);
  std::vector<double> batch1;
  for (const CsvRow& r : read_rows(csv))
    if (r.model == "llama2-70b" && r.hardware == "h100-80gb" && r.tp == 8 && r.prompt == 512 &&
        r.tokens == 128 && r.batch == 1)
      batch1.push_back(r.token_ms);
  ASSERT_EQ(batch1.size(), 15u);  // the setting repeats in all three sweeps
  const PerfModel m = load(csv, "llama2-70b", "h100");
  // Measured generating 128 tokens after a 512-token prompt: mean context 512 + 64.
  EXPECT_NEAR(m.decode_ms(1, 576), median(batch1), 1e-9);
}

TEST(PerfModelCsvTest, DecodeGrowsWithContextFarMoreWithoutGqa) {
  SW_REQUIRE_SHARED(csv, kProfile);
  const PerfModel llama = load(csv, "llama2-70b", "h100");
  const PerfModel bloom = load(csv, "bloom-176b", "h100");
  const double llama_growth = llama.decode_ms(1, 100576) - llama.decode_ms(1, 576);
  const double bloom_growth = bloom.decode_ms(1, 100576) - bloom.decode_ms(1, 576);
  // 100k tokens x 327680 B = 32.8 GB read at 8 x 3.35 TB/s x 0.65.
  EXPECT_NEAR(llama_growth, 100000.0 * 327680 / (8 * 3.35e12 * kKvReadEfficiency) * 1e3, 1e-9);
  EXPECT_GT(llama_growth, 1.0);
  EXPECT_NEAR(bloom_growth / llama_growth, 4014080.0 / 327680.0, 1e-9);
  // And with the batch: 64 sequences of 2k context read more than 64 of 576.
  EXPECT_GT(llama.decode_ms(64, 64 * 2048), llama.decode_ms(64, 64 * 576));
}

TEST(PerfModelCsvTest, FewerGpusReadKvMoreSlowly) {
  SW_REQUIRE_SHARED(csv, kProfile);
  const PerfModel tp8 = load(csv, "llama2-70b", "a100", 8);
  const PerfModel tp2 = load(csv, "llama2-70b", "a100", 2);
  EXPECT_EQ(tp2.info().tensor_parallel, 2);
  EXPECT_NEAR(tp2.kv_ms_per_token(), 4 * tp8.kv_ms_per_token(), 1e-15);
  // TP 2 prefills more slowly than TP 8 on the same GPUs.
  EXPECT_GT(tp2.prompt_ms(2048), tp8.prompt_ms(2048));
}

TEST(PerfModelCsvTest, UnknownModelHardwareOrTpIsAnError) {
  SW_REQUIRE_SHARED(csv, kProfile);
  ModelSpec gpt = *model_spec("llama2-70b");
  gpt.name = "gpt-x";
  auto a = PerfModel::from_csv(csv, gpt, *machine_spec("h100"));
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("gpt-x"), std::string::npos) << a.status().message();
  MachineSpec tpu = *machine_spec("h100");
  tpu.hardware = "tpu-v5";
  auto b = PerfModel::from_csv(csv, *model_spec("llama2-70b"), tpu);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("tpu-v5"), std::string::npos) << b.status().message();
  auto c = PerfModel::from_csv(csv, *model_spec("bloom-176b"), *machine_spec("h100"), 2);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("tensor_parallel 2"), std::string::npos)
      << c.status().message();
}

// --- Malformed profiles ----------------------------------------------------------

std::filesystem::path write(const std::string& name, const std::string& text) {
  const auto path = splitwise::testing::fresh_temp_dir() / name;
  std::ofstream(path) << text;
  return path;
}

Result<PerfModel> load_toy(const std::filesystem::path& path) {
  ModelSpec model{"toy", 0, 10, 1, 64, 2};
  MachineSpec machine;
  machine.hardware = "toy-gpu";
  machine.hbm_bandwidth_per_gpu = 1e12;
  return PerfModel::from_csv(path, model, machine);
}

const std::string kGoodRow = "toy,toy-gpu,512,1,128,1,1,50.0,20.0,0,1\n";

TEST(PerfModelCsvErrorsTest, MissingFile) {
  auto m = load_toy("/nonexistent/perf_model.csv");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("/nonexistent/perf_model.csv"), std::string::npos);
}

TEST(PerfModelCsvErrorsTest, MissingColumnIsNamed) {
  std::string header = kHeader;
  header.replace(header.find("token_time,"), 11, "");
  const auto path = write("p.csv", header + "\ntoy,toy-gpu,512,1,128,1,1,50.0,0,1\n");
  auto m = load_toy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("token_time"), std::string::npos) << m.status().message();
}

TEST(PerfModelCsvErrorsTest, BadNumberNamesFileAndLine) {
  const auto path = write(
      "p.csv", std::string(kHeader) + "\n" + kGoodRow + "toy,toy-gpu,512,1,128,1,1,abc,20,0,1\n");
  auto m = load_toy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(path.string() + ":3"), std::string::npos)
      << m.status().message();
}

TEST(PerfModelCsvErrorsTest, ShortRowNamesFileAndLine) {
  const auto path =
      write("p.csv", std::string(kHeader) + "\n" + kGoodRow + kGoodRow + "toy,toy-gpu,512,1,128\n");
  auto m = load_toy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(path.string() + ":4"), std::string::npos)
      << m.status().message();
}

// A number with trailing garbage ("50ms", "5l2") is not a number: reading its prefix
// would silently turn a typo into a wrong iteration time. std::stod accepts the prefix,
// so this catches loaders that do not check the whole cell was consumed.
TEST(PerfModelCsvErrorsTest, NumberWithTrailingGarbageIsAnError) {
  const auto path = write(
      "p.csv", std::string(kHeader) + "\n" + kGoodRow + "toy,toy-gpu,512,1,128,1,1,50ms,20,0,1\n");
  auto m = load_toy(path);
  ASSERT_FALSE(m.ok()) << "prompt_time '50ms' was read as " << m->prompt_ms(512);
  EXPECT_NE(m.status().message().find(path.string() + ":3"), std::string::npos)
      << m.status().message();
}

TEST(PerfModelCsvErrorsTest, GoodToyProfileLoads) {
  // The control for the error tests above: the same file without the bad row loads.
  const auto path = write("p.csv", std::string(kHeader) + "\n" + kGoodRow);
  auto m = load_toy(path);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_DOUBLE_EQ(m->prompt_ms(512), 50);
  EXPECT_DOUBLE_EQ(m->decode_ms(1, 576), 20);
}

}  // namespace
}  // namespace splitwise::sim
