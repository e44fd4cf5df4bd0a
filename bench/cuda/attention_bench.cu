// Kernel lab for paged attention: each variant is validated first (bf16 against the fp32
// FFMA path on the same bf16-rounded inputs, as NMSE), then timed (median of --runs
// launches by CUDA events after a warm-up) and reported against a ceiling given by flags:
// prefill as effective TFLOP/s (causal: 4 * Sq * Sk * hd * heads / 2), decode as GB/s of
// K/V bytes read.
//   variant 1: fp32 generic (plain FFMA; the golden-reproducing path)
//   variant 2: bf16 production path (tensor cores for prefill, 16-byte loads for decode)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"

namespace {

namespace kc = splitwise::kernels::cuda;
using bf16 = __nv_bfloat16;

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockSize = 16;

__device__ __forceinline__ float hash_uniform(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 31)) * 0x94d049bb133111ebull;
  x ^= x >> 29;
  return static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
}

__global__ void fill_kernel(bf16* __restrict__ x,  // [n]
                            size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16_rn(scale * hash_uniform(i, seed));
}

__global__ void widen_kernel(const bf16* __restrict__ x,  // [n]
                             float* __restrict__ y,       // [n]
                             size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

// acc[0] += sum (got - ref)^2, acc[1] += sum ref^2.
__global__ void nmse_kernel(const bf16* __restrict__ got,   // [n]
                            const float* __restrict__ ref,  // [n]
                            size_t n, double* __restrict__ acc) {
  double e = 0.0, r = 0.0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double d = static_cast<double>(__bfloat162float(got[i])) - ref[i];
    e += d * d;
    r += static_cast<double>(ref[i]) * ref[i];
  }
  for (int off = 16; off > 0; off >>= 1) {
    e += __shfl_xor_sync(0xffffffffu, e, off);
    r += __shfl_xor_sync(0xffffffffu, r, off);
  }
  if (threadIdx.x % 32 == 0) {
    atomicAdd(acc, e);
    atomicAdd(acc + 1, r);
  }
}

template <typename T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  SW_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  return p;
}

int* device_ints(const std::vector<int>& h) {
  int* d = device_alloc<int>(h.size());
  SW_CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
  return d;
}

void fill(bf16* x, size_t n, uint32_t seed, float scale) {
  fill_kernel<<<1024, 256>>>(x, n, seed, scale);
  SW_CUDA_CHECK_LAUNCH();
}

float* widen(const bf16* x, size_t n) {
  float* y = device_alloc<float>(n);
  widen_kernel<<<1024, 256>>>(x, y, n);
  SW_CUDA_CHECK_LAUNCH();
  return y;
}

double nmse(const bf16* got, const float* ref, size_t n) {
  double* acc = device_alloc<double>(2);
  SW_CUDA_CHECK(cudaMemset(acc, 0, 2 * sizeof(double)));
  nmse_kernel<<<1024, 256>>>(got, ref, n, acc);
  SW_CUDA_CHECK_LAUNCH();
  double h[2];
  SW_CUDA_CHECK(cudaMemcpy(h, acc, sizeof(h), cudaMemcpyDeviceToHost));
  SW_CUDA_CHECK(cudaFree(acc));
  return h[0] / h[1];
}

// Median milliseconds of `runs` launches of f, after 3 warm-up launches.
template <typename F>
double median_ms(int runs, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  SW_CUDA_CHECK(cudaEventCreate(&a));
  SW_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms(runs);
  for (int i = 0; i < runs; ++i) {
    SW_CUDA_CHECK(cudaEventRecord(a));
    f();
    SW_CUDA_CHECK(cudaEventRecord(b));
    SW_CUDA_CHECK(cudaEventSynchronize(b));
    SW_CUDA_CHECK(cudaEventElapsedTime(&ms[i], a, b));
  }
  SW_CUDA_CHECK(cudaEventDestroy(a));
  SW_CUDA_CHECK(cudaEventDestroy(b));
  std::nth_element(ms.begin(), ms.begin() + runs / 2, ms.end());
  return ms[runs / 2];
}

// A paged K/V cache (bf16 and its fp32 copy) for seqs of the given lengths, blocks shuffled.
struct Cache {
  int max_blocks = 0;
  size_t elems = 0;
  std::vector<int> tables;
  bf16 *k = nullptr, *v = nullptr;
  float *k32 = nullptr, *v32 = nullptr;
};

Cache make_cache(const std::vector<int>& lens, std::mt19937& rng) {
  Cache c;
  int total = 0;
  for (int len : lens) {
    const int nb = (len + kBlockSize - 1) / kBlockSize;
    total += nb;
    c.max_blocks = std::max(c.max_blocks, nb);
  }
  std::vector<int> perm(total);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  c.tables.assign(lens.size() * c.max_blocks, 0);
  int next = 0;
  for (size_t s = 0; s < lens.size(); ++s)
    for (int b = 0; b * kBlockSize < lens[s]; ++b) c.tables[s * c.max_blocks + b] = perm[next++];
  c.elems = static_cast<size_t>(total) * kKvHeads * kBlockSize * kHeadDim;
  c.k = device_alloc<bf16>(c.elems);
  c.v = device_alloc<bf16>(c.elems);
  fill(c.k, c.elems, 11, 1.0f);
  fill(c.v, c.elems, 12, 1.0f);
  c.k32 = widen(c.k, c.elems);
  c.v32 = widen(c.v, c.elems);
  return c;
}

void free_cache(Cache& c) {
  SW_CUDA_CHECK(cudaFree(c.k));
  SW_CUDA_CHECK(cudaFree(c.v));
  SW_CUDA_CHECK(cudaFree(c.k32));
  SW_CUDA_CHECK(cudaFree(c.v32));
}

struct Ceilings {
  double tflops, gbps;
  int runs;
};

void bench_prefill(int tokens, const Ceilings& ceil, std::mt19937& rng) {
  Cache c = make_cache({tokens}, rng);
  const size_t width = static_cast<size_t>(kHeads) * kHeadDim, n = tokens * width;
  bf16* q = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  fill(q, n, 13, 4.0f);  // scores with std ~1.2: a peaked softmax
  float* q32 = widen(q, n);
  float* out32 = device_alloc<float>(n);
  std::vector<int> tile_seq, tile_q0;
  kc::build_prefill_tiles(&tokens, 1, &tile_seq, &tile_q0);
  int* d_tables = device_ints(c.tables);
  int* d_zero = device_ints({0});
  int* d_len = device_ints({tokens});
  int* d_ts = device_ints(tile_seq);
  int* d_tq = device_ints(tile_q0);
  kc::PrefillAttentionParams p;
  p.num_seqs = 1;
  p.num_heads = kHeads;
  p.kv_heads = kKvHeads;
  p.head_dim = kHeadDim;
  p.block_size = kBlockSize;
  p.max_blocks = c.max_blocks;
  p.q_row_start = d_zero;
  p.q_len = d_len;
  p.pos0 = d_zero;
  p.block_tables = d_tables;
  p.tile_seq = d_ts;
  p.tile_q0 = d_tq;
  p.num_tiles = static_cast<int>(tile_seq.size());
  p.q_stride = p.out_stride = static_cast<int>(width);
  p.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));

  auto v1 = [&] { kc::prefill_attention<float>(q32, c.k32, c.v32, out32, p, nullptr); };
  auto v2 = [&] { kc::prefill_attention<bf16>(q, c.k, c.v, out, p, nullptr); };
  v1();
  v2();
  SW_CUDA_CHECK(cudaDeviceSynchronize());
  const double err = nmse(out, out32, n);
  const double flop = 4.0 * tokens * static_cast<double>(tokens) * kHeadDim * kHeads / 2;
  std::printf("prefill %5d tokens, %d/%d heads, hd %d, block %d\n", tokens, kHeads, kKvHeads,
              kHeadDim, kBlockSize);
  std::printf("  v2 bf16 tensor-core vs v1 fp32: NMSE %.2e %s\n", err,
              err <= 1e-4 ? "ok" : "FAILED");
  const double ms1 = median_ms(ceil.runs, v1);
  const double ms2 = median_ms(ceil.runs, v2);
  for (const auto& [name, ms] :
       {std::pair{"v1 fp32 generic   ", ms1}, {"v2 bf16 tensor-core", ms2}}) {
    const double tf = flop / (ms * 1e-3) / 1e12;
    std::printf("  %s %9.3f ms %8.1f TFLOP/s  %5.1f%% of %.0f\n", name, ms, tf,
                100.0 * tf / ceil.tflops, ceil.tflops);
  }
  for (void* ptr :
       {static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(q32),
        static_cast<void*>(out32), static_cast<void*>(d_tables), static_cast<void*>(d_zero),
        static_cast<void*>(d_len), static_cast<void*>(d_ts), static_cast<void*>(d_tq)})
    SW_CUDA_CHECK(cudaFree(ptr));
  free_cache(c);
}

void bench_decode(int batch, int context, const Ceilings& ceil, std::mt19937& rng) {
  Cache c = make_cache(std::vector<int>(batch, context), rng);
  const size_t width = static_cast<size_t>(kHeads) * kHeadDim, n = batch * width;
  bf16* q = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  fill(q, n, 14, 4.0f);
  float* q32 = widen(q, n);
  float* out32 = device_alloc<float>(n);
  std::vector<int> rows(batch);
  std::iota(rows.begin(), rows.end(), 0);
  int* d_tables = device_ints(c.tables);
  int* d_rows = device_ints(rows);
  int* d_ctx = device_ints(std::vector<int>(batch, context));
  const size_t ws_n = kc::decode_attention_workspace_floats(batch, kHeads, kHeadDim, context);
  float* ws = device_alloc<float>(std::max<size_t>(ws_n, 1));
  kc::DecodeAttentionParams p;
  p.num_seqs = batch;
  p.num_heads = kHeads;
  p.kv_heads = kKvHeads;
  p.head_dim = kHeadDim;
  p.block_size = kBlockSize;
  p.max_blocks = c.max_blocks;
  p.q_row = d_rows;
  p.context_len = d_ctx;
  p.block_tables = d_tables;
  p.max_context = context;
  p.q_stride = p.out_stride = static_cast<int>(width);
  p.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  p.workspace = ws;

  auto v1 = [&] { kc::decode_attention<float>(q32, c.k32, c.v32, out32, p, nullptr); };
  auto v2 = [&] { kc::decode_attention<bf16>(q, c.k, c.v, out, p, nullptr); };
  v1();
  v2();
  SW_CUDA_CHECK(cudaDeviceSynchronize());
  const double err = nmse(out, out32, n);
  const double kv_elems = 2.0 * batch * context * kKvHeads * kHeadDim;  // K and V
  std::printf("decode batch %d x context %d, %d/%d heads, hd %d, block %d\n", batch, context,
              kHeads, kKvHeads, kHeadDim, kBlockSize);
  std::printf("  v2 bf16 vs v1 fp32: NMSE %.2e %s\n", err, err <= 1e-4 ? "ok" : "FAILED");
  const double ms1 = median_ms(ceil.runs, v1);
  const double ms2 = median_ms(ceil.runs, v2);
  for (const auto& [name, ms, bytes] :
       {std::tuple{"v1 fp32", ms1, kv_elems * 4}, {"v2 bf16", ms2, kv_elems * 2}}) {
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    std::printf("  %s %9.4f ms %8.1f GB/s  %5.1f%% of %.0f\n", name, ms, gbps,
                100.0 * gbps / ceil.gbps, ceil.gbps);
  }
  for (void* ptr : {static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(q32),
                    static_cast<void*>(out32), static_cast<void*>(d_tables),
                    static_cast<void*>(d_rows), static_cast<void*>(d_ctx), static_cast<void*>(ws)})
    SW_CUDA_CHECK(cudaFree(ptr));
  free_cache(c);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Paged attention kernel lab: validate, then time, prefill and decode."};
  Ceilings ceil{782.0, 3000.0, 20};
  app.add_option("--peak-tflops", ceil.tflops, "bf16 tensor-core ceiling, TFLOP/s");
  app.add_option("--peak-gbps", ceil.gbps, "HBM bandwidth ceiling, GB/s");
  app.add_option("--runs", ceil.runs, "timed launches per variant (median reported)")
      ->check(CLI::Range(20, 100000));
  CLI11_PARSE(app, argc, argv);
  if (!kc::gpu_available()) {
    std::fprintf(stderr, "no CUDA GPU found\n");
    return 1;
  }
  cudaDeviceProp prop;
  SW_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::mt19937 rng(2024);
  bench_prefill(2048, ceil, rng);
  bench_prefill(8192, ceil, rng);
  bench_decode(64, 600, ceil, rng);
  bench_decode(1, 8192, ceil, rng);
  return 0;
}
