// splitwise-router: the OpenAI-compatible front door and cluster scheduler.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "workers/engine/weights.h"
#include "workers/router/router_config.h"
#include "workers/router/router_service.h"

using namespace splitwise;
namespace fs = std::filesystem;

namespace {

// Hugging Face models keep their chat template in tokenizer_config.json.
std::optional<std::string> read_chat_template(const fs::path& model) {
  const fs::path p = model / "tokenizer_config.json";
  if (!fs::is_directory(model) || !fs::exists(p)) return std::nullopt;
  std::ifstream in(p);
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
    return j["chat_template"].get<std::string>();
  return std::nullopt;
}

fs::path default_tokenizer(const fs::path& model) {
  if (fs::is_directory(model)) return model / "tokenizer.json";
  for (const char* name : {"tokenizer.bin", "tok512.bin"})
    if (fs::exists(model.parent_path() / name)) return model.parent_path() / name;
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Splitwise router: OpenAI-compatible API over prompt/token/mixed worker pools"};
  router::RouterOptions opts;
  std::string model, tokenizer_path, config_path;
  std::vector<std::string> prompt_workers, token_workers, mixed_workers;
  app.add_option("-m,--model", model, "the model the workers serve (for its tokenizer and shape)")
      ->required();
  app.add_option("-z,--tokenizer", tokenizer_path, "tokenizer (default: next to the model)");
  app.add_option("--model-name", opts.model_name, "model id in the API");
  app.add_option("--host", opts.host, "address to listen on");
  app.add_option("--port", opts.port, "HTTP port (0: any free port)");
  app.add_option("--config", config_path, "YAML file listing workers (role, address)");
  app.add_option("--prompt-worker", prompt_workers, "host:port of a prompt worker (repeatable)");
  app.add_option("--token-worker", token_workers, "host:port of a token worker (repeatable)");
  app.add_option("--mixed-worker", mixed_workers, "host:port of a mixed worker (repeatable)");
  app.add_option("--max-inflight", opts.max_inflight, "requests in flight before 429")
      ->check(CLI::PositiveNumber);
  app.add_option("--prompt-overflow-tokens", opts.policy.prompt_overflow_tokens,
                 "pending prefill tokens above which a prompt worker overflows to mixed");
  CLI11_PARSE(app, argc, argv);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto fail = [](const std::string& m) {
    spdlog::error("{}", m);
    return 1;
  };
  if (!config_path.empty())
    if (Status st = router::read_workers_yaml(config_path, &opts.workers); !st.ok())
      return fail(st.message());
  for (auto [role, list] : {std::pair{worker::Role::kPrompt, &prompt_workers},
                            {worker::Role::kToken, &token_workers},
                            {worker::Role::kMixed, &mixed_workers}})
    for (const std::string& s : *list) {
      auto a = router::parse_worker_address(role, s);
      if (!a.ok()) return fail(a.status().message());
      opts.workers.push_back(*a);
    }
  if (opts.workers.empty()) return fail("no workers: pass --config or --*-worker host:port");

  auto config = engine::load_model_config(model);
  if (!config.ok()) return fail(config.status().message());
  opts.context_length = config->max_position;
  if (tokenizer_path.empty()) tokenizer_path = default_tokenizer(model).string();
  auto tokenizer = engine::Tokenizer::load(tokenizer_path, config->vocab_size);
  if (!tokenizer.ok()) return fail(tokenizer.status().message());
  opts.chat_template = read_chat_template(model);

  router::RouterService service(tokenizer->get(), opts);
  if (Status st = service.start(); !st.ok()) return fail(st.message());
  std::printf("splitwise-router ready http=%s:%u workers=%zu\n", opts.host.c_str(), service.port(),
              opts.workers.size());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  service.stop();
  return 0;
}
