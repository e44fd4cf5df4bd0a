#include "workers/engine/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"
#include "tests/workers/engine/llama3_expect.h"

namespace splitwise::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::filesystem::path write_config(const std::string& text) {
  auto path = testing::fresh_temp_dir() / "config.json";
  std::ofstream(path) << text;
  return path;
}

// A small valid Llama config to edit one key at a time.
json base_config() {
  return json::parse(R"({
    "model_type": "llama", "hidden_act": "silu", "vocab_size": 100, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2})");
}

Result<ModelConfig> parse(const json& config) {
  return parse_hf_config(write_config(config.dump()));
}

void expect_error(const json& config, const std::string& what) {
  auto result = parse(config);
  ASSERT_FALSE(result.ok()) << "expected an error about " << what;
  EXPECT_THAT(result.status().message(), HasSubstr("config.json"));
  EXPECT_THAT(result.status().message(), HasSubstr(what));
}

TEST(ModelConfig, ParsesStories260KHf) {
  SW_REQUIRE_SHARED(path, "models/stories260K-hf/config.json");
  auto c = parse_hf_config(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->max_position, 512);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);
  EXPECT_EQ(c->rope_scaling.type, "default");
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int>{2});
}

TEST(ModelConfig, ParsesTinyLlama3RopeParameters) {
  SW_REQUIRE_SHARED(path, "models/tiny-llama3-gqa/config.json");
  auto c = parse_hf_config(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  expect_llama3_scaling(c.value());
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfig, HubStyleRopeScalingMatchesRopeParameters) {
  SW_REQUIRE_SHARED(path, "models/tiny-llama3-gqa/config.json");
  json config = json::parse(::splitwise::testing::read_file(path));
  json params = config["rope_parameters"];
  config.erase("rope_parameters");
  config["rope_theta"] = params["rope_theta"];
  params.erase("rope_theta");
  config["rope_scaling"] = params;
  auto c = parse(config);
  ASSERT_TRUE(c.ok()) << c.status().message();
  expect_llama3_scaling(c.value());

  // Older hub configs spell the key "type".
  config["rope_scaling"].erase("rope_type");
  config["rope_scaling"]["type"] = "llama3";
  c = parse(config);
  ASSERT_TRUE(c.ok()) << c.status().message();
  expect_llama3_scaling(c.value());
}

TEST(ModelConfig, DefaultsForOptionalKeys) {
  json config = base_config();
  config.erase("num_key_value_heads");
  config.erase("model_type");
  config["head_dim"] = nullptr;
  config["rope_scaling"] = nullptr;
  config["eos_token_id"] = {2, 7};
  auto c = parse(config);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->num_kv_heads, 4);  // MHA
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rope_scaling.type, "default");
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{2, 7}));
}

TEST(ModelConfig, ExplicitHeadDimDiffersFromHiddenOverHeads) {
  json config = base_config();
  config["head_dim"] = 32;
  auto c = parse(config);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->q_dim(), 128);
  EXPECT_EQ(c->kv_dim(), 64);
}

TEST(ModelConfig, RejectsUnknownRopeType) {
  json config = base_config();
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_error(config, "yarn");
  expect_error(config, "rope_scaling.rope_type");
  config.erase("rope_scaling");
  config["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 1e4}, {"factor", 2.0}};
  expect_error(config, "linear");
}

TEST(ModelConfig, RejectsLlama3WithoutItsParameters) {
  json config = base_config();
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_error(config, "rope_scaling.low_freq_factor");
}

TEST(ModelConfig, RejectsOtherArchitectures) {
  json config = base_config();
  config["model_type"] = "gpt2";
  expect_error(config, "model_type");
  config = base_config();
  config["hidden_act"] = "gelu";
  expect_error(config, "hidden_act");
  config = base_config();
  config["attention_bias"] = true;
  expect_error(config, "attention_bias");
}

TEST(ModelConfig, NamesMissingAndMistypedKeys) {
  json config = base_config();
  config.erase("hidden_size");
  expect_error(config, "hidden_size is missing");
  config = base_config();
  config["num_hidden_layers"] = "two";
  expect_error(config, "num_hidden_layers must be an integer");
  config = base_config();
  config["eos_token_id"] = "eos";
  expect_error(config, "eos_token_id");
}

TEST(ModelConfig, RejectsInconsistentSizes) {
  json config = base_config();
  config["num_key_value_heads"] = 3;
  expect_error(config, "num_kv_heads");
  config = base_config();
  config["vocab_size"] = 0;
  expect_error(config, "vocab_size must be positive");
  config = base_config();
  config["eos_token_id"] = 100;
  expect_error(config, "outside the vocabulary");
}

TEST(ModelConfig, RejectsInvalidJsonAndMissingFile) {
  auto bad = parse_hf_config(write_config("{\"hidden_size\": 64,"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("config.json"));
  EXPECT_THAT(bad.status().message(), HasSubstr("invalid JSON"));

  auto missing = parse_hf_config(testing::fresh_temp_dir() / "nope" / "config.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("nope/config.json"));
  EXPECT_THAT(missing.status().message(), HasSubstr("cannot open"));
}

TEST(ModelConfig, ValidateConfigChecksGroupsAndSizes) {
  ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.head_dim = 2;
  c.max_position = 16;
  EXPECT_TRUE(validate_config(c).ok()) << validate_config(c).message();
  c.num_kv_heads = 3;
  EXPECT_THAT(validate_config(c).message(), HasSubstr("not a multiple"));
  c.num_kv_heads = 2;
  c.head_dim = 3;
  EXPECT_THAT(validate_config(c).message(), HasSubstr("odd"));
  c.head_dim = 2;
  c.num_layers = 0;
  EXPECT_THAT(validate_config(c).message(), HasSubstr("num_layers must be positive"));
}

}  // namespace
}  // namespace splitwise::engine
