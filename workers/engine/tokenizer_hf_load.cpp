// Parsing and validation of tokenizer.json for HfBpeTokenizer.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>

#include "workers/engine/tokenizer_hf.h"
#include "workers/engine/utf8.h"

namespace splitwise::engine {

using nlohmann::json;

class HfBpeParser {
 public:
  HfBpeParser(HfBpeTokenizer& tok, std::string name) : tok_(tok), name_(std::move(name)) {}

  Status parse(const json& root, int model_vocab_size) {
    if (!root.is_object()) return fail("top level is not a JSON object");
    SW_RETURN_IF_ERROR(check_normalizer(root.value("normalizer", json())));
    SW_RETURN_IF_ERROR(parse_pre_tokenizer(root.value("pre_tokenizer", json())));
    SW_RETURN_IF_ERROR(check_decoder(root.value("decoder", json())));
    if (!root.contains("model")) return fail("no \"model\"");
    SW_RETURN_IF_ERROR(parse_model(root.at("model")));
    SW_RETURN_IF_ERROR(parse_added_tokens(root.value("added_tokens", json::array())));
    SW_RETURN_IF_ERROR(build_tables(model_vocab_size));
    SW_RETURN_IF_ERROR(parse_merges(root.at("model").value("merges", json::array())));
    pick_bos_eos();
    return Status();
  }

 private:
  Status fail(const std::string& what) const { return Status::error(name_ + ": " + what); }
  Status unsupported(const std::string& component, const json& node) const {
    const std::string type = node.is_object() ? node.value("type", "?") : node.dump();
    return fail("unsupported " + component + " '" + type +
                "' (only byte-level BPE tokenizers are supported)");
  }

  Status check_normalizer(const json& n) {
    if (n.is_null()) return Status();
    if (n.value("type", "") == "Sequence" && n.value("normalizers", json::array()).empty()) {
      return Status();
    }
    return unsupported("normalizer", n);
  }

  Status check_decoder(const json& d) {
    if (d.is_null() || d.value("type", "") == "ByteLevel") return Status();
    return unsupported("decoder", d);
  }

  Status parse_pre_tokenizer(const json& p) {
    if (p.is_null()) return fail("no pre_tokenizer: only byte-level BPE tokenizers are supported");
    const std::string type = p.value("type", "");
    std::vector<json> steps;
    if (type == "Sequence") {
      steps = p.at("pretokenizers").get<std::vector<json>>();
    } else {
      steps.push_back(p);
    }
    bool byte_level = false;
    for (const json& s : steps) {
      const std::string t = s.value("type", "");
      if (byte_level) return fail("pre_tokenizer step '" + t + "' after ByteLevel is unsupported");
      HfBpeTokenizer::Stage stage;
      if (t == "ByteLevel") {
        byte_level = true;
        stage.add_prefix_space = s.value("add_prefix_space", true);
        if (s.value("use_regex", true)) stage.pattern = SplitPattern::kGpt2;
      } else if (t == "Split") {
        const json& pattern = s.at("pattern");
        if (!pattern.contains("Regex")) return fail("unsupported Split pattern " + pattern.dump());
        const std::string regex = pattern.at("Regex").get<std::string>();
        stage.pattern = split_pattern_from_regex(regex);
        if (!stage.pattern) return fail("unsupported pre_tokenizer Split regex " + regex);
        if (s.value("behavior", "") != "Isolated" || s.value("invert", false)) {
          return fail("unsupported Split behavior (only Isolated, not inverted)");
        }
      } else {
        return unsupported("pre_tokenizer", s);
      }
      tok_.stages_.push_back(stage);
    }
    if (!byte_level) return fail("pre_tokenizer has no ByteLevel step: only byte-level BPE");
    return Status();
  }

  Status parse_model(const json& m) {
    if (m.value("type", "BPE") != "BPE") return unsupported("model", m);
    const auto set = [&](const char* key) { return m.contains(key) && !m.at(key).is_null(); };
    if (set("continuing_subword_prefix") || set("end_of_word_suffix")) {
      return fail("unsupported BPE option continuing_subword_prefix/end_of_word_suffix");
    }
    if (m.value("byte_fallback", false)) return fail("unsupported BPE option byte_fallback");
    if (set("dropout") && m.at("dropout").get<double>() > 0) {
      return fail("unsupported BPE option dropout");
    }
    tok_.ignore_merges_ = m.value("ignore_merges", false);
    for (const auto& [token, id] : m.at("vocab").items()) {
      SW_RETURN_IF_ERROR(add_id(token, id.get<int64_t>()));
      tok_.vocab_.try_emplace(token, static_cast<TokenId>(id.get<int64_t>()));
    }
    if (set("unk_token")) {
      const auto it = tok_.vocab_.find(m.at("unk_token").get<std::string>());
      if (it == tok_.vocab_.end()) return fail("unk_token is not in the vocabulary");
      tok_.unk_ = it->second;
    }
    return Status();
  }

  Status parse_added_tokens(const json& added) {
    for (const json& a : added) {
      const std::string content = a.at("content").get<std::string>();
      const int64_t id = a.at("id").get<int64_t>();
      SW_RETURN_IF_ERROR(add_id(content, id));
      tok_.added_.push_back({content, static_cast<TokenId>(id)});
      if (a.value("special", false)) special_ids_.push_back(static_cast<TokenId>(id));
    }
    return Status();
  }

  Status add_id(const std::string& token, int64_t id) {
    if (id < 0 || id > INT32_MAX - 1) {
      return fail("token '" + token + "' has invalid id " + std::to_string(id));
    }
    max_id_ = std::max(max_id_, id);
    spelled_.emplace_back(static_cast<TokenId>(id), token);
    return Status();
  }

  Status build_tables(int model_vocab_size) {
    const int64_t vocab_size = max_id_ + 1;
    if (vocab_size > model_vocab_size) {
      return fail("tokenizer has token ids up to " + std::to_string(max_id_) +
                  ", more than the model's vocabulary (" + std::to_string(model_vocab_size) + ")");
    }
    build_byte_maps();
    tok_.decoded_.assign(vocab_size, std::string());
    tok_.special_.assign(vocab_size, 0);
    // Added tokens come last in spelled_, so their spelling wins an id both name.
    for (const auto& [id, token] : spelled_) tok_.decoded_[id] = decode_byte_level(token);
    for (TokenId id : special_ids_) tok_.special_[id] = 1;
    for (int b = 0; b < 256; ++b) {
      const auto it = tok_.vocab_.find(tok_.byte_chars_[b]);
      tok_.byte_ids_[b] = it == tok_.vocab_.end() ? -1 : it->second;
    }
    for (size_t k = 0; k < tok_.added_.size(); ++k) {
      const std::string& c = tok_.added_[k].content;
      if (!c.empty()) tok_.added_by_first_byte_[static_cast<uint8_t>(c[0])].push_back(k);
    }
    for (auto& list : tok_.added_by_first_byte_) {
      std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
        return tok_.added_[a].content.size() > tok_.added_[b].content.size();
      });
    }
    return Status();
  }

  // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are shifted
  // to U+0100.. so that every byte is a visible character in vocab strings.
  void build_byte_maps() {
    char_to_byte_.assign(512, -1);
    int shifted = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? b : 256 + shifted++;
      tok_.byte_chars_[b].clear();
      utf8::append(tok_.byte_chars_[b], cp);
      char_to_byte_[cp] = b;
    }
  }

  // As HF's ByteLevel decoder: a token maps back to bytes when all its characters are in
  // the byte alphabet, otherwise (e.g. an added "<|eot_id|> " spelled with a space) it
  // stands for its own UTF-8.
  std::string decode_byte_level(const std::string& token) const {
    std::string bytes;
    for (size_t pos = 0; pos < token.size();) {
      const utf8::Decoded d = utf8::decode_at(token, pos);
      if (d.step != utf8::Step::kChar || d.code_point >= char_to_byte_.size() ||
          char_to_byte_[d.code_point] < 0) {
        return token;
      }
      bytes.push_back(static_cast<char>(char_to_byte_[d.code_point]));
      pos += d.length;
    }
    return bytes;
  }

  Status parse_merges(const json& merges) {
    tok_.merges_.reserve(merges.size());
    uint32_t rank = 0;
    for (const json& m : merges) {
      std::string left, right;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          return fail("merge \"" + s + "\" is not two tokens separated by one space");
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2) {
        left = m.at(0).get<std::string>();
        right = m.at(1).get<std::string>();
      } else {
        return fail("merge " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      const auto a = tok_.vocab_.find(left), b = tok_.vocab_.find(right);
      const auto ab = tok_.vocab_.find(left + right);
      if (a == tok_.vocab_.end() || b == tok_.vocab_.end() || ab == tok_.vocab_.end()) {
        return fail("merge '" + left + "' '" + right + "' uses a token not in the vocabulary");
      }
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a->second)) << 32) |
                           static_cast<uint32_t>(b->second);
      // A repeated merge keeps its first (best) rank, as HF does.
      tok_.merges_.try_emplace(key, HfBpeTokenizer::Merge{rank++, ab->second});
    }
    return Status();
  }

  void pick_bos_eos() {
    for (const char* bos : {"<|begin_of_text|>", "<s>"}) {
      if (auto id = tok_.token_to_id(bos)) {
        tok_.bos_ = id;
        break;
      }
    }
    for (const char* eos :
         {"<|end_of_text|>", "<|eot_id|>", "</s>", "<|endoftext|>", "<|im_end|>"}) {
      if (auto id = tok_.token_to_id(eos)) tok_.eos_.push_back(*id);
    }
  }

  HfBpeTokenizer& tok_;
  std::string name_;
  int64_t max_id_ = -1;
  std::vector<std::pair<TokenId, std::string>> spelled_;
  std::vector<TokenId> special_ids_;
  std::vector<int> char_to_byte_;
};

Result<std::unique_ptr<HfBpeTokenizer>> HfBpeTokenizer::parse(std::string_view json_text,
                                                              const std::string& name,
                                                              int model_vocab_size) {
  if (model_vocab_size <= 0) {
    return Status::error(name + ": model vocabulary size must be positive, got " +
                         std::to_string(model_vocab_size));
  }
  std::unique_ptr<HfBpeTokenizer> tok(new HfBpeTokenizer());
  // nlohmann reports structure errors by exception; they stop here and become a Status.
  try {
    const json root = json::parse(json_text);
    HfBpeParser parser(*tok, name);
    SW_RETURN_IF_ERROR(parser.parse(root, model_vocab_size));
  } catch (const json::parse_error& e) {
    return Status::error(name + ": malformed JSON: " + e.what());
  } catch (const json::exception& e) {
    return Status::error(name + ": unexpected tokenizer.json structure: " + e.what());
  }
  return tok;
}

}  // namespace splitwise::engine
