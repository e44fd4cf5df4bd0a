// Stands in for libnvidia-ml.so.1 in tests: the NVML entry points GpuMetrics uses, serving
// values that a test sets through the fake_nvml_* functions at the bottom. A test dlopens
// the same path as GpuMetrics, so both see one copy of this state.
#include <cstring>

namespace {

// NVML return codes, as the real header numbers them.
constexpr int kSuccess = 0;
constexpr int kUninitialized = 1;
constexpr int kInvalidArgument = 2;
constexpr int kNotSupported = 3;

constexpr int kMaxDevices = 8;

// Bits of Device::unsupported: sensors this GPU lacks.
constexpr int kNoUtilization = 1, kNoPower = 2, kNoPowerLimit = 4, kNoEnergy = 8;

struct Device {
  unsigned util_pct = 0;
  unsigned long long used = 0, total = 0;  // bytes
  unsigned power_mw = 0, limit_mw = 0;
  unsigned long long energy_mj = 0;
  int fail = kSuccess;  // returned by every read of this device when not kSuccess
  int unsupported = 0;
  char name[96] = "Fake GPU";
};

Device g_devices[kMaxDevices];
int g_count = 0;
int g_init_result = kSuccess;
int g_init_refs = 0;  // NVML counts nested init/shutdown pairs; so does the fake

// The state a device read needs: NVML initialised, a real handle, no injected failure.
int check(void* device, Device** out) {
  if (g_init_refs == 0) return kUninitialized;
  auto* d = static_cast<Device*>(device);
  if (d < g_devices || d >= g_devices + g_count) return kInvalidArgument;
  *out = d;
  return d->fail;
}

}  // namespace

extern "C" {

struct Utilization {
  unsigned gpu, memory;
};
struct Memory {
  unsigned long long total, free, used;
};

int nvmlInit_v2() {
  if (g_init_result != kSuccess) return g_init_result;
  ++g_init_refs;
  return kSuccess;
}

int nvmlShutdown() {
  if (g_init_refs == 0) return kUninitialized;
  --g_init_refs;
  return kSuccess;
}

int nvmlDeviceGetCount_v2(unsigned* count) {
  if (g_init_refs == 0) return kUninitialized;
  *count = static_cast<unsigned>(g_count);
  return kSuccess;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (g_init_refs == 0) return kUninitialized;
  if (index >= static_cast<unsigned>(g_count)) return kInvalidArgument;
  *device = &g_devices[index];
  return kSuccess;
}

int nvmlDeviceGetName(void* device, char* name, unsigned length) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  std::strncpy(name, d->name, length);
  name[length - 1] = '\0';
  return kSuccess;
}

int nvmlDeviceGetUtilizationRates(void* device, Utilization* u) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  if (d->unsupported & kNoUtilization) return kNotSupported;
  *u = {d->util_pct, 0};
  return kSuccess;
}

int nvmlDeviceGetMemoryInfo(void* device, Memory* m) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  *m = {d->total, d->total - d->used, d->used};
  return kSuccess;
}

int nvmlDeviceGetPowerUsage(void* device, unsigned* mw) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  if (d->unsupported & kNoPower) return kNotSupported;
  *mw = d->power_mw;
  return kSuccess;
}

int nvmlDeviceGetEnforcedPowerLimit(void* device, unsigned* mw) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  if (d->unsupported & kNoPowerLimit) return kNotSupported;
  *mw = d->limit_mw;
  return kSuccess;
}

int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
  Device* d = nullptr;
  if (int rc = check(device, &d)) return rc;
  if (d->unsupported & kNoEnergy) return kNotSupported;
  *mj = d->energy_mj;
  return kSuccess;
}

const char* nvmlErrorString(int rc) {
  switch (rc) {
    case kSuccess:
      return "Success";
    case kUninitialized:
      return "Uninitialized";
    case kInvalidArgument:
      return "Invalid Argument";
    case kNotSupported:
      return "Not Supported";
    case 9:
      return "Driver Not Loaded";
    case 15:
      return "GPU is lost";
    default:
      return "Unknown Error";
  }
}

// ---- Control API for tests ----

// Forgets every device; `count` devices, all zero; nvmlInit_v2 will return `init_result`.
void fake_nvml_reset(int count, int init_result) {
  for (Device& d : g_devices) d = Device{};
  g_count = count < 0 ? 0 : (count > kMaxDevices ? kMaxDevices : count);
  g_init_result = init_result;
}

// Sets what device `device` reads as; `fail` != 0 makes every read of it return that code.
void fake_nvml_set(int device, unsigned util_pct, unsigned long long used, unsigned long long total,
                   unsigned power_mw, unsigned limit_mw, unsigned long long energy_mj, int fail) {
  if (device < 0 || device >= kMaxDevices) return;
  Device& d = g_devices[device];
  d.util_pct = util_pct;
  d.used = used;
  d.total = total;
  d.power_mw = power_mw;
  d.limit_mw = limit_mw;
  d.energy_mj = energy_mj;
  d.fail = fail;
}

void fake_nvml_set_name(int device, const char* name) {
  if (device < 0 || device >= kMaxDevices) return;
  std::strncpy(g_devices[device].name, name, sizeof g_devices[device].name - 1);
}

// `mask`: 1 utilization, 2 power, 4 power limit, 8 energy counter read NOT_SUPPORTED.
void fake_nvml_set_unsupported(int device, int mask) {
  if (device < 0 || device >= kMaxDevices) return;
  g_devices[device].unsupported = mask;
}

// Outstanding nvmlInit_v2 calls not yet matched by nvmlShutdown.
int fake_nvml_init_refs() { return g_init_refs; }

}  // extern "C"
