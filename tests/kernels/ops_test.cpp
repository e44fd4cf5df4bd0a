// CPU ops against plain double-precision references over many shapes.
#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace splitwise::kernels::cpu {
namespace {

std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(FastExp, RelativeErrorOverTheWholeRange) {
  double worst = 0.0;
  for (double x = -87.0; x <= 88.0; x += 1.0 / 4096) {
    const double ref = std::exp(static_cast<double>(static_cast<float>(x)));
    const double got = fast_exp(static_cast<float>(x));
    worst = std::max(worst, std::fabs(got - ref) / ref);
  }
  std::printf("fast_exp: max relative error %.3g on [-87, 88]\n", worst);
  EXPECT_LT(worst, 1e-7);
}

TEST(FastExp, ClampsOutOfRangeAndNan) {
  EXPECT_FLOAT_EQ(fast_exp(0.0f), 1.0f);
  EXPECT_LT(fast_exp(-1000.0f), 1e-37f);
  EXPECT_GE(fast_exp(-1000.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(fast_exp(1000.0f)));
  const float nan_result = fast_exp(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(nan_result >= 0.0f && nan_result < 1e-37f);
}

TEST(Softmax, MatchesDoubleReferenceAtEveryLength) {
  std::mt19937 rng(1);
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 513}) {
    std::vector<float> x = random_vec(n, rng, 4.0f);
    std::vector<double> ref(n);
    double mx = -1e300, sum = 0;
    for (float v : x) mx = std::max(mx, static_cast<double>(v));
    for (int i = 0; i < n; ++i) sum += ref[i] = std::exp(x[i] - mx);
    softmax(x.data(), n);
    for (int i = 0; i < n; ++i) ASSERT_NEAR(x[i], ref[i] / sum, 1e-6) << "n " << n << " i " << i;
  }
  softmax(nullptr, 0);  // no elements: nothing to read
}

TEST(Rmsnorm, MatchesDoubleReference) {
  std::mt19937 rng(2);
  for (int dim : {1, 8, 64, 300}) {
    const int rows = 3;
    auto x = random_vec(rows * dim, rng), w = random_vec(dim, rng);
    std::vector<float> out(x.size());
    rmsnorm(x.data(), w.data(), out.data(), rows, dim, 1e-5f);
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
      for (int i = 0; i < dim; ++i)
        ASSERT_NEAR(out[r * dim + i], w[i] * x[r * dim + i] * scale, 1e-5);
    }
  }
}

TEST(MatmulNt, MatchesNaiveProductOnBothPaths) {
  std::mt19937 rng(3);
  // m == 1 with small n * k takes the GEMV loop; the rest go to OpenBLAS.
  for (auto [m, n, k] :
       {std::tuple{1, 7, 5}, {1, 128, 64}, {1, 2048, 64}, {3, 17, 9}, {64, 344, 64}}) {
    for (bool accumulate : {false, true}) {
      auto x = random_vec(size_t(m) * k, rng), w = random_vec(size_t(n) * k, rng);
      auto y = random_vec(size_t(m) * n, rng);
      const std::vector<float> y0 = y;
      matmul_nt(x.data(), w.data(), y.data(), m, n, k, accumulate);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double ref = accumulate ? y0[i * n + j] : 0.0;
          for (int l = 0; l < k; ++l) ref += double(x[i * k + l]) * w[j * k + l];
          ASSERT_NEAR(y[i * n + j], ref, 1e-4 * (1 + std::fabs(ref)))
              << m << "x" << n << "x" << k << (accumulate ? " acc" : "");
        }
    }
  }
}

TEST(SiluMul, MatchesDoubleReference) {
  std::mt19937 rng(4);
  for (int inter : {1, 7, 8, 172, 173}) {
    const int rows = 2;
    auto gu = random_vec(size_t(rows) * 2 * inter, rng, 3.0f);
    std::vector<float> out(size_t(rows) * inter);
    silu_mul(gu.data(), out.data(), rows, inter);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < inter; ++i) {
        const double g = gu[r * 2 * inter + i], u = gu[r * 2 * inter + inter + i];
        ASSERT_NEAR(out[r * inter + i], g / (1 + std::exp(-g)) * u, 1e-5 * (1 + std::fabs(g * u)));
      }
  }
}

TEST(Rope, RotatesEachHalfPairByItsAngle) {
  const int heads = 2, hd = 8;
  std::vector<float> x(heads * hd), cos(hd / 2), sin(hd / 2);
  for (int i = 0; i < heads * hd; ++i) x[i] = 0.5f + i;
  for (int i = 0; i < hd / 2; ++i) {
    cos[i] = std::cos(0.3f * (i + 1));
    sin[i] = std::sin(0.3f * (i + 1));
  }
  const std::vector<float> x0 = x;
  rope_rotate_half(x.data(), heads, hd, cos.data(), sin.data());
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      const float a = x0[h * hd + i], b = x0[h * hd + i + hd / 2];
      EXPECT_NEAR(x[h * hd + i], a * cos[i] - b * sin[i], 1e-5);
      EXPECT_NEAR(x[h * hd + i + hd / 2], b * cos[i] + a * sin[i], 1e-5);
      // A rotation keeps the pair's length.
      EXPECT_NEAR(std::hypot(x[h * hd + i], x[h * hd + i + hd / 2]), std::hypot(a, b), 1e-4);
    }
}

}  // namespace
}  // namespace splitwise::kernels::cpu
