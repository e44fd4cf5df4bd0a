// splitwise-generate: model + tokenizer + prompt -> text on stdout, speed on stderr.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "workers/engine/engine.h"
#include "workers/engine/tokenizer.h"
#include "workers/engine/weights.h"

namespace fs = std::filesystem;
using namespace splitwise::engine;
using splitwise::Result;
using splitwise::Status;

namespace {

// A tokenizer next to the model: tokenizer.json in a Hugging Face directory, or the one
// tokenizer .bin beside a llama2.c file.
fs::path find_tokenizer(const fs::path& model) {
  if (fs::is_directory(model))
    return fs::exists(model / "tokenizer.json") ? model / "tokenizer.json" : fs::path();
  for (const char* name : {"tokenizer.bin", "tok512.bin"})
    if (fs::exists(model.parent_path() / name)) return model.parent_path() / name;
  return {};
}

int fail(const std::string& message) {
  spdlog::error("{}", message);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("generate"));
  CLI::App app{"Generate text with a Llama-family model on the CPU"};
  std::string model_path, tokenizer_path, prompt;
  GenerationRequest req;
  req.max_new_tokens = 256;
  bool quiet = false;
  int steps = 0;
  app.add_option("-m,--model", model_path, "Hugging Face model directory or llama2.c .bin")
      ->required();
  app.add_option("-z,--tokenizer", tokenizer_path,
                 "tokenizer.json or llama2.c tokenizer .bin (default: next to the model)");
  app.add_option("-p,--prompt", prompt, "prompt text (default: empty, generation from BOS)");
  app.add_option("-n,--max-tokens", req.max_new_tokens, "new tokens to generate")
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", steps,
                 "llama2.c's -n: positions to run, prompt included (overrides --max-tokens)")
      ->check(CLI::PositiveNumber);
  app.add_option("-t,--temperature", req.sampling.temperature, "0 = greedy")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-k,--top-k", req.sampling.top_k, "keep the k most likely tokens (0 = all)");
  app.add_option("--top-p", req.sampling.top_p, "nucleus sampling mass")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("-s,--seed", req.sampling.seed, "random seed for sampling");
  app.add_flag("-q,--quiet", quiet, "no speed report on stderr");
  CLI11_PARSE(app, argc, argv);

  const auto t_load = std::chrono::steady_clock::now();
  Result<ModelWeights> weights = load_model(model_path);
  if (!weights.ok()) return fail(weights.status().message());
  if (tokenizer_path.empty()) tokenizer_path = find_tokenizer(model_path).string();
  if (tokenizer_path.empty())
    return fail("no tokenizer found next to " + model_path + "; pass --tokenizer");
  auto tokenizer = Tokenizer::load(tokenizer_path, weights->config.vocab_size);
  if (!tokenizer.ok()) return fail(tokenizer.status().message());
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

  req.prompt = (*tokenizer)->encode(prompt, /*add_bos=*/true);
  // llama2.c prints one piece per position after BOS, the prompt's own included.
  if (steps > 0) req.max_new_tokens = steps - static_cast<int>(req.prompt.size()) + 1;
  if (req.max_new_tokens < 1)
    return fail("--steps " + std::to_string(steps) + " does not cover the prompt's " +
                std::to_string(req.prompt.size()) + " tokens");
  req.stop_ids = (*tokenizer)->eos_ids();
  // BOS mid-stream means "a new document starts": llama2.c stops there too.
  if (auto bos = (*tokenizer)->bos_id()) req.stop_ids.push_back(*bos);
  // Never run past the context: shorten the generation rather than fail on it.
  req.max_new_tokens = std::min<int>(
      req.max_new_tokens,
      std::max<int>(1, weights->config.max_position - static_cast<int>(req.prompt.size())));

  EngineConfig config;
  config.scheduler.max_num_seqs = 1;
  Engine engine(&weights.value(), config);
  if (Status st = engine.add_request(req); !st.ok()) return fail(st.message());

  StreamDecoder decoder(**tokenizer);
  for (TokenId t : req.prompt) std::fputs(decoder.push(t).c_str(), stdout);
  std::fflush(stdout);

  int generated = 0;
  std::chrono::steady_clock::time_point t_first;
  while (!engine.idle()) {
    auto results = engine.step();
    if (!results.ok()) return fail(results.status().message());
    for (const StepResult& r : *results) {
      if (generated++ == 0) t_first = std::chrono::steady_clock::now();
      if (r.finish != FinishReason::kStop) std::fputs(decoder.push(r.token).c_str(), stdout);
    }
    std::fflush(stdout);
  }
  std::fputs(decoder.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double decode_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_first).count();
  if (!quiet) {
    // Like llama2.c, the rate counts tokens after the first (the first includes prefill).
    std::fprintf(stderr, "load %.3f s, prompt %zu tokens, generated %d tokens, %.1f tokens/s\n",
                 load_s, req.prompt.size(), generated,
                 generated > 1 ? (generated - 1) / decode_s : 0.0);
  }
  return 0;
}
