#include "workers/worker/gpu_metrics.h"

#include <dlfcn.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>

namespace splitwise::worker {

namespace {

// NVML's C ABI, declared here so that CPU builds need no nvml.h. NVML keeps these entry
// points, structs and codes stable across driver releases (new behaviour gets a new _vN).
using NvmlReturn = int;
using NvmlDevice = struct NvmlDeviceOpaque*;
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr NvmlReturn kNvmlNotSupported = 3;
constexpr unsigned kNvmlNameSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
struct NvmlUtilization {
  unsigned gpu;     // % of the last sample period in which any kernel ran
  unsigned memory;  // % of it in which device memory was read or written
};
struct NvmlMemory {
  unsigned long long total, free, used;  // bytes
};

struct NvmlApi {
  NvmlReturn (*init)();
  NvmlReturn (*shutdown)();
  NvmlReturn (*count)(unsigned*);
  NvmlReturn (*handle)(unsigned, NvmlDevice*);
  NvmlReturn (*name)(NvmlDevice, char*, unsigned);
  NvmlReturn (*utilization)(NvmlDevice, NvmlUtilization*);
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*);
  NvmlReturn (*power)(NvmlDevice, unsigned*);        // mW
  NvmlReturn (*power_limit)(NvmlDevice, unsigned*);  // mW
  // mJ since the driver loaded; Volta and later. Null where the driver lacks it.
  NvmlReturn (*energy)(NvmlDevice, unsigned long long*);
  const char* (*error_string)(NvmlReturn);
};

// Fills `api` from `lib`; returns the first missing required symbol, or nullptr.
const char* resolve(void* lib, NvmlApi& api) {
  const auto get = [lib]<typename Fn>(const char* name, Fn& fn) {
    fn = reinterpret_cast<Fn>(dlsym(lib, name));
    return fn != nullptr;
  };
  get("nvmlDeviceGetTotalEnergyConsumption", api.energy);  // optional
  if (!get("nvmlInit_v2", api.init)) return "nvmlInit_v2";
  if (!get("nvmlShutdown", api.shutdown)) return "nvmlShutdown";
  if (!get("nvmlDeviceGetCount_v2", api.count)) return "nvmlDeviceGetCount_v2";
  if (!get("nvmlDeviceGetHandleByIndex_v2", api.handle)) return "nvmlDeviceGetHandleByIndex_v2";
  if (!get("nvmlDeviceGetName", api.name)) return "nvmlDeviceGetName";
  if (!get("nvmlDeviceGetUtilizationRates", api.utilization))
    return "nvmlDeviceGetUtilizationRates";
  if (!get("nvmlDeviceGetMemoryInfo", api.memory)) return "nvmlDeviceGetMemoryInfo";
  if (!get("nvmlDeviceGetPowerUsage", api.power)) return "nvmlDeviceGetPowerUsage";
  if (!get("nvmlDeviceGetEnforcedPowerLimit", api.power_limit))
    return "nvmlDeviceGetEnforcedPowerLimit";
  if (!get("nvmlErrorString", api.error_string)) return "nvmlErrorString";
  return nullptr;
}

// One read of one GPU, in base units. An empty field is a sensor this GPU lacks (a MIG
// slice has no utilization, some boards no power reading), not a failure.
struct Reading {
  std::optional<double> utilization;  // ratio
  double memory_used = 0, memory_total = 0;
  std::optional<double> power_w, power_limit_w;
  std::optional<unsigned long long> energy_mj;
};

using Clock = std::chrono::steady_clock;

struct Gpu {
  std::string label;             // the gpu="<index>" label value
  NvmlDevice handle = nullptr;   // null: not found, never read
  bool failing = false;          // the last read failed (logged once per outage)
  bool integrate_power = false;  // no energy counter here: energy is power integrated
  std::optional<unsigned long long> last_energy_mj;
  std::optional<double> last_power_w;
  Clock::time_point last_power_at;
  double energy_j = 0;  // what `energy` shows, kept to sum GPUs without reading gauges back
  // Series are added on the first good read, so a GPU never read shows no value rather
  // than a zero that looks like a measurement.
  prometheus::Gauge* up = nullptr;
  prometheus::Gauge* utilization = nullptr;
  prometheus::Gauge* memory_used = nullptr;
  prometheus::Gauge* memory_total = nullptr;
  prometheus::Gauge* power = nullptr;
  prometheus::Gauge* power_limit = nullptr;
  prometheus::Counter* energy = nullptr;
};

prometheus::Family<prometheus::Gauge>& gauge_family(prometheus::Registry& r, const char* name,
                                                    const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

}  // namespace

struct GpuMetrics::Impl {
  // Set in the constructor, read-only afterwards: no lock needed.
  void* lib = nullptr;
  bool initialized = false;
  NvmlApi nvml{};
  bool available = false;
  std::string reason;
  prometheus::Family<prometheus::Gauge>* up;
  prometheus::Family<prometheus::Gauge>* info;
  prometheus::Family<prometheus::Gauge>* utilization;
  prometheus::Family<prometheus::Gauge>* memory_used;
  prometheus::Family<prometheus::Gauge>* memory_total;
  prometheus::Family<prometheus::Gauge>* power;
  prometheus::Family<prometheus::Gauge>* power_limit;
  prometheus::Family<prometheus::Counter>* energy;
  prometheus::Family<prometheus::Gauge>* energy_per_token;

  // Guards everything below: the GPUs' last readings and lazily added series, and the
  // energy-per-token baseline. update() holds it across the NVML calls too, so that two
  // overlapping updates cannot apply deltas out of order.
  std::mutex mu;
  std::vector<Gpu> gpus;
  std::optional<std::pair<int64_t, double>> token_baseline;  // (tokens, joules) at last tokens
  prometheus::Gauge* per_token = nullptr;

  std::string error(NvmlReturn rc) const {
    const char* s = nvml.error_string(rc);
    return (s ? s : "unknown error") + (" (NVML code " + std::to_string(rc) + ")");
  }

  NvmlReturn read(Gpu& g, Reading& r);
  void apply(Gpu& g, const Reading& r, Clock::time_point now);
  void update_per_token(int64_t tokens);
  void open(const std::vector<int>& devices, const std::string& library);
};

void GpuMetrics::Impl::open(const std::vector<int>& devices, const std::string& library) {
  const std::string off = ": GPU metrics are off";
  lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    reason = "cannot load NVML (" + std::string(why ? why : library) +
             "); install the NVIDIA driver, or run the container with the NVIDIA runtime and "
             "NVIDIA_DRIVER_CAPABILITIES including 'utility'" +
             off;
    return;
  }
  if (const char* missing = resolve(lib, nvml)) {
    reason = library + " has no " + missing + ": the NVIDIA driver is too old" + off;
    return;
  }
  if (NvmlReturn rc = nvml.init(); rc != kNvmlSuccess) {
    reason = "nvmlInit_v2 failed: " + error(rc) +
             "; check that the NVIDIA driver is loaded and /dev/nvidia* is visible" + off;
    return;
  }
  initialized = true;
  unsigned count = 0;
  if (NvmlReturn rc = nvml.count(&count); rc != kNvmlSuccess) {
    reason = "nvmlDeviceGetCount_v2 failed: " + error(rc) + off;
    return;
  }
  std::string missing;
  for (size_t i = 0; i < devices.size(); ++i) {
    const int d = devices[i];
    if (d < 0 || static_cast<unsigned>(d) >= count ||
        nvml.handle(static_cast<unsigned>(d), &gpus[i].handle) != kNvmlSuccess) {
      gpus[i].handle = nullptr;
      missing += (missing.empty() ? "" : ", ") + std::to_string(d);
      continue;
    }
    char name[kNvmlNameSize] = {};
    const bool named = nvml.name(gpus[i].handle, name, kNvmlNameSize) == kNvmlSuccess;
    info->Add({{"gpu", gpus[i].label}, {"name", named ? name : "unknown"}}).Set(1);
  }
  if (!missing.empty()) {
    const std::string seen =
        count == 0 ? "no GPUs"
                   : std::to_string(count) + " GPU(s), indices 0.." + std::to_string(count - 1);
    reason = "GPU index " + missing + " not found: NVML sees " + seen +
             "; fix the worker's GPU list (NVML indices follow PCI bus order)";
    return;
  }
  available = true;
}

NvmlReturn GpuMetrics::Impl::read(Gpu& g, Reading& r) {
  NvmlReturn failed = kNvmlSuccess;
  // True when read; NOT_SUPPORTED leaves the field empty; anything else fails the read.
  const auto ok = [&failed](NvmlReturn rc) {
    if (rc != kNvmlSuccess && rc != kNvmlNotSupported && failed == kNvmlSuccess) failed = rc;
    return rc == kNvmlSuccess;
  };
  NvmlUtilization u{};
  if (ok(nvml.utilization(g.handle, &u))) r.utilization = u.gpu / 100.0;
  NvmlMemory m{};
  NvmlReturn rc = nvml.memory(g.handle, &m);
  if (rc != kNvmlSuccess) return rc;  // every GPU has memory: NOT_SUPPORTED is a failure too
  r.memory_used = static_cast<double>(m.used);
  r.memory_total = static_cast<double>(m.total);
  unsigned mw = 0;
  if (ok(nvml.power(g.handle, &mw))) r.power_w = mw / 1000.0;
  if (ok(nvml.power_limit(g.handle, &mw))) r.power_limit_w = mw / 1000.0;
  if (!g.integrate_power) {
    unsigned long long mj = 0;
    rc = nvml.energy ? nvml.energy(g.handle, &mj) : kNvmlNotSupported;
    if (ok(rc)) {
      r.energy_mj = mj;
    } else if (rc == kNvmlNotSupported) {
      g.integrate_power = true;
      spdlog::info("GPU {}: no NVML energy counter; integrating power over time instead", g.label);
    }
  }
  return failed;
}

void GpuMetrics::Impl::apply(Gpu& g, const Reading& r, Clock::time_point now) {
  const prometheus::Labels labels{{"gpu", g.label}};
  const auto set = [&labels](prometheus::Family<prometheus::Gauge>* f, prometheus::Gauge*& slot,
                             std::optional<double> v) {
    if (!v) return;
    if (!slot) slot = &f->Add(labels);
    slot->Set(*v);
  };
  set(utilization, g.utilization, r.utilization);
  set(memory_used, g.memory_used, r.memory_used);
  set(memory_total, g.memory_total, r.memory_total);
  set(power, g.power, r.power_w);
  set(power_limit, g.power_limit, r.power_limit_w);

  // The counter mirrors NVML's own (energy since the driver loaded), so a worker restart
  // reads to Prometheus as no reset at all and increase() stays exact across it.
  double joules = 0;
  if (r.energy_mj) {
    if (!g.last_energy_mj)
      joules = *r.energy_mj / 1000.0;
    else if (*r.energy_mj >= *g.last_energy_mj)
      joules = (*r.energy_mj - *g.last_energy_mj) / 1000.0;
    else  // the driver reloaded and its counter restarted: count from the new start
      spdlog::warn("GPU {}: NVML energy counter went backwards; re-baselined", g.label);
    g.last_energy_mj = r.energy_mj;
  } else if (g.integrate_power && r.power_w) {
    // Fallback where the driver has no energy counter: trapezoids between reads, from 0 at
    // the first read. Coarser than NVML's counter (spikes between reads are missed).
    if (g.last_power_w)
      joules = (*g.last_power_w + *r.power_w) / 2 *
               std::chrono::duration<double>(now - g.last_power_at).count();
    g.last_power_w = r.power_w;
    g.last_power_at = now;
  } else {
    return;
  }
  if (!g.energy) g.energy = &energy->Add(labels);
  g.energy->Increment(joules);
  g.energy_j += joules;
}

// Energy per generated token over the last interval with new tokens. An interval without
// tokens does not reset the baseline: its (idle) energy is charged to the next tokens,
// since keeping the GPU up is part of what they cost.
void GpuMetrics::Impl::update_per_token(int64_t tokens) {
  double joules = 0;
  bool complete = false;
  for (const Gpu& g : gpus) {
    if (!g.handle) continue;
    // A GPU that failed this round or has no energy yet would make the sum short: wait,
    // keeping the baseline, so that the next complete round covers the whole gap exactly.
    if (g.failing || !g.energy) return;
    joules += g.energy_j;
    complete = true;
  }
  if (!complete) return;
  if (!token_baseline || tokens < token_baseline->first) {  // first round, or counter reset
    token_baseline = {tokens, joules};
    return;
  }
  if (tokens == token_baseline->first) return;
  if (!per_token) per_token = &energy_per_token->Add({});
  per_token->Set((joules - token_baseline->second) /
                 static_cast<double>(tokens - token_baseline->first));
  token_baseline = {tokens, joules};
}

GpuMetrics::GpuMetrics(prometheus::Registry& registry, std::vector<int> devices,
                       std::string library)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.up = &gauge_family(registry, "splitwise_gpu_nvml_up",
                       "1 when the last NVML read of this GPU succeeded, 0 otherwise");
  s.info = &gauge_family(registry, "splitwise_gpu_info", "GPU product name; always 1");
  s.utilization = &gauge_family(registry, "splitwise_gpu_utilization_ratio",
                                "Fraction of the last sample period in which a kernel ran");
  s.memory_used = &gauge_family(registry, "splitwise_gpu_memory_used_bytes",
                                "Device memory in use, by every process");
  s.memory_total =
      &gauge_family(registry, "splitwise_gpu_memory_total_bytes", "Device memory in all");
  s.power = &gauge_family(registry, "splitwise_gpu_power_watts", "Board power draw");
  s.power_limit =
      &gauge_family(registry, "splitwise_gpu_power_limit_watts", "Power limit the driver enforces");
  s.energy = &prometheus::BuildCounter()
                  .Name("splitwise_gpu_energy_joules_total")
                  .Help(
                      "Energy used since the driver loaded (or since the worker started, "
                      "where the GPU has no energy counter and power is integrated)")
                  .Register(registry);
  s.energy_per_token = &gauge_family(
      registry, "splitwise_gpu_energy_per_token_joules",
      "Energy of all the worker's GPUs per generated token, over the last interval with tokens");

  // A GPU listed twice would be counted twice in the energy sum.
  std::vector<int> unique;
  for (int d : devices)
    if (std::find(unique.begin(), unique.end(), d) == unique.end()) unique.push_back(d);
  for (int d : unique) {
    Gpu& g = s.gpus.emplace_back();
    g.label = std::to_string(d);
    g.up = &s.up->Add({{"gpu", g.label}});
    g.up->Set(0);
  }
  if (unique.empty()) {
    s.reason = "no GPUs assigned to this worker: GPU metrics are off";
    spdlog::info("{}", s.reason);
    return;
  }
  s.open(unique, library);
  if (!s.available) spdlog::warn("{}", s.reason);
}

GpuMetrics::~GpuMetrics() {
  if (impl_->initialized) impl_->nvml.shutdown();
  if (impl_->lib) dlclose(impl_->lib);
}

bool GpuMetrics::available() const { return impl_->available; }

const std::string& GpuMetrics::unavailable_reason() const { return impl_->reason; }

void GpuMetrics::update(int64_t generated_tokens_total) {
  Impl& s = *impl_;
  if (!s.initialized) return;
  std::lock_guard lock(s.mu);
  const Clock::time_point now = Clock::now();
  for (Gpu& g : s.gpus) {
    if (!g.handle) continue;
    Reading r;
    if (NvmlReturn rc = s.read(g, r); rc != kNvmlSuccess) {
      // Keep the last values: nvml_up 0 already says they are stale.
      if (!g.failing) spdlog::warn("GPU {}: NVML read failed: {}", g.label, s.error(rc));
      g.failing = true;
      g.up->Set(0);
      continue;
    }
    if (g.failing) spdlog::info("GPU {}: NVML reads work again", g.label);
    g.failing = false;
    s.apply(g, r, now);
    g.up->Set(1);
  }
  s.update_per_token(generated_tokens_total);
}

}  // namespace splitwise::worker
