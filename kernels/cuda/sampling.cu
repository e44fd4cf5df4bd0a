#include <cub/block/block_reduce.cuh>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/sampling.cuh"

namespace splitwise::kernels::cuda {

namespace {
constexpr int kThreads = 512;
using FloatReduce = cub::BlockReduce<float, kThreads>;
// Candidate masses are summed in double, as the CPU Sampler does: a float sum of 2.0 plus
// tails of 1e-9 loses the tails, which moves a top-p cut that sits on a tie.
using DoubleReduce = cub::BlockReduce<double, kThreads>;
using IntReduce = cub::BlockReduce<int, kThreads>;

struct Shared {
  union {
    FloatReduce::TempStorage f;
    DoubleReduce::TempStorage d;
    IntReduce::TempStorage i;
  } tmp;
  float fval;
  double dval;
  int ival;
};

// The candidates before and at a cut, in sampling order: keys above `key`, and among keys
// equal to it the ids up to `id` (weights are >= 0, so their bit patterns order like them).
struct Prefix {
  uint32_t key = 0;
  int id = 0x7fffffff;
  __device__ bool holds(uint32_t k, int i) const { return k > key || (k == key && i <= id); }
};

__device__ uint32_t key_of(float w) { return __float_as_uint(w); }

// Block-wide sum of f(i, key) over the row; every thread gets the result.
template <typename F>
__device__ double row_sum(const float* w, int vocab, Shared& sh, F f) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) acc += f(i, key_of(w[i]), w[i]);
  const double total = DoubleReduce(sh.tmp.d).Sum(acc);
  if (threadIdx.x == 0) sh.dval = total;
  __syncthreads();
  const double r = sh.dval;
  __syncthreads();
  return r;
}

template <typename F>
__device__ int row_count(const float* w, int vocab, Shared& sh, F f) {
  int acc = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) acc += f(i, key_of(w[i])) ? 1 : 0;
  const int total = IntReduce(sh.tmp.i).Sum(acc);
  if (threadIdx.x == 0) sh.ival = total;
  __syncthreads();
  const int r = sh.ival;
  __syncthreads();
  return r;
}

// The id of the need-th (1-based) lowest-id candidate with key `key` inside `in`.
__device__ int nth_tie(const float* w, int vocab, Shared& sh, const Prefix& in, uint32_t key,
                       int need) {
  int lo = 0, hi = vocab - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    const int c = row_count(
        w, vocab, sh, [&](int i, uint32_t k) { return k == key && i <= mid && in.holds(k, i); });
    if (c >= need)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// The candidate (inside `in`, in sampling order) at which the running measure first
// reaches `target` (strict: exceeds it). measure(i, key, w) is each candidate's share
// (1 to count, w to weigh). Returns the prefix ending at that candidate.
template <bool kCount, bool kStrict>
__device__ Prefix cut_at(const float* w, int vocab, Shared& sh, const Prefix& in, double target) {
  auto measure_ge = [&](uint32_t t) {
    return row_sum(w, vocab, sh, [&](int i, uint32_t k, float wi) {
      return (k >= t && in.holds(k, i)) ? (kCount ? 1.0 : static_cast<double>(wi)) : 0.0;
    });
  };
  auto reached = [&](double m) { return kStrict ? m > target : m >= target; };
  // Largest key whose candidates at or above it reach the target.
  uint32_t lo = 0, hi = 0x7f800000u;  // weights are finite and >= 0
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (reached(measure_ge(mid)))
      lo = mid;
    else
      hi = mid - 1;
  }
  const double above = row_sum(w, vocab, sh, [&](int i, uint32_t k, float wi) {
    return (k > lo && in.holds(k, i)) ? (kCount ? 1.0 : static_cast<double>(wi)) : 0.0;
  });
  const int ties =
      row_count(w, vocab, sh, [&](int i, uint32_t k) { return k == lo && in.holds(k, i); });
  const double each = kCount ? 1.0 : static_cast<double>(__uint_as_float(lo));
  // Candidates with equal keys share one weight: how many of them (in id order) it takes.
  const double need_f = (target - above) / fmax(each, 1e-300);
  int need = kStrict ? static_cast<int>(floor(need_f)) + 1 : static_cast<int>(ceil(need_f));
  need = max(1, min(need, ties));
  Prefix out;
  out.key = lo;
  out.id = nth_tie(w, vocab, sh, in, lo, need);
  return out;
}

__global__ void sample_kernel(float* __restrict__ logits,               // [rows, vocab]
                              const SampleParams* __restrict__ params,  // [rows]
                              int* __restrict__ tokens,                 // [rows]
                              int vocab) {
  __shared__ Shared sh;
  float* w = logits + static_cast<size_t>(blockIdx.x) * vocab;
  const SampleParams p = params[blockIdx.x];

  // Greedy, and the max for the softmax: (value, lowest id) over the row.
  float best = -INFINITY;
  int best_id = 0x7fffffff;
  for (int i = threadIdx.x; i < vocab; i += kThreads)
    if (w[i] > best) best = w[i], best_id = i;  // strided in id order: first max per thread
  const float mx = FloatReduce(sh.tmp.f).Reduce(best, [](float a, float b) { return fmaxf(a, b); });
  if (threadIdx.x == 0) sh.fval = mx;
  __syncthreads();
  const float row_max = sh.fval;
  __syncthreads();
  const int cand = best == row_max ? best_id : 0x7fffffff;
  int arg = IntReduce(sh.tmp.i).Reduce(cand, [](int a, int b) { return min(a, b); });
  // A row of NaNs (or all -inf: bf16 overflow upstream) has no maximum; answer token 0, as
  // the CPU's max_element does, rather than an id outside the vocabulary.
  if (arg >= vocab) arg = 0;
  if (p.temperature < 1e-5f || !isfinite(row_max)) {
    if (threadIdx.x == 0) tokens[blockIdx.x] = arg;
    return;
  }
  __syncthreads();
  const float inv_t = 1.0f / p.temperature;
  for (int i = threadIdx.x; i < vocab; i += kThreads) w[i] = expf((w[i] - row_max) * inv_t);
  __syncthreads();

  Prefix kept;  // everything
  if (p.top_k > 0 && p.top_k < vocab)
    kept = cut_at<true, false>(w, vocab, sh, kept, static_cast<float>(p.top_k));
  auto mass = [&](const Prefix& in) {
    return row_sum(w, vocab, sh, [&](int i, uint32_t k, float wi) {
      return in.holds(k, i) ? static_cast<double>(wi) : 0.0;
    });
  };
  double total = mass(kept);
  if (p.top_p < 1.0f) {
    kept = cut_at<false, false>(w, vocab, sh, kept, static_cast<double>(p.top_p) * total);
    total = mass(kept);
  }
  const Prefix pick = cut_at<false, true>(w, vocab, sh, kept, p.uniform * total);
  if (threadIdx.x == 0) tokens[blockIdx.x] = pick.id;
}

void launch_sample(float* logits, const SampleParams* params, int* tokens, int rows, int vocab,
                   cudaStream_t stream) {
  if (rows == 0) return;
  sample_kernel<<<rows, kThreads, 0, stream>>>(logits, params, tokens, vocab);
  SW_CUDA_CHECK_LAUNCH();
}
}  // namespace

void sample_tokens(float* logits, const SampleParams* params, int* tokens, int rows, int vocab,
                   cudaStream_t stream) {
  launch_sample(logits, params, tokens, rows, vocab, stream);
}

}  // namespace splitwise::kernels::cuda
