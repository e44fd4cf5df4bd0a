// Options shared by splitwise-sim and splitwise-plan: where the data is, which trace.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "sim/trace.h"

namespace splitwise::sim {

struct TraceOptions {
  std::string data_dir;                 // ../shared/data, or $SPLITWISE_SHARED/data
  std::string trace = "conv";           // conv | code | a CSV path
  double window_start = 0, window = 0;  // seconds; 0: the whole trace
  std::string profile;  // perf_model.csv; default: <data>/splitwise-sim-profiles/perf_model.csv
  std::string model = "llama2-70b";

  void add_to(CLI::App& app);
  std::filesystem::path profile_path() const;
  Result<std::vector<Request>> load() const;
};

}  // namespace splitwise::sim
