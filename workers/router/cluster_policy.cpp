#include "workers/router/cluster_policy.h"

#include <tuple>

#include "workers/engine/status.h"

namespace splitwise::router {
namespace {

using Role = WorkerView::Role;

// Why the workers of one pool were passed over, for the reject reason.
struct Tally {
  int total = 0;
  int unhealthy = 0;
  int queue_full = 0;
  int overloaded = 0;
  int no_room = 0;

  std::string describe(const char* pool, const char* overload_what) const {
    std::string s = std::string(pool) + " pool: ";
    if (total == 0) return s + "no workers";
    s += "0 of " + std::to_string(total) + " eligible (";
    auto part = [&s, first = true](int n, const std::string& what) mutable {
      if (n == 0) return;
      s += (first ? "" : ", ") + std::to_string(n) + " " + what;
      first = false;
    };
    part(unhealthy, "unhealthy");
    part(queue_full, "queue full");
    part(overloaded, overload_what);
    part(no_room, "without free KV blocks for the request");
    return s + ")";
  }
};

// Common gate for every pool; counts the reason when the worker is passed over.
bool available(const WorkerView& w, const PolicyConfig& config, Tally& tally) {
  ++tally.total;
  if (!w.healthy || w.block_size <= 0 || w.total_kv_blocks <= 0) {
    ++tally.unhealthy;
    return false;
  }
  if (w.queued_requests >= config.max_queued_per_worker) {
    ++tally.queue_full;
    return false;
  }
  return true;
}

// Lexicographic (pending prefill, queued, index): the index makes the order total, so
// the same snapshot always gives the same answer.
bool less_loaded(const WorkerView& a, int ai, const WorkerView& b, int bi) {
  return std::tie(a.pending_prefill_tokens, a.queued_requests, ai) <
         std::tie(b.pending_prefill_tokens, b.queued_requests, bi);
}

}  // namespace

int64_t blocks_needed(int64_t tokens, int block_size) {
  SW_CHECK(block_size > 0);
  if (tokens <= 0) return 0;
  return (tokens + block_size - 1) / block_size;
}

Placement place(std::span<const WorkerView> workers, int prompt_tokens, int max_new_tokens,
                const PolicyConfig& config) {
  SW_CHECK(prompt_tokens >= 0 && max_new_tokens >= 0);
  // The token (or mixed) worker keeps the whole sequence: prompt plus every new token.
  const int64_t seq_tokens = int64_t{prompt_tokens} + max_new_tokens;
  Tally prompt_tally, token_tally, mixed_tally;
  int prompt = -1, token = -1, mixed = -1;
  // Whether some worker, healthy or not, could ever hold the request: else retrying is
  // pointless. Counted whatever the health, because unhealthy workers may come back.
  bool mixed_ever = false, token_ever = false, prompt_ever = false;

  for (int i = 0; i < static_cast<int>(workers.size()); ++i) {
    const WorkerView& w = workers[i];
    if (w.block_size > 0) {
      const bool holds_seq = w.total_kv_blocks >= blocks_needed(seq_tokens, w.block_size);
      mixed_ever |= w.role == Role::kMixed && holds_seq;
      token_ever |= w.role == Role::kToken && holds_seq;
      prompt_ever |= w.role == Role::kPrompt &&
                     w.total_kv_blocks >= blocks_needed(prompt_tokens, w.block_size);
    }
    switch (w.role) {
      case Role::kPrompt: {
        if (!available(w, config, prompt_tally)) break;
        // The prompt's KV lives here until it has streamed out, so it must fit at all.
        if (w.total_kv_blocks < blocks_needed(prompt_tokens, w.block_size)) {
          ++prompt_tally.no_room;
        } else if (static_cast<double>(w.pending_prefill_tokens) > config.prompt_overflow_tokens) {
          ++prompt_tally.overloaded;
        } else if (prompt < 0 || less_loaded(w, i, workers[prompt], prompt)) {
          prompt = i;
        }
        break;
      }
      case Role::kToken: {
        if (!available(w, config, token_tally)) break;
        if (w.free_kv_blocks < config.token_overflow_fraction * w.total_kv_blocks) {
          ++token_tally.overloaded;
        } else if (w.free_kv_blocks < blocks_needed(seq_tokens, w.block_size)) {
          ++token_tally.no_room;
        } else if (token < 0 || w.free_kv_blocks > workers[token].free_kv_blocks ||
                   (w.free_kv_blocks == workers[token].free_kv_blocks &&
                    w.queued_requests < workers[token].queued_requests)) {
          token = i;  // strict comparisons keep the lower index on a full tie
        }
        break;
      }
      case Role::kMixed: {
        if (!available(w, config, mixed_tally)) break;
        if (w.free_kv_blocks < blocks_needed(seq_tokens, w.block_size)) {
          ++mixed_tally.no_room;
        } else if (mixed < 0 || less_loaded(w, i, workers[mixed], mixed)) {
          mixed = i;
        }
        break;
      }
    }
  }

  Placement p;
  if (prompt >= 0 && token >= 0) {
    p.kind = Placement::Kind::kSplit;
    p.prompt = prompt;
    p.token = token;
    return p;
  }
  if (mixed >= 0) {
    p.kind = Placement::Kind::kMixed;
    p.mixed = mixed;
    return p;
  }
  p.kind = Placement::Kind::kReject;
  if (!mixed_ever && !(token_ever && prompt_ever)) {
    p.retry_after_s = 0;
    p.reason = "request of " + std::to_string(seq_tokens) +
               " tokens (prompt + max_tokens) does not fit in the KV cache of any worker";
    return p;
  }
  // Capacity frees up as running sequences finish; a second is a few decode batches.
  p.retry_after_s = 1;
  p.reason = "no capacity: ";
  if (prompt < 0) p.reason += prompt_tally.describe("prompt", "over the prefill threshold") + "; ";
  if (token < 0) p.reason += token_tally.describe("token", "below the free KV threshold") + "; ";
  p.reason += mixed_tally.describe("mixed", "overloaded");
  return p;
}

}  // namespace splitwise::router
