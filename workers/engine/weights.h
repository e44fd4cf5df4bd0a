// Model weights in the CPU backend's layout (fp32, row-major [out, in]).
#pragma once

#include <filesystem>
#include <vector>

#include "workers/engine/model_config.h"
#include "workers/engine/status.h"

namespace splitwise::engine {

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  // [q_dim + 2 * kv_dim, hidden]: Q rows, then K rows, then V rows. Q and K rows use the
  // Hugging Face rotate-half RoPE order (llama2.c files are permuted into it at load).
  std::vector<float> wqkv;
  std::vector<float> wo;         // [hidden, q_dim]
  std::vector<float> ffn_norm;   // [hidden]
  std::vector<float> w_gate_up;  // [2 * intermediate, hidden]: gate (w1) rows, then up (w3)
  std::vector<float> w_down;     // [hidden, intermediate]
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; empty when tied to embed

  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

// Loads a Hugging Face directory (config.json + *.safetensors, fp32/bf16/fp16) or a
// llama2.c .bin file. Every failure names the file and the problem.
Result<ModelWeights> load_model(const std::filesystem::path& path);

// Only the hyper-parameters of the same paths (config.json, or the llama2.c header),
// for processes that need the shape but not the weights (the router).
Result<ModelConfig> load_model_config(const std::filesystem::path& path);

}  // namespace splitwise::engine
