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

Status ModelRunner::forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                            const LayerListener& on_layer) {
  SW_RETURN_IF_ERROR(validate_batch(config(), batch, num_kv_blocks_, block_size_));
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
      const size_t block = batch[token_chunk[t]].block_table[pos / block_size_];
      const int slot = pos % block_size_;
      float* kt = kc + block * block_size_ * kv_dim;  // [kv_dim, block_size]
      for (int i = 0; i < kv_dim; ++i)
        kt[static_cast<size_t>(i) * block_size_ + slot] = row[q_dim + i];
      std::memcpy(vc + (block * block_size_ + slot) * kv_dim, row + q_dim + kv_dim,
                  sizeof(float) * kv_dim);
    }

    if (on_layer) on_layer(l);
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

namespace {

// Causal attention of one token over its cached positions, all heads at once. HD is the
// head size when known at compile time (0: use hd), so the per-head loops unroll into a
// few vector instructions.
template <int HD>
void attend_token(const float* q,   // [heads, hd] (RoPE applied)
                  const float* kc,  // [blocks, kv_heads, hd, block_size]
                  const float* vc,  // [blocks, block_size, kv_dim]
                  std::span<const BlockId> table, int pos, int block_size, int heads, int group,
                  int hd_runtime, float scale,
                  float* scores,  // [heads, stride] scratch
                  size_t stride,
                  float* o) {  // [heads, hd]
  const int hd = HD > 0 ? HD : hd_runtime;
  const int kv_heads = heads / group, kv_dim = kv_heads * hd;
  const int len = pos + 1;
  // Scores: per block, each query head adds q[i] * K[i, slots] over the block's slots;
  // heads sharing a KV head reuse each loaded key row.
  for (int b = 0; b * block_size < len; ++b) {
    const float* kb = kc + static_cast<size_t>(table[b]) * block_size * kv_dim;
    const int n = std::min(block_size, len - b * block_size);
    for (int h = 0; h < heads; ++h) std::fill_n(scores + h * stride + b * block_size, n, 0.0f);
    for (int g = 0; g < kv_heads; ++g) {
      for (int i = 0; i < hd; ++i) {
        const float* krow = kb + (static_cast<size_t>(g) * hd + i) * block_size;
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const float qi = q[h * hd + i] * scale;
          float* sc = scores + h * stride + b * block_size;
#pragma omp simd
          for (int s = 0; s < n; ++s) sc[s] += qi * krow[s];
        }
      }
    }
  }
  for (int h = 0; h < heads; ++h) ops::softmax(scores + h * stride, len);
  // Output: each head accumulates p[j] * V[j] in registers (a fixed-size array when HD
  // is known), walking the blocks so no division runs per position.
  for (int h = 0; h < heads; ++h) {
    const float* p = scores + h * stride;
    const size_t head_off = static_cast<size_t>(h / group) * hd;
    // Four partial sums break the FMA latency chain of a single accumulator.
    constexpr int kLanes = 4;
    float acc[kLanes][HD > 0 ? HD : 1] = {};
    float* oh = o + h * hd;
    if constexpr (HD == 0) std::fill_n(oh, hd, 0.0f);
    for (int b = 0; b * block_size < len; ++b) {
      const float* vb = vc + static_cast<size_t>(table[b]) * block_size * kv_dim + head_off;
      const int n = std::min(block_size, len - b * block_size);
      const float* pb = p + b * block_size;
      for (int s = 0; s < n; ++s) {
        const float* v = vb + static_cast<size_t>(s) * kv_dim;
        float* out = HD > 0 ? acc[s % kLanes] : oh;
#pragma omp simd
        for (int i = 0; i < hd; ++i) out[i] += pb[s] * v[i];
      }
    }
    if constexpr (HD > 0)
      for (int i = 0; i < HD; ++i) oh[i] = (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);
  }
}

using AttendFn = decltype(&attend_token<0>);

AttendFn pick_attend(int hd) {
  switch (hd) {
    case 8:
      return &attend_token<8>;
    case 16:
      return &attend_token<16>;
    case 32:
      return &attend_token<32>;
    case 64:
      return &attend_token<64>;
    case 128:
      return &attend_token<128>;
    default:
      return &attend_token<0>;
  }
}

}  // namespace

void ModelRunner::attention(int layer, std::span<const SequenceChunk> batch) {
  const ModelConfig& c = config();
  const int hd = c.head_dim, heads = c.num_heads, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int qkv_dim = q_dim + 2 * kv_dim, group = heads / c.num_kv_heads;
  int total = 0, longest = 0;
  int64_t work = 0;
  for (const SequenceChunk& s : batch) {
    const int n = static_cast<int>(s.tokens.size());
    total += n;
    longest = std::max(longest, s.start_pos + n);
    work += static_cast<int64_t>(n) * (s.start_pos + n) * q_dim;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* kc = key_cache(layer);
  const float* vc = value_cache(layer);
  const float* qkv = qkv_.data();
  float* out = attn_.data();
  const int* token_pos = token_pos_.data();
  const int* token_chunk = token_chunk_.data();
  const size_t stride = longest;  // scores of one head: the batch's longest context
  float* scratch = grow(scores_, static_cast<size_t>(omp_get_max_threads()) * heads * stride);
  const AttendFn attend = pick_attend(hd);

  // One task per token, all heads together: each cached K/V row (every KV head of one
  // position, contiguous) is loaded once and used by all query heads of the token.
#pragma omp parallel for schedule(dynamic, 2) if (work >= kParallelWork)
  for (int t = 0; t < total; ++t) {
    float* scores = scratch + static_cast<size_t>(omp_get_thread_num()) * heads * stride;
    attend(qkv + static_cast<size_t>(t) * qkv_dim, kc, vc, batch[token_chunk[t]].block_table,
           token_pos[t], block_size_, heads, group, hd, scale, scores, stride,
           out + static_cast<size_t>(t) * q_dim);
  }
}

}  // namespace splitwise::engine
