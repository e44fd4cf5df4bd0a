// The CPU engine against reference outputs: llama2.c run.c logits for stories260K,
// transformers for the safetensors models (see ../shared/models/README.md).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "tests/test_util.h"
#include "tests/workers/engine/golden_files.h"
#include "workers/engine/model_runner.h"
#include "workers/engine/weights.h"

namespace splitwise::engine {
namespace {

using Json = nlohmann::json;

// Logits of every position of `tokens` through a CPU runner sized for them.
std::vector<std::vector<float>> run_logits(const ModelWeights& w,
                                           const std::vector<TokenId>& tokens, bool incremental) {
  ModelRunner runner(&w, (static_cast<int>(tokens.size()) + 15) / 16, 16);
  return engine::run_logits(runner, tokens, incremental);
}

// Greedy continuation of `prompt` for `steps` tokens, one sequence.
std::vector<TokenId> greedy(const ModelWeights& w, std::vector<TokenId> tokens, int steps) {
  const int total = static_cast<int>(tokens.size()) + steps;
  ModelRunner runner(&w, (total + 15) / 16, 16);
  std::vector<BlockId> table((total + 15) / 16);
  for (int i = 0; i < static_cast<int>(table.size()); ++i) table[i] = i;
  std::vector<float> logits;
  std::vector<TokenId> out;
  int done = 0;
  for (int s = 0; s < steps; ++s) {
    SequenceChunk c{std::span<const TokenId>(tokens).subspan(done), done, table, 1};
    EXPECT_TRUE(runner.forward({&c, 1}, &logits).ok());
    done = static_cast<int>(tokens.size());
    const TokenId next =
        static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    tokens.push_back(next);
    out.push_back(next);
  }
  return out;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// Largest |a - b| relative to the row's largest reference logit.
double row_rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double d = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    d = std::max(d, std::fabs(static_cast<double>(got[i]) - ref[i]));
  return d / max_abs(ref);
}

TEST(Llama2cGolden, LogitsOfFirst16PositionsMatchRunC) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  SW_REQUIRE_SHARED(golden, "models/golden/s260_logits_n16_prompt_once.txt");
  auto w = load_model(model);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const GoldenLogits g = read_llama2c_logits(golden);
  ASSERT_EQ(g.rows.size(), 16u);
  for (bool incremental : {false, true}) {
    const auto rows = run_logits(*w, g.tokens, incremental);
    for (size_t p = 0; p < rows.size(); ++p) {
      ASSERT_EQ(rows[p].size(), g.rows[p].size());
      for (size_t i = 0; i < rows[p].size(); ++i)
        ASSERT_LE(std::fabs(rows[p][i] - g.rows[p][i]),
                  1e-4 * std::max(1.0f, std::fabs(g.rows[p][i])))
            << "position " << p << " logit " << i << (incremental ? " (decode)" : " (prefill)");
    }
  }
}

TEST(HfGolden, Stories260KSafetensorsMatchesLlama2cAndTransformers) {
  SW_REQUIRE_SHARED(dir, "models/stories260K-hf");
  SW_REQUIRE_SHARED(golden_logits, "models/golden/s260_logits_n16_prompt_once.txt");
  auto w = load_model(dir);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const GoldenLogits g = read_llama2c_logits(golden_logits);
  const auto rows = run_logits(*w, g.tokens, false);
  for (size_t p = 0; p < rows.size(); ++p) EXPECT_LT(row_rel_error(rows[p], g.rows[p]), 1e-5) << p;

  const Json golden = Json::parse(testing::read_file(dir / "golden.json"));
  for (const Json& c : golden["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<TokenId>>();
    const auto all = run_logits(*w, prompt, false);
    const auto first4 = c["all_logits_first4"].get<std::vector<std::vector<float>>>();
    for (size_t p = 0; p < first4.size(); ++p) EXPECT_LT(row_rel_error(all[p], first4[p]), 1e-5);
    EXPECT_LT(row_rel_error(all.back(), c["last_logits"].get<std::vector<float>>()), 1e-5);
    const auto want = c["greedy"].get<std::vector<TokenId>>();
    EXPECT_EQ(greedy(*w, prompt, static_cast<int>(want.size())), want);
  }
}

TEST(HfGolden, TinyLlama3Bf16MatchesTransformers) {
  SW_REQUIRE_SHARED(dir, "models/tiny-llama3-gqa");
  auto w = load_model(dir);
  ASSERT_TRUE(w.ok()) << w.status().message();
  // The golden was made by transformers in bf16, RoPE table included (see ModelConfig).
  w->config.rope_inv_freq_bf16 = true;
  const Json golden = Json::parse(testing::read_file(dir / "golden.json"));
  for (const Json& c : golden["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<TokenId>>();
    SCOPED_TRACE("prompt of " + std::to_string(prompt.size()) + " tokens");
    const auto all = run_logits(*w, prompt, false);
    // transformers ran in bf16: it rounds every matmul output, norm, activation and the
    // residual stream to 8 significant bits (relative step 2^-8), while this engine keeps
    // fp32. Measured: a reference that applies bf16 rounding at transformers' points matches
    // the single-token case exactly (max diff 0.0000) and multi-token cases within 2.6%, so
    // the rest is attention-kernel rounding; the fp32 engine differs by 1.0% (1 token) to
    // 3.5% (300 tokens) of the row's largest logit. 5% bounds that; a wrong RoPE (no llama3
    // scaling) is off by 7% at 7 tokens and 100% at 300, a wrong GQA or norm far more.
    constexpr double kBf16RowTolerance = 0.05;
    const auto first4 = c["all_logits_first4"].get<std::vector<std::vector<float>>>();
    for (size_t p = 0; p < first4.size(); ++p)
      EXPECT_LT(row_rel_error(all[p], first4[p]), kBf16RowTolerance) << "position " << p;
    EXPECT_LT(row_rel_error(all.back(), c["last_logits"].get<std::vector<float>>()),
              kBf16RowTolerance);

    // Greedy tokens: identical up to the first mismatch, where each side's token must be
    // in the other's top-5 (the rule serving engines use for low-precision references).
    const auto want = c["greedy"].get<std::vector<TokenId>>();
    const std::vector<TokenId> got = greedy(*w, prompt, static_cast<int>(want.size()));
    size_t k = 0;
    while (k < want.size() && got[k] == want[k]) ++k;
    if (k == want.size()) continue;
    std::vector<TokenId> ctx = prompt;
    ctx.insert(ctx.end(), want.begin(), want.begin() + k);
    const auto ours = run_logits(*w, ctx, false).back();
    EXPECT_TRUE(in_top5(ours, want[k]))
        << "transformers' token " << want[k] << " at step " << k << " is not in our top-5";
    // Their logits at that step are not in golden.json beyond the last prompt position,
    // so the reverse check is only possible at step 0.
    if (k == 0) {
      EXPECT_TRUE(in_top5(c["last_logits"].get<std::vector<float>>(), got[0]));
    }
    std::printf("prompt %zu: greedy identical for %zu of %zu tokens\n", prompt.size(), k,
                want.size());
  }
}

}  // namespace
}  // namespace splitwise::engine
