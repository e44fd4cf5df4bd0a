#include "workers/engine/cuda/cuda_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cuda/add_rmsnorm.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/rope_kv.cuh"
#include "kernels/cuda/silu_mul.cuh"
#include "workers/engine/rope.h"

namespace splitwise::engine::cuda {

namespace kc = kernels::cuda;

namespace {
// Decode batch sizes with a graph of their own; a batch runs in the smallest bucket that
// holds it (padding rows compute garbage nobody reads). Dense where batches are common.
constexpr int kBuckets[] = {1,  2,  4,  8,  12,  16,  24,  32,  40,  48,
                            56, 64, 80, 96, 112, 128, 160, 192, 224, 256};

template <typename T>
T* at(const kc::DeviceBuffer& b) {
  return b.as<T>();
}
}  // namespace

Result<std::unique_ptr<CudaRunner>> CudaRunner::create(std::shared_ptr<const DeviceWeights> weights,
                                                       int num_kv_blocks, int block_size,
                                                       const CudaRunnerOptions& options) {
  const ModelConfig& c = weights->config();
  if (c.head_dim % 2 != 0) return Status::error("head_dim must be even for rotary embeddings");
  if (num_kv_blocks <= 0 || block_size <= 0)
    return Status::error("the KV cache needs at least one block of at least one token");
  const size_t kv_bytes = size_t{2} * c.num_layers * num_kv_blocks * block_size * c.kv_dim() *
                          kc::dtype_bytes(weights->dtype());
  // Everything the runner allocates up front, plus room for cuBLASLt's workspace and its
  // tuning scratch: failing here with a message beats an abort at the first allocation.
  constexpr size_t kMargin = size_t{256} << 20;
  const size_t need =
      kv_bytes + workspace_bytes(c, weights->dtype(), initial_shape(options, block_size)) + kMargin;
  size_t free_bytes = 0, total = 0;
  SW_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  if (need > free_bytes)
    return Status::error("a KV cache of " + std::to_string(num_kv_blocks) + " blocks (" +
                         std::to_string(kv_bytes >> 20) + " MiB) and step workspaces need " +
                         std::to_string(need >> 20) + " MiB but the GPU has " +
                         std::to_string(free_bytes >> 20) +
                         " MiB free: lower --kv-cache-mb or --max-batch-tokens");
  return std::unique_ptr<CudaRunner>(
      new CudaRunner(std::move(weights), num_kv_blocks, block_size, options));
}

CudaRunner::CudaRunner(std::shared_ptr<const DeviceWeights> weights, int num_blocks, int block_size,
                       const CudaRunnerOptions& options)
    : weights_(std::move(weights)),
      options_(options),
      num_blocks_(num_blocks),
      block_size_(block_size),
      half_block_bytes_(static_cast<size_t>(block_size) * weights_->config().kv_dim() *
                        kc::dtype_bytes(weights_->dtype())) {
  const ModelConfig& c = config();
  SW_CUDA_CHECK(cudaGetDevice(&device_));
  SW_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  layer_events_.resize(c.num_layers);
  for (cudaEvent_t& e : layer_events_)
    SW_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  kv_ = kc::DeviceBuffer(size_t{2} * c.num_layers * num_blocks_ * half_block_bytes_);
  const RopeTable rope = make_rope_table(c, c.max_position);
  rope_cos_ = kc::DeviceBuffer(rope.cos.size() * sizeof(float));
  rope_sin_ = kc::DeviceBuffer(rope.sin.size() * sizeof(float));
  SW_CUDA_CHECK(
      cudaMemcpy(rope_cos_.get(), rope.cos.data(), rope_cos_.bytes(), cudaMemcpyHostToDevice));
  SW_CUDA_CHECK(
      cudaMemcpy(rope_sin_.get(), rope.sin.data(), rope_sin_.bytes(), cudaMemcpyHostToDevice));
  const Shape initial = initial_shape(options_, block_size_);
  reserve(initial);
}

CudaRunner::Shape CudaRunner::initial_shape(const CudaRunnerOptions& options, int block_size) {
  Shape initial;
  initial.tokens = std::max(1, options.initial_tokens);
  // Logits are needed for one row per sequence (at most a graph batch in steady state),
  // not per token: [tokens, vocab] fp32 would be 1 GiB for Llama 3 at 2048 tokens.
  initial.logit_rows = std::min(initial.tokens, options.max_graph_batch);
  initial.decode_seqs = std::min(options.max_graph_batch, initial.tokens);
  initial.decode_max_context = options.graph_max_context;
  initial.decode_max_blocks = (options.graph_max_context + block_size - 1) / block_size;
  initial.layout = layout_for(initial);
  return initial;
}

size_t CudaRunner::workspace_bytes(const ModelConfig& c, kc::DType dtype, const Shape& s) {
  const size_t eb = kc::dtype_bytes(dtype), t = s.tokens, h = c.hidden_size;
  const size_t per_token = (3 * h + c.q_dim() + 2 * c.kv_dim() + c.q_dim() +
                            3 * static_cast<size_t>(c.intermediate_size)) *
                           eb;
  const size_t per_logit_row = h * eb + static_cast<size_t>(c.vocab_size) * sizeof(float) + 64;
  const size_t ws = kc::decode_attention_workspace_floats(
      std::max(s.decode_seqs, 1), c.num_heads, c.head_dim, std::max(s.decode_max_context, 1));
  return t * per_token + s.logit_rows * per_logit_row + ws * sizeof(float) +
         size_t(s.layout.total) * sizeof(int) +
         size_t{2} * c.max_position * (c.head_dim / 2) * sizeof(float);  // RoPE tables
}

CudaRunner::~CudaRunner() {
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g.exec);
  for (cudaEvent_t e : layer_events_) cudaEventDestroy(e);
  cudaFreeHost(host_meta_);
  cudaFreeHost(host_params_);
  cudaFreeHost(host_tokens_);
  cudaStreamDestroy(stream_);
}

KvMemoryInfo CudaRunner::kv_memory() const {
  const uint32_t format = weights_->dtype() == kc::DType::kBF16 ? 2 : 1;
  return {true, device_, format, half_block_bytes_};
}

std::byte* CudaRunner::key_block(int layer, BlockId block) {
  return kv_.as<std::byte>() + (size_t{2} * layer * num_blocks_ + block) * half_block_bytes_;
}

std::byte* CudaRunner::value_block(int layer, BlockId block) {
  return kv_.as<std::byte>() + ((size_t{2} * layer + 1) * num_blocks_ + block) * half_block_bytes_;
}

CudaRunner::Layout CudaRunner::layout_for(const Shape& s) {
  Layout l;
  int off = 0;
  auto take = [&](int n) {
    const int at = off;
    off += (n + 3) / 4 * 4;  // 16-byte aligned sub-arrays
    return at;
  };
  l.tokens = take(s.tokens);
  l.positions = take(s.tokens);
  l.slots = take(s.tokens);
  l.logit_rows = take(s.logit_rows);
  l.q_row_start = take(s.prefill_seqs);
  l.q_len = take(s.prefill_seqs);
  l.pos0 = take(s.prefill_seqs);
  l.ptables = take(s.prefill_seqs * s.prefill_max_blocks);
  l.tile_seq = take(s.tiles);
  l.tile_q0 = take(s.tiles);
  l.q_row = take(s.decode_seqs);
  l.ctx_len = take(s.decode_seqs);
  l.dtables = take(s.decode_seqs * s.decode_max_blocks);
  l.total = off;
  return l;
}

void CudaRunner::reserve(const Shape& s) {
  const ModelConfig& c = config();
  const size_t eb = kc::dtype_bytes(weights_->dtype());
  const size_t ws = kc::decode_attention_workspace_floats(
      std::max(s.decode_seqs, 1), c.num_heads, c.head_dim, std::max(s.decode_max_context, 1));
  if (s.tokens <= cap_tokens_ && s.logit_rows <= cap_logits_ && s.layout.total <= cap_meta_ &&
      ws <= cap_decode_ws_)
    return;
  SW_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (auto& [b, g] : graphs_) SW_CUDA_CHECK(cudaGraphExecDestroy(g.exec));
  graphs_.clear();  // they point into the buffers about to move
  auto grow = [](int want, int have) {
    return want <= have ? have : std::max(want, have + have / 2);
  };
  cap_tokens_ = grow(s.tokens, cap_tokens_);
  cap_logits_ = grow(s.logit_rows, cap_logits_);
  cap_meta_ = grow(s.layout.total, cap_meta_);
  // Geometric growth: a long eager decode grows its workspace every partition otherwise,
  // and each growth drops (and later re-captures) every graph.
  cap_decode_ws_ =
      ws <= cap_decode_ws_ ? cap_decode_ws_ : std::max(ws, cap_decode_ws_ + cap_decode_ws_ / 2);
  const size_t t = cap_tokens_, h = c.hidden_size;
  // Zeroed once: padding rows of a graph step read these and must not meet NaNs.
  auto alloc = [](size_t bytes) {
    kc::DeviceBuffer b(bytes);
    SW_CUDA_CHECK(cudaMemset(b.get(), 0, bytes));
    return b;
  };
  x_ = alloc(t * h * eb);
  normed_ = alloc(t * h * eb);
  qkv_ = alloc(t * (c.q_dim() + 2 * c.kv_dim()) * eb);
  attn_ = alloc(t * c.q_dim() * eb);
  tmp_ = alloc(t * h * eb);
  gate_up_ = alloc(t * 2 * c.intermediate_size * eb);
  act_ = alloc(t * c.intermediate_size * eb);
  logits_in_ = alloc(cap_logits_ * h * eb);
  logits_ = alloc(size_t(cap_logits_) * c.vocab_size * sizeof(float));
  meta_ = alloc(size_t(cap_meta_) * sizeof(int));
  sample_params_ = alloc(cap_logits_ * sizeof(kc::SampleParams));
  out_tokens_ = alloc(cap_logits_ * sizeof(int));
  decode_ws_ = alloc(cap_decode_ws_ * sizeof(float));
  cudaFreeHost(host_meta_);
  cudaFreeHost(host_params_);
  cudaFreeHost(host_tokens_);
  SW_CUDA_CHECK(cudaMallocHost(&host_meta_, size_t(cap_meta_) * sizeof(int)));
  SW_CUDA_CHECK(cudaMallocHost(&host_params_, cap_logits_ * sizeof(kc::SampleParams)));
  SW_CUDA_CHECK(cudaMallocHost(&host_tokens_, cap_logits_ * sizeof(int)));
}

int CudaRunner::bucket_for(int decode_seqs) const {
  for (int b : kBuckets)
    if (b >= decode_seqs && b <= options_.max_graph_batch) return b;
  return 0;
}

Status CudaRunner::forward(std::span<const SequenceChunk> batch, std::vector<float>* logits,
                           const LayerListener& on_layer) {
  return run(batch, {}, false, logits, nullptr, on_layer);
}

Status CudaRunner::forward_sample(std::span<const SequenceChunk> batch,
                                  std::span<const SampleRow> rows, std::vector<TokenId>* tokens,
                                  const LayerListener& on_layer) {
  return run(batch, rows, true, nullptr, tokens, on_layer);
}

Status CudaRunner::run(std::span<const SequenceChunk> batch, std::span<const SampleRow> rows,
                       bool sample, std::vector<float>* logits, std::vector<TokenId>* tokens,
                       const LayerListener& on_layer) {
  SW_RETURN_IF_ERROR(validate_batch(config(), batch, num_blocks_, block_size_));
  // The current device is per thread; the engine thread is not the one that built us.
  SW_CUDA_CHECK(cudaSetDevice(device_));
  const ModelConfig& c = config();
  Shape s;
  s.sample = sample;
  bool all_decode = !batch.empty();
  for (const SequenceChunk& ch : batch) {
    const int n = static_cast<int>(ch.tokens.size());
    const int blocks = (ch.start_pos + n + block_size_ - 1) / block_size_;
    s.tokens += n;
    s.logit_rows += ch.num_logits;
    if (sample && ch.num_logits > 1)
      return Status::error("device sampling takes at most one logits row per sequence");
    if (n == 1) {
      ++s.decode_seqs;
      s.decode_max_blocks = std::max(s.decode_max_blocks, blocks);
      s.decode_max_context = std::max(s.decode_max_context, ch.start_pos + 1);
    } else {
      ++s.prefill_seqs;
      s.tiles += (n + kc::kPrefillTileRows - 1) / kc::kPrefillTileRows;
      s.prefill_max_blocks = std::max(s.prefill_max_blocks, blocks);
    }
    all_decode = all_decode && n == 1 && ch.num_logits == 1;
  }
  if (sample && rows.size() != static_cast<size_t>(s.logit_rows))
    return Status::error("forward_sample: " + std::to_string(rows.size()) + " sample rows for " +
                         std::to_string(s.logit_rows) + " logits rows");

  // A decode-only sampling step replays its bucket's graph: the shape is the bucket's,
  // padded, with block tables as wide as the graph's longest context.
  const int bucket = sample && all_decode && options_.cuda_graphs && !on_layer &&
                             s.decode_max_context <= options_.graph_max_context
                         ? bucket_for(s.decode_seqs)
                         : 0;
  const int real_rows = s.logit_rows;
  if (bucket > 0) {
    s.tokens = s.logit_rows = s.decode_seqs = bucket;
    s.decode_max_blocks = (options_.graph_max_context + block_size_ - 1) / block_size_;
    s.decode_max_context = options_.graph_max_context;
  }
  s.layout = layout_for(s);
  reserve(s);

  // Fill the metadata (host, pinned), then one upload.
  const Layout& L = s.layout;
  int* m = host_meta_;
  std::memset(m, 0, sizeof(int) * L.total);
  int t = 0, lr = 0, ps = 0, ds = 0, tile = 0;
  for (const SequenceChunk& ch : batch) {
    const int n = static_cast<int>(ch.tokens.size());
    for (int j = 0; j < n; ++j) {
      const int pos = ch.start_pos + j;
      m[L.tokens + t + j] = ch.tokens[j];
      m[L.positions + t + j] = pos;
      m[L.slots + t + j] = ch.block_table[pos / block_size_] * block_size_ + pos % block_size_;
    }
    for (int j = n - ch.num_logits; j < n; ++j) m[L.logit_rows + lr++] = t + j;
    const int blocks = (ch.start_pos + n + block_size_ - 1) / block_size_;
    if (n == 1) {
      m[L.q_row + ds] = t;
      m[L.ctx_len + ds] = ch.start_pos + 1;
      std::copy_n(ch.block_table.data(), blocks, m + L.dtables + ds * s.decode_max_blocks);
      ++ds;
    } else {
      m[L.q_row_start + ps] = t;
      m[L.q_len + ps] = n;
      m[L.pos0 + ps] = ch.start_pos;
      std::copy_n(ch.block_table.data(), blocks, m + L.ptables + ps * s.prefill_max_blocks);
      for (int q0 = 0; q0 < n; q0 += kc::kPrefillTileRows, ++tile) {
        m[L.tile_seq + tile] = ps;
        m[L.tile_q0 + tile] = q0;
      }
      ++ps;
    }
    t += n;
  }
  for (; t < s.tokens; ++t) {  // graph padding: token 0, never cached, never attended
    m[L.slots + t] = -1;
    m[L.logit_rows + lr++] = t;
    m[L.q_row + ds++] = t;
  }
  SW_CUDA_CHECK(
      cudaMemcpyAsync(meta_.get(), m, sizeof(int) * L.total, cudaMemcpyHostToDevice, stream_));
  if (sample) {
    for (int i = 0; i < s.logit_rows; ++i) {
      kc::SampleParams& p = host_params_[i];
      p = kc::SampleParams{};
      if (i < real_rows) {
        const SamplingParams& sp = rows[i].params;
        p.temperature = sp.temperature;
        p.top_k = sp.top_k;
        p.top_p = sp.top_p;
        p.uniform = uniform_at(sp.seed, rows[i].index);
      }
    }
    SW_CUDA_CHECK(cudaMemcpyAsync(sample_params_.get(), host_params_,
                                  sizeof(kc::SampleParams) * s.logit_rows, cudaMemcpyHostToDevice,
                                  stream_));
  }

  if (bucket > 0) {
    Graph& g = graphs_[bucket];
    if (g.exec) {
      SW_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
    } else {
      // First step of this bucket: run eagerly (which also tunes its GEMMs, something a
      // capture cannot do), then capture the same work for the next steps.
      enqueue_step(s, {});
      SW_CUDA_CHECK(cudaStreamSynchronize(stream_));
      cudaGraph_t graph;
      SW_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      enqueue_step(s, {});
      SW_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
      SW_CUDA_CHECK(cudaGraphInstantiate(&g.exec, graph, 0));
      SW_CUDA_CHECK(cudaGraphDestroy(graph));
    }
  } else {
    enqueue_step(s, on_layer);
  }

  if (sample) {
    SW_CUDA_CHECK(cudaMemcpyAsync(host_tokens_, out_tokens_.get(), sizeof(int) * real_rows,
                                  cudaMemcpyDeviceToHost, stream_));
    SW_CUDA_CHECK(cudaStreamSynchronize(stream_));
    tokens->assign(host_tokens_, host_tokens_ + real_rows);
  } else {
    logits->resize(static_cast<size_t>(real_rows) * c.vocab_size);
    SW_CUDA_CHECK(cudaMemcpyAsync(logits->data(), logits_.get(), sizeof(float) * logits->size(),
                                  cudaMemcpyDeviceToHost, stream_));
    SW_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  return {};
}

void CudaRunner::enqueue_step(const Shape& s, const LayerListener& on_layer) {
  if (weights_->dtype() == kc::DType::kF32)
    enqueue_step_t<float>(s, on_layer);
  else
    enqueue_step_t<__nv_bfloat16>(s, on_layer);
}

template <typename T>
void CudaRunner::enqueue_step_t(const Shape& s, const LayerListener& on_layer) {
  const ModelConfig& c = config();
  const DeviceWeights& w = *weights_;
  const kc::DType dt = w.dtype();
  const int n = s.tokens, h = c.hidden_size, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int qkv_dim = q_dim + 2 * kv_dim, inter = c.intermediate_size;
  const float eps = c.rms_norm_eps, scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int* meta = meta_.as<int>();
  const Layout& L = s.layout;
  T* x = at<T>(x_);
  T* normed = at<T>(normed_);
  T* qkv = at<T>(qkv_);
  T* attn = at<T>(attn_);
  T* tmp = at<T>(tmp_);

  kc::embedding(meta + L.tokens, static_cast<const T*>(w.embed), x, n, h, stream_);
  kc::PrefillAttentionParams pp{};
  pp.num_seqs = s.prefill_seqs;
  pp.num_heads = c.num_heads;
  pp.kv_heads = c.num_kv_heads;
  pp.head_dim = c.head_dim;
  pp.block_size = block_size_;
  pp.max_blocks = s.prefill_max_blocks;
  pp.q_row_start = meta + L.q_row_start;
  pp.q_len = meta + L.q_len;
  pp.pos0 = meta + L.pos0;
  pp.block_tables = meta + L.ptables;
  pp.tile_seq = meta + L.tile_seq;
  pp.tile_q0 = meta + L.tile_q0;
  pp.num_tiles = s.tiles;
  pp.q_stride = qkv_dim;
  pp.out_stride = q_dim;
  pp.scale = scale;
  kc::DecodeAttentionParams dp{};
  dp.num_seqs = s.decode_seqs;
  dp.num_heads = c.num_heads;
  dp.kv_heads = c.num_kv_heads;
  dp.head_dim = c.head_dim;
  dp.block_size = block_size_;
  dp.max_blocks = s.decode_max_blocks;
  dp.q_row = meta + L.q_row;
  dp.context_len = meta + L.ctx_len;
  dp.block_tables = meta + L.dtables;
  dp.max_context = s.decode_max_context;
  dp.q_stride = qkv_dim;
  dp.out_stride = q_dim;
  dp.scale = scale;
  dp.workspace = decode_ws_.as<float>();
  kc::RopeKvShape rs;
  rs.tokens = n;
  rs.num_heads = c.num_heads;
  rs.kv_heads = c.num_kv_heads;
  rs.head_dim = c.head_dim;
  rs.block_size = block_size_;
  rs.qkv_stride = qkv_dim;

  for (int l = 0; l < c.num_layers; ++l) {
    const DeviceLayer& lw = w.layers[l];
    // The previous layer's MLP output joins the residual inside this norm.
    kc::add_rmsnorm(x, l == 0 ? nullptr : tmp, static_cast<const T*>(lw.attn_norm), normed, n, h,
                    eps, stream_);
    gemm_.matmul(normed, lw.wqkv, qkv, n, qkv_dim, h, dt, dt, false, stream_);
    T* kc_l = reinterpret_cast<T*>(key_block(l, 0));
    T* vc_l = reinterpret_cast<T*>(value_block(l, 0));
    kc::rope_kv_write(qkv, meta + L.positions, meta + L.slots, rope_cos_.as<float>(),
                      rope_sin_.as<float>(), kc_l, vc_l, rs, stream_);
    if (on_layer) {
      SW_CUDA_CHECK(cudaEventRecord(layer_events_[l], stream_));
      on_layer(l);
    }
    if (s.prefill_seqs > 0) kc::prefill_attention<T>(qkv, kc_l, vc_l, attn, pp, stream_);
    if (s.decode_seqs > 0) kc::decode_attention<T>(qkv, kc_l, vc_l, attn, dp, stream_);
    gemm_.matmul(attn, lw.wo, tmp, n, h, q_dim, dt, dt, false, stream_);
    kc::add_rmsnorm(x, tmp, static_cast<const T*>(lw.ffn_norm), normed, n, h, eps, stream_);
    gemm_.matmul(normed, lw.w_gate_up, at<T>(gate_up_), n, 2 * inter, h, dt, dt, false, stream_);
    kc::silu_mul(at<T>(gate_up_), at<T>(act_), n, inter, stream_);
    gemm_.matmul(at<T>(act_), lw.w_down, tmp, n, h, inter, dt, dt, false, stream_);
  }
  if (s.logit_rows == 0) return;
  // Last residual add and the final norm; only rows that need logits are projected.
  kc::add_rmsnorm(x, tmp, static_cast<const T*>(w.final_norm), normed, n, h, eps, stream_);
  kc::embedding(meta + L.logit_rows, normed, at<T>(logits_in_), s.logit_rows, h, stream_);
  gemm_.matmul(at<T>(logits_in_), w.lm_head, logits_.get(), s.logit_rows, c.vocab_size, h, dt,
               kc::DType::kF32, false, stream_);
  if (s.sample)
    kc::sample_tokens(logits_.as<float>(), sample_params_.as<kc::SampleParams>(),
                      out_tokens_.as<int>(), s.logit_rows, c.vocab_size, stream_);
}

}  // namespace splitwise::engine::cuda
