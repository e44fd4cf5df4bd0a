// Tokenizer::load dispatch and errors, the llama2.c tokenizer against run.c's behaviour and
// the golden llama2.c outputs, and StreamDecoder.
#include "workers/engine/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "tests/test_util.h"
#include "workers/engine/tokenizer_llama2c.h"
#include "workers/engine/utf8.h"

namespace splitwise::engine {
namespace {

std::unique_ptr<Tokenizer> load_ok(const std::filesystem::path& path, int vocab) {
  auto tok = Tokenizer::load(path, vocab);
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

std::filesystem::path write_temp(const std::string& name, const std::string& data) {
  const auto path = std::filesystem::temp_directory_path() / ("splitwise_" + name);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// A llama2.c tokenizer file with the three special pieces and `pieces` after them.
std::string llama2c_file(const std::vector<std::string>& pieces, int32_t max_len = 8) {
  std::string out;
  put<int32_t>(out, max_len);
  for (const std::string& p : std::vector<std::string>{"<unk>", "<s>", "</s>"}) {
    put<float>(out, 0.f);
    put<int32_t>(out, static_cast<int32_t>(p.size()));
    out += p;
  }
  for (const std::string& p : pieces) {
    put<float>(out, -1.f);
    put<int32_t>(out, static_cast<int32_t>(p.size()));
    out += p;
  }
  return out;
}

// run.c's encode(), transcribed literally (quadratic merge loop), as the reference.
std::vector<TokenId> run_c_encode(const Llama2cTokenizer& t, std::string_view text, bool bos) {
  std::vector<TokenId> tokens;
  if (bos) tokens.push_back(1);
  if (!text.empty()) tokens.push_back(t.lookup(" "));
  std::string buf;
  for (size_t c = 0; c < text.size(); ++c) {
    if ((text[c] & 0xC0) != 0x80) buf.clear();
    buf.push_back(text[c]);
    if (c + 1 < text.size() && (text[c + 1] & 0xC0) == 0x80 && buf.size() < 4) continue;
    const TokenId id = t.lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (char b : buf) tokens.push_back(static_cast<unsigned char>(b) + 3);
    }
    buf.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const TokenId id = t.lookup(t.piece(tokens[i]) + t.piece(tokens[i + 1]));
      if (id != -1 && t.score(id) > best_score) {
        best_score = t.score(id);
        best_id = id;
        best_idx = static_cast<int>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  return tokens;
}

TEST(TokenizerLoad, MissingFileNamesThePath) {
  auto tok = Tokenizer::load("/nonexistent/dir/tokenizer.bin", 512);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("/nonexistent/dir/tokenizer.bin"), std::string::npos);
}

TEST(TokenizerLlama2c, GoldenPromptEncoding) {
  SW_REQUIRE_SHARED(path, "models/stories260K/tok512.bin");
  auto tok = load_ok(path, 512);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<TokenId>{2});
  EXPECT_TRUE(tok->is_special(0) && tok->is_special(1) && tok->is_special(2));
  EXPECT_FALSE(tok->is_special(3));
  EXPECT_EQ(tok->encode("Once upon a time", true), (std::vector<TokenId>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("Once upon a time", false), (std::vector<TokenId>{403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("", true), std::vector<TokenId>{1});
  EXPECT_TRUE(tok->encode("", false).empty());
}

// Decoding run.c's generated tokens reproduces run.c's stdout (minus its final "\n").
TEST(TokenizerLlama2c, GoldenStreamsDecodeToGoldenStdout) {
  SW_REQUIRE_SHARED(path, "models/stories260K/tok512.bin");
  SW_REQUIRE_SHARED(golden, "models/golden");
  auto tok = load_ok(path, 512);
  ASSERT_TRUE(tok);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(golden)) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = ".tokens.txt";
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    const auto stdout_path = golden / (name.substr(0, name.size() - suffix.size()) + ".stdout.txt");
    ASSERT_TRUE(std::filesystem::exists(stdout_path)) << stdout_path;
    std::string expected = testing::read_file(stdout_path);
    ASSERT_TRUE(expected.ends_with("\n"));
    expected.pop_back();

    std::istringstream lines(testing::read_file(entry.path()));
    StreamDecoder decoder(*tok);
    std::string text;
    std::string tag;
    int pos = 0, token = 0, next = 0;
    bool first = true;
    while (lines >> tag >> pos >> token >> next) {
      ASSERT_EQ(tag, "TOK");
      if (first) text += decoder.push(token);
      first = false;
      text += decoder.push(next);
    }
    text += decoder.flush();
    EXPECT_EQ(text, expected) << name;
    ++files;
  }
  EXPECT_GE(files, 3);
}

TEST(TokenizerLlama2c, GoldenPromptMatchesGoldenTrace) {
  SW_REQUIRE_SHARED(path, "models/stories260K/tok512.bin");
  SW_REQUIRE_SHARED(trace, "models/golden/s260_greedy_n64_prompt_once.tokens.txt");
  auto tok = load_ok(path, 512);
  ASSERT_TRUE(tok);
  std::istringstream lines(testing::read_file(trace));
  std::vector<TokenId> sequence;
  std::string tag;
  int pos = 0, token = 0, next = 0;
  while (lines >> tag >> pos >> token >> next) sequence.push_back(token);
  const auto prompt = tok->encode("Once upon a time", true);
  ASSERT_LE(prompt.size(), sequence.size());
  EXPECT_EQ(prompt, std::vector<TokenId>(sequence.begin(), sequence.begin() + prompt.size()));
}

class Llama32k : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::shared_path("models/llama2c-tokenizer/tokenizer.bin");
    if (path_.empty()) GTEST_SKIP() << "shared data not found: models/llama2c-tokenizer";
    auto tok = Llama2cTokenizer::parse(testing::read_file(path_), path_.string(), 32000);
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    tok_ = std::move(tok).value();
  }
  std::filesystem::path path_;
  std::unique_ptr<Llama2cTokenizer> tok_;
};

TEST_F(Llama32k, RoundTrips) {
  for (const std::string s :
       {"Hello, world!", "naïve café", "東京タワーに行きました。", "emoji 😀🚀 mixed",
        "  leading and trailing  ", "tabs\tand\nnewlines\r\n", "Ελληνικά και русский", "x", " ",
        "\n", "a\xF0\x9F\x98\x80"}) {
    const auto ids = tok_->encode(s, true);
    EXPECT_EQ(tok_->decode(ids), s) << s;
  }
}

TEST_F(Llama32k, MatchesRunCReference) {
  std::mt19937 rng(42);
  const std::vector<std::string> alphabet = {"a",  "b", "e",  "t",  " ", "the", "ing",  "é",   "ü",
                                             "東", "😀", "\n", "\t", ".", "0",   "\xFF", "\x80"};
  std::vector<std::string> texts = {"The quick brown fox jumps over the lazy dog.",
                                    "Once upon a time", "naïve café 東京 😀", "  "};
  for (int n = 0; n < 200; ++n) {
    std::string s;
    const int len = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    texts.push_back(s);
  }
  for (const std::string& s : texts) {
    for (bool bos : {true, false})
      EXPECT_EQ(tok_->encode(s, bos), run_c_encode(*tok_, s, bos)) << s;
  }
}

TEST_F(Llama32k, LoadingWithSmallerModelVocabFails) {
  auto tok = Tokenizer::load(path_, 512);
  ASSERT_FALSE(tok.ok());
  const std::string& msg = tok.status().message();
  EXPECT_NE(msg.find("tokenizer has more tokens than the model's vocabulary (512)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(path_.string()), std::string::npos) << msg;

  auto larger = Tokenizer::load(path_, 32001);
  ASSERT_FALSE(larger.ok());
  EXPECT_NE(larger.status().message().find("truncated"), std::string::npos);
}

// An emoji falls back to four byte tokens; no push may emit part of it.
TEST_F(Llama32k, StreamDecoderHoldsSplitCharacters) {
  const std::string text = "I 😀 it";
  const auto ids = tok_->encode(text, true);
  const TokenId f0 = 0xF0 + Llama2cTokenizer::kFirstByte;
  ASSERT_NE(std::find(ids.begin(), ids.end(), f0), ids.end()) << "expected byte fallback";
  StreamDecoder decoder(*tok_);
  std::string all;
  for (TokenId id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_TRUE(utf8::is_valid(piece)) << piece;
    if (id == f0) {
      EXPECT_EQ(piece, "");
    }
    all += piece;
  }
  all += decoder.flush();
  EXPECT_EQ(all, text);
}

TEST_F(Llama32k, StreamDecoderReplacesBrokenBytes) {
  const TokenId b = Llama2cTokenizer::kFirstByte;
  StreamDecoder decoder(*tok_);
  EXPECT_EQ(decoder.push(1), "");
  EXPECT_EQ(decoder.push(b + 0xF0), "");
  EXPECT_EQ(decoder.push(b + 0x9F), "");
  EXPECT_EQ(decoder.push(b + 'A'),
            "\xEF\xBF\xBD"
            "A");                                     // an interrupted character
  EXPECT_EQ(decoder.push(b + 0xFF), "\xEF\xBF\xBD");  // never valid: no waiting
  EXPECT_EQ(decoder.push(b + 0xE6), "");
  EXPECT_EQ(decoder.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(decoder.flush(), "");
}

TEST(TokenizerLlama2c, ByteAndSpaceRulesOfTokenBytes) {
  const auto path = write_temp("l2c_rules.bin", llama2c_file({"<0x41>", " x", "y"}));
  auto tok = load_ok(path, 6);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->token_bytes(-1, 3, true), "A");
  EXPECT_EQ(tok->token_bytes(1, 4, true), "x");  // the dummy prefix after BOS
  EXPECT_EQ(tok->token_bytes(5, 4, true), " x");
  EXPECT_EQ(tok->token_bytes(-1, 1, true), "");
  EXPECT_EQ(tok->token_bytes(-1, 1, false), "<s>");
  EXPECT_EQ(tok->token_bytes(-1, 99, true), "");  // out of range: nothing, not a crash
  std::filesystem::remove(path);
}

TEST(TokenizerLlama2c, MalformedFilesAreErrors) {
  const std::string good = llama2c_file({"a", "b"});
  struct Case {
    std::string name, data, expect;
    int vocab;
  };
  std::string negative = llama2c_file({});
  put<float>(negative, 0.f);
  put<int32_t>(negative, -5);
  const std::vector<Case> cases = {
      {"l2c_trunc.bin", good.substr(0, good.size() - 1), "truncated", 5},
      {"l2c_more.bin", good, "more tokens than the model's vocabulary (4)", 4},
      {"l2c_neg.bin", negative, "length -5", 4},
      {"l2c_long.bin", llama2c_file({"toolongpiece"}, 8), "length 12", 4},
      {"l2c_header.bin", llama2c_file({}, 0), "max_token_length", 3},
      {"l2c_empty.bin", "", "too short", 3},
  };
  for (const Case& c : cases) {
    const auto path = write_temp(c.name, c.data);
    auto tok = Tokenizer::load(path, c.vocab);
    ASSERT_FALSE(tok.ok()) << c.name;
    EXPECT_NE(tok.status().message().find(c.expect), std::string::npos)
        << c.name << ": " << tok.status().message();
    EXPECT_NE(tok.status().message().find(path.string()), std::string::npos) << c.name;
    std::filesystem::remove(path);
  }
}

}  // namespace
}  // namespace splitwise::engine
