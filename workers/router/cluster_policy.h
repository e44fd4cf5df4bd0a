// Splitwise cluster scheduling as a pure function: a snapshot of the workers in, one
// placement out. The router calls it per request; the simulator calls the same code on
// its own clock, so the two cannot drift apart.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace splitwise::router {

struct WorkerView {
  enum class Role { kPrompt, kToken, kMixed };

  std::string id;
  Role role = Role::kMixed;
  bool healthy = false;
  int64_t pending_prefill_tokens = 0;  // prompt tokens queued or in prefill
  int64_t queued_requests = 0;         // requests waiting or running
  int free_kv_blocks = 0;
  int total_kv_blocks = 0;
  int block_size = 0;  // tokens per KV block; a worker reporting <= 0 is never chosen
};

struct PolicyConfig {
  // A prompt worker with more pending prefill tokens than this is overloaded: a new
  // prompt would wait behind several full prefill batches (TTFT grows with the queue).
  double prompt_overflow_tokens = 8192;
  // A token worker with free/total KV blocks below this is overloaded: the little room
  // left is kept for its running sequences to grow into, or they would be preempted.
  double token_overflow_fraction = 0.05;
  // A worker with this many requests queued takes no more (bounded memory and latency).
  int64_t max_queued_per_worker = 256;
};

struct Placement {
  enum class Kind { kSplit, kMixed, kReject };

  Kind kind = Kind::kReject;
  int prompt = -1;  // index into the workers span, kSplit only
  int token = -1;   // kSplit only
  int mixed = -1;   // kMixed only
  // kReject: seconds after which a retry may succeed (HTTP Retry-After); 0 when it never
  // can, because no worker's whole KV cache holds the request.
  int retry_after_s = 0;
  std::string reason;  // kReject: which pools were full, and why
};

// Whole KV blocks that `tokens` occupy. `block_size` must be positive.
int64_t blocks_needed(int64_t tokens, int block_size);

// Rules, in order:
//  1. Split: the prompt worker is the healthy prompt worker with the fewest pending
//     prefill tokens (join-shortest-queue; ties: fewer queued requests, then lower
//     index) among those not overloaded; the token worker is the healthy, not overloaded
//     token worker with the most free KV blocks among those whose free blocks hold
//     prompt_tokens + max_new_tokens (ties: fewer queued, then lower index). Both are
//     chosen together: a pair or nothing.
//  2. Otherwise the mixed pool: the healthy mixed worker with room for the request and
//     the fewest pending prefill tokens (ties: fewer queued, then lower index).
//  3. Otherwise reject.
// Any worker whose queue is at max_queued_per_worker is skipped, in every pool.
Placement place(std::span<const WorkerView> workers, int prompt_tokens, int max_new_tokens,
                const PolicyConfig& config);

}  // namespace splitwise::router
