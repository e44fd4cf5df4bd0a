// splitwise-bench-load (the issue's `splitwise-bench load`): open-loop load against a
// router, from an Azure LLM trace or a Poisson process, with the paper's SLO check.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "bench/load/load_runner.h"
#include "bench/load/report.h"
#include "bench/load/workload.h"
#include "workers/engine/weights.h"

using namespace splitwise;
using namespace splitwise::bench;
namespace fs = std::filesystem;

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "splitwise-bench-load: %s\n", message.c_str());
  return 1;
}

// The serial baseline: `k` shapes from the shortest to the longest prompt of the
// workload (interpolation between measured points never extrapolates), sent in `rounds`
// interleaved rounds so a disturbance lands on different shapes, after `warmup` requests
// of the middle shape (first connections, cold caches), which are not counted.
std::vector<Arrival> baseline_sample(const std::vector<Arrival>& arrivals, int k, int rounds,
                                     int warmup) {
  std::vector<Arrival> sorted = arrivals;
  std::sort(sorted.begin(), sorted.end(),
            [](const Arrival& a, const Arrival& b) { return a.prompt_tokens < b.prompt_tokens; });
  std::vector<Arrival> shapes, out;
  if (sorted.empty() || k <= 0) return out;
  const double last = static_cast<double>(sorted.size() - 1);
  for (int i = 0; i < k; ++i)
    shapes.push_back(
        sorted[static_cast<size_t>(std::lround(k > 1 ? i * last / (k - 1) : last / 2))]);
  out.assign(static_cast<size_t>(std::max(warmup, 0)), shapes[shapes.size() / 2]);
  for (int r = 0; r < std::max(rounds, 1); ++r) out.insert(out.end(), shapes.begin(), shapes.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Accept `splitwise-bench-load load ...` too, so a future `splitwise-bench` dispatcher
  // can forward its arguments unchanged.
  std::vector<char*> args(argv, argv + argc);
  if (args.size() > 1 && std::string(args[1]) == "load") args.erase(args.begin() + 1);

  CLI::App app{"Open-loop load benchmark against a splitwise router (OpenAI /v1/completions)"};
  std::string router = "127.0.0.1:8000", model, tokenizer_path, trace, lengths_from, label;
  std::string baseline_file, save_baseline, json_file;
  TraceSlice slice;
  LengthScaling scaling;
  PoissonSpec poisson;
  poisson.rate = 0;
  RunOptions run;
  int baseline_requests = 8, baseline_rounds = 5, warmup = 1;
  double timeout_s = 120;
  bool baseline_only = false;
  app.add_option("--router", router, "router address host:port")->required();
  app.add_option("-m,--model", model, "the model the router serves (context, tokenizer)")
      ->required();
  app.add_option("-z,--tokenizer", tokenizer_path, "tokenizer (default: next to the model)");
  app.add_option("--label", label, "name printed above the table");
  app.add_option("--trace", trace, "Azure LLM trace CSV to replay");
  app.add_option("--time-scale", slice.time_scale, "trace speedup (wall = trace / this)")
      ->check(CLI::PositiveNumber);
  app.add_option("--rate", slice.target_rate,
                 "trace: choose --time-scale so the slice offers this req/s");
  app.add_option("--start", slice.start_s, "trace: skip this many trace seconds");
  app.add_option("--limit", slice.limit, "trace: at most this many requests");
  app.add_option("--duration", slice.duration_s,
                 "trace: only arrivals in the first S wall seconds");
  app.add_option("--length-scale", scaling.mode,
                 "fit lengths to the context by the slice's p99 or max total; none: clamp only")
      ->check(CLI::IsMember({"p99", "max", "none"}));
  app.add_option("--length-factor", scaling.factor,
                 "explicit token scale factor (overrides --length-scale)");
  app.add_option("--poisson", poisson.rate,
                 "Poisson arrivals at this many req/s instead of a trace");
  app.add_option("--requests", poisson.requests, "poisson: number of requests");
  app.add_option("--prompt-tokens", poisson.prompt_tokens,
                 "poisson: fixed prompt length (BOS included)");
  app.add_option("--output-tokens", poisson.output_tokens, "poisson: fixed max_tokens");
  app.add_option("--lengths-from", lengths_from,
                 "poisson: sample lengths from this trace CSV instead");
  app.add_option("--seed", poisson.seed, "poisson: random seed");
  app.add_option("--temperature", run.temperature,
                 "sampling temperature (0: greedy, reproducible)");
  app.add_option("--timeout-s", timeout_s, "a stream silent this long fails");
  app.add_option("--baseline-requests", baseline_requests,
                 "request shapes measured alone before the load for the SLO baseline (0: none)");
  app.add_option("--baseline-rounds", baseline_rounds,
                 "times each baseline shape is sent (the median counts)");
  app.add_option("--warmup", warmup, "serial requests sent and ignored before the baseline");
  app.add_option("--baseline", baseline_file,
                 "read the baseline from a file (a --json or --save-baseline output) instead");
  app.add_option("--save-baseline", save_baseline, "write the baseline used to this file");
  app.add_flag("--baseline-only", baseline_only,
               "measure (or read) the baseline, save it, and stop");
  app.add_option("--json", json_file, "write the summary and per-request records here");
  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (trace.empty() == (poisson.rate <= 0))
    return fail("choose exactly one arrival source: --trace FILE or --poisson RATE");

  const auto colon = router.rfind(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no port");
    run.host = router.substr(0, colon);
    run.port = static_cast<uint16_t>(std::stoi(router.substr(colon + 1)));
  } catch (const std::exception&) {
    return fail("--router '" + router + "' is not host:port");
  }
  run.idle_timeout_ms = static_cast<int>(timeout_s * 1000);

  auto config = engine::load_model_config(model);
  if (!config.ok()) return fail(config.status().message());
  scaling.context = config->max_position;
  if (tokenizer_path.empty())
    for (const char* name : {"tokenizer.json", "tokenizer.bin", "tok512.bin"}) {
      const fs::path p =
          fs::is_directory(model) ? fs::path(model) / name : fs::path(model).parent_path() / name;
      if (fs::exists(p)) {
        tokenizer_path = p.string();
        break;
      }
    }
  auto tokenizer = engine::Tokenizer::load(tokenizer_path, config->vocab_size);
  if (!tokenizer.ok()) return fail(tokenizer.status().message());
  PromptBuilder prompts(tokenizer->get());

  Workload w;
  char line[512];
  if (!trace.empty()) {
    auto rows = read_azure_trace(trace);
    if (!rows.ok()) return fail(rows.status().message());
    w = workload_from_trace(*rows, slice, scaling);
    std::snprintf(line, sizeof line,
                  "trace %s: %zu requests from t=%.0f s, time scale %.3gx, lengths x%.4f (%d "
                  "clamped to context %d)",
                  fs::path(trace).filename().c_str(), w.arrivals.size(), slice.start_s,
                  w.time_scale, w.length_factor, w.clamped, scaling.context);
  } else {
    std::vector<TraceRow> sample;
    if (!lengths_from.empty()) {
      auto rows = read_azure_trace(lengths_from);
      if (!rows.ok()) return fail(rows.status().message());
      sample = std::move(*rows);
    }
    w = workload_poisson(poisson, sample, scaling);
    std::snprintf(line, sizeof line,
                  "poisson %.3g req/s, %zu requests, lengths %s (x%.4f, %d clamped to context %d)",
                  poisson.rate, w.arrivals.size(),
                  sample.empty() ? "fixed" : fs::path(lengths_from).filename().c_str(),
                  w.length_factor, w.clamped, scaling.context);
  }
  w.source = line;
  if (w.arrivals.empty()) return fail("the workload is empty (check --start/--limit/--duration)");

  std::optional<Baseline> baseline;
  if (!baseline_file.empty()) {
    auto b = Baseline::read(baseline_file);
    if (!b.ok()) return fail(b.status().message());
    baseline = *b;
  } else if (baseline_requests > 0) {
    RunOptions serial = run;
    serial.serial = true;
    auto sample = baseline_sample(w.arrivals, baseline_requests, baseline_rounds, warmup);
    auto records = run_workload(serial, sample, prompts);
    records.erase(records.begin(), records.begin() + std::max(warmup, 0));
    auto b = Baseline::fit(records);
    if (!b.ok()) {
      const auto& r = records.front();
      return fail(b.status().message() + " (first: " + (r.failure.empty() ? "ok" : r.failure) +
                  " " + r.message + ")");
    }
    baseline = *b;
  }
  if (baseline && !save_baseline.empty()) {
    std::ofstream(save_baseline) << nlohmann::json{{"baseline", baseline->to_json()}}.dump(2)
                                 << "\n";
  }
  if (baseline_only) {
    if (!baseline) return fail("--baseline-only needs --baseline-requests > 0 or --baseline FILE");
    std::printf("baseline (%s): %s\n", baseline->source.c_str(), baseline->describe().c_str());
    return 0;
  }

  const auto records = run_workload(run, w.arrivals, prompts);
  const Summary s =
      summarize(label.empty() ? "router " + router : label, w.source, records, baseline);
  print_summary(s, stdout);
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    if (!out) return fail(json_file + ": cannot write");
    out << summary_json(s, records).dump(1) << "\n";
  }
  return 0;
}
