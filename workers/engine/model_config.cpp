#include "workers/engine/model_config.h"

#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

namespace splitwise::engine {
namespace {

using nlohmann::json;

// Reads keys of one JSON object and names the file and the full key in every error, e.g.
// "config.json: key rope_scaling.factor must be a number, got string".
class ConfigReader {
 public:
  ConfigReader(const std::filesystem::path& file, const json& object, std::string prefix = "")
      : file_(file), object_(object), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return object_.contains(key) && !object_[key].is_null(); }
  const json& at(const char* key) const { return object_[key]; }
  std::string key_name(const char* key) const { return prefix_ + key; }

  Status error(const char* key, const std::string& what) const {
    return Status::error(file_.string() + ": key " + key_name(key) + " " + what);
  }

  Status get_int(const char* key, int* out, std::optional<int> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) *out = *fallback;
      return fallback ? Status() : error(key, "is missing");
    }
    const json& value = at(key);
    if (!value.is_number_integer()) return error(key, "must be an integer, got " + dump(value));
    const auto wide = value.get<long long>();
    if (wide < INT_MIN || wide > INT_MAX) return error(key, "is out of range: " + dump(value));
    *out = static_cast<int>(wide);
    return Status();
  }

  Status get_float(const char* key, float* out,
                   std::optional<float> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) *out = *fallback;
      return fallback ? Status() : error(key, "is missing");
    }
    const json& value = at(key);
    if (!value.is_number()) return error(key, "must be a number, got " + dump(value));
    *out = value.get<float>();
    return Status();
  }

  Status get_string(const char* key, std::string* out, const std::string& fallback) const {
    if (!has(key)) {
      *out = fallback;
      return Status();
    }
    if (!at(key).is_string()) return error(key, "must be a string, got " + dump(at(key)));
    *out = at(key).get<std::string>();
    return Status();
  }

  Status get_bool(const char* key, bool* out, bool fallback) const {
    if (!has(key)) {
      *out = fallback;
      return Status();
    }
    if (!at(key).is_boolean()) return error(key, "must be true or false, got " + dump(at(key)));
    *out = at(key).get<bool>();
    return Status();
  }

 private:
  static std::string dump(const json& value) {
    std::string text = value.dump();
    return text.size() > 40 ? text.substr(0, 40) + "..." : text;
  }

  const std::filesystem::path& file_;
  const json& object_;
  std::string prefix_;
};

// Reads the rope type and its llama3 parameters from either rope_scaling (hub) or
// rope_parameters (transformers 5); `params` is that object, `prefix` its key name.
Status read_rope_scaling(const ConfigReader& params, RopeScaling* out) {
  std::string type;
  const char* type_key = params.has("rope_type") ? "rope_type" : "type";
  SW_RETURN_IF_ERROR(params.get_string(type_key, &type, "default"));
  if (type == "default") {
    *out = RopeScaling();
    return Status();
  }
  if (type != "llama3") {
    return params.error(type_key,
                        "names unsupported rope type '" + type + "' (supported: default, llama3)");
  }
  out->type = type;
  SW_RETURN_IF_ERROR(params.get_float("factor", &out->factor));
  SW_RETURN_IF_ERROR(params.get_float("low_freq_factor", &out->low_freq_factor));
  SW_RETURN_IF_ERROR(params.get_float("high_freq_factor", &out->high_freq_factor));
  return params.get_int("original_max_position_embeddings", &out->original_max_position);
}

Status parse_fields(const std::filesystem::path& file, const json& root, ModelConfig* config) {
  const ConfigReader top(file, root);

  // Only the Llama architecture is implemented; a config for another family would load
  // tensors with the same names but compute something else.
  std::string model_type;
  SW_RETURN_IF_ERROR(top.get_string("model_type", &model_type, "llama"));
  if (model_type != "llama") {
    return top.error("model_type", "is '" + model_type + "' but only 'llama' is supported");
  }
  std::string act;
  SW_RETURN_IF_ERROR(top.get_string("hidden_act", &act, "silu"));
  if (act != "silu")
    return top.error("hidden_act", "is '" + act + "' but only 'silu' is supported");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    SW_RETURN_IF_ERROR(top.get_bool(key, &bias, false));
    if (bias) return top.error(key, "is true but biases are not supported");
  }

  SW_RETURN_IF_ERROR(top.get_int("vocab_size", &config->vocab_size));
  SW_RETURN_IF_ERROR(top.get_int("hidden_size", &config->hidden_size));
  SW_RETURN_IF_ERROR(top.get_int("intermediate_size", &config->intermediate_size));
  SW_RETURN_IF_ERROR(top.get_int("num_hidden_layers", &config->num_layers));
  SW_RETURN_IF_ERROR(top.get_int("num_attention_heads", &config->num_heads));
  if (config->num_heads <= 0) return top.error("num_attention_heads", "must be positive");
  SW_RETURN_IF_ERROR(top.get_int("num_key_value_heads", &config->num_kv_heads, config->num_heads));
  if (top.has("head_dim")) {
    SW_RETURN_IF_ERROR(top.get_int("head_dim", &config->head_dim));
  } else if (config->hidden_size % config->num_heads != 0) {
    return top.error("head_dim",
                     "is missing and hidden_size is not a multiple of "
                     "num_attention_heads");
  } else {
    config->head_dim = config->hidden_size / config->num_heads;
  }
  SW_RETURN_IF_ERROR(top.get_int("max_position_embeddings", &config->max_position));
  // 1e-6 is LlamaConfig's default, which transformers uses when the key is absent.
  SW_RETURN_IF_ERROR(top.get_float("rms_norm_eps", &config->rms_norm_eps, 1e-6f));
  SW_RETURN_IF_ERROR(top.get_bool("tie_word_embeddings", &config->tie_word_embeddings, false));
  SW_RETURN_IF_ERROR(top.get_int("bos_token_id", &config->bos_token_id, config->bos_token_id));

  if (top.has("eos_token_id")) {
    const json& eos = top.at("eos_token_id");
    config->eos_token_ids.clear();
    if (eos.is_number_integer()) {
      config->eos_token_ids.push_back(eos.get<int>());
    } else if (eos.is_array() && !eos.empty()) {
      for (const json& id : eos) {
        if (!id.is_number_integer()) {
          return top.error("eos_token_id", "must be an integer or a list of integers");
        }
        config->eos_token_ids.push_back(id.get<int>());
      }
    } else {
      return top.error("eos_token_id", "must be an integer or a non-empty list of integers");
    }
  }

  // RoPE: transformers 5 nests theta and scaling in rope_parameters; hub configs keep
  // rope_theta at the top and scaling (or null) in rope_scaling.
  SW_RETURN_IF_ERROR(top.get_float("rope_theta", &config->rope_theta, 10000.0f));
  config->rope_scaling = RopeScaling();
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!top.has(key)) continue;
    if (!top.at(key).is_object()) return top.error(key, "must be an object or null");
    const ConfigReader params(file, top.at(key), std::string(key) + ".");
    SW_RETURN_IF_ERROR(params.get_float("rope_theta", &config->rope_theta, config->rope_theta));
    return read_rope_scaling(params, &config->rope_scaling);
  }
  return Status();
}

}  // namespace

Result<ModelConfig> parse_hf_config(const std::filesystem::path& config_json) {
  std::ifstream in(config_json);
  if (!in) return Status::error(config_json.string() + ": cannot open (missing or unreadable)");
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    return Status::error(config_json.string() + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) return Status::error(config_json.string() + ": not a JSON object");
  ModelConfig config;
  SW_RETURN_IF_ERROR(parse_fields(config_json, root, &config));
  SW_RETURN_IF_ERROR(validate_config(config).with_context(config_json.string()));
  return config;
}

Status validate_config(const ModelConfig& c) {
  const std::pair<const char*, int> positive[] = {{"vocab_size", c.vocab_size},
                                                  {"hidden_size", c.hidden_size},
                                                  {"intermediate_size", c.intermediate_size},
                                                  {"num_layers", c.num_layers},
                                                  {"num_heads", c.num_heads},
                                                  {"num_kv_heads", c.num_kv_heads},
                                                  {"head_dim", c.head_dim},
                                                  {"max_position", c.max_position}};
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return Status::error(std::string(name) + " must be positive, got " + std::to_string(value));
    }
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return Status::error("num_heads (" + std::to_string(c.num_heads) +
                         ") is not a multiple of num_kv_heads (" + std::to_string(c.num_kv_heads) +
                         "): query groups would be uneven");
  }
  if (c.head_dim % 2 != 0) {
    return Status::error("head_dim " + std::to_string(c.head_dim) +
                         " is odd; rotary embeddings rotate pairs");
  }
  if (!(c.rms_norm_eps > 0.0f)) return Status::error("rms_norm_eps must be positive");
  if (!(c.rope_theta > 0.0f)) return Status::error("rope_theta must be positive");
  const RopeScaling& r = c.rope_scaling;
  if (r.type != "default" && r.type != "llama3") {
    return Status::error("unsupported rope scaling type '" + r.type + "'");
  }
  if (r.type == "llama3") {
    // The llama3 formula divides by (high - low) and by the original context length.
    if (!(r.factor > 0.0f) || !(r.high_freq_factor > r.low_freq_factor) ||
        !(r.low_freq_factor > 0.0f) || r.original_max_position <= 0) {
      return Status::error(
          "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < "
          "high_freq_factor and original_max_position_embeddings > 0");
    }
  }
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size) {
    return Status::error("bos_token_id " + std::to_string(c.bos_token_id) +
                         " is outside the vocabulary of " + std::to_string(c.vocab_size));
  }
  if (c.eos_token_ids.empty()) return Status::error("no eos token id");
  for (int id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return Status::error("eos token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(c.vocab_size));
    }
  }
  return Status();
}

}  // namespace splitwise::engine
