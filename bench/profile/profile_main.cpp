// splitwise-bench profile: measures our engine's iteration times and writes them in the
// format of the Splitwise simulator's perf_model.csv, so splitwise-sim and
// splitwise-plan can size clusters of our own workers. The sweeps follow that file: the
// prompt size at batch 1, the batch size at one prompt size, the generated length at
// batch 1; each point `repeats` times (one row each). Prompts are random token ids:
// timing does not depend on what the tokens say.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "workers/engine/engine.h"

using namespace splitwise;
using namespace splitwise::engine;
using Clock = std::chrono::steady_clock;

namespace {

struct Point {
  int prompt, batch, tokens;
  double prompt_ms = 0, token_ms = 0, e2e_ms = 0;
};

// One run: `batch` prompts of `prompt` tokens prefilled together (one step when the
// token budget allows), then `tokens` - 1 decode steps. prompt_ms: the prefill steps;
// token_ms: mean decode step; e2e_ms: the whole run.
Status measure(const ModelWeights& w, Point& p, uint64_t seed) {
  EngineConfig cfg;
  cfg.scheduler.max_num_seqs = std::max(p.batch, 1);
  cfg.scheduler.max_batch_tokens = std::max(2048, p.batch * p.prompt);
  // Exactly the blocks the run needs: a larger cache is touched for the first time inside
  // the timed steps, and page faults are not what a profile should measure.
  cfg.num_kv_blocks = p.batch * ((p.prompt + p.tokens + cfg.block_size - 1) / cfg.block_size + 1);
  if (Status st = validate_engine_config(cfg); !st.ok()) return st;
  Engine engine(&w, cfg);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int> tok(3, w.config.vocab_size - 1);
  for (int i = 0; i < p.batch; ++i) {
    GenerationRequest r;
    r.id = i;
    r.prompt.resize(static_cast<size_t>(p.prompt));
    for (auto& t : r.prompt) t = tok(rng);
    r.max_new_tokens = p.tokens;
    r.sampling.temperature = 0;
    if (Status st = engine.add_request(std::move(r)); !st.ok()) return st;
  }
  const auto t0 = Clock::now();
  int first_tokens = 0;
  while (first_tokens < p.batch) {  // prefill steps, until every prompt sampled a token
    auto out = engine.step();
    if (!out.ok()) return out.status();
    first_tokens += static_cast<int>(out->size());
  }
  const auto t1 = Clock::now();
  int steps = 0;
  while (!engine.idle()) {
    auto out = engine.step();
    if (!out.ok()) return out.status();
    ++steps;
  }
  const auto t2 = Clock::now();
  p.prompt_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  p.token_ms = steps ? std::chrono::duration<double, std::milli>(t2 - t1).count() / steps : 0;
  p.e2e_ms = std::chrono::duration<double, std::milli>(t2 - t0).count();
  return Status();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"splitwise-bench: engine benchmarks"};
  app.require_subcommand(1);
  CLI::App* profile = app.add_subcommand(
      "profile", "Write iteration times in the simulator's perf_model.csv format");
  std::string model_path, name, hardware = "cpu", out = "-";
  std::vector<int> prompts{16, 32, 64, 128, 256}, batches{1, 2, 4, 8, 16, 32, 64},
      tokens{16, 32, 64, 128};
  int ref_prompt = 64, ref_tokens = 32, repeats = 3;
  profile->add_option("-m,--model", model_path, "Model (HF directory or llama2.c .bin)")
      ->required();
  profile->add_option("--name", name, "Model name in the CSV (default: the file's stem)");
  profile->add_option("--hardware", hardware, "Hardware name in the CSV")->capture_default_str();
  profile->add_option("--prompts", prompts, "Prompt sizes swept at batch 1")->delimiter(',');
  profile->add_option("--batches", batches, "Batch sizes swept at --ref-prompt")->delimiter(',');
  profile->add_option("--tokens", tokens, "Generated lengths swept at batch 1")->delimiter(',');
  profile->add_option("--ref-prompt", ref_prompt, "Prompt size of the batch sweep")
      ->capture_default_str();
  profile->add_option("--ref-tokens", ref_tokens, "Generated length of the prompt and batch sweeps")
      ->capture_default_str();
  profile->add_option("--repeats", repeats, "Rows per point")->check(CLI::PositiveNumber);
  profile->add_option("-o,--out", out, "CSV file ('-': standard output)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto w = load_model(model_path);
  if (!w.ok()) {
    std::fprintf(stderr, "splitwise-bench profile: %s\n", w.status().message().c_str());
    return 1;
  }
  if (name.empty()) {
    name = model_path;
    if (auto s = name.find_last_of('/'); s != std::string::npos) name = name.substr(s + 1);
    if (auto d = name.find_last_of('.'); d != std::string::npos && d > 0) name = name.substr(0, d);
  }
  const int context = w->config.max_position;
  std::vector<Point> points;
  auto add = [&](int p, int b, int t) {
    if (p + t > context) {
      std::fprintf(stderr, "skipping prompt %d + %d tokens: the model's context is %d\n", p, t,
                   context);
      return;
    }
    points.push_back({p, b, t});
  };
  for (int p : prompts) add(p, 1, ref_tokens);
  for (int b : batches) add(ref_prompt, b, ref_tokens);
  for (int t : tokens) add(ref_prompt, 1, t);
  if (points.empty()) {
    std::fprintf(stderr, "splitwise-bench profile: nothing fits the model's context of %d\n",
                 context);
    return 1;
  }

  std::ofstream file;
  if (out != "-") {
    file.open(out);
    if (!file) {
      std::fprintf(stderr, "splitwise-bench profile: cannot write %s\n", out.c_str());
      return 1;
    }
  }
  std::ostream& csv = out == "-" ? std::cout : file;
  csv << "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,"
         "token_time,e2e_time,tensor_parallel\n";
  Point warm{ref_prompt, 1, 4};
  (void)measure(*w, warm, 0);  // caches and thread pools
  uint64_t seed = 1;
  for (Point p : points) {
    for (int r = 0; r < repeats; ++r) {
      if (Status st = measure(*w, p, seed++); !st.ok()) {
        std::fprintf(stderr, "splitwise-bench profile: %s\n", st.message().c_str());
        return 1;
      }
      char row[256];
      // Power is not measured on the CPU: 0, as the profile format allows.
      std::snprintf(row, sizeof row, "%s,%s,%d,%d,%d,0,0,%.6f,%.6f,%.6f,1\n", name.c_str(),
                    hardware.c_str(), p.prompt, p.batch, p.tokens, p.prompt_ms, p.token_ms,
                    p.e2e_ms);
      csv << row;
    }
  }
  return csv ? 0 : 1;
}
