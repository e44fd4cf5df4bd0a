#include "workers/engine/engine.h"

#include <algorithm>
#include <string>

namespace splitwise::engine {

Status validate_engine_config(const EngineConfig& c) {
  if (c.block_size <= 0) return Status::error("block_size must be > 0");
  if (c.num_kv_blocks < 0) return Status::error("num_kv_blocks must be >= 0");
  if (c.scheduler.max_batch_tokens <= 0) return Status::error("max_batch_tokens must be > 0");
  if (c.scheduler.max_num_seqs <= 0) return Status::error("max_num_seqs must be > 0");
  return {};
}

namespace {
int default_blocks(const ModelWeights& w, const EngineConfig& c) {
  SW_CHECK(validate_engine_config(c).ok());
  if (c.num_kv_blocks > 0) return c.num_kv_blocks;
  const int per_seq = (w.config.max_position + c.block_size - 1) / c.block_size;
  const size_t block_bytes =
      size_t{2} * sizeof(float) * c.block_size * w.config.kv_dim() * w.config.num_layers;
  const size_t fit = c.kv_cache_bytes / block_bytes;
  return static_cast<int>(std::min<size_t>(fit, size_t(per_seq) * c.scheduler.max_num_seqs));
}
}  // namespace

Engine::Engine(const ModelWeights* weights, const EngineConfig& config)
    : weights_(weights),
      pool_(default_blocks(*weights, config), config.block_size),
      kv_(&pool_),
      scheduler_(config.scheduler, &kv_),
      runner_(weights, pool_.num_blocks(), config.block_size) {}

Status Engine::add_request(GenerationRequest request) {
  const int context = weights_->config.max_position;
  const int n = static_cast<int>(request.prompt.size());
  if (n == 0) return Status::error("request " + std::to_string(request.id) + ": empty prompt");
  if (n >= context)
    return Status::error("request " + std::to_string(request.id) + ": prompt has " +
                         std::to_string(n) + " tokens but the model's context is " +
                         std::to_string(context) + " (room must remain for one new token)");
  if (request.max_new_tokens < 1)
    return Status::error("request " + std::to_string(request.id) + ": max_new_tokens must be >= 1");
  for (TokenId t : request.prompt)
    if (t < 0 || t >= weights_->config.vocab_size)
      return Status::error("request " + std::to_string(request.id) + ": token id " +
                           std::to_string(t) + " outside the vocabulary of " +
                           std::to_string(weights_->config.vocab_size));
  SW_RETURN_IF_ERROR(
      validate_sampling(request.sampling).with_context("request " + std::to_string(request.id)));
  if (samplers_.count(request.id))
    return Status::error("request " + std::to_string(request.id) + ": id already in use");
  // Written so that a huge max_new_tokens (a client's INT_MAX) cannot overflow.
  const int max_len = request.max_new_tokens >= context - n ? context : n + request.max_new_tokens;
  // The KV of the last generated token is never computed, hence max_len - 1.
  if (kv_.blocks_for(max_len - 1) > pool_.num_blocks())
    return Status::error("request " + std::to_string(request.id) + ": needs " +
                         std::to_string(kv_.blocks_for(max_len - 1)) +
                         " KV blocks but the cache has " + std::to_string(pool_.num_blocks()));

  samplers_.emplace(request.id, Sampler(request.sampling));
  SequenceState seq;
  seq.id = request.id;
  seq.tokens = std::move(request.prompt);
  seq.num_prompt = n;
  seq.max_new_tokens = request.max_new_tokens;
  seq.max_len = max_len;
  seq.stop_ids = std::move(request.stop_ids);
  scheduler_.add(std::move(seq));
  return {};
}

void Engine::abort(SeqId id) {
  scheduler_.abort(id);
  samplers_.erase(id);
}

Result<std::vector<StepResult>> Engine::step() {
  const StepPlan plan = scheduler_.schedule();
  stats_.preemptions += static_cast<int64_t>(plan.preempted.size());
  if (plan.empty()) return std::vector<StepResult>{};

  chunks_.clear();
  for (const ScheduledChunk& c : plan.chunks) {
    const SequenceState* seq = scheduler_.find(c.id);
    SW_CHECK(seq != nullptr);
    chunks_.push_back({std::span<const TokenId>(seq->tokens).subspan(c.start, c.count), c.start,
                       kv_.block_table(c.id), c.sample ? 1 : 0});
    (c.start >= seq->num_prompt ? stats_.decode_tokens : stats_.prompt_tokens) += c.count;
  }
  SW_RETURN_IF_ERROR(runner_.forward(chunks_, &logits_));
  ++stats_.steps;

  const int vocab = weights_->config.vocab_size;
  sampled_.clear();
  for (const ScheduledChunk& c : plan.chunks) {
    if (!c.sample) continue;
    const std::span<const float> row(logits_.data() + sampled_.size() * vocab, vocab);
    sampled_.push_back(samplers_.at(c.id).sample(row));
  }
  std::vector<StepResult> results = scheduler_.update(plan, sampled_);
  for (const StepResult& r : results)
    if (r.finish != FinishReason::kNone) samplers_.erase(r.id);
  return results;
}

}  // namespace splitwise::engine
