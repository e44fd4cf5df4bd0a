#include "workers/engine/llama2c_model.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "workers/engine/safetensors.h"

namespace splitwise::engine {
namespace {

constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);
// export.py's versioned formats start with the magic "ak42"; they are a different layout.
constexpr std::uint32_t kVersionedMagic = 0x616b3432;

Status bad_file(const std::filesystem::path& path, const std::string& what) {
  return Status::error(path.string() + ": " + what);
}

// Walks the tensors in file order; every read is bounds-checked against the size check
// done up front, so running past the end is an invariant failure, not an input error.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::uint64_t size) : data_(data), size_(size) {}

  const float* take(std::uint64_t count) {
    SW_CHECK(offset_ + count * sizeof(float) <= size_);
    const auto* out = reinterpret_cast<const float*>(data_ + offset_);
    offset_ += count * sizeof(float);
    return out;
  }
  void copy(std::uint64_t count, float* dst) { std::memcpy(dst, take(count), count * 4); }
  std::uint64_t offset() const { return offset_; }

 private:
  const std::uint8_t* data_;
  std::uint64_t size_;
  std::uint64_t offset_ = kHeaderBytes;
};

Status check_header(const std::filesystem::path& path, const Llama2cHeader& h) {
  if (static_cast<std::uint32_t>(h.dim) == kVersionedMagic) {
    return bad_file(path,
                    "starts with the magic of a versioned llama2.c export; only the "
                    "legacy version-0 .bin format is supported");
  }
  const std::pair<const char*, std::int32_t> positive[] = {
      {"dim", h.dim},         {"hidden_dim", h.hidden_dim}, {"n_layers", h.n_layers},
      {"n_heads", h.n_heads}, {"n_kv_heads", h.n_kv_heads}, {"seq_len", h.seq_len}};
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return bad_file(path, std::string("header field ") + name + " is " + std::to_string(value) +
                                "; not a llama2.c checkpoint?");
    }
  }
  if (h.vocab_size == 0 || h.vocab_size == INT32_MIN) {
    return bad_file(path, "header field vocab_size is " + std::to_string(h.vocab_size));
  }
  if (h.dim % h.n_heads != 0) {
    return bad_file(path, "header: dim " + std::to_string(h.dim) +
                              " is not a multiple of n_heads " + std::to_string(h.n_heads));
  }
  return Status();
}

}  // namespace

ModelConfig llama2c_config(const Llama2cHeader& h) {
  ModelConfig c;
  c.vocab_size = std::abs(h.vocab_size);
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = h.n_heads > 0 ? h.dim / h.n_heads : 0;
  c.max_position = h.seq_len;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_scaling = RopeScaling();
  c.tie_word_embeddings = h.vocab_size > 0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

std::uint64_t llama2c_file_size(const Llama2cHeader& h) {
  // Three int32 factors times 4 bytes can pass 2^64, so sum in 128 bits and saturate.
  using u128 = unsigned __int128;
  const u128 dim = h.dim, hidden = h.hidden_dim, layers = h.n_layers, seq = h.seq_len;
  const u128 vocab = static_cast<u128>(std::abs(static_cast<std::int64_t>(h.vocab_size)));
  const u128 head_size = h.n_heads > 0 ? h.dim / h.n_heads : 0;
  const u128 kv_dim = head_size * static_cast<u128>(h.n_kv_heads);
  u128 floats = vocab * dim;                    // token embeddings
  floats += layers * dim;                       // rms_att
  floats += layers * dim * dim;                 // wq
  floats += 2 * layers * kv_dim * dim;          // wk, wv
  floats += layers * dim * dim;                 // wo
  floats += layers * dim;                       // rms_ffn
  floats += 3 * layers * hidden * dim;          // w1, w2, w3
  floats += dim;                                // rms_final
  floats += 2 * seq * (head_size / 2);          // freq_cis_real, freq_cis_imag (unused)
  if (h.vocab_size < 0) floats += vocab * dim;  // classifier
  const u128 bytes = kHeaderBytes + floats * sizeof(float);
  return bytes > UINT64_MAX ? UINT64_MAX : static_cast<std::uint64_t>(bytes);
}

void permute_rope_rows(const float* src, int num_heads, int head_dim, int cols, float* dst) {
  const int half = head_dim / 2;
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * sizeof(float);
  for (int head = 0; head < num_heads; ++head) {
    const std::size_t base = static_cast<std::size_t>(head) * head_dim;
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < half; ++i) {
        std::memcpy(dst + (base + h * half + i) * cols, src + (base + 2 * i + h) * cols, row_bytes);
      }
    }
  }
}

Result<ModelWeights> load_llama2c_model(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped.ok()) return mapped.status();
  const std::uint64_t actual = mapped->size();
  if (actual < kHeaderBytes) {
    return bad_file(
        path, "is " + std::to_string(actual) + " bytes, too small for the 28-byte llama2.c header");
  }
  Llama2cHeader h;
  std::memcpy(&h, mapped->data(), kHeaderBytes);  // the format is little-endian, as is x86
  SW_RETURN_IF_ERROR(check_header(path, h));
  const std::uint64_t expected = llama2c_file_size(h);
  if (actual < expected) {
    return bad_file(path, "is truncated: the header implies " + std::to_string(expected) +
                              " bytes but the file has " + std::to_string(actual));
  }
  if (actual > expected) {
    return bad_file(path, "has " + std::to_string(actual - expected) +
                              " trailing bytes: the header implies " + std::to_string(expected) +
                              " bytes but the file has " + std::to_string(actual) +
                              " (a wrong header, or not a llama2.c file?)");
  }

  ModelWeights w;
  w.config = llama2c_config(h);
  SW_RETURN_IF_ERROR(validate_config(w.config).with_context(path.string()));
  const ModelConfig& c = w.config;
  const std::uint64_t dim = c.hidden_size, hidden = c.intermediate_size;
  const std::uint64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const std::uint64_t layers = c.num_layers;
  Cursor in(mapped->data(), actual);

  w.embed.resize(c.vocab_size * dim);
  in.copy(w.embed.size(), w.embed.data());
  w.layers.resize(layers);
  for (LayerWeights& l : w.layers) {
    l.attn_norm.resize(dim);
    l.wqkv.resize((q_dim + 2 * kv_dim) * dim);
    l.wo.resize(dim * q_dim);
    l.ffn_norm.resize(dim);
    l.w_gate_up.resize(2 * hidden * dim);
    l.w_down.resize(dim * hidden);
  }
  // The file stores each tensor for all layers before the next tensor begins.
  for (LayerWeights& l : w.layers) in.copy(dim, l.attn_norm.data());
  for (LayerWeights& l : w.layers) {
    permute_rope_rows(in.take(q_dim * dim), c.num_heads, c.head_dim, c.hidden_size, l.wqkv.data());
  }
  for (LayerWeights& l : w.layers) {
    permute_rope_rows(in.take(kv_dim * dim), c.num_kv_heads, c.head_dim, c.hidden_size,
                      l.wqkv.data() + q_dim * dim);
  }
  for (LayerWeights& l : w.layers) in.copy(kv_dim * dim, l.wqkv.data() + (q_dim + kv_dim) * dim);
  for (LayerWeights& l : w.layers) in.copy(dim * q_dim, l.wo.data());
  for (LayerWeights& l : w.layers) in.copy(dim, l.ffn_norm.data());
  for (LayerWeights& l : w.layers) in.copy(hidden * dim, l.w_gate_up.data());  // w1: gate
  for (LayerWeights& l : w.layers) in.copy(dim * hidden, l.w_down.data());     // w2: down
  for (LayerWeights& l : w.layers) in.copy(hidden * dim, l.w_gate_up.data() + hidden * dim);
  w.final_norm.resize(dim);
  in.copy(dim, w.final_norm.data());
  // The engine computes its own RoPE tables (it needs theta and scaling anyway).
  in.take(2 * static_cast<std::uint64_t>(h.seq_len) * (c.head_dim / 2));
  if (!c.tie_word_embeddings) {
    w.lm_head.resize(c.vocab_size * dim);
    in.copy(w.lm_head.size(), w.lm_head.data());
  }
  SW_CHECK(in.offset() == actual);
  return w;
}

}  // namespace splitwise::engine
