#include "workers/engine/model_runner.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/cpu/ops.h"

namespace splitwise::engine {

namespace ops = splitwise::kernels::cpu;

namespace {
// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelWork = 1 << 15;

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
}  // namespace

ModelRunner::ModelRunner(const ModelWeights* weights, int num_kv_blocks, int block_size)
    : weights_(weights),
      num_kv_blocks_(num_kv_blocks),
      block_size_(block_size),
      layer_stride_(static_cast<size_t>(num_kv_blocks) * block_size * weights->config.kv_dim()),
      keys_(std::make_unique_for_overwrite<float[]>(layer_stride_ * weights->config.num_layers)),
      values_(std::make_unique_for_overwrite<float[]>(layer_stride_ * weights->config.num_layers)),
      rope_(make_rope_table(weights->config, weights->config.max_position)) {}

Status ModelRunner::validate(std::span<const SequenceChunk> batch) const {
  const ModelConfig& c = config();
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceChunk& s = batch[i];
    const int n = static_cast<int>(s.tokens.size());
    const std::string where = "batch entry " + std::to_string(i);
    if (n == 0) return Status::error(where + ": no tokens");
    if (s.num_logits < 0 || s.num_logits > n)
      return Status::error(where + ": num_logits " + std::to_string(s.num_logits) +
                           " outside [0, " + std::to_string(n) + "]");
    if (s.start_pos < 0 || s.start_pos + n > c.max_position)
      return Status::error(where + ": positions up to " + std::to_string(s.start_pos + n) +
                           " exceed the model's context of " + std::to_string(c.max_position));
    const int blocks_needed = (s.start_pos + n + block_size_ - 1) / block_size_;
    if (static_cast<int>(s.block_table.size()) < blocks_needed)
      return Status::error(where + ": block table has " + std::to_string(s.block_table.size()) +
                           " blocks, needs " + std::to_string(blocks_needed));
    for (BlockId b : s.block_table.first(blocks_needed))
      if (b < 0 || b >= num_kv_blocks_)
        return Status::error(where + ": block id " + std::to_string(b) + " out of range");
    for (TokenId t : s.tokens)
      if (t < 0 || t >= c.vocab_size)
        return Status::error(where + ": token id " + std::to_string(t) + " outside vocabulary of " +
                             std::to_string(c.vocab_size));
  }
  return {};
}

Status ModelRunner::forward(std::span<const SequenceChunk> batch, std::vector<float>* logits) {
  SW_RETURN_IF_ERROR(validate(batch));
  const ModelConfig& c = config();
  const int dim = c.hidden_size, hd = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int qkv_dim = q_dim + 2 * kv_dim, inter = c.intermediate_size;

  int num_tokens = 0, num_logits = 0;
  for (const SequenceChunk& s : batch) {
    num_tokens += static_cast<int>(s.tokens.size());
    num_logits += s.num_logits;
  }
  float* x = grow(x_, static_cast<size_t>(num_tokens) * dim);
  float* xb = grow(xb_, static_cast<size_t>(num_tokens) * dim);
  float* qkv = grow(qkv_, static_cast<size_t>(num_tokens) * qkv_dim);
  float* attn = grow(attn_, static_cast<size_t>(num_tokens) * q_dim);
  float* gate_up = grow(gate_up_, static_cast<size_t>(num_tokens) * 2 * inter);
  float* act = grow(act_, static_cast<size_t>(num_tokens) * inter);
  int* token_pos = grow(token_pos_, num_tokens);
  int* token_chunk = grow(token_chunk_, num_tokens);

  for (int ci = 0, t = 0; ci < static_cast<int>(batch.size()); ++ci) {
    const SequenceChunk& s = batch[ci];
    for (size_t j = 0; j < s.tokens.size(); ++j, ++t) {
      token_pos[t] = s.start_pos + static_cast<int>(j);
      token_chunk[t] = ci;
      std::memcpy(x + static_cast<size_t>(t) * dim,
                  weights_->embed.data() + static_cast<size_t>(s.tokens[j]) * dim,
                  sizeof(float) * dim);
    }
  }

  const bool par_rows = static_cast<int64_t>(num_tokens) * dim >= kParallelWork;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_->layers[l];
    ops::rmsnorm(x, w.attn_norm.data(), xb, num_tokens, dim, c.rms_norm_eps);
    ops::matmul_nt(xb, w.wqkv.data(), qkv, num_tokens, qkv_dim, dim);

    // RoPE on Q and K, then K and V into their cache slots. Every token of the batch is
    // written before any attends, so a prefill chunk sees its own earlier tokens.
    float* kc = key_cache(l);
    float* vc = value_cache(l);
#pragma omp parallel for if (par_rows)
    for (int t = 0; t < num_tokens; ++t) {
      float* row = qkv + static_cast<size_t>(t) * qkv_dim;
      const int pos = token_pos[t];
      const float* cs = rope_.cos.data() + static_cast<size_t>(pos) * rope_.half_dim;
      const float* sn = rope_.sin.data() + static_cast<size_t>(pos) * rope_.half_dim;
      ops::rope_rotate_half(row, c.num_heads, hd, cs, sn);
      ops::rope_rotate_half(row + q_dim, c.num_kv_heads, hd, cs, sn);
      const BlockId block = batch[token_chunk[t]].block_table[pos / block_size_];
      const size_t slot = (static_cast<size_t>(block) * block_size_ + pos % block_size_) * kv_dim;
      std::memcpy(kc + slot, row + q_dim, sizeof(float) * kv_dim);
      std::memcpy(vc + slot, row + q_dim + kv_dim, sizeof(float) * kv_dim);
    }

    attention(l, batch);
    ops::matmul_nt(attn, w.wo.data(), x, num_tokens, dim, q_dim, /*accumulate=*/true);

    ops::rmsnorm(x, w.ffn_norm.data(), xb, num_tokens, dim, c.rms_norm_eps);
    ops::matmul_nt(xb, w.w_gate_up.data(), gate_up, num_tokens, 2 * inter, dim);
    ops::silu_mul(gate_up, act, num_tokens, inter);
    ops::matmul_nt(act, w.w_down.data(), x, num_tokens, dim, inter, /*accumulate=*/true);
  }

  // Only rows that need logits pay for the final norm and the vocabulary projection.
  float* normed = grow(normed_, static_cast<size_t>(std::max(num_logits, 1)) * dim);
  for (int ci = 0, t = 0, r = 0; ci < static_cast<int>(batch.size()); ++ci) {
    const int n = static_cast<int>(batch[ci].tokens.size());
    const int first = t + n - batch[ci].num_logits;
    for (int k = first; k < t + n; ++k, ++r)
      ops::rmsnorm(x + static_cast<size_t>(k) * dim, weights_->final_norm.data(),
                   normed + static_cast<size_t>(r) * dim, 1, dim, c.rms_norm_eps);
    t += n;
  }
  logits->resize(static_cast<size_t>(num_logits) * c.vocab_size);
  if (num_logits > 0)
    ops::matmul_nt(normed, weights_->lm_head_data(), logits->data(), num_logits, c.vocab_size, dim);
  return {};
}

void ModelRunner::attention(int layer, std::span<const SequenceChunk> batch) {
  const ModelConfig& c = config();
  const int hd = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int qkv_dim = q_dim + 2 * kv_dim, group = c.num_heads / c.num_kv_heads;
  int total = 0;
  int64_t work = 0;
  for (const SequenceChunk& s : batch) {
    total += static_cast<int>(s.tokens.size());
    work += static_cast<int64_t>(s.tokens.size()) * (s.start_pos + s.tokens.size()) * q_dim;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* kc = key_cache(layer);
  const float* vc = value_cache(layer);
  const float* qkv = qkv_.data();
  float* out = attn_.data();
  const int* token_pos = token_pos_.data();
  const int* token_chunk = token_chunk_.data();
  const int max_ctx = c.max_position;
  float* scratch = grow(scores_, static_cast<size_t>(omp_get_max_threads()) * max_ctx);

#pragma omp parallel if (work >= kParallelWork)
  {
    float* scores = scratch + static_cast<size_t>(omp_get_thread_num()) * max_ctx;
#pragma omp for schedule(dynamic, 4)
    for (int task = 0; task < total * c.num_heads; ++task) {
      const int t = task / c.num_heads, h = task % c.num_heads;
      const int pos = token_pos[t];
      const std::span<const BlockId> table = batch[token_chunk[t]].block_table;
      const float* q = qkv + static_cast<size_t>(t) * qkv_dim + h * hd;
      const size_t head_off = static_cast<size_t>(h / group) * hd;
      for (int j = 0; j <= pos; ++j) {
        const size_t slot =
            (static_cast<size_t>(table[j / block_size_]) * block_size_ + j % block_size_) * kv_dim;
        const float* k = kc + slot + head_off;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < hd; ++i) dot += q[i] * k[i];
        scores[j] = dot * scale;
      }
      ops::softmax(scores, pos + 1);
      float* o = out + static_cast<size_t>(t) * q_dim + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int j = 0; j <= pos; ++j) {
        const size_t slot =
            (static_cast<size_t>(table[j / block_size_]) * block_size_ + j % block_size_) * kv_dim;
        const float* v = vc + slot + head_off;
        const float p = scores[j];
#pragma omp simd
        for (int i = 0; i < hd; ++i) o[i] += p * v[i];
      }
    }
  }
}

}  // namespace splitwise::engine
