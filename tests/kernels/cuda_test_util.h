// Host-side helpers for CUDA op tests: device arrays filled from host vectors, bf16
// rounding as the device does it, and NaN poisoning of outputs before each run.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cuda/check.cuh"

namespace splitwise::kernels::cuda::test {

// fp32 -> nearest-even bf16 -> fp32, bit-exact with __float2bfloat16_rn on the device.
inline float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

template <typename T>
T to_storage(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    const float r = round_bf16(x);
    uint32_t u;
    std::memcpy(&u, &r, 4);
    const uint16_t h = static_cast<uint16_t>(u >> 16);
    T out;
    std::memcpy(static_cast<void*>(&out), &h, 2);
    return out;
  }
}

template <typename T>
float from_storage(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    uint16_t h;
    std::memcpy(&h, &x, 2);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
}

// A device array of T mirrored from / to host floats.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    SW_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<float>& v) : DeviceArray(v.size()) { upload(v); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  T* get() const { return p_; }
  void upload(const std::vector<float>& v) {
    std::vector<T> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = to_storage<T>(v[i]);
    SW_CUDA_CHECK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<float> download() const {
    std::vector<T> h(n_);
    SW_CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = from_storage<T>(h[i]);
    return v;
  }
  void poison() { upload(std::vector<float>(n_, std::numeric_limits<float>::quiet_NaN())); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

inline std::vector<float> random_vector(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// The values a bf16 (or fp32) device array would hold for v.
template <typename T>
std::vector<float> stored(std::vector<float> v) {
  if constexpr (!std::is_same_v<T, float>)
    for (float& x : v) x = round_bf16(x);
  return v;
}

// ||got - ref|| / ||ref||; NaN anywhere gives infinity (an unwritten or broken output).
inline double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  double d = 0, r = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    d += (got[i] - ref[i]) * (got[i] - ref[i]);
    r += ref[i] * ref[i];
  }
  return std::sqrt(d / std::max(r, 1e-300));
}

}  // namespace splitwise::kernels::cuda::test
