// How many prompt and token machines a load needs, from the same performance profiles
// the simulator and planner use (sim::PerfModel). Closed-form, so the operator can
// decide every interval without simulating: a prompt machine's capacity is its token
// rate at full prefill batches; a token machine's is its token rate at the largest batch
// whose iteration time still meets the TBT target and whose KV fits in memory.
#pragma once

#include <memory>
#include <string>

#include "sim/hardware.h"
#include "sim/perf_model.h"

namespace splitwise::controller {

struct LoadObservation {
  double arrival_rate = 0;  // requests/s
  double mean_prompt_tokens = 0;
  double mean_output_tokens = 0;
};

struct MachineModel {
  sim::MachineSpec machine;
  std::shared_ptr<const sim::PerfModel> perf;
};

struct CapacityTargets {
  double tbt_seconds = 0;  // 0: 1.25 x the machine's batch-1 time (the paper's p50 SLO)
  double utilization = 0.7;
  int max_batch_tokens = 2048;
  int max_num_seqs = 4096;
};

struct PoolNeed {
  int prompt = 0;
  int token = 0;
  int token_batch = 0;         // the per-machine decode batch the sizing assumed
  double prompt_capacity = 0;  // prompt tokens/s per machine
  double token_capacity = 0;   // output tokens/s per machine
};

PoolNeed needed_machines(const LoadObservation& load, const MachineModel& prompt,
                         const MachineModel& token, const sim::ModelSpec& model,
                         const CapacityTargets& targets);

}  // namespace splitwise::controller
