#include "workers/engine/weights.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "workers/engine/llama2c_model.h"
#include "workers/engine/safetensors.h"

namespace splitwise::engine {
namespace {

using Shape = std::vector<std::int64_t>;

// Reads named tensors of a Hugging Face directory straight into their final place in the
// engine layout, converting dtype on the way (one pass over the mapped bytes).
class HfReader {
 public:
  explicit HfReader(const SafetensorsModel& files) : files_(files) {}

  Status read(const std::string& name, const Shape& expected, float* dst) const {
    const TensorInfo* t = files_.find(name);
    if (t == nullptr) {
      return Status::error("tensor " + name + " not found in " + files_.dir().string() +
                           " (config.json implies it; wrong num_hidden_layers, or missing shard?)");
    }
    if (t->shape != expected) {
      return Status::error(t->file->string() + ": tensor " + name + " has shape " +
                           shape_string(t->shape) + " but config.json implies " +
                           shape_string(expected));
    }
    convert_to_fp32(*t, dst);
    return Status();
  }

  // Reads into a fresh vector of the expected size.
  Status read(const std::string& name, const Shape& expected, std::vector<float>* dst) const {
    std::int64_t n = 1;
    for (std::int64_t d : expected) n *= d;
    dst->resize(static_cast<std::size_t>(n));
    return read(name, expected, dst->data());
  }

 private:
  const SafetensorsModel& files_;
};

// A checkpoint with more layers than config.json names is a config/weights mismatch as
// surely as a missing layer, even though nothing would fail to load.
Status check_no_extra_layers(const SafetensorsModel& files, int num_layers) {
  const std::string prefix = "model.layers.";
  for (const std::string& name : files.tensor_names()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const int layer = std::atoi(name.c_str() + prefix.size());
    if (layer >= num_layers) {
      return Status::error(files.find(name)->file->string() + ": tensor " + name +
                           " belongs to layer " + std::to_string(layer) +
                           " but config.json has num_hidden_layers " + std::to_string(num_layers));
    }
  }
  return Status();
}

Result<ModelWeights> load_hf_model(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec)) {
    return Status::error(dir.string() +
                         " has no config.json; a model directory needs "
                         "config.json and *.safetensors (or pass a llama2.c .bin)");
  }
  auto config = parse_hf_config(config_path);
  if (!config.ok()) return config.status();
  auto files = SafetensorsModel::open(dir);
  if (!files.ok()) return files.status();

  ModelWeights w;
  w.config = config.value();
  const ModelConfig& c = w.config;
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const std::int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  SW_RETURN_IF_ERROR(check_no_extra_layers(files.value(), c.num_layers));
  const HfReader r(files.value());

  SW_RETURN_IF_ERROR(r.read("model.embed_tokens.weight", {c.vocab_size, hidden}, &w.embed));
  w.layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    SW_RETURN_IF_ERROR(r.read(p + "input_layernorm.weight", {hidden}, &l.attn_norm));
    SW_RETURN_IF_ERROR(r.read(p + "post_attention_layernorm.weight", {hidden}, &l.ffn_norm));
    l.wqkv.resize((q_dim + 2 * kv_dim) * hidden);
    float* qkv = l.wqkv.data();
    SW_RETURN_IF_ERROR(r.read(p + "self_attn.q_proj.weight", {q_dim, hidden}, qkv));
    SW_RETURN_IF_ERROR(
        r.read(p + "self_attn.k_proj.weight", {kv_dim, hidden}, qkv + q_dim * hidden));
    SW_RETURN_IF_ERROR(
        r.read(p + "self_attn.v_proj.weight", {kv_dim, hidden}, qkv + (q_dim + kv_dim) * hidden));
    SW_RETURN_IF_ERROR(r.read(p + "self_attn.o_proj.weight", {hidden, q_dim}, &l.wo));
    l.w_gate_up.resize(2 * inter * hidden);
    SW_RETURN_IF_ERROR(r.read(p + "mlp.gate_proj.weight", {inter, hidden}, l.w_gate_up.data()));
    SW_RETURN_IF_ERROR(
        r.read(p + "mlp.up_proj.weight", {inter, hidden}, l.w_gate_up.data() + inter * hidden));
    SW_RETURN_IF_ERROR(r.read(p + "mlp.down_proj.weight", {hidden, inter}, &l.w_down));
  }
  SW_RETURN_IF_ERROR(r.read("model.norm.weight", {hidden}, &w.final_norm));
  // Tied checkpoints sometimes still carry lm_head.weight (a copy of the embedding); the
  // config decides, so it is ignored then.
  if (!c.tie_word_embeddings) {
    if (files->find("lm_head.weight") == nullptr) {
      return Status::error("tensor lm_head.weight not found in " + dir.string() +
                           " but config.json has tie_word_embeddings false");
    }
    SW_RETURN_IF_ERROR(r.read("lm_head.weight", {c.vocab_size, hidden}, &w.lm_head));
  }
  return w;
}

}  // namespace

Result<ModelWeights> load_model(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return Status::error("model path " + path.string() + " does not exist");
  }
  if (std::filesystem::is_directory(status)) return load_hf_model(path);
  if (std::filesystem::is_regular_file(status)) return load_llama2c_model(path);
  return Status::error("model path " + path.string() +
                       " is neither a directory (Hugging Face) nor a file (llama2.c .bin)");
}

Result<ModelConfig> load_model_config(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) return parse_hf_config(path / "config.json");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("model path " + path.string() + " cannot be opened");
  Llama2cHeader h;
  in.read(reinterpret_cast<char*>(&h), sizeof(h));
  if (!in) return Status::error(path.string() + " is too short for a llama2.c header");
  ModelConfig config = llama2c_config(h);
  SW_RETURN_IF_ERROR(validate_config(config).with_context(path.string()));
  return config;
}

}  // namespace splitwise::engine
