// splitwise-generate as a user runs it: greedy stdout byte-identical to llama2.c run.c.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

#include "tests/test_util.h"

namespace {

struct Output {
  int exit_code = -1;
  std::string out;  // stdout and, with merge_stderr, stderr
};

Output run(const std::string& args, bool merge_stderr = false) {
  const std::string cmd =
      std::string(SPLITWISE_GENERATE_BIN) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  Output o;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.out.append(buf.data(), n);
  const int status = pclose(p);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

TEST(GenerateCli, GreedyWithoutPromptIsByteIdenticalToRunC) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  SW_REQUIRE_SHARED(golden, "models/golden/s260_greedy_n200_noprompt.stdout.txt");
  const Output o = run("-m " + model.string() + " -t 0 --steps 200");
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.out, splitwise::testing::read_file(golden));
}

TEST(GenerateCli, GreedyWithPromptIsByteIdenticalToRunC) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  SW_REQUIRE_SHARED(golden, "models/golden/s260_greedy_n64_prompt_once.stdout.txt");
  const Output o = run("-m " + model.string() + " -p 'Once upon a time' --steps 64");
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.out, splitwise::testing::read_file(golden));
}

TEST(GenerateCli, ReportsSpeedOnStderr) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  const Output o = run("-m " + model.string() + " -n 20 -t 0.8 -s 3", true);
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_NE(o.out.find("tokens/s"), std::string::npos) << o.out;
}

TEST(GenerateCli, BadInputFailsWithAReason) {
  SW_REQUIRE_SHARED(model, "models/stories260K/stories260K.bin");
  Output o = run("-m /nonexistent/model.bin", true);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.out.find("/nonexistent/model.bin"), std::string::npos) << o.out;

  SW_REQUIRE_SHARED(big_tok, "models/llama2c-tokenizer/tokenizer.bin");
  o = run("-m " + model.string() + " -z " + big_tok.string(), true);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.out.find("vocabulary"), std::string::npos) << o.out;

  // 600 words: more tokens than stories260K's 512-token context.
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "dog ";
  o = run("-m " + model.string() + " -p '" + long_prompt + "'", true);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.out.find("context is 512"), std::string::npos) << o.out;
}

}  // namespace
