#include "workers/engine/weights.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"
#include "tests/workers/engine/llama3_expect.h"
#include "workers/engine/llama2c_model.h"

namespace splitwise::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
namespace fs = std::filesystem;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A writable copy of a shared model directory (the shared files are read-only).
fs::path copy_model(const fs::path& src) {
  const auto dir = testing::fresh_temp_dir() / src.filename();
  fs::create_directories(dir);
  for (const char* name : {"config.json", "model.safetensors"}) {
    write_bytes(dir / name, ::splitwise::testing::read_file(src / name));
  }
  return dir;
}

void edit_config(const fs::path& dir, const std::function<void(json&)>& edit) {
  json config = json::parse(::splitwise::testing::read_file(dir / "config.json"));
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
}

void expect_error(const fs::path& path, const std::vector<std::string>& parts) {
  auto model = load_model(path);
  ASSERT_FALSE(model.ok()) << "loaded " << path;
  for (const auto& part : parts) EXPECT_THAT(model.status().message(), HasSubstr(part));
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
  }
  return worst;
}

void expect_same_weights(const ModelWeights& a, const ModelWeights& b, float tol) {
  EXPECT_LE(max_abs_diff(a.embed, b.embed), tol);
  EXPECT_LE(max_abs_diff(a.final_norm, b.final_norm), tol);
  EXPECT_LE(max_abs_diff(a.lm_head, b.lm_head), tol);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const LayerWeights &x = a.layers[i], &y = b.layers[i];
    EXPECT_LE(max_abs_diff(x.attn_norm, y.attn_norm), tol);
    EXPECT_LE(max_abs_diff(x.wqkv, y.wqkv), tol);
    EXPECT_LE(max_abs_diff(x.wo, y.wo), tol);
    EXPECT_LE(max_abs_diff(x.ffn_norm, y.ffn_norm), tol);
    EXPECT_LE(max_abs_diff(x.w_gate_up, y.w_gate_up), tol);
    EXPECT_LE(max_abs_diff(x.w_down, y.w_down), tol);
  }
}

// ---- positive ----

TEST(LoadModel, LoadsStories260KBin) {
  SW_REQUIRE_SHARED(path, "models/stories260K/stories260K.bin");
  auto w = load_model(path);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const ModelConfig& c = w->config;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(w->lm_head.empty());
  EXPECT_EQ(w->lm_head_data(), w->embed.data());
  EXPECT_EQ(w->embed.size(), 512u * 64u);
  ASSERT_EQ(w->layers.size(), 5u);
  EXPECT_EQ(w->layers[0].wqkv.size(), (64u + 2 * 32u) * 64u);
  EXPECT_EQ(w->layers[0].w_gate_up.size(), 2u * 172u * 64u);
  EXPECT_EQ(w->layers[0].w_down.size(), 64u * 172u);
}

// The HF copy of stories260K was converted by transformers, which permutes Q/K rows into
// rotate-half order; matching it proves the loader applies the same permutation.
TEST(LoadModel, Stories260KBinEqualsHfAfterPermutation) {
  SW_REQUIRE_SHARED(bin, "models/stories260K/stories260K.bin");
  SW_REQUIRE_SHARED(hf, "models/stories260K-hf");
  auto a = load_model(bin);
  auto b = load_model(hf);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  expect_same_weights(a.value(), b.value(), 1e-6f);

  // Without the permutation the files disagree, so the comparison above is not vacuous.
  const std::string raw = ::splitwise::testing::read_file(bin);
  std::vector<float> wq0(64 * 64);
  std::memcpy(wq0.data(), raw.data() + 28 + 4 * (512 * 64 + 5 * 64), wq0.size() * 4);
  std::vector<float> hf_q0(b->layers[0].wqkv.begin(), b->layers[0].wqkv.begin() + 64 * 64);
  EXPECT_GT(max_abs_diff(wq0, hf_q0), 1e-3f);
}

TEST(LoadModel, LoadsTinyLlama3Bf16) {
  SW_REQUIRE_SHARED(dir, "models/tiny-llama3-gqa");
  auto w = load_model(dir);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const ModelConfig& c = w->config;
  expect_llama3_scaling(c);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_FALSE(c.tie_word_embeddings);
  ASSERT_EQ(w->lm_head.size(), 1024u * 128u);
  EXPECT_NE(w->lm_head_data(), w->embed.data());
  EXPECT_GT(max_abs_diff(w->lm_head, w->embed), 0.0f);
  ASSERT_EQ(w->layers.size(), 4u);
  EXPECT_EQ(w->layers[3].wqkv.size(), (128u + 2 * 64u) * 128u);
  // Every bf16 value widens exactly, so its low 16 bits are zero.
  std::uint32_t low_bits = 0;
  for (float v : w->layers[2].w_down) low_bits |= std::bit_cast<std::uint32_t>(v) & 0xffffu;
  EXPECT_EQ(low_bits, 0u);
}

TEST(LoadModel, HubStyleConfigLoadsLikeRopeParameters) {
  SW_REQUIRE_SHARED(src, "models/tiny-llama3-gqa");
  const auto dir = testing::fresh_temp_dir() / "hub";
  fs::create_directories(dir);
  fs::create_symlink(src / "model.safetensors", dir / "model.safetensors");
  write_bytes(dir / "config.json", ::splitwise::testing::read_file(src / "config.json"));
  edit_config(dir, [](json& c) {
    json params = c["rope_parameters"];
    c.erase("rope_parameters");
    c["rope_theta"] = params["rope_theta"];
    params.erase("rope_theta");
    c["rope_scaling"] = params;
  });
  auto hub = load_model(dir);
  auto v5 = load_model(src);
  ASSERT_TRUE(hub.ok()) << hub.status().message();
  ASSERT_TRUE(v5.ok()) << v5.status().message();
  const RopeScaling &a = hub->config.rope_scaling, &b = v5->config.rope_scaling;
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.factor, b.factor);
  EXPECT_EQ(a.low_freq_factor, b.low_freq_factor);
  EXPECT_EQ(a.high_freq_factor, b.high_freq_factor);
  EXPECT_EQ(a.original_max_position, b.original_max_position);
  EXPECT_EQ(hub->config.rope_theta, v5->config.rope_theta);
  expect_same_weights(hub.value(), v5.value(), 0.0f);
}

// A synthetic untied llama2.c file whose every float is its own index, so each tensor's
// place (and the Q/K row permutation) can be checked by value.
TEST(LoadModel, Llama2cUntiedLayoutAndPermutation) {
  const std::int32_t header[7] = {8, 6, 1, 2, 1, -5, 3};  // head_dim 4, kv_dim 4
  Llama2cHeader h;
  std::memcpy(&h, header, sizeof(header));
  const std::uint64_t floats = (llama2c_file_size(h) - 28) / 4;
  std::vector<float> data(floats);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  const auto path = testing::fresh_temp_dir() / "tiny.bin";
  write_bytes(path, std::string(reinterpret_cast<const char*>(header), sizeof(header)) +
                        std::string(reinterpret_cast<const char*>(data.data()), floats * 4));
  auto w = load_model(path);
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_FALSE(w->config.tie_word_embeddings);
  EXPECT_EQ(w->config.vocab_size, 5);
  ASSERT_EQ(w->lm_head.size(), 40u);
  EXPECT_EQ(w->lm_head.back(), static_cast<float>(floats - 1));  // classifier is last
  EXPECT_EQ(w->lm_head.front(), static_cast<float>(floats - 40));
  const std::size_t wq = 40 + 8;  // after embeddings and rms_att
  const auto row_start = [&](int row) {
    return static_cast<std::size_t>(w->layers[0].wqkv[row * 8]);
  };
  // Head 0 of Q: old rows 0,1,2,3 become rows 0,2,1,3 (evens first, then odds).
  EXPECT_EQ(row_start(0), wq + 0 * 8);
  EXPECT_EQ(row_start(1), wq + 2 * 8);
  EXPECT_EQ(row_start(2), wq + 1 * 8);
  EXPECT_EQ(row_start(3), wq + 3 * 8);
  EXPECT_EQ(row_start(5), wq + 6 * 8);  // head 1
  const std::size_t wk = wq + 64;
  EXPECT_EQ(row_start(8 + 1), wk + 2 * 8);
  const std::size_t wv = wk + 32;
  EXPECT_EQ(row_start(12 + 1), wv + 1 * 8);  // V is not permuted
  EXPECT_EQ(static_cast<std::size_t>(w->layers[0].wo.front()), wv + 32);
}

// ---- errors: each names the file and the problem ----

TEST(LoadModel, MissingPath) {
  expect_error(testing::fresh_temp_dir() / "no_such_model", {"no_such_model", "does not exist"});
}

TEST(LoadModel, DirectoryWithoutConfig) {
  const auto dir = testing::fresh_temp_dir() / "bare";
  fs::create_directories(dir);
  expect_error(dir, {"bare", "no config.json"});
}

TEST(LoadModel, TruncatedSafetensors) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") - 1000);
  expect_error(dir, {"model.safetensors", "truncated"});
}

TEST(LoadModel, ConfigHiddenSizeDoesNotMatchTensors) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  edit_config(dir, [](json& c) { c["hidden_size"] = 96; });
  expect_error(dir, {"model.safetensors: tensor model.embed_tokens.weight has shape [512,64] "
                     "but config.json implies [512,96]"});
}

TEST(LoadModel, ConfigKvHeadsDoNotMatchTensors) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  edit_config(dir, [](json& c) { c["num_key_value_heads"] = 8; });
  expect_error(
      dir, {"model.safetensors", "self_attn.k_proj.weight has shape [32,64]", "implies [64,64]"});
}

TEST(LoadModel, ConfigLayerCountDoesNotMatchTensors) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  edit_config(dir, [](json& c) { c["num_hidden_layers"] = 6; });
  expect_error(dir, {"model.layers.5.", "not found in", dir.string()});
  edit_config(dir, [](json& c) { c["num_hidden_layers"] = 4; });
  expect_error(dir, {"model.safetensors", "layer 4", "num_hidden_layers 4"});
}

TEST(LoadModel, UntiedConfigWithoutLmHead) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  edit_config(dir, [](json& c) { c["tie_word_embeddings"] = false; });
  expect_error(dir, {"lm_head.weight not found", dir.string(), "tie_word_embeddings"});
}

TEST(LoadModel, BadConfigInModelDirectory) {
  SW_REQUIRE_SHARED(src, "models/stories260K-hf");
  const auto dir = copy_model(src);
  edit_config(dir, [](json& c) { c["rope_parameters"]["rope_type"] = "yarn"; });
  expect_error(dir, {"config.json", "yarn"});
}

TEST(LoadModel, TruncatedLlama2cBin) {
  SW_REQUIRE_SHARED(src, "models/stories260K/stories260K.bin");
  const std::string bytes = ::splitwise::testing::read_file(src);
  const auto path = testing::fresh_temp_dir() / "stories260K.bin";
  write_bytes(path, bytes.substr(0, bytes.size() - 100));
  expect_error(path, {"stories260K.bin", "truncated", "1056540 bytes",
                      "the file has " + std::to_string(bytes.size() - 100)});
  write_bytes(path, bytes.substr(0, 20));
  expect_error(path, {"stories260K.bin", "too small"});
}

TEST(LoadModel, Llama2cBinWithTrailingBytes) {
  SW_REQUIRE_SHARED(src, "models/stories260K/stories260K.bin");
  const auto path = testing::fresh_temp_dir() / "stories260K.bin";
  write_bytes(path, ::splitwise::testing::read_file(src) + std::string(12, '\0'));
  expect_error(path, {"stories260K.bin", "12 trailing bytes", "1056540"});
}

TEST(LoadModel, Llama2cBinWithBadHeader) {
  const auto dir = testing::fresh_temp_dir();
  const std::int32_t zero_dim[7] = {0, 6, 1, 2, 1, 5, 3};
  write_bytes(dir / "zero.bin", std::string(reinterpret_cast<const char*>(zero_dim), 28));
  expect_error(dir / "zero.bin", {"zero.bin", "dim is 0"});
  const std::int32_t versioned[7] = {0x616b3432, 2, 0, 0, 0, 0, 0};
  write_bytes(dir / "v2.bin", std::string(reinterpret_cast<const char*>(versioned), 28));
  expect_error(dir / "v2.bin", {"v2.bin", "versioned"});
}

}  // namespace
}  // namespace splitwise::engine
