#include "controller/capacity_model.h"

#include <algorithm>
#include <cmath>

namespace splitwise::controller {

PoolNeed needed_machines(const LoadObservation& load, const MachineModel& prompt,
                         const MachineModel& token, const sim::ModelSpec& model,
                         const CapacityTargets& t) {
  PoolNeed need;
  const double util = std::clamp(t.utilization, 0.05, 1.0);
  const double batch_tokens = std::max(1, t.max_batch_tokens);
  need.prompt_capacity = batch_tokens / (prompt.perf->prompt_ms(t.max_batch_tokens) / 1e3);

  // Decode: the mean sequence is half-way through its output.
  const double ctx = std::max(1.0, load.mean_prompt_tokens + load.mean_output_tokens / 2);
  const double seq_kv = std::max(1.0, load.mean_prompt_tokens + load.mean_output_tokens);
  const double free_bytes =
      token.machine.gpus * token.machine.hbm_bytes_per_gpu - model.weight_bytes();
  const double kv_tokens = std::max(0.0, 0.9 * free_bytes / model.kv_bytes_per_token());
  const double single = token.perf->decode_ms(1, static_cast<int64_t>(ctx)) / 1e3;
  // The batch fluctuates around its mean (arrivals are random), so the mean batch's
  // iteration must leave room under the target: 80% of it.
  const double tbt = 0.8 * (t.tbt_seconds > 0 ? t.tbt_seconds : 1.25 * single);
  auto iteration = [&](int b) {
    return token.perf->decode_ms(b, static_cast<int64_t>(b * ctx)) / 1e3;
  };
  const int kv_limit = static_cast<int>(std::max(1.0, kv_tokens / seq_kv));
  int lo = 1, hi = std::max(1, std::min(t.max_num_seqs, kv_limit));
  // The largest batch meeting the TBT target (decode time grows with the batch).
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (iteration(mid) <= tbt)
      lo = mid;
    else
      hi = mid - 1;
  }
  need.token_batch = lo;
  need.token_capacity = lo / iteration(lo);

  const double prompt_rate = load.arrival_rate * load.mean_prompt_tokens;
  const double output_rate = load.arrival_rate * std::max(0.0, load.mean_output_tokens - 1);
  // Clamped in double: a wild rate must not overflow the int (Autoscaler applies maxReplicas).
  auto count = [](double x) { return static_cast<int>(std::clamp(std::ceil(x), 0.0, 1e6)); };
  need.prompt = count(prompt_rate / (need.prompt_capacity * util));
  need.token = count(output_rate / (need.token_capacity * util));
  return need;
}

}  // namespace splitwise::controller
