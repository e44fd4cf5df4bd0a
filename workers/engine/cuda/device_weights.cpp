#include "workers/engine/cuda/device_weights.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/fill.cuh"

namespace splitwise::engine::cuda {

namespace kc = kernels::cuda;

namespace {
// Tensors start on 256-byte boundaries: cuBLASLt's fastest kernels want aligned operands.
size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

std::string gib(size_t bytes) {
  return std::to_string(static_cast<double>(bytes) / (1 << 30)) + " GiB";
}
}  // namespace

Status DeviceWeights::allocate(bool tied) {
  const ModelConfig& c = config_;
  const size_t eb = kc::dtype_bytes(dtype_);
  const size_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), in = c.intermediate_size,
               v = c.vocab_size;
  std::vector<std::pair<void**, size_t>> plan;
  plan.push_back({&embed, v * h});
  layers.resize(c.num_layers);
  for (DeviceLayer& l : layers) {
    plan.push_back({&l.attn_norm, h});
    plan.push_back({&l.wqkv, (q + 2 * kv) * h});
    plan.push_back({&l.wo, h * q});
    plan.push_back({&l.ffn_norm, h});
    plan.push_back({&l.w_gate_up, 2 * in * h});
    plan.push_back({&l.w_down, h * in});
  }
  plan.push_back({&final_norm, h});
  if (!tied) plan.push_back({&lm_head, v * h});
  size_t total = 0;
  for (auto& [ptr, n] : plan) total += align_up(n * eb);
  size_t free_bytes = 0, total_bytes = 0;
  SW_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (total > free_bytes)
    return Status::error("model weights need " + gib(total) + " in " + kc::dtype_name(dtype_) +
                         " but the GPU has " + gib(free_bytes) + " free");
  storage_ = kc::DeviceBuffer(total);
  bytes_ = total;
  auto* base = storage_.as<std::byte>();
  size_t off = 0;
  for (auto& [ptr, n] : plan) {
    *ptr = base + off;
    off += align_up(n * eb);
  }
  if (tied) lm_head = embed;
  return {};
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::upload(const ModelWeights& w, DType dtype) {
  std::unique_ptr<DeviceWeights> d(new DeviceWeights(w.config, dtype));
  SW_RETURN_IF_ERROR(d->allocate(w.lm_head.empty()));
  // Through one fp32 staging buffer the size of the largest tensor, converted on the GPU.
  size_t largest = w.embed.size();
  for (const LayerWeights& l : w.layers)
    largest = std::max<size_t>({largest, l.wqkv.size(), l.w_gate_up.size(), l.w_down.size()});
  largest = std::max(largest, w.lm_head.size());
  kc::DeviceBuffer staging(largest * sizeof(float));
  auto put = [&](const std::vector<float>& src, void* dst) {
    SW_CUDA_CHECK(
        cudaMemcpy(staging.get(), src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice));
    if (dtype == DType::kF32)
      kc::convert_from_f32(staging.as<float>(), static_cast<float*>(dst), src.size(), nullptr);
    else
      kc::convert_from_f32(staging.as<float>(), static_cast<__nv_bfloat16*>(dst), src.size(),
                           nullptr);
    SW_CUDA_CHECK(cudaDeviceSynchronize());
  };
  put(w.embed, d->embed);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    DeviceLayer& dl = d->layers[i];
    put(l.attn_norm, dl.attn_norm);
    put(l.wqkv, dl.wqkv);
    put(l.wo, dl.wo);
    put(l.ffn_norm, dl.ffn_norm);
    put(l.w_gate_up, dl.w_gate_up);
    put(l.w_down, dl.w_down);
  }
  put(w.final_norm, d->final_norm);
  if (!w.lm_head.empty()) put(w.lm_head, d->lm_head);
  return d;
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::random(const ModelConfig& c, DType dtype,
                                                             uint64_t seed) {
  std::unique_ptr<DeviceWeights> d(new DeviceWeights(c, dtype));
  SW_RETURN_IF_ERROR(d->allocate(/*tied=*/false));
  uint64_t stream_id = 0;
  auto fill = [&](void* p, size_t n, float center, float scale) {
    const uint64_t s = seed * 1000003u + ++stream_id;
    if (dtype == DType::kF32)
      kc::fill_uniform(static_cast<float*>(p), n, s, center, scale, nullptr);
    else
      kc::fill_uniform(static_cast<__nv_bfloat16*>(p), n, s, center, scale, nullptr);
  };
  const size_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), in = c.intermediate_size,
               v = c.vocab_size;
  const float wh = 1.0f / std::sqrt(static_cast<float>(h));
  fill(d->embed, v * h, 0.0f, 1.0f);
  for (DeviceLayer& l : d->layers) {
    fill(l.attn_norm, h, 1.0f, 0.1f);
    fill(l.wqkv, (q + 2 * kv) * h, 0.0f, wh);
    fill(l.wo, h * q, 0.0f, 1.0f / std::sqrt(static_cast<float>(q)));
    fill(l.ffn_norm, h, 1.0f, 0.1f);
    fill(l.w_gate_up, 2 * in * h, 0.0f, wh);
    fill(l.w_down, h * in, 0.0f, 1.0f / std::sqrt(static_cast<float>(in)));
  }
  fill(d->final_norm, h, 1.0f, 0.1f);
  fill(d->lm_head, v * h, 0.0f, wh);
  SW_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

}  // namespace splitwise::engine::cuda
