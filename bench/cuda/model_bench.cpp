// End-to-end speed of the CUDA runner on Llama-3-8B shapes with random bf16 weights made
// on the GPU: batch-1 and batch-64 decode, and single-prompt prefill, each printed beside
// its ceiling (HBM bandwidth for decode, the measured bf16 GEMM rate for prefill). The two
// ceilings are measured here first, on the same device, per METHOD.md.
//
//   splitwise-bench-model [--out results.md] [--decode-steps 32] [--reps 5]
#include <cuda_runtime.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/fill.cuh"
#include "kernels/cuda/gemm.h"
#include "workers/engine/cuda/cuda_runner.h"

namespace {

using namespace splitwise;
using engine::cuda::CudaRunner;
using kernels::cuda::DType;
namespace kc = kernels::cuda;

engine::ModelConfig llama3_8b() {
  engine::ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position = 16384;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0f;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position = 8192;
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Device-to-device copy of 2 GiB, counting bytes read plus written.
double measure_copy_gbps() {
  const size_t n = size_t{2} << 30;
  kc::DeviceBuffer a(n), b(n);
  kc::fill_uniform(a.as<float>(), n / 4, 1, 0.0f, 1.0f, nullptr);
  cudaEvent_t s, e;
  SW_CUDA_CHECK(cudaEventCreate(&s));
  SW_CUDA_CHECK(cudaEventCreate(&e));
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    SW_CUDA_CHECK(cudaEventRecord(s));
    SW_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice));
    SW_CUDA_CHECK(cudaEventRecord(e));
    SW_CUDA_CHECK(cudaEventSynchronize(e));
    float ms;
    SW_CUDA_CHECK(cudaEventElapsedTime(&ms, s, e));
    if (i >= 2) t.push_back(ms);
  }
  return 2.0 * n / (median(t) * 1e-3) / 1e9;
}

// 8192^3 bf16 GEMM through the runner's own cuBLASLt wrapper, random operands.
double measure_gemm_tflops() {
  const int n = 8192;
  kc::DeviceBuffer a(size_t(n) * n * 2), b(size_t(n) * n * 2), c(size_t(n) * n * 2);
  kc::fill_uniform(a.as<__nv_bfloat16>(), size_t(n) * n, 2, 0.0f, 1.0f, nullptr);
  kc::fill_uniform(b.as<__nv_bfloat16>(), size_t(n) * n, 3, 0.0f, 1.0f, nullptr);
  kc::Gemm gemm;
  cudaEvent_t s, e;
  SW_CUDA_CHECK(cudaEventCreate(&s));
  SW_CUDA_CHECK(cudaEventCreate(&e));
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    SW_CUDA_CHECK(cudaEventRecord(s));
    gemm.matmul(a.get(), b.get(), c.get(), n, n, n, DType::kBF16, DType::kBF16, false, nullptr);
    SW_CUDA_CHECK(cudaEventRecord(e));
    SW_CUDA_CHECK(cudaEventSynchronize(e));
    float ms;
    SW_CUDA_CHECK(cudaEventElapsedTime(&ms, s, e));
    if (i >= 2) t.push_back(ms);
  }
  return 2.0 * n * n * double(n) / (median(t) * 1e-3) / 1e12;
}

struct Bench {
  CudaRunner* runner;
  const engine::ModelConfig& c;
  int next_block = 0;

  std::vector<engine::BlockId> blocks_for(int tokens) {
    std::vector<engine::BlockId> t((tokens + 15) / 16);
    for (auto& b : t) b = next_block++ % runner->num_kv_blocks();
    return t;
  }

  // Seconds for one step of `chunks`, greedy sampling.
  double step(const std::vector<engine::SequenceChunk>& chunks, std::vector<engine::TokenId>* out) {
    std::vector<engine::SampleRow> rows(chunks.size());
    const auto t0 = std::chrono::steady_clock::now();
    const Status st = runner->forward_sample(chunks, rows, out);
    const auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) {
      std::fprintf(stderr, "step failed: %s\n", st.message().c_str());
      std::exit(1);
    }
    return std::chrono::duration<double>(t1 - t0).count();
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CUDA runner speed on Llama-3-8B shapes (random bf16 weights)"};
  std::string out_path;
  int decode_steps = 32, reps = 5;
  app.add_option("--out", out_path, "also write the markdown table here");
  app.add_option("--decode-steps", decode_steps, "timed decode steps per batch size");
  app.add_option("--reps", reps, "timed prefill repetitions (median)");
  CLI11_PARSE(app, argc, argv);
  if (!kc::gpu_available()) {
    std::fprintf(stderr, "no CUDA GPU found\n");
    return 1;
  }
  cudaDeviceProp prop;
  SW_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const double copy_gbps = measure_copy_gbps();
  const double gemm_tflops = measure_gemm_tflops();
  std::printf("ceilings: device copy %.0f GB/s (read+write), bf16 GEMM 8192^3 %.0f TFLOP/s\n",
              copy_gbps, gemm_tflops);

  const engine::ModelConfig c = llama3_8b();
  auto w = engine::cuda::DeviceWeights::random(c, DType::kBF16, 42);
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", w.status().message().c_str());
    return 1;
  }
  const double weight_bytes = static_cast<double>((*w)->bytes());
  engine::cuda::CudaRunnerOptions opt;
  opt.initial_tokens = 8192;
  opt.graph_max_context = 1024;
  const int kv_blocks = 4096;  // 2 MiB each over all layers: 8 GiB
  auto r = CudaRunner::create(std::shared_ptr<const engine::cuda::DeviceWeights>(std::move(*w)),
                              kv_blocks, 16, opt);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().message().c_str());
    return 1;
  }
  Bench b{r->get(), c};
  std::ostringstream md;
  md << "Device: " << prop.name << ". Measured ceilings: device copy " << int(copy_gbps)
     << " GB/s (read+write), bf16 GEMM " << int(gemm_tflops) << " TFLOP/s.\n\n"
     << "| case | result | ceiling | % of ceiling |\n|---|---:|---:|---:|\n";
  const double kv_token_bytes = 2.0 * c.num_layers * c.kv_dim() * 2;  // K+V, bf16

  // Decode: prefill each batch's prompts (chunks of up to 8192 tokens), then time steps.
  for (const auto& [batch, prompt_len] : {std::pair{1, 128}, std::pair{64, 512}}) {
    std::vector<std::vector<engine::TokenId>> seqs(batch);
    std::vector<std::vector<engine::BlockId>> tables(batch);
    for (int i = 0; i < batch; ++i) {
      seqs[i].resize(prompt_len);
      for (int j = 0; j < prompt_len; ++j) seqs[i][j] = (i * 7919 + j * 104729) % c.vocab_size;
      tables[i] = b.blocks_for(prompt_len + decode_steps + 8);
    }
    std::vector<engine::TokenId> out;
    for (int i = 0; i < batch;) {
      std::vector<engine::SequenceChunk> chunks;
      int tokens = 0;
      for (; i < batch && tokens + prompt_len <= 8192; ++i, tokens += prompt_len)
        chunks.push_back({seqs[i], 0, tables[i], 1});
      const int first = i - static_cast<int>(chunks.size());
      b.step(chunks, &out);
      for (size_t k = 0; k < chunks.size(); ++k) seqs[first + k].push_back(out[k]);
    }
    std::vector<double> times;
    for (int s = 0; s < decode_steps + 3; ++s) {
      std::vector<engine::SequenceChunk> chunks;
      for (int i = 0; i < batch; ++i) {
        const int pos = static_cast<int>(seqs[i].size()) - 1;
        chunks.push_back(
            {std::span<const engine::TokenId>(seqs[i]).subspan(pos, 1), pos, tables[i], 1});
      }
      const double t = b.step(chunks, &out);
      if (s >= 3) times.push_back(t);  // the first steps capture the graph
      for (int i = 0; i < batch; ++i) seqs[i].push_back(out[i]);
    }
    const double step_s = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
    const double ctx = prompt_len + 3 + decode_steps / 2.0;
    const double bytes = weight_bytes + batch * ctx * kv_token_bytes;
    const double floor_s = bytes / (copy_gbps * 1e9);
    const double tps = batch / step_s;
    char line[256];
    std::snprintf(line, sizeof line,
                  "| decode batch %d, %d-token prompts | %.0f tok/s (%.2f ms/step) | %.0f tok/s "
                  "(%.1f GB/step at %.0f GB/s) | %.0f%% |\n",
                  batch, prompt_len, tps, step_s * 1e3, batch / floor_s, bytes / 1e9, copy_gbps,
                  100.0 * floor_s / step_s);
    md << line;
    std::printf("%s", line);
    std::fflush(stdout);
  }

  // Prefill: one prompt as one chunk, first token sampled (what TTFT waits for).
  for (int len : {2048, 8192}) {
    std::vector<engine::TokenId> prompt(len);
    for (int j = 0; j < len; ++j) prompt[j] = (j * 31337 + 11) % c.vocab_size;
    std::vector<double> times;
    std::vector<engine::TokenId> out;
    for (int rep = 0; rep < reps + 1; ++rep) {
      const auto table = b.blocks_for(len);
      const engine::SequenceChunk chunk{prompt, 0, table, 1};
      const double t = b.step({chunk}, &out);
      if (rep > 0) times.push_back(t);
    }
    const double t = median(times);
    const double linear =
        2.0 * len *
        (double(c.num_layers) *
             (double(c.hidden_size) * (c.q_dim() + 2 * c.kv_dim()) +
              double(c.hidden_size) * c.q_dim() + 3.0 * c.hidden_size * c.intermediate_size) +
         double(c.hidden_size) * c.vocab_size / len);
    const double attn = 4.0 * double(len) * len / 2 * c.head_dim * c.num_heads * c.num_layers;
    const double floor_s = (linear + attn) / (gemm_tflops * 1e12);
    char line[256];
    std::snprintf(line, sizeof line,
                  "| prefill one %d-token prompt | %.1f ms (%.0f TFLOP/s) | %.1f ms (%.1f TFLOP at "
                  "%.0f TFLOP/s) | %.0f%% |\n",
                  len, t * 1e3, (linear + attn) / t / 1e12, floor_s * 1e3, (linear + attn) / 1e12,
                  gemm_tflops, 100.0 * floor_s / t);
    md << line;
    std::printf("%s", line);
    std::fflush(stdout);
  }
  std::printf("\n%s", md.str().c_str());
  if (!out_path.empty()) std::ofstream(out_path) << md.str();
  return 0;
}
