// Hugging Face byte-level BPE tokenizer.json: golden encodings from HF tokenizers, the
// pre-tokenizer splits (expectations from Python's `regex` module on the same patterns),
// configuration variants and load errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/test_util.h"
#include "workers/engine/tokenizer.h"
#include "workers/engine/tokenizer_hf.h"
#include "workers/engine/tokenizer_pretokenize.h"
#include "workers/engine/utf8.h"

namespace splitwise::engine {
namespace {

using nlohmann::json;

constexpr const char* kTokenizer = "models/bpe-tokenizer/tokenizer.json";
constexpr const char* kGolden = "models/bpe-tokenizer/golden.json";

std::filesystem::path write_temp(const std::string& name, const std::string& data) {
  const auto path = std::filesystem::temp_directory_path() / ("splitwise_" + name);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

Result<std::unique_ptr<Tokenizer>> load_json(const std::string& name, const json& j,
                                             int vocab = 1000) {
  const auto path = write_temp(name, j.dump());
  auto tok = Tokenizer::load(path, vocab);
  std::filesystem::remove(path);
  return tok;
}

void expect_golden(const Tokenizer& tok, const json& golden, const std::string& label) {
  for (const json& c : golden.at("cases")) {
    const std::string text = c.at("text");
    const auto ids = c.at("ids").get<std::vector<TokenId>>();
    EXPECT_EQ(tok.encode(text, false), ids) << label << ": " << text;
    EXPECT_EQ(tok.decode(ids, true), c.at("decoded").get<std::string>()) << label;
  }
}

json byte_level(bool use_regex, bool add_prefix_space = false) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"use_regex", use_regex}};
}

json split_then_byte_level(std::string_view regex) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", std::string(regex)}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            byte_level(false)}}};
}

class HfTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::shared_path(kTokenizer);
    const auto golden = testing::shared_path(kGolden);
    if (path_.empty() || golden.empty()) GTEST_SKIP() << "shared data not found: " << kTokenizer;
    config_ = json::parse(testing::read_file(path_));
    golden_ = json::parse(testing::read_file(golden));
    auto tok = Tokenizer::load(path_, 512);
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    tok_ = std::move(tok).value();
  }
  std::filesystem::path path_;
  json config_, golden_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(HfTokenizer, GoldenEncodeAndDecode) {
  EXPECT_EQ(tok_->vocab_size(), 479);
  EXPECT_EQ(tok_->bos_id(), 0);
  EXPECT_EQ(tok_->eos_ids(), std::vector<TokenId>{1});
  EXPECT_TRUE(tok_->is_special(0) && tok_->is_special(1));
  EXPECT_FALSE(tok_->is_special(2));
  expect_golden(*tok_, golden_, "as shipped");
  EXPECT_EQ(tok_->encode("Hello", true).front(), 0);
  EXPECT_EQ(tok_->decode(tok_->encode("Hello<|end_of_text|>", false), false),
            "Hello<|end_of_text|>");
}

TEST_F(HfTokenizer, MergesAsStringsGiveTheSameTokens) {
  json j = config_;
  for (json& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  auto tok = load_json("hf_merge_strings.json", j);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  expect_golden(**tok, golden_, "string merges");
}

TEST_F(HfTokenizer, SplitThenByteLevelEqualsByteLevelRegex) {
  json j = config_;
  j["pre_tokenizer"] = split_then_byte_level(kGpt2Regex);
  auto tok = load_json("hf_sequence.json", j);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  expect_golden(**tok, golden_, "Split + ByteLevel");
}

// The Llama 3 split hands each piece to BPE on its own, exactly like a tokenizer without
// splitting that is fed one piece at a time.
TEST_F(HfTokenizer, Llama3SplitFeedsPiecesToBpe) {
  json llama3 = config_;
  llama3["pre_tokenizer"] = split_then_byte_level(kLlama3Regex);
  json whole = config_;
  whole["pre_tokenizer"] = byte_level(false);
  auto split_tok = load_json("hf_llama3.json", llama3);
  auto whole_tok = load_json("hf_whole.json", whole);
  ASSERT_TRUE(split_tok.ok()) << split_tok.status().message();
  ASSERT_TRUE(whole_tok.ok()) << whole_tok.status().message();
  const std::string text = "Once upon a time, x = 1234567;\n\n  they'RE  naïve 東京 😀";
  std::vector<std::string_view> pieces;
  split_text(text, SplitPattern::kLlama3, pieces);
  std::vector<TokenId> expected;
  for (std::string_view p : pieces) {
    const auto ids = (*whole_tok)->encode(p, false);
    expected.insert(expected.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ((*split_tok)->encode(text, false), expected);
  EXPECT_EQ((*split_tok)->decode(expected), text);
}

TEST_F(HfTokenizer, AddPrefixSpace) {
  json j = config_;
  j["pre_tokenizer"] = byte_level(true, true);
  auto tok = load_json("hf_prefix.json", j);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ((*tok)->encode("Once upon", false), tok_->encode(" Once upon", false));
  EXPECT_EQ((*tok)->encode(" Once", false), tok_->encode(" Once", false));
}

TEST_F(HfTokenizer, IgnoreMergesTakesWholeWordsFromVocab) {
  json j = config_;
  j["model"]["merges"] = json::array();
  j["model"]["ignore_merges"] = true;
  auto tok = load_json("hf_ignore_merges.json", j);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const auto once = tok_->encode(" upon", false);
  ASSERT_EQ(once.size(), 1u);  // a whole word of the vocab: no merges needed
  EXPECT_EQ((*tok)->encode(" upon", false), once);
  EXPECT_EQ((*tok)->encode(" upo", false).size(), 4u);  // not in vocab, and no merges
}

TEST_F(HfTokenizer, StreamDecoderNeverSplitsCharacters) {
  const std::string text = "naïve café 東京 😀";
  const auto ids = tok_->encode(text, true);
  StreamDecoder decoder(*tok_);
  std::string all;
  for (TokenId id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_TRUE(utf8::is_valid(piece));
    all += piece;
  }
  all += decoder.flush();
  EXPECT_EQ(all, text);
}

TEST_F(HfTokenizer, ConcurrentEncodesAgree) {
  const std::string text = "Once upon a time, there was a little girl named Lily. 1234567890";
  const auto expected = tok_->encode(text, false);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) {
        tok_->encode(text + std::to_string(k), false);  // new words churn the cache
        if (tok_->encode(text, false) != expected) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST_F(HfTokenizer, InvalidUtf8InputIsReplaced) {
  EXPECT_EQ(tok_->encode("a\xFF"
                         "b",
                         false),
            tok_->encode("a\xEF\xBF\xBD"
                         "b",
                         false));
}

TEST_F(HfTokenizer, LoadErrorsNameFileAndComponent) {
  struct Case {
    std::string name;
    json config;
    int vocab;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases;
  json j = config_;
  j["normalizer"] = {{"type", "NFC"}};
  cases.push_back({"hf_nfc.json", j, 512, {"normalizer", "NFC"}});
  j = config_;
  j["model"]["type"] = "WordPiece";
  cases.push_back({"hf_wordpiece.json", j, 512, {"model", "WordPiece"}});
  j = config_;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  cases.push_back({"hf_ws.json", j, 512, {"pre_tokenizer", "Whitespace"}});
  j = config_;
  j["pre_tokenizer"] = split_then_byte_level("\\w+");
  cases.push_back({"hf_regex.json", j, 512, {"Split regex", "\\w+"}});
  j = config_;
  j["decoder"] = {{"type", "WordPiece"}};
  cases.push_back({"hf_decoder.json", j, 512, {"decoder", "WordPiece"}});
  j = config_;
  j["model"]["byte_fallback"] = true;
  cases.push_back({"hf_fallback.json", j, 512, {"byte_fallback"}});
  j = config_;
  j["model"]["merges"].push_back({"zzz", "qqq"});
  cases.push_back({"hf_badmerge.json", j, 512, {"merge", "zzz"}});
  j = config_;
  j["model"] = 3;
  cases.push_back({"hf_structure.json", j, 512, {"tokenizer.json structure"}});
  cases.push_back({"hf_small.json", config_, 478, {"more than the model's vocabulary (478)"}});
  for (const Case& c : cases) {
    const auto path = write_temp(c.name, c.config.dump());
    auto tok = Tokenizer::load(path, c.vocab);
    ASSERT_FALSE(tok.ok()) << c.name;
    const std::string& msg = tok.status().message();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    for (const std::string& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << msg;
    std::filesystem::remove(path);
  }
  EXPECT_TRUE(load_json("hf_exact.json", config_, 479).ok());

  const std::string text = testing::read_file(path_);
  const auto path = write_temp("hf_truncated.json", text.substr(0, text.size() / 2));
  auto tok = Tokenizer::load(path, 512);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("malformed JSON"), std::string::npos);
  EXPECT_NE(tok.status().message().find(path.string()), std::string::npos);
  std::filesystem::remove(path);
}

struct SplitCase {
  SplitPattern pattern;
  std::string text;
  std::vector<std::string> pieces;
};

// Expected pieces: Python `regex.findall` with the same two patterns.
TEST(TokenizerPretokenize, MatchesPythonRegex) {
  const std::vector<SplitCase> cases = {
      {SplitPattern::kGpt2, "Hello world", {"Hello", " world"}},
      {SplitPattern::kGpt2,
       "I'm here, they'RE not. It'S",
       {"I", "'m", " here", ",", " they", "'", "RE", " not", ".", " It", "'", "S"}},
      {SplitPattern::kGpt2,
       "  leading spaces\nand\ttabs  ",
       {" ", " leading", " spaces", "\n", "and", "\t", "tabs", "  "}},
      {SplitPattern::kGpt2,
       "x = 1234567 + 89;\n\n  y",
       {"x", " =", " 1234567", " +", " 89", ";", "\n\n ", " y"}},
      {SplitPattern::kGpt2,
       "na\u00efve caf\u00e9 \u6771\u4eac \U0001f600!!",
       {"na\u00efve", " caf\u00e9", " \u6771\u4eac", " \U0001f600!!"}},
      {SplitPattern::kGpt2,
       "line1\r\n\r\n  line2 \n end",
       {"line", "1", "\r\n\r\n ", " line", "2", " \n", " end"}},
      {SplitPattern::kGpt2, "'hello '' 's", {"'", "hello", " ''", " '", "s"}},
      {SplitPattern::kGpt2,
       "a\u00a0b\u3000c  \u2028d",
       {"a", "\u00a0", "b", "\u3000", "c", "  ", "\u2028", "d"}},
      {SplitPattern::kGpt2, "$$$ 12ab3 ...\n\n", {"$$$", " 12", "ab", "3", " ...", "\n\n"}},
      {SplitPattern::kGpt2,
       "\u03a9\u2248\u00e7\u221a \U0001d518\U0001d52b\U0001d526 \u00bd \u00b2",
       {"\u03a9", "\u2248", "\u00e7", "\u221a", " \U0001d518\U0001d52b\U0001d526", " \u00bd",
        " \u00b2"}},
      {SplitPattern::kLlama3, "Hello world", {"Hello", " world"}},
      {SplitPattern::kLlama3,
       "I'm here, they'RE not. It'S",
       {"I", "'m", " here", ",", " they", "'RE", " not", ".", " It", "'S"}},
      {SplitPattern::kLlama3,
       "  leading spaces\nand\ttabs  ",
       {" ", " leading", " spaces", "\n", "and", "\ttabs", "  "}},
      {SplitPattern::kLlama3,
       "x = 1234567 + 89;\n\n  y",
       {"x", " =", " ", "123", "456", "7", " +", " ", "89", ";\n\n", " ", " y"}},
      {SplitPattern::kLlama3,
       "na\u00efve caf\u00e9 \u6771\u4eac \U0001f600!!",
       {"na\u00efve", " caf\u00e9", " \u6771\u4eac", " \U0001f600!!"}},
      {SplitPattern::kLlama3,
       "line1\r\n\r\n  line2 \n end",
       {"line", "1", "\r\n\r\n", " ", " line", "2", " \n", " end"}},
      {SplitPattern::kLlama3, "'hello '' 's", {"'hello", " ''", " '", "s"}},
      {SplitPattern::kLlama3,
       "a\u00a0b\u3000c  \u2028d",
       {"a", "\u00a0b", "\u3000c", "  ", "\u2028d"}},
      {SplitPattern::kLlama3, "$$$ 12ab3 ...\n\n", {"$$$", " ", "12", "ab", "3", " ...\n\n"}},
      {SplitPattern::kLlama3,
       "\u03a9\u2248\u00e7\u221a \U0001d518\U0001d52b\U0001d526 \u00bd \u00b2",
       {"\u03a9", "\u2248\u00e7", "\u221a", " \U0001d518\U0001d52b\U0001d526", " ", "\u00bd", " ",
        "\u00b2"}},
  };
  for (const SplitCase& c : cases) {
    std::vector<std::string_view> got;
    split_text(c.text, c.pattern, got);
    EXPECT_EQ(std::vector<std::string>(got.begin(), got.end()), c.pieces) << c.text;
  }
}

TEST(TokenizerPretokenize, RecognisesPatterns) {
  EXPECT_EQ(split_pattern_from_regex(kGpt2Regex), SplitPattern::kGpt2);
  EXPECT_EQ(split_pattern_from_regex(kLlama3Regex), SplitPattern::kLlama3);
  EXPECT_EQ(split_pattern_from_regex(kQwen2Regex), SplitPattern::kQwen2);
  EXPECT_EQ(split_pattern_from_regex("\\s+"), std::nullopt);
}

}  // namespace
}  // namespace splitwise::engine
