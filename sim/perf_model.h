// Iteration times of one model on one machine, from measured profiles in the format of
// ../shared/data/splitwise-sim-profiles/perf_model.csv (also what `splitwise-bench-profile`
// writes for our own engine).
//
// Prefill time is a function of the tokens in the batch: the profile's prompt-size sweep
// (batch 1) and batch sweep (prompt 512) agree on that within noise, so both feed one
// curve. Decode time is the profile's batch sweep plus the KV cache read that the batch's
// actual context adds over the context it was measured at: the profiles measure decode at
// one context length only, and a flat decode curve hides exactly the cost that makes long
// conversations slow. The KV read rate comes from the model's KV bytes per token (with
// grouped-query attention) and the machine's HBM bandwidth.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sim/hardware.h"
#include "workers/engine/status.h"

namespace splitwise::sim {

// One curve: piecewise linear through (x, y) points, non-decreasing, constant below the
// first point and extended with the last segment's slope above the last.
class Curve {
 public:
  Curve() = default;
  explicit Curve(std::vector<std::pair<double, double>> points);
  double operator()(double x) const;
  bool empty() const { return points_.empty(); }
  const std::vector<std::pair<double, double>>& points() const { return points_; }

 private:
  std::vector<std::pair<double, double>> points_;
};

struct PerfModelInfo {
  std::string model, hardware;
  int tensor_parallel = 0;
  int rows = 0;
};

class PerfModel {
 public:
  // Rows of `model` on `machine.hardware` at `tensor_parallel` (0: the largest present).
  // Errors name the file, line, and what was missing.
  static Result<PerfModel> from_csv(const std::filesystem::path& path, const ModelSpec& model,
                                    const MachineSpec& machine, int tensor_parallel = 0);
  // For tests and synthetic studies: explicit curves (times in ms).
  PerfModel(Curve prompt_ms, Curve decode_ms, double reference_context, double kv_ms_per_token);

  // One prefill iteration over `tokens` prompt tokens (summed over the batch).
  double prompt_ms(int64_t tokens) const { return prompt_(static_cast<double>(tokens)); }
  // One decode iteration of `batch` sequences holding `context_tokens` tokens of KV in all.
  double decode_ms(int64_t batch, int64_t context_tokens) const;
  // One mixed iteration: prefill chunks of `prefill_tokens`, plus `decodes` sequences that
  // read `decode_context` tokens of KV. Decode rows ride along in the prefill GEMMs.
  double mixed_ms(int64_t prefill_tokens, int64_t decodes, int64_t decode_context) const;
  double kv_ms_per_token() const { return kv_ms_per_token_; }
  const PerfModelInfo& info() const { return info_; }

 private:
  Curve prompt_;
  Curve decode_;              // by batch size, at reference_context_ tokens per sequence
  double reference_context_;  // tokens of KV per sequence where decode_ was measured
  double kv_ms_per_token_;
  PerfModelInfo info_;
};

// The fraction of HBM bandwidth a decode attention kernel reaches in practice (our own
// split-K kernel measured 63-65% on an H100: docs/benchmarks.md).
inline constexpr double kKvReadEfficiency = 0.65;

}  // namespace splitwise::sim
