#include "workers/engine/engine.h"

#include <algorithm>
#include <string>

namespace splitwise::engine {

Status validate_engine_config(const EngineConfig& c) {
  if (c.block_size <= 0) return Status::error("block_size must be > 0");
  if (c.num_kv_blocks < 0) return Status::error("num_kv_blocks must be >= 0");
  if (c.scheduler.max_batch_tokens <= 0) return Status::error("max_batch_tokens must be > 0");
  if (c.scheduler.max_num_seqs <= 0) return Status::error("max_num_seqs must be > 0");
  if (c.kv_element_bytes != 2 && c.kv_element_bytes != 4)
    return Status::error("kv_element_bytes must be 2 (bf16) or 4 (fp32), got " +
                         std::to_string(c.kv_element_bytes));
  return {};
}

namespace {
int default_blocks(const ModelWeights& w, const EngineConfig& c) {
  SW_CHECK(validate_engine_config(c).ok());
  if (c.num_kv_blocks > 0) return c.num_kv_blocks;
  const int per_seq = (w.config.max_position + c.block_size - 1) / c.block_size;
  const size_t block_bytes =
      size_t{2} * c.kv_element_bytes * c.block_size * w.config.kv_dim() * w.config.num_layers;
  const size_t fit = c.kv_cache_bytes / block_bytes;
  return static_cast<int>(std::min<size_t>(fit, size_t(per_seq) * c.scheduler.max_num_seqs));
}
}  // namespace

Engine::Engine(const ModelWeights* weights, const EngineConfig& config)
    : weights_(weights),
      pool_(default_blocks(*weights, config), config.block_size),
      kv_(&pool_),
      scheduler_(config.scheduler, &kv_),
      runner_(std::make_unique<ModelRunner>(weights, pool_.num_blocks(), config.block_size)) {}

Result<std::unique_ptr<Engine>> Engine::create(const ModelWeights* weights,
                                               const EngineConfig& config,
                                               const RunnerFactory& factory) {
  SW_RETURN_IF_ERROR(validate_engine_config(config));
  if (!factory) return std::make_unique<Engine>(weights, config);
  // Sized here as the constructor would; the CPU runner is not built (its cache would be
  // allocated for nothing), the factory's runner replaces it.
  EngineConfig cpu_free = config;
  cpu_free.num_kv_blocks = default_blocks(*weights, config);
  auto engine = std::unique_ptr<Engine>(new Engine(weights, cpu_free, nullptr));
  Result<std::unique_ptr<Runner>> runner = factory(engine->pool_.num_blocks(), config.block_size);
  if (!runner.ok()) return runner.status();
  const Runner& r = **runner;
  if (r.num_kv_blocks() < engine->pool_.num_blocks() || r.block_size() != config.block_size ||
      r.config().vocab_size != weights->config.vocab_size ||
      r.config().num_layers != weights->config.num_layers)
    return Status::error(
        "the backend does not match the engine: " + std::to_string(r.num_kv_blocks()) +
        " KV blocks of " + std::to_string(r.block_size()) + " tokens for a pool of " +
        std::to_string(engine->pool_.num_blocks()) + " of " + std::to_string(config.block_size));
  engine->runner_ = std::move(*runner);
  return engine;
}

Engine::Engine(const ModelWeights* weights, const EngineConfig& config, std::nullptr_t)
    : weights_(weights),
      pool_(default_blocks(*weights, config), config.block_size),
      kv_(&pool_),
      scheduler_(config.scheduler, &kv_) {}

Result<int> Engine::check_request(const GenerationRequest& request) const {
  const int context = weights_->config.max_position;
  const int n = static_cast<int>(request.prompt.size());
  const std::string who = "request " + std::to_string(request.id);
  if (n == 0) return Status::error(who + ": empty prompt");
  if (n >= context)
    return Status::error(who + ": prompt has " + std::to_string(n) +
                         " tokens but the model's context is " + std::to_string(context) +
                         " (room must remain for one new token)");
  if (request.max_new_tokens < 1) return Status::error(who + ": max_new_tokens must be >= 1");
  for (TokenId t : request.prompt)
    if (t < 0 || t >= weights_->config.vocab_size)
      return Status::error(who + ": token id " + std::to_string(t) + " outside the vocabulary of " +
                           std::to_string(weights_->config.vocab_size));
  SW_RETURN_IF_ERROR(validate_sampling(request.sampling).with_context(who));
  if (samplers_.count(request.id) || reserved_.count(request.id) || kv_.has(request.id))
    return Status::error(who + ": id already in use");
  // Written so that a huge max_new_tokens (a client's INT_MAX) cannot overflow.
  const int max_len = request.max_new_tokens >= context - n ? context : n + request.max_new_tokens;
  // The KV of the last generated token is never computed, hence max_len - 1.
  if (kv_.blocks_for(max_len - 1) > pool_.num_blocks())
    return Status::error(who + ": needs " + std::to_string(kv_.blocks_for(max_len - 1)) +
                         " KV blocks but the cache has " + std::to_string(pool_.num_blocks()));
  return max_len;
}

SequenceState Engine::make_sequence(GenerationRequest request, int max_len) {
  samplers_.emplace(request.id, Sampler(request.sampling));
  SequenceState seq;
  seq.id = request.id;
  seq.num_prompt = static_cast<int>(request.prompt.size());
  seq.tokens = std::move(request.prompt);
  seq.max_new_tokens = request.max_new_tokens;
  seq.max_len = max_len;
  seq.stop_ids = std::move(request.stop_ids);
  seq.handoff = request.handoff;
  return seq;
}

Status Engine::add_request(GenerationRequest request) {
  Result<int> max_len = check_request(request);
  if (!max_len.ok()) return max_len.status();
  scheduler_.add(make_sequence(std::move(request), *max_len));
  return {};
}

Result<std::vector<BlockId>> Engine::reserve_prefilled(const GenerationRequest& request) {
  Result<int> max_len = check_request(request);
  if (!max_len.ok()) return max_len.status();
  if (!kv_.reserve(request.id, static_cast<int>(request.prompt.size())))
    return Status::error("request " + std::to_string(request.id) + ": no free KV blocks for " +
                         std::to_string(request.prompt.size()) + " prompt tokens (" +
                         std::to_string(kv_.num_free_blocks()) + " blocks free)");
  reserved_.emplace(request.id, std::make_pair(request, *max_len));
  return kv_.block_table(request.id);
}

Result<StepResult> Engine::activate_prefilled(SeqId id, TokenId first_token) {
  auto it = reserved_.find(id);
  if (it == reserved_.end())
    return Status::error("request " + std::to_string(id) + ": no reservation to activate");
  if (first_token < 0 || first_token >= weights_->config.vocab_size)
    return Status::error("request " + std::to_string(id) + ": first token " +
                         std::to_string(first_token) + " outside the vocabulary");
  auto [request, max_len] = std::move(it->second);
  reserved_.erase(it);
  SequenceState seq = make_sequence(std::move(request), max_len);
  seq.num_computed = seq.num_prompt;
  seq.tokens.push_back(first_token);
  StepResult r{id, first_token, FinishReason::kNone};
  if (std::find(seq.stop_ids.begin(), seq.stop_ids.end(), first_token) != seq.stop_ids.end())
    r.finish = FinishReason::kStop;
  else if (seq.num_generated() >= seq.max_new_tokens ||
           static_cast<int>(seq.tokens.size()) >= seq.max_len)
    r.finish = FinishReason::kLength;
  if (r.finish != FinishReason::kNone) {
    kv_.free(id);
    samplers_.erase(id);
  } else {
    scheduler_.add_running(std::move(seq));
  }
  return r;
}

void Engine::release(SeqId id) { kv_.free(id); }

void Engine::abort(SeqId id) {
  scheduler_.abort(id);
  handoff_sent_.erase(id);
  samplers_.erase(id);
  reserved_.erase(id);
  kv_.free(id);  // a reservation or a finished handoff still holding blocks
}

Result<std::vector<StepResult>> Engine::step() {
  const StepPlan plan = scheduler_.schedule();
  stats_.preemptions += static_cast<int64_t>(plan.preempted.size());
  if (plan.empty()) return std::vector<StepResult>{};

  chunks_.clear();
  handoff_chunks_.clear();
  const int bs = pool_.block_size();
  for (const ScheduledChunk& c : plan.chunks) {
    const SequenceState* seq = scheduler_.find(c.id);
    SW_CHECK(seq != nullptr);
    chunks_.push_back({std::span<const TokenId>(seq->tokens).subspan(c.start, c.count), c.start,
                       kv_.block_table(c.id), c.sample ? 1 : 0});
    if (seq->handoff) {
      // Hand over only blocks this chunk completes (and, at the end of the prompt, the
      // partial last block): a block is then never written again after it was handed
      // over, so the transport reads memory nobody writes.
      const int end = c.start + c.count;
      const int done_blocks = c.sample ? (end + bs - 1) / bs : end / bs;
      int& sent = handoff_sent_[c.id];
      if (done_blocks > sent) {
        handoff_chunks_.push_back({c.id, sent, done_blocks - sent, kv_.block_table(c.id)});
        sent = done_blocks;
      }
    }
    (c.start >= seq->num_prompt ? stats_.decode_tokens : stats_.prompt_tokens) += c.count;
  }
  LayerListener on_layer;
  if (handoff_listener_ && !handoff_chunks_.empty())
    on_layer = [this](int layer) { handoff_listener_(layer, handoff_chunks_); };
  sampled_.clear();
  if (runner_->samples_on_device()) {
    sample_rows_.clear();
    for (const ScheduledChunk& c : plan.chunks) {
      if (!c.sample) continue;
      const Sampler& sampler = samplers_.at(c.id);
      sample_rows_.push_back({sampler.params(), sampler.params().first_index +
                                                    scheduler_.find(c.id)->num_generated()});
    }
    SW_RETURN_IF_ERROR(runner_->forward_sample(chunks_, sample_rows_, &sampled_, on_layer));
    ++stats_.steps;
  } else {
    SW_RETURN_IF_ERROR(runner_->forward(chunks_, &logits_, on_layer));
    ++stats_.steps;
    const int vocab = weights_->config.vocab_size;
    for (const ScheduledChunk& c : plan.chunks) {
      if (!c.sample) continue;
      const std::span<const float> row(logits_.data() + sampled_.size() * vocab, vocab);
      const SequenceState* seq = scheduler_.find(c.id);
      Sampler& sampler = samplers_.at(c.id);
      sampled_.push_back(sampler.sample(row, sampler.params().first_index + seq->num_generated()));
    }
  }
  std::vector<StepResult> results = scheduler_.update(plan, sampled_);
  for (const StepResult& r : results) {
    if (r.finish == FinishReason::kNone) continue;
    samplers_.erase(r.id);  // a kHandoff sequence keeps its blocks until release()
    handoff_sent_.erase(r.id);
  }
  return results;
}

}  // namespace splitwise::engine
