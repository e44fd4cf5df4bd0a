#include "sim/sim_cli.h"

#include <cstdlib>

namespace splitwise::sim {

namespace {
std::string default_data_dir() {
  if (const char* s = std::getenv("SPLITWISE_SHARED")) return std::string(s) + "/data";
  return "../shared/data";
}
}  // namespace

void TraceOptions::add_to(CLI::App& app) {
  data_dir = default_data_dir();
  app.add_option("--data", data_dir, "Folder with azure-llm-2023/ and splitwise-sim-profiles/")
      ->capture_default_str();
  app.add_option("--trace", trace,
                 "conv, code, or a CSV with TIMESTAMP,ContextTokens,GeneratedTokens")
      ->capture_default_str();
  app.add_option("--window-start", window_start, "Seconds into the trace to start from");
  app.add_option("--window", window, "Seconds of the trace to replay (0: all)");
  app.add_option("--profile", profile,
                 "Performance profile CSV (default: <data>/splitwise-sim-profiles/perf_model.csv)");
  app.add_option("--model", model, "Model name in the profile: llama2-70b or bloom-176b")
      ->capture_default_str();
}

std::filesystem::path TraceOptions::profile_path() const {
  return profile.empty() ? std::filesystem::path(data_dir) / "splitwise-sim-profiles/perf_model.csv"
                         : std::filesystem::path(profile);
}

Result<std::vector<Request>> TraceOptions::load() const {
  std::filesystem::path path = trace;
  if (trace == "conv" || trace == "code")
    path = std::filesystem::path(data_dir) / "azure-llm-2023" /
           ("AzureLLMInferenceTrace_" + trace + ".csv");
  auto t = load_azure_trace(path);
  if (!t.ok()) return t.status();
  if (window > 0 || window_start > 0)
    return sim::window(*t, window_start, window > 0 ? window : 1e18);
  return t;
}

}  // namespace splitwise::sim
