#include "workers/engine/tokenizer.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "workers/engine/tokenizer_hf.h"
#include "workers/engine/tokenizer_llama2c.h"
#include "workers/engine/utf8.h"

namespace splitwise::engine {

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::filesystem::path& path,
                                                   int model_vocab_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot open tokenizer file " + path.string());
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return Status::error("error reading tokenizer file " + path.string());
  const std::string data = std::move(contents).str();

  // A llama2.c file starts with a small binary int32, never with '{'.
  size_t first = 0;
  while (first < data.size() && std::isspace(static_cast<unsigned char>(data[first]))) ++first;
  if (first < data.size() && data[first] == '{') {
    auto hf = HfBpeTokenizer::parse(data, path.string(), model_vocab_size);
    if (!hf.ok()) return hf.status();
    return std::unique_ptr<Tokenizer>(std::move(hf).value());
  }
  auto l2c = Llama2cTokenizer::parse(data, path.string(), model_vocab_size);
  if (!l2c.ok()) return l2c.status();
  return std::unique_ptr<Tokenizer>(std::move(l2c).value());
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  TokenId prev = -1;
  for (TokenId id : ids) {
    bytes += token_bytes(prev, id, skip_special);
    prev = id;
  }
  return utf8::sanitize(bytes);
}

std::string StreamDecoder::push(TokenId id) {
  pending_ += tokenizer_.token_bytes(prev_, id, skip_special_);
  prev_ = id;
  std::string out;
  pending_.erase(0, utf8::append_complete(pending_, out));
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace splitwise::engine
