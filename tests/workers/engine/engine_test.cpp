// The engine loop end to end on a real model: batching must not change any sequence's
// tokens, and requests that can never run are refused with a reason.
#include "workers/engine/engine.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>

#include "tests/test_util.h"
#include "tests/workers/engine/stories_fixture.h"

namespace splitwise::engine {
namespace {

struct Stories : StoriesFixture {
  // Runs requests to completion; returns each request's generated tokens.
  std::map<SeqId, std::vector<TokenId>> run(Engine& engine,
                                            const std::vector<GenerationRequest>& reqs) {
    for (const auto& r : reqs) EXPECT_TRUE(engine.add_request(r).ok());
    std::map<SeqId, std::vector<TokenId>> out;
    while (!engine.idle()) {
      auto results = engine.step();
      EXPECT_TRUE(results.ok()) << results.status().message();
      if (!results.ok()) break;
      for (const StepResult& r : *results) out[r.id].push_back(r.token);
    }
    return out;
  }
};

std::vector<GenerationRequest> eight_requests(float temperature) {
  // Prompts of different lengths (1 to 40 tokens) so prefills and decodes interleave.
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r;
    r.id = 100 + i;
    r.prompt.push_back(1);
    for (int j = 0; j < i * 5 + (i % 3); ++j) r.prompt.push_back(300 + (i * 37 + j * 11) % 200);
    r.max_new_tokens = 20 + 7 * i;
    r.sampling = {
        .temperature = temperature, .top_k = 0, .top_p = 0.9f, .seed = static_cast<uint64_t>(i)};
    reqs.push_back(r);
  }
  return reqs;
}

void expect_batching_invariant(Stories& f, float temperature, bool prefill_first = false) {
  const auto reqs = eight_requests(temperature);
  std::map<SeqId, std::vector<TokenId>> alone;
  for (const auto& r : reqs) {
    Engine engine(&f.weights, EngineConfig{});
    alone.merge(f.run(engine, {r}));
  }
  // Small token budget: prompts are split into chunks that share steps with decodes.
  // Few blocks: sequences wait for (and reuse) blocks freed by finished ones.
  EngineConfig cfg;
  cfg.scheduler.max_batch_tokens = 24;
  cfg.scheduler.prefill_first = prefill_first;
  cfg.num_kv_blocks = 12;
  Engine engine(&f.weights, cfg);
  const auto batched = f.run(engine, reqs);
  EXPECT_GT(engine.stats().steps, 0);
  EXPECT_EQ(engine.num_free_blocks(), engine.num_kv_blocks());  // all blocks returned
  ASSERT_EQ(batched.size(), reqs.size());
  for (const auto& r : reqs) {
    EXPECT_EQ(batched.at(r.id), alone.at(r.id)) << "request " << r.id;
    EXPECT_EQ(static_cast<int>(alone.at(r.id).size()), r.max_new_tokens);
  }
}

TEST_F(Stories, BatchingDoesNotChangeGreedyTokens) { expect_batching_invariant(*this, 0.0f); }

TEST_F(Stories, PrefillFirstSchedulingDoesNotChangeTokens) {
  expect_batching_invariant(*this, 0.0f, /*prefill_first=*/true);
}

TEST_F(Stories, BatchingDoesNotChangeSeededSampledTokens) {
  expect_batching_invariant(*this, 1.0f);
}

TEST_F(Stories, PreemptedSequencesResumeWithTheSameTokens) {
  const auto reqs = eight_requests(0.0f);
  std::map<SeqId, std::vector<TokenId>> alone;
  for (const auto& r : reqs) {
    Engine engine(&weights, EngineConfig{});
    alone.merge(run(engine, {r}));
  }
  EngineConfig cfg;
  cfg.num_kv_blocks = 8;  // too few for all eight at once: decodes must preempt
  Engine engine(&weights, cfg);
  const auto batched = run(engine, reqs);
  EXPECT_GT(engine.stats().preemptions, 0);
  for (const auto& r : reqs) EXPECT_EQ(batched.at(r.id), alone.at(r.id)) << "request " << r.id;
}

TEST_F(Stories, RejectsPromptLongerThanTheContext) {
  Engine engine(&weights, EngineConfig{});
  GenerationRequest r;
  r.id = 1;
  r.prompt.assign(weights.config.max_position, 5);
  const Status st = engine.add_request(r);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("context is 512"), std::string::npos) << st.message();
  EXPECT_TRUE(engine.idle());
}

TEST_F(Stories, RejectsRequestsThatCanNeverRun) {
  EngineConfig cfg;
  cfg.num_kv_blocks = 2;
  Engine engine(&weights, cfg);
  GenerationRequest r;
  r.id = 1;
  EXPECT_NE(engine.add_request(r).message().find("empty prompt"), std::string::npos);
  r.prompt = {1, 5000};
  EXPECT_NE(engine.add_request(r).message().find("outside the vocabulary"), std::string::npos);
  r.prompt = {1, 2, 3};
  r.sampling.top_p = 0.0f;
  EXPECT_NE(engine.add_request(r).message().find("top_p"), std::string::npos);
  r.sampling.top_p = 1.0f;
  r.max_new_tokens = 100;  // 103 tokens need 7 blocks of 16; the cache has 2
  EXPECT_NE(engine.add_request(r).message().find("KV blocks"), std::string::npos);
  r.max_new_tokens = 5;
  EXPECT_TRUE(engine.add_request(r).ok());
  EXPECT_NE(engine.add_request(r).message().find("already in use"), std::string::npos);
}

TEST_F(Stories, HugeMaxTokensIsCappedByTheContext) {
  Engine engine(&weights, EngineConfig{});
  GenerationRequest r;
  r.id = 1;
  r.prompt.assign(weights.config.max_position - 2, 300);
  r.max_new_tokens = std::numeric_limits<int>::max();  // a client's "as many as possible"
  EXPECT_EQ(run(engine, {r}).at(1).size(), 2u);
}

TEST(EngineConfigCheck, RejectsConfigsThatCanNeverRun) {
  EngineConfig c;
  EXPECT_TRUE(validate_engine_config(c).ok());
  c.block_size = 0;
  EXPECT_NE(validate_engine_config(c).message().find("block_size"), std::string::npos);
  c = EngineConfig{};
  c.scheduler.max_batch_tokens = 0;
  EXPECT_NE(validate_engine_config(c).message().find("max_batch_tokens"), std::string::npos);
  c = EngineConfig{};
  c.scheduler.max_num_seqs = -1;
  EXPECT_NE(validate_engine_config(c).message().find("max_num_seqs"), std::string::npos);
}

TEST_F(Stories, ContextLimitEndsGenerationWithLength) {
  Engine engine(&weights, EngineConfig{});
  GenerationRequest r;
  r.id = 1;
  r.prompt.assign(weights.config.max_position - 3, 300);
  r.max_new_tokens = 50;
  const auto out = run(engine, {r});
  EXPECT_EQ(out.at(1).size(), 3u);  // the context holds exactly three more tokens
}

}  // namespace
}  // namespace splitwise::engine

namespace splitwise::engine {
namespace {

// A backend that counts calls and delegates to the CPU runner: the engine must drive the
// runner the factory built (as a worker does with the CUDA runner), sized by the engine.
class CountingRunner final : public Runner {
 public:
  CountingRunner(const ModelWeights* w, int blocks, int block_size)
      : inner_(w, blocks, block_size) {}
  const ModelConfig& config() const override { return inner_.config(); }
  int num_kv_blocks() const override { return inner_.num_kv_blocks(); }
  int block_size() const override { return inner_.block_size(); }
  Status forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                 const LayerListener& on_layer) override {
    ++forwards;
    return inner_.forward(batch, logits, on_layer);
  }
  KvMemoryInfo kv_memory() const override { return inner_.kv_memory(); }
  std::byte* key_block(int layer, BlockId b) override { return inner_.key_block(layer, b); }
  std::byte* value_block(int layer, BlockId b) override { return inner_.value_block(layer, b); }
  int forwards = 0;

 private:
  ModelRunner inner_;
};

TEST_F(Stories, CreateDrivesTheFactoryRunnerWithTheSameTokens) {
  const auto reqs = eight_requests(0.0f);
  EngineConfig cfg;
  cfg.num_kv_blocks = 40;
  Engine plain(&weights, cfg);
  const auto want = run(plain, reqs);
  CountingRunner* made = nullptr;
  int asked_blocks = 0;
  auto engine =
      Engine::create(&weights, cfg, [&](int blocks, int bs) -> Result<std::unique_ptr<Runner>> {
        asked_blocks = blocks;
        auto r = std::make_unique<CountingRunner>(&weights, blocks, bs);
        made = r.get();
        return std::unique_ptr<Runner>(std::move(r));
      });
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  EXPECT_EQ(asked_blocks, 40);
  EXPECT_EQ(&(*engine)->runner(), made);
  EXPECT_EQ(run(**engine, reqs), want);
  EXPECT_EQ(made->forwards, (*engine)->stats().steps);
}

TEST_F(Stories, CreateReportsAFailingFactory) {
  auto engine =
      Engine::create(&weights, EngineConfig{}, [](int, int) -> Result<std::unique_ptr<Runner>> {
        return Status::error("GPU out of memory");
      });
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().message(), "GPU out of memory");
}

TEST_F(Stories, KvElementBytesSizesTheCache) {
  EngineConfig cfg;
  cfg.kv_cache_bytes = size_t{4} << 20;
  Engine fp32(&weights, cfg);
  cfg.kv_element_bytes = 2;
  Engine bf16(&weights, cfg);
  // Half the bytes per element: twice the blocks in the same memory (up to the cap).
  const size_t per_block = size_t{16} * weights.config.kv_dim() * weights.config.num_layers * 2;
  EXPECT_EQ(fp32.num_kv_blocks(), static_cast<int>((size_t{4} << 20) / (4 * per_block)));
  EXPECT_EQ(bf16.num_kv_blocks(), static_cast<int>((size_t{4} << 20) / (2 * per_block)));
}

}  // namespace
}  // namespace splitwise::engine
