// splitwise-worker: serves one model in one role (prompt, token or mixed) for the router.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>

#include "workers/engine/engine.h"
#include "workers/engine/weights.h"
#include "workers/worker/worker_service.h"

#ifdef SPLITWISE_HAVE_CUDA
#include <cuda_runtime.h>

#include "workers/engine/cuda/cuda_runner.h"
#include "workers/transport/nccl/nccl_kv_transport.h"
#endif

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
  std::string device = "cpu", dtype = "bf16";
  int gpu = 0;
  app.add_option("--device", device, "backend: cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--gpu", gpu, "cuda: device index")->check(CLI::NonNegativeNumber);
  app.add_option("--dtype", dtype, "cuda: bf16 | fp32 (fp32 reproduces CPU outputs)")
      ->check(CLI::IsMember({"bf16", "fp32"}));
  app.add_option("--kv-transport", opts.kv_transport,
                 "KV handoff: tcp | nccl (GPU to GPU; falls back to TCP when NCCL cannot connect)")
      ->check(CLI::IsMember({"tcp", "nccl"}));
  CLI11_PARSE(app, argc, argv);
  if (opts.kv_transport == "nccl" && device != "cuda") {
    spdlog::error("--kv-transport nccl needs --device cuda (the KV cache must be on a GPU)");
    return 1;
  }
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
  engine::RunnerFactory factory;
  if (device == "cuda") {
#ifdef SPLITWISE_HAVE_CUDA
    if (const cudaError_t e = cudaSetDevice(gpu); e != cudaSuccess) {
      spdlog::error("--device cuda --gpu {}: {}", gpu, cudaGetErrorString(e));
      return 1;
    }
    const auto dt = dtype == "bf16" ? kernels::cuda::DType::kBF16 : kernels::cuda::DType::kF32;
    opts.engine.kv_element_bytes = static_cast<int>(kernels::cuda::dtype_bytes(dt));
    opts.gpu = gpu;
    // GPU workers always use the NCCL-capable ends: with --kv-transport tcp they move the
    // device KV over TCP through pinned staging; with nccl they set up a communicator per
    // peer and fall back to TCP (with a logged reason) when it cannot connect.
    namespace tn = transport::nccl;
    const bool nccl = opts.kv_transport == "nccl";
    opts.kv_factory.sender = [gpu, nccl](const transport::KvLayout& layout) {
      tn::NcclSenderOptions so;
      so.device = gpu;
      so.use_nccl = nccl;
      return std::unique_ptr<worker::KvSenderEndpoint>(
          std::make_unique<worker::SenderAdapter<tn::NcclKvSender>>(layout, so));
    };
    opts.kv_factory.receiver = [nccl](const transport::KvLayout& layout, transport::KvSink* sink,
                                      const std::string& host, uint16_t port) {
      tn::NcclReceiverOptions ro;
      ro.host = host;
      ro.port = port;
      ro.accept_nccl = nccl;
      return std::unique_ptr<worker::KvReceiverEndpoint>(
          std::make_unique<worker::ReceiverAdapter<tn::NcclKvReceiver>>(layout, sink, ro));
    };
    factory = [&](int blocks, int block_size) -> Result<std::unique_ptr<engine::Runner>> {
      auto dw = engine::cuda::DeviceWeights::upload(*weights, dt);
      if (!dw.ok()) return dw.status();
      spdlog::info("weights on GPU {}: {} MiB {}", gpu, (*dw)->bytes() >> 20, dtype);
      engine::cuda::CudaRunnerOptions ro;
      ro.initial_tokens = opts.engine.scheduler.max_batch_tokens;
      ro.graph_max_context = std::min(ro.graph_max_context, weights->config.max_position);
      auto r = engine::cuda::CudaRunner::create(
          std::shared_ptr<const engine::cuda::DeviceWeights>(std::move(*dw)), blocks, block_size,
          ro);
      if (!r.ok()) return r.status();
      return std::unique_ptr<engine::Runner>(std::move(*r));
    };
#else
    spdlog::error("--device cuda: this worker was built without CUDA");
    return 1;
#endif
  }
  auto engine = engine::Engine::create(&weights.value(), opts.engine, factory);
  if (!engine.ok()) {
    spdlog::error("{}", engine.status().message());
    return 1;
  }
  if (factory) {
    // The GPU holds its own copy; the host's fp32 tensors (32 GB for an 8B model) would
    // only count against the pod's memory limit. The engine keeps using the config.
    engine::ModelWeights config_only;
    config_only.config = weights->config;
    *weights = std::move(config_only);
  }
  worker::WorkerService service(&weights.value(), std::move(*engine), opts);
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
