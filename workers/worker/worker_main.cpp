// splitwise-worker: serves one model in one role (prompt, token or mixed) for the router.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>

#include "workers/engine/weights.h"
#include "workers/worker/worker_service.h"

using namespace splitwise;

int main(int argc, char** argv) {
  CLI::App app{"Splitwise worker: prompt, token or mixed role"};
  std::string role_name = "mixed", model;
  worker::WorkerOptions opts;
  int kv_cache_mb = 256;
  app.add_option("--role", role_name, "prompt | token | mixed")
      ->check(CLI::IsMember({"prompt", "token", "mixed"}));
  app.add_option("-m,--model", model, "Hugging Face model directory or llama2.c .bin")->required();
  app.add_option("--host", opts.host, "address to listen on");
  app.add_option("--port", opts.port, "HTTP port (0: any free port)");
  app.add_option("--kv-port", opts.kv_port, "token role: KV receiver port (0: any free port)");
  app.add_option("--max-batch-tokens", opts.engine.scheduler.max_batch_tokens,
                 "tokens per engine step")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-num-seqs", opts.engine.scheduler.max_num_seqs, "sequences per step")
      ->check(CLI::PositiveNumber);
  app.add_option("--kv-cache-mb", kv_cache_mb, "KV cache memory")->check(CLI::PositiveNumber);
  app.add_option("--block-size", opts.engine.block_size, "tokens per KV block")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  opts.role = *worker::parse_role(role_name);
  // Splitwise's mixed machines run prompts first (with capped preemption of decodes).
  opts.engine.scheduler.prefill_first = opts.role == worker::Role::kMixed;
  opts.engine.kv_cache_bytes = static_cast<size_t>(kv_cache_mb) << 20;

  // Block the stop signals in every thread; main waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto weights = engine::load_model(model);
  if (!weights.ok()) {
    spdlog::error("{}", weights.status().message());
    return 1;
  }
  if (Status st = engine::validate_engine_config(opts.engine); !st.ok()) {
    spdlog::error("{}", st.message());
    return 1;
  }
  worker::WorkerService service(&weights.value(), opts);
  if (Status st = service.start(); !st.ok()) {
    spdlog::error("{}", st.message());
    return 1;
  }
  // One machine-readable line for scripts and tests that start workers on port 0.
  std::printf("splitwise-worker ready role=%s http=%s:%u kv=%u\n", role_name.c_str(),
              opts.host.c_str(), service.port(), service.kv_port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  service.stop();
  return 0;
}
