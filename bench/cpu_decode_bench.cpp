// CPU decode benchmark: single-sequence tokens/s and batched decode throughput.
// Prints a table; the figures go to docs/benchmarks.md. Not a test: nothing asserts.
#include <omp.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "workers/engine/engine.h"

using namespace splitwise::engine;
using Clock = std::chrono::steady_clock;

namespace {

struct Run {
  double decode_tokens_per_s = 0;  // tokens after each sequence's first, over decode time
  double ms_per_step = 0;
};

void check(const splitwise::Status& st) {
  if (st.ok()) return;
  std::fprintf(stderr, "bench: %s\n", st.message().c_str());
  std::exit(1);
}

// `batch` sequences of prompt {BOS, distinct token}, `tokens` new tokens each, greedy.
// The clock starts after the step that prefilled every prompt, as llama2.c's does.
Run run_once(const ModelWeights& w, int batch, int tokens) {
  EngineConfig cfg;
  cfg.scheduler.max_num_seqs = batch;
  check(validate_engine_config(cfg));
  Engine engine(&w, cfg);
  for (int i = 0; i < batch; ++i) {
    GenerationRequest r;
    r.id = i;
    r.prompt = {1, 300 + i % 200};
    r.max_new_tokens = tokens;
    check(engine.add_request(r));
  }
  check(engine.step().status());  // prefill of all prompts + first tokens
  const auto t0 = Clock::now();
  int64_t produced = 0, steps = 0;
  while (!engine.idle()) {
    auto results = engine.step();
    check(results.status());
    produced += static_cast<int64_t>(results->size());
    ++steps;
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return {produced / s, 1e3 * s / static_cast<double>(steps)};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU decode benchmark"};
  std::string model = "../shared/models/stories260K/stories260K.bin";
  int tokens = 256, repeats = 5;
  std::vector<int> batches{1, 8, 32, 64};
  app.add_option("-m,--model", model, "model (HF directory or llama2.c .bin)");
  app.add_option("-n,--tokens", tokens, "new tokens per sequence")->check(CLI::Range(2, 1 << 20));
  app.add_option("-r,--repeats", repeats, "runs per configuration (median reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("-b,--batches", batches, "batch sizes");
  CLI11_PARSE(app, argc, argv);

  auto w = load_model(model);
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", w.status().message().c_str());
    return 1;
  }
  std::printf("model %s: %d layers, hidden %d, vocab %d; %d OpenMP threads\n", model.c_str(),
              w->config.num_layers, w->config.hidden_size, w->config.vocab_size,
              omp_get_max_threads());
  std::printf("%6s %14s %20s %10s %11s\n", "batch", "decode tok/s", "(min - max)", "ms/step",
              "vs batch 1");
  double single = 0;
  run_once(*w, 1, 32);  // warm caches and thread pools
  for (int b : batches) {
    std::vector<double> rate, step;
    for (int r = 0; r < repeats; ++r) {
      const Run run = run_once(*w, b, tokens);
      rate.push_back(run.decode_tokens_per_s);
      step.push_back(run.ms_per_step);
    }
    const double m = median(rate);
    if (b == 1) single = m;
    const auto [lo, hi] = std::minmax_element(rate.begin(), rate.end());
    std::printf("%6d %14.0f %9.0f - %-9.0f %10.3f %10.1fx\n", b, m, *lo, *hi, median(step),
                single > 0 ? m / single : 0.0);
  }
  return 0;
}
