// llama2.c checkpoints (the legacy "version 0" .bin export): a 7-int32 header, then
// fp32 tensors in a fixed order. See load_llama2c_model for the layout checks.
#pragma once

#include <cstdint>
#include <filesystem>

#include "workers/engine/model_config.h"
#include "workers/engine/status.h"
#include "workers/engine/weights.h"

namespace splitwise::engine {

// The header of a llama2.c .bin as written by export.py / train.py.
struct Llama2cHeader {
  std::int32_t dim = 0;
  std::int32_t hidden_dim = 0;
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;
  std::int32_t n_kv_heads = 0;
  std::int32_t vocab_size = 0;  // negative: an untied classifier follows the other tensors
  std::int32_t seq_len = 0;
};

// The model config a llama2.c header implies (theta 10000, eps 1e-5, bos 1, eos 2).
ModelConfig llama2c_config(const Llama2cHeader& header);

// Bytes a well-formed file with this header has; the loader insists on equality so a
// truncated download or a file of another format cannot load as garbage weights.
std::uint64_t llama2c_file_size(const Llama2cHeader& header);

// Loads a .bin into the engine layout. llama2.c applies RoPE to interleaved pairs
// (x[2i], x[2i+1]); the engine rotates halves (x[i], x[i + hd/2]) as Hugging Face does,
// so Q and K rows are permuted per head while they are copied.
Result<ModelWeights> load_llama2c_model(const std::filesystem::path& path);

// Copies a [num_heads * head_dim, cols] matrix from interleaved-pair row order to
// rotate-half order: dst row (h * head_dim/2 + i) of a head = src row (2i + h), h in {0,1}.
void permute_rope_rows(const float* src, int num_heads, int head_dim, int cols, float* dst);

}  // namespace splitwise::engine
