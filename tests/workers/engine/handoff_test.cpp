// The phase split inside one process: a prompt-role engine prefills and hands each
// layer's KV blocks to a token-role engine (copied here in place of the transport), which
// decodes. The tokens must equal one engine doing both phases.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "tests/test_util.h"
#include "tests/workers/engine/stories_fixture.h"
#include "workers/engine/engine.h"

namespace splitwise::engine {
namespace {

using Split = StoriesFixture;

std::vector<TokenId> run_alone(const ModelWeights& w, GenerationRequest r) {
  Engine e(&w, EngineConfig{});
  EXPECT_TRUE(e.add_request(std::move(r)).ok());
  std::vector<TokenId> out;
  while (!e.idle())
    for (const StepResult& s : *e.step()) out.push_back(s.token);
  return out;
}

TEST_F(Split, LayerwiseHandoffGivesTheSameTokensAsOneEngine) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    r.id = 10 + i;
    r.prompt = {1, 403, 407, 261, 378};
    for (int j = 0; j < 20 * i; ++j) r.prompt.push_back(300 + (j * 7 + i) % 150);
    r.max_new_tokens = 30;
    r.sampling = {.temperature = i == 2 ? 0.8f : 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 5};
    reqs.push_back(r);
  }

  EngineConfig prompt_cfg;
  prompt_cfg.scheduler.max_batch_tokens = 16;  // chunked prefill: blocks are sent per chunk
  Engine prompt(&weights, prompt_cfg);
  Engine token(&weights, EngineConfig{});
  std::map<SeqId, std::vector<BlockId>> dest;  // token-side tables
  for (const auto& r : reqs) {
    auto table = token.reserve_prefilled(r);
    ASSERT_TRUE(table.ok()) << table.status().message();
    dest[r.id] = *table;
    GenerationRequest p = r;
    p.handoff = true;
    ASSERT_TRUE(prompt.add_request(p).ok());
  }

  const int layers = weights.config.num_layers;
  std::map<SeqId, int> last_layer;
  const size_t half_block = prompt.runner().kv_memory().half_block_bytes;
  prompt.set_handoff_listener([&](int layer, std::span<const HandoffChunk> chunks) {
    for (const HandoffChunk& c : chunks) {
      // Layers arrive in order within a step.
      EXPECT_EQ(layer, (last_layer.count(c.id) ? last_layer[c.id] + 1 : 0) % layers);
      last_layer[c.id] = layer;
      for (int b = c.first_block; b < c.first_block + c.num_blocks; ++b) {
        std::memcpy(token.runner().key_block(layer, dest[c.id][b]),
                    prompt.runner().key_block(layer, c.blocks[b]), half_block);
        std::memcpy(token.runner().value_block(layer, dest[c.id][b]),
                    prompt.runner().value_block(layer, c.blocks[b]), half_block);
      }
    }
  });

  std::map<SeqId, std::vector<TokenId>> out;
  while (!prompt.idle()) {
    for (const StepResult& s : *prompt.step()) {
      ASSERT_EQ(s.finish, FinishReason::kHandoff);
      prompt.release(s.id);
      auto first = token.activate_prefilled(s.id, s.token);
      ASSERT_TRUE(first.ok()) << first.status().message();
      out[s.id].push_back(first->token);
    }
  }
  EXPECT_EQ(prompt.num_free_blocks(), prompt.num_kv_blocks());
  while (!token.idle())
    for (const StepResult& s : *token.step()) out[s.id].push_back(s.token);
  EXPECT_EQ(token.num_free_blocks(), token.num_kv_blocks());
  EXPECT_EQ(token.stats().prompt_tokens, 0);  // the token engine never prefilled

  for (const auto& r : reqs) EXPECT_EQ(out[r.id], run_alone(weights, r)) << "request " << r.id;
}

TEST_F(Split, ReservationIsRefusedWithoutRoomAndFreedOnAbort) {
  EngineConfig cfg;
  cfg.num_kv_blocks = 4;
  Engine token(&weights, cfg);
  GenerationRequest r;
  r.id = 1;
  r.prompt.assign(40, 300);  // 3 blocks
  r.max_new_tokens = 8;
  ASSERT_TRUE(token.reserve_prefilled(r).ok());
  r.id = 2;
  const auto second = token.reserve_prefilled(r);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("no free KV blocks"), std::string::npos);
  token.abort(1);
  EXPECT_EQ(token.num_free_blocks(), 4);
  EXPECT_FALSE(token.activate_prefilled(1, 5).ok());  // reservation is gone
}

}  // namespace
}  // namespace splitwise::engine
