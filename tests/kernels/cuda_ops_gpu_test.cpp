// Every element-wise CUDA op of the runner, the cuBLASLt GEMM and the device sampler
// against CPU references, over many shapes, fresh random inputs, outputs poisoned first.
//
// Tolerances: fp32 ops compute what the CPU does in the same order, so they agree to a
// few ulps (1e-5 relative). bf16 ops are compared with a reference computed in double from
// the same bf16-rounded inputs; the output is rounded once to bf16 (relative step 2^-8),
// so an element is off by at most 2^-9 of itself plus what fp32 summation adds: 1e-2
// relative per element bounds it with room, while an indexing or formula error is off by
// O(1).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/add_rmsnorm.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.cuh"
#include "kernels/cuda/rope_kv.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/silu_mul.cuh"
#include "tests/kernels/cuda_test_util.h"
#include "workers/engine/sampler.h"

namespace splitwise::kernels::cuda {
namespace {

using test::DeviceArray;

template <typename T>
constexpr double kElemTol = std::is_same_v<T, float> ? 1e-5 : 1e-2;

template <typename T>
void expect_close(const std::vector<float>& got, const std::vector<float>& ref,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - ref[i]), kElemTol<T> * std::max(1.0f, std::fabs(ref[i])))
        << what << " element " << i << " got " << got[i] << " want " << ref[i];
}

template <typename T>
struct CudaOps : ::testing::Test {
  void SetUp() override {
    if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  }
  std::mt19937 rng{1234};
};
using Types = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(CudaOps, Types);

TYPED_TEST(CudaOps, EmbeddingGathersRows) {
  using T = TypeParam;
  for (int dim : {1, 64, 4096}) {
    const int vocab = 300, rows = 17;
    const auto table = test::stored<T>(test::random_vector(this->rng, size_t(vocab) * dim));
    std::vector<int> tok(rows);
    for (int& t : tok) t = std::uniform_int_distribution<int>(0, vocab - 1)(this->rng);
    DeviceArray<T> dt(table), out(size_t(rows) * dim);
    DeviceArray<int> dtok(rows);
    SW_CUDA_CHECK(cudaMemcpy(dtok.get(), tok.data(), rows * 4, cudaMemcpyHostToDevice));
    out.poison();
    embedding(dtok.get(), dt.get(), out.get(), rows, dim, nullptr);
    const auto got = out.download();
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < dim; ++i)
        ASSERT_EQ(got[size_t(r) * dim + i], table[size_t(tok[r]) * dim + i]) << r << " " << i;
  }
}

TYPED_TEST(CudaOps, AddRmsnormMatchesCpu) {
  using T = TypeParam;
  for (int dim : {8, 64, 100, 4096, 8192}) {
    for (int rows : {1, 5, 33}) {
      for (bool with_delta : {false, true}) {
        const size_t n = size_t(rows) * dim;
        const auto res = test::stored<T>(test::random_vector(this->rng, n, 2.0f));
        const auto delta = test::stored<T>(test::random_vector(this->rng, n, 2.0f));
        const auto w = test::stored<T>(test::random_vector(this->rng, dim));
        // Reference: the sum stored (rounded) first, as the kernel does.
        std::vector<float> sum = res;
        if (with_delta)
          for (size_t i = 0; i < n; ++i) sum[i] = res[i] + delta[i];
        sum = test::stored<T>(sum);
        std::vector<float> ref(n);
        cpu::rmsnorm(sum.data(), w.data(), ref.data(), rows, dim, 1e-5f);
        DeviceArray<T> dres(res), ddelta(delta), dw(w), out(n);
        out.poison();
        add_rmsnorm(dres.get(), with_delta ? ddelta.get() : nullptr, dw.get(), out.get(), rows, dim,
                    1e-5f, nullptr);
        expect_close<T>(out.download(), ref, "norm dim " + std::to_string(dim));
        expect_close<T>(dres.download(), sum, "residual dim " + std::to_string(dim));

        // The same norm for a subset of rows, gathered.
        std::vector<int> idx = {rows - 1, 0};
        DeviceArray<int> didx(2);
        SW_CUDA_CHECK(cudaMemcpy(didx.get(), idx.data(), 8, cudaMemcpyHostToDevice));
        DeviceArray<T> out2(size_t(2) * dim);
        out2.poison();
        rmsnorm_rows(dres.get(), didx.get(), dw.get(), out2.get(), 2, dim, 1e-5f, nullptr);
        const auto got2 = out2.download();
        for (int k = 0; k < 2; ++k)
          expect_close<T>(std::vector<float>(got2.begin() + k * dim, got2.begin() + (k + 1) * dim),
                          std::vector<float>(ref.begin() + size_t(idx[k]) * dim,
                                             ref.begin() + size_t(idx[k] + 1) * dim),
                          "rows");
      }
    }
  }
}

TYPED_TEST(CudaOps, SiluMulMatchesCpu) {
  using T = TypeParam;
  for (int inter : {1, 7, 172, 14336}) {
    for (int rows : {1, 9}) {
      const auto gu =
          test::stored<T>(test::random_vector(this->rng, size_t(rows) * 2 * inter, 3.0f));
      std::vector<float> ref(size_t(rows) * inter);
      cpu::silu_mul(gu.data(), ref.data(), rows, inter);
      DeviceArray<T> dgu(gu), out(ref.size());
      out.poison();
      silu_mul(dgu.get(), out.get(), rows, inter, nullptr);
      expect_close<T>(out.download(), ref, "inter " + std::to_string(inter));
    }
  }
}

TYPED_TEST(CudaOps, RopeAndPagedKvWriteMatchCpu) {
  using T = TypeParam;
  struct Case {
    int heads, kv_heads, hd, block_size;
  };
  for (const Case& c : {Case{8, 4, 8, 16}, Case{4, 2, 32, 8}, Case{32, 8, 128, 16}}) {
    const int tokens = 40, num_blocks = 12, max_pos = 512, half = c.hd / 2;
    const int qkv_stride = (c.heads + 2 * c.kv_heads) * c.hd;
    const auto qkv = test::stored<T>(test::random_vector(this->rng, size_t(tokens) * qkv_stride));
    std::vector<float> cs(size_t(max_pos) * half), sn(cs.size());
    for (size_t i = 0; i < cs.size(); ++i) {
      const float a = std::uniform_real_distribution<float>(-3.14f, 3.14f)(this->rng);
      cs[i] = std::cos(a);
      sn[i] = std::sin(a);
    }
    std::vector<int> pos(tokens), slots(tokens);
    std::vector<int> perm(num_blocks * c.block_size);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), this->rng);
    for (int t = 0; t < tokens; ++t) {
      pos[t] = std::uniform_int_distribution<int>(0, max_pos - 1)(this->rng);
      slots[t] = t % 7 == 3 ? -1 : perm[t];  // some padding tokens
    }
    const size_t cache_n = size_t(num_blocks) * c.kv_heads * c.block_size * c.hd;
    DeviceArray<T> dqkv(qkv), kc(cache_n), vc(cache_n);
    kc.poison();
    vc.poison();
    DeviceArray<float> dcs(cs), dsn(sn);
    DeviceArray<int> dpos(tokens), dslots(tokens);
    SW_CUDA_CHECK(cudaMemcpy(dpos.get(), pos.data(), tokens * 4, cudaMemcpyHostToDevice));
    SW_CUDA_CHECK(cudaMemcpy(dslots.get(), slots.data(), tokens * 4, cudaMemcpyHostToDevice));
    RopeKvShape s{tokens, c.heads, c.kv_heads, c.hd, c.block_size, qkv_stride};
    rope_kv_write(dqkv.get(), dpos.get(), dslots.get(), dcs.get(), dsn.get(), kc.get(), vc.get(), s,
                  nullptr);
    std::vector<float> ref = qkv;
    for (int t = 0; t < tokens; ++t) {
      float* row = ref.data() + size_t(t) * qkv_stride;
      cpu::rope_rotate_half(row, c.heads + c.kv_heads, c.hd, cs.data() + size_t(pos[t]) * half,
                            sn.data() + size_t(pos[t]) * half);
    }
    expect_close<T>(dqkv.download(), test::stored<T>(ref), "rotated qkv");
    const auto gk = kc.download(), gv = vc.download();
    std::vector<bool> written(cache_n / c.hd, false);
    for (int t = 0; t < tokens; ++t) {
      if (slots[t] < 0) continue;
      const int block = slots[t] / c.block_size, off = slots[t] % c.block_size;
      for (int h = 0; h < c.kv_heads; ++h) {
        const size_t at = ((size_t(block) * c.kv_heads + h) * c.block_size + off);
        written[at] = true;
        for (int i = 0; i < c.hd; ++i) {
          const float* row = ref.data() + size_t(t) * qkv_stride;
          const float want_k = test::stored<T>({row[(c.heads + h) * c.hd + i]})[0];
          const float want_v = qkv[size_t(t) * qkv_stride + (c.heads + c.kv_heads + h) * c.hd + i];
          ASSERT_NEAR(gk[at * c.hd + i], want_k, kElemTol<T> * std::max(1.0f, std::fabs(want_k)));
          ASSERT_EQ(gv[at * c.hd + i], want_v);
        }
      }
    }
    // Padding tokens and untouched slots keep the poison: nothing else was written.
    for (size_t at = 0; at < written.size(); ++at) {
      if (!written[at]) {
        ASSERT_TRUE(std::isnan(gk[at * c.hd]) && std::isnan(gv[at * c.hd])) << at;
      }
    }
  }
}

TYPED_TEST(CudaOps, GemmMatchesDoubleReference) {
  using T = TypeParam;
  constexpr DType dt = std::is_same_v<T, float> ? DType::kF32 : DType::kBF16;
  Gemm gemm(size_t{8} << 20);
  struct Shape {
    int m, n, k;
  };
  for (const Shape& s : {Shape{1, 64, 64}, Shape{1, 4096, 4096}, Shape{7, 344, 128},
                         Shape{64, 6144, 4096}, Shape{300, 512, 96}}) {
    for (bool acc : {false, true}) {
      const auto x = test::stored<T>(test::random_vector(this->rng, size_t(s.m) * s.k));
      const auto w = test::stored<T>(test::random_vector(this->rng, size_t(s.n) * s.k, 0.05f));
      const auto y0 = test::stored<T>(test::random_vector(this->rng, size_t(s.m) * s.n));
      std::vector<double> ref(size_t(s.m) * s.n);
      for (int i = 0; i < s.m; ++i)
        for (int j = 0; j < s.n; ++j) {
          double d = acc ? y0[size_t(i) * s.n + j] : 0.0;
          for (int q = 0; q < s.k; ++q)
            d += double(x[size_t(i) * s.k + q]) * w[size_t(j) * s.k + q];
          ref[size_t(i) * s.n + j] = d;
        }
      DeviceArray<T> dx(x), dw(w), dy(y0);
      if (!acc) dy.poison();
      gemm.matmul(dx.get(), dw.get(), dy.get(), s.m, s.n, s.k, dt, dt, acc, nullptr);
      // fp32: summation error grows like sqrt(k) ulps, far under 1e-5 (tf32 would be ~1e-3).
      // bf16: the output rounding alone is up to 2^-9 per element, ~2e-3 in norm.
      const double tol = std::is_same_v<T, float> ? 1e-5 : 5e-3;
      EXPECT_LT(test::rel_l2(dy.download(), ref), tol)
          << s.m << "x" << s.n << "x" << s.k << (acc ? " accumulate" : "");
    }
  }
  // bf16 operands with an fp32 output (the vocabulary projection).
  if constexpr (!std::is_same_v<T, float>) {
    const int m = 3, n = 1000, k = 256;
    const auto x = test::stored<T>(test::random_vector(this->rng, size_t(m) * k));
    const auto w = test::stored<T>(test::random_vector(this->rng, size_t(n) * k));
    std::vector<double> ref(size_t(m) * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j)
        for (int q = 0; q < k; ++q)
          ref[size_t(i) * n + j] += double(x[size_t(i) * k + q]) * w[size_t(j) * k + q];
    DeviceArray<T> dx(x), dw(w);
    DeviceArray<float> dy(size_t(m) * n);
    dy.poison();
    gemm.matmul(dx.get(), dw.get(), dy.get(), m, n, k, DType::kBF16, DType::kF32, false, nullptr);
    EXPECT_LT(test::rel_l2(dy.download(), ref), 1e-5);  // no output rounding
  }
}

struct GemvGpu : ::testing::Test {
  void SetUp() override {
    if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  }
};

// The decode GEMV directly (the GEMM tuner may or may not pick it on a given GPU), for
// every row count it takes, odd n, k not a multiple of its unrolled stride, accumulate
// and an fp32 output. Same bounds as the bf16 GEMM above.
TEST_F(GemvGpu, MatchesDoubleReference) {
  std::mt19937 rng(5);
  for (int m = 1; m <= kGemvMaxRows; ++m) {
    for (auto [n, k] :
         {std::pair{1, 8}, std::pair{37, 264}, std::pair{4096, 4096}, std::pair{1000, 14336}}) {
      for (bool acc : {false, true}) {
        const auto x = test::stored<__nv_bfloat16>(test::random_vector(rng, size_t(m) * k));
        const auto w = test::stored<__nv_bfloat16>(test::random_vector(rng, size_t(n) * k, 0.05f));
        const auto y0 = test::stored<__nv_bfloat16>(test::random_vector(rng, size_t(m) * n));
        std::vector<double> ref(size_t(m) * n);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            double d = acc ? y0[size_t(i) * n + j] : 0.0;
            for (int q = 0; q < k; ++q) d += double(x[size_t(i) * k + q]) * w[size_t(j) * k + q];
            ref[size_t(i) * n + j] = d;
          }
        DeviceArray<__nv_bfloat16> dx(x), dw(w), dy(y0);
        if (!acc) dy.poison();
        ASSERT_TRUE(gemv_supported(dx.get(), dw.get(), m, k));
        gemv_bf16(dx.get(), dw.get(), dy.get(), m, n, k, acc, nullptr);
        EXPECT_LT(test::rel_l2(dy.download(), ref), 5e-3) << m << "x" << n << "x" << k;
        DeviceArray<float> df(size_t(m) * n);
        df.poison();
        gemv_bf16(dx.get(), dw.get(), df.get(), m, n, k, false, nullptr);
        if (!acc) {
          EXPECT_LT(test::rel_l2(df.download(), ref), 1e-5) << m << "x" << n << "x" << k;
        }
      }
    }
  }
  EXPECT_FALSE(gemv_supported(nullptr, nullptr, kGemvMaxRows + 1, 64));
}

struct SamplingGpu : ::testing::Test {
  void SetUp() override {
    if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  }
};

// The device sampler against the CPU Sampler, same logits and the same draw. They sum the
// candidates' weights in different orders (double tree vs double sorted), so a draw landing
// within ~1e-6 of a boundary may pick a neighbour: at most one row in 64 may differ, and a
// sampler with a wrong cut (top-k, top-p) or a wrong order differs in most rows.
TEST_F(SamplingGpu, MatchesCpuSampler) {
  std::mt19937 rng(99);
  struct Case {
    int vocab;
    float temperature, top_p;
    int top_k;
  };
  for (const Case& c :
       {Case{1000, 0.0f, 1.0f, 0}, Case{1000, 1.0f, 1.0f, 0}, Case{1000, 0.7f, 0.9f, 0},
        Case{1000, 1.3f, 1.0f, 40}, Case{1000, 1.0f, 0.5f, 20}, Case{128256, 0.8f, 0.95f, 0},
        Case{128256, 1.0f, 1.0f, 0}}) {
    const int rows = 64;
    std::vector<float> logits(size_t(rows) * c.vocab);
    std::normal_distribution<float> d(0.0f, 3.0f);
    for (float& x : logits) x = d(rng);
    // Planted ties at the top: the lowest id must win greedy and lead the order.
    for (int r = 0; r < rows; r += 4) {
      logits[size_t(r) * c.vocab + 5] = 30.0f;
      logits[size_t(r) * c.vocab + 2] = 30.0f;
    }
    // Rows the model should never produce but a bf16 overflow can: all -inf and all NaN.
    // The CPU answers token 0 for both (max_element); so must the device, never an id
    // outside the vocabulary.
    if (c.temperature == 0.0f) {
      std::fill_n(logits.begin() + size_t(1) * c.vocab, c.vocab, -INFINITY);
      std::fill_n(logits.begin() + size_t(3) * c.vocab, c.vocab, NAN);
    }
    std::vector<SampleParams> params(rows);
    std::vector<int> want(rows);
    for (int r = 0; r < rows; ++r) {
      engine::SamplingParams sp;
      sp.temperature = c.temperature;
      sp.top_p = c.top_p;
      sp.top_k = c.top_k;
      sp.seed = 7 + r;
      const double u = engine::uniform_at(sp.seed, r);
      params[r] = {c.temperature, c.top_k, c.top_p, u};
      engine::Sampler s(sp);
      want[r] = s.sample(std::span<const float>(logits.data() + size_t(r) * c.vocab, c.vocab), r);
    }
    DeviceArray<float> dl(logits);
    DeviceArray<int> dtok(rows);
    SampleParams* dp;
    SW_CUDA_CHECK(cudaMalloc(&dp, rows * sizeof(SampleParams)));
    SW_CUDA_CHECK(
        cudaMemcpy(dp, params.data(), rows * sizeof(SampleParams), cudaMemcpyHostToDevice));
    sample_tokens(dl.get(), dp, dtok.get(), rows, c.vocab, nullptr);
    std::vector<int> got(rows);
    SW_CUDA_CHECK(cudaMemcpy(got.data(), dtok.get(), rows * 4, cudaMemcpyDeviceToHost));
    SW_CUDA_CHECK(cudaFree(dp));
    int differ = 0;
    for (int r = 0; r < rows; ++r) differ += got[r] != want[r];
    if (c.temperature == 0.0f) {
      EXPECT_EQ(got, want) << "greedy must match exactly";
    } else {
      EXPECT_LE(differ, 1) << "vocab " << c.vocab << " t " << c.temperature << " top_p " << c.top_p
                           << " top_k " << c.top_k;
    }
  }
}

}  // namespace
}  // namespace splitwise::kernels::cuda
