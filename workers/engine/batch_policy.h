// Batching rules that the engine's Scheduler and the cluster simulator (sim/) both apply,
// so the simulator's machines batch exactly as the workers do: how much of a prompt runs
// in a step, and when a running sequence may still be preempted.
#pragma once

#include <algorithm>

namespace splitwise::engine {

// Tokens of a prompt (or of its unprocessed remainder) that run in a step with `budget`
// tokens left: prompts longer than the budget are chunked, never skipped.
constexpr int prefill_chunk(int remaining, int budget) { return std::min(remaining, budget); }

// Splitwise's mixed machines let prompts preempt decodes, but a sequence preempted
// `max_preemptions` times is never preempted again, so no request starves.
constexpr bool may_preempt(int num_preemptions, int max_preemptions) {
  return num_preemptions < max_preemptions;
}

}  // namespace splitwise::engine
