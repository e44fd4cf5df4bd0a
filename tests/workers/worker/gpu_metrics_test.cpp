// GpuMetrics against a fake libnvidia-ml (fake_nvml.cpp), loaded by path exactly as the
// real one is, so the dlopen/dlsym path and the unit conversions are what is tested.
#include "workers/worker/gpu_metrics.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>

namespace splitwise::worker {
namespace {

// NVML codes the fake returns on request.
constexpr int kDriverNotLoaded = 9;
constexpr int kGpuIsLost = 15;
constexpr double kGiB = 1024.0 * 1024 * 1024;

// The fake's control API, resolved from the same loaded copy GpuMetrics uses.
struct FakeNvml {
  void (*reset)(int count, int init_result);
  void (*set)(int device, unsigned util_pct, unsigned long long used, unsigned long long total,
              unsigned power_mw, unsigned limit_mw, unsigned long long energy_mj, int fail);
  void (*set_name)(int device, const char* name);
  void (*set_unsupported)(int device, int mask);
  int (*init_refs)();
};

#ifdef SPLITWISE_FAKE_NVML
const char* const kFakePath = SPLITWISE_FAKE_NVML;
#else
const char* const kFakePath = nullptr;  // tests/workers/worker/fake_nvml.cmake not included
#endif

// The value of the series `name` whose labels include `labels`; nullopt when absent.
std::optional<double> sample(prometheus::Registry& registry, const std::string& name,
                             const prometheus::Labels& labels = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found |= l.name == k && l.value == v;
        match &= found;
      }
      if (match)
        return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return std::nullopt;
}

// Captures what spdlog's default logger writes while alive.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  int count(const std::string& needle) const {
    const std::string s = out_.str();
    int n = 0;
    for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

class GpuMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kFakePath) GTEST_SKIP() << "fake NVML not built (include fake_nvml.cmake)";
    // Kept open for the whole process: GpuMetrics' dlclose must not drop the fake's state.
    static void* lib = dlopen(kFakePath, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(lib, nullptr) << dlerror();
    const auto get = [](const char* name, auto& fn) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      ASSERT_NE(fn, nullptr) << name;
    };
    get("fake_nvml_reset", fake_.reset);
    get("fake_nvml_set", fake_.set);
    get("fake_nvml_set_name", fake_.set_name);
    get("fake_nvml_set_unsupported", fake_.set_unsupported);
    get("fake_nvml_init_refs", fake_.init_refs);
    fake_.reset(2, 0);
  }
  void TearDown() override {
    if (fake_.init_refs) {
      EXPECT_EQ(fake_.init_refs(), 0) << "a GpuMetrics leaked an nvmlInit";
    }
  }

  std::optional<double> gpu(const std::string& name, const std::string& index) {
    return sample(registry_, name, {{"gpu", index}});
  }

  FakeNvml fake_{};
  prometheus::Registry registry_;
};

TEST_F(GpuMetricsTest, ReportsEveryGpuInBaseUnits) {
  fake_.set_name(0, "NVIDIA H100 80GB HBM3");
  fake_.set_name(1, "NVIDIA A100-SXM4-40GB");
  fake_.set(0, 37, 12 * 1024ull * 1024 * 1024, 80 * 1024ull * 1024 * 1024, 312'500, 700'000,
            5'000'250, 0);
  fake_.set(1, 100, 1024, 40 * 1024ull * 1024 * 1024, 90'001, 400'000, 7'000, 0);
  GpuMetrics m(registry_, {0, 1}, kFakePath);
  ASSERT_TRUE(m.available()) << m.unavailable_reason();
  EXPECT_EQ(m.unavailable_reason(), "");
  EXPECT_EQ(fake_.init_refs(), 1);
  m.update(0);

  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "0"), 0.37);
  EXPECT_EQ(gpu("splitwise_gpu_memory_used_bytes", "0"), 12 * kGiB);
  EXPECT_EQ(gpu("splitwise_gpu_memory_total_bytes", "0"), 80 * kGiB);
  EXPECT_EQ(gpu("splitwise_gpu_power_watts", "0"), 312.5);
  EXPECT_EQ(gpu("splitwise_gpu_power_limit_watts", "0"), 700.0);
  EXPECT_EQ(gpu("splitwise_gpu_energy_joules_total", "0"), 5000.25);
  EXPECT_EQ(
      sample(registry_, "splitwise_gpu_info", {{"gpu", "0"}, {"name", "NVIDIA H100 80GB HBM3"}}),
      1.0);

  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "1"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "1"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_memory_used_bytes", "1"), 1024.0);
  EXPECT_EQ(gpu("splitwise_gpu_power_watts", "1"), 90.001);
  EXPECT_EQ(gpu("splitwise_gpu_power_limit_watts", "1"), 400.0);
  EXPECT_EQ(gpu("splitwise_gpu_energy_joules_total", "1"), 7.0);
  EXPECT_EQ(
      sample(registry_, "splitwise_gpu_info", {{"gpu", "1"}, {"name", "NVIDIA A100-SXM4-40GB"}}),
      1.0);

  // The counter follows NVML's across reads.
  fake_.set(0, 37, 0, 1, 0, 0, 5'100'000, 0);
  m.update(0);
  EXPECT_DOUBLE_EQ(*gpu("splitwise_gpu_energy_joules_total", "0"), 5100.0);
}

TEST_F(GpuMetricsTest, EnergyPerTokenIsTheLastIntervalWithNewTokens) {
  unsigned long long e0 = 1'000'000, e1 = 2'000'000;  // mJ
  const auto set_energy = [&] {
    fake_.set(0, 0, 0, 1, 0, 0, e0, 0);
    fake_.set(1, 0, 0, 1, 0, 0, e1, 0);
  };
  set_energy();
  GpuMetrics m(registry_, {0, 1}, kFakePath);
  m.update(100);  // baseline only: no interval yet
  EXPECT_EQ(sample(registry_, "splitwise_gpu_energy_per_token_joules"), std::nullopt);

  e0 += 300'000, e1 += 100'000;  // 400 J for 50 tokens, summed over both GPUs
  set_energy();
  m.update(150);
  EXPECT_DOUBLE_EQ(*sample(registry_, "splitwise_gpu_energy_per_token_joules"), 8.0);

  e0 += 50'000;  // no new tokens: the figure stays, the energy counts toward the next ones
  set_energy();
  m.update(150);
  EXPECT_DOUBLE_EQ(*sample(registry_, "splitwise_gpu_energy_per_token_joules"), 8.0);

  e1 += 150'000;  // (50 J idle + 150 J) over 100 tokens
  set_energy();
  m.update(250);
  EXPECT_DOUBLE_EQ(*sample(registry_, "splitwise_gpu_energy_per_token_joules"), 2.0);
  EXPECT_DOUBLE_EQ(*gpu("splitwise_gpu_energy_joules_total", "0"), 1350.0);
  EXPECT_DOUBLE_EQ(*gpu("splitwise_gpu_energy_joules_total", "1"), 2250.0);
}

TEST_F(GpuMetricsTest, EnergyPerTokenWaitsOutAFailedRead) {
  fake_.set(0, 0, 0, 1, 0, 0, 1'000'000, 0);
  fake_.set(1, 0, 0, 1, 0, 0, 1'000'000, 0);
  GpuMetrics m(registry_, {0, 1}, kFakePath);
  m.update(0);
  // GPU 0 cannot be read while both spend 100 J: summing its stale energy would undercount.
  fake_.set(0, 0, 0, 1, 0, 0, 1'100'000, kGpuIsLost);
  fake_.set(1, 0, 0, 1, 0, 0, 1'100'000, 0);
  m.update(10);
  EXPECT_EQ(sample(registry_, "splitwise_gpu_energy_per_token_joules"), std::nullopt);
  fake_.set(0, 0, 0, 1, 0, 0, 1'100'000, 0);
  m.update(40);  // 200 J over 40 tokens, the whole gap since the last good round
  EXPECT_DOUBLE_EQ(*sample(registry_, "splitwise_gpu_energy_per_token_joules"), 5.0);
}

TEST_F(GpuMetricsTest, IntegratesPowerWhereTheGpuHasNoEnergyCounter) {
  fake_.set_unsupported(0, 8);
  fake_.set(0, 0, 0, 1, 200'000, 0, 0, 0);  // a steady 200 W
  GpuMetrics m(registry_, {0}, kFakePath);
  const auto t0 = std::chrono::steady_clock::now();
  m.update(0);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(gpu("splitwise_gpu_energy_joules_total", "0"), 0.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t2 = std::chrono::steady_clock::now();
  m.update(0);
  const auto t3 = std::chrono::steady_clock::now();
  // update() took its clock somewhere inside each bracket: bound the interval both ways.
  const auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const double joules = *gpu("splitwise_gpu_energy_joules_total", "0");
  EXPECT_GE(joules, 200 * seconds(t2 - t1));
  EXPECT_LE(joules, 200 * seconds(t3 - t0));
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);
}

TEST_F(GpuMetricsTest, MissingSensorsAreLeftOutNotFailed) {
  fake_.set_unsupported(0, 1 | 4);  // like a MIG slice: no utilization, no power limit
  fake_.set(0, 55, 10, 20, 150'000, 300'000, 0, 0);
  GpuMetrics m(registry_, {0}, kFakePath);
  m.update(0);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "0"), std::nullopt);
  EXPECT_EQ(gpu("splitwise_gpu_power_limit_watts", "0"), std::nullopt);
  EXPECT_EQ(gpu("splitwise_gpu_power_watts", "0"), 150.0);
  EXPECT_EQ(gpu("splitwise_gpu_memory_used_bytes", "0"), 10.0);
}

TEST_F(GpuMetricsTest, FailedReadClearsUpKeepsLastValuesAndLogsOnce) {
  LogCapture log;
  fake_.set(0, 50, 100, 200, 100'000, 300'000, 1'000, 0);
  fake_.set(1, 10, 100, 200, 100'000, 300'000, 1'000, 0);
  GpuMetrics m(registry_, {0, 1}, kFakePath);
  m.update(0);
  ASSERT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);

  fake_.set(0, 90, 150, 200, 250'000, 300'000, 2'000, kGpuIsLost);
  fake_.set(1, 20, 100, 200, 100'000, 300'000, 1'000, 0);
  for (int i = 0; i < 3; ++i) m.update(0);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 0.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "0"), 0.5);
  EXPECT_EQ(gpu("splitwise_gpu_memory_used_bytes", "0"), 100.0);
  EXPECT_EQ(gpu("splitwise_gpu_power_watts", "0"), 100.0);
  EXPECT_EQ(gpu("splitwise_gpu_energy_joules_total", "0"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "1"), 1.0);  // the other GPU reads on
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "1"), 0.2);
  EXPECT_EQ(log.count("NVML read failed"), 1);
  EXPECT_EQ(log.count("GPU is lost"), 1);

  fake_.set(0, 90, 150, 200, 250'000, 300'000, 2'000, 0);
  m.update(0);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "0"), 0.9);
  EXPECT_EQ(gpu("splitwise_gpu_energy_joules_total", "0"), 2.0);
  EXPECT_EQ(log.count("reads work again"), 1);
}

TEST_F(GpuMetricsTest, IndexOutOfRangeIsReportedAndTheOthersAreStillRead) {
  fake_.reset(1, 0);
  fake_.set(0, 40, 1, 2, 0, 0, 0, 0);
  GpuMetrics m(registry_, {0, 3}, kFakePath);
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("GPU index 3 not found"), std::string::npos)
      << m.unavailable_reason();
  EXPECT_NE(m.unavailable_reason().find("1 GPU(s)"), std::string::npos) << m.unavailable_reason();
  m.update(0);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "3"), 0.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "3"), std::nullopt);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 1.0);
  EXPECT_EQ(gpu("splitwise_gpu_utilization_ratio", "0"), 0.4);
}

TEST_F(GpuMetricsTest, InitFailureIsReportedAndShutsNothingDown) {
  fake_.reset(1, kDriverNotLoaded);
  GpuMetrics m(registry_, {0}, kFakePath);
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("Driver Not Loaded"), std::string::npos)
      << m.unavailable_reason();
  m.update(5);
  EXPECT_EQ(gpu("splitwise_gpu_nvml_up", "0"), 0.0);
  EXPECT_EQ(gpu("splitwise_gpu_memory_total_bytes", "0"), std::nullopt);
  EXPECT_EQ(fake_.init_refs(), 0);
}

TEST_F(GpuMetricsTest, ShutsNvmlDownWhenDestroyed) {
  {
    GpuMetrics a(registry_, {0}, kFakePath);
    GpuMetrics b(registry_, {1}, kFakePath);  // NVML counts nested inits
    EXPECT_EQ(fake_.init_refs(), 2);
  }
  EXPECT_EQ(fake_.init_refs(), 0);
}

// Needs no fake: these hold on any machine, with or without a driver.
TEST(GpuMetricsNoNvml, MissingLibraryIsReportedAndHarmless) {
  prometheus::Registry registry;
  GpuMetrics m(registry, {0, 1}, "/nonexistent/libnvidia-ml.so.1");
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("cannot load NVML"), std::string::npos)
      << m.unavailable_reason();
  EXPECT_NE(m.unavailable_reason().find("/nonexistent/libnvidia-ml.so.1"), std::string::npos)
      << m.unavailable_reason();
  m.update(10);
  EXPECT_EQ(sample(registry, "splitwise_gpu_nvml_up", {{"gpu", "1"}}), 0.0);
  EXPECT_EQ(sample(registry, "splitwise_gpu_memory_total_bytes"), std::nullopt);
  EXPECT_EQ(sample(registry, "splitwise_gpu_energy_per_token_joules"), std::nullopt);
}

TEST(GpuMetricsNoNvml, NoGpusMeansOffWithoutLoadingAnything) {
  prometheus::Registry registry;
  GpuMetrics m(registry, {}, "/nonexistent/libnvidia-ml.so.1");
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("no GPUs"), std::string::npos) << m.unavailable_reason();
  m.update(10);
  EXPECT_EQ(sample(registry, "splitwise_gpu_nvml_up"), std::nullopt);
}

}  // namespace
}  // namespace splitwise::worker
