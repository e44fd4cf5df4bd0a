// Model hyper-parameters, read from a Hugging Face config.json or a llama2.c header.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::engine {

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position = 0;  // context length the model was trained for
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  std::vector<int> eos_token_ids{2};
  // Reproduces transformers run in bf16, whose RoPE inv_freq buffer is cast to bf16 with
  // the model: at position 300 that shifts angles by up to ~0.6 rad. Off by default (the
  // fp32 table is the model's real function); tests comparing with such goldens set it.
  bool rope_inv_freq_bf16 = false;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
};

// Parses config.json. Accepts rope_theta + rope_scaling (hub models), rope_parameters
// (transformers 5), head_dim (else hidden/heads), missing num_key_value_heads (MHA).
Result<ModelConfig> parse_hf_config(const std::filesystem::path& config_json);

// Rejects configs no model can have (zero sizes, heads not dividing, GQA groups uneven).
Status validate_config(const ModelConfig& config);

}  // namespace splitwise::engine
