// CUDA paged causal GQA attention (prefill and decode) against a double-precision CPU
// reference over many shapes, block sizes, chunked-prefill offsets and context lengths.
// Cache blocks are a random permutation; every cache slot that holds no token and every
// output element is poisoned with NaN, so a stray read or a missed write shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"

namespace splitwise::kernels {
namespace {

using bf16 = __nv_bfloat16;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Host bf16: round to nearest even (inputs are finite or NaN).
uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float bf16_round(float f) {
  const uint32_t u = static_cast<uint32_t>(bf16_bits(f)) << 16;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

template <typename T>
T to_storage(float f);
template <>
float to_storage<float>(float f) {
  return f;
}
template <>
bf16 to_storage<bf16>(float f) {
  const uint16_t b = bf16_bits(f);
  bf16 r;
  std::memcpy(static_cast<void*>(&r), &b, 2);
  return r;
}
float from_storage(float x) { return x; }
float from_storage(bf16 x) {
  uint16_t b;
  std::memcpy(&b, &x, 2);
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Inputs are generated in float and, for bf16, rounded first: the reference then sees
// exactly the values the kernel sees.
template <typename T>
float representable(float f) {
  return std::is_same_v<T, bf16> ? bf16_round(f) : f;
}

// A device array of n elements (plus `offset` leading elements, to misalign on purpose).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n, size_t offset = 0) : offset_(offset) {
    SW_CUDA_CHECK(cudaMalloc(&base_, (n + offset) * sizeof(T) + 16));
  }
  ~DeviceArray() { cudaFree(base_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return base_ + offset_; }
  void upload(const std::vector<T>& h) {
    SW_CUDA_CHECK(cudaMemcpy(get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  void poison(size_t n) { SW_CUDA_CHECK(cudaMemset(get(), 0xff, n * sizeof(T))); }  // NaN
  std::vector<T> download(size_t n) const {
    std::vector<T> h(n);
    SW_CUDA_CHECK(cudaMemcpy(h.data(), get(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* base_ = nullptr;
  size_t offset_;
};

template <typename T>
std::vector<T> to_device_type(const std::vector<float>& v) {
  std::vector<T> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = to_storage<T>(v[i]);
  return r;
}

struct Shape {
  int head_dim, num_heads, kv_heads, block_size;
};

std::string describe(const Shape& s) {
  std::ostringstream os;
  os << "hd " << s.head_dim << " heads " << s.num_heads << "/" << s.kv_heads << " block "
     << s.block_size;
  return os.str();
}

// Paged cache holding kv_len[s] tokens of each seq in shuffled blocks; NaN elsewhere.
struct PagedCache {
  int num_blocks = 0, max_blocks = 0;
  std::vector<int> tables;  // [num_seqs, max_blocks], -1 past each seq's blocks
  std::vector<float> k, v;  // [num_blocks, kv_heads, block_size, head_dim]

  size_t at(const Shape& sh, int seq, int pos, int kvh) const {
    const int blk = tables[static_cast<size_t>(seq) * max_blocks + pos / sh.block_size];
    return ((static_cast<size_t>(blk) * sh.kv_heads + kvh) * sh.block_size + pos % sh.block_size) *
           sh.head_dim;
  }
};

template <typename T>
PagedCache make_cache(const Shape& sh, const std::vector<int>& kv_len, std::mt19937& rng) {
  PagedCache c;
  std::vector<int> nblk(kv_len.size());
  int total = 0;
  for (size_t s = 0; s < kv_len.size(); ++s) {
    nblk[s] = (kv_len[s] + sh.block_size - 1) / sh.block_size;
    total += nblk[s];
    c.max_blocks = std::max(c.max_blocks, nblk[s]);
  }
  c.max_blocks += 2;
  c.num_blocks = total + 3;  // a few blocks nobody owns
  std::vector<int> perm(c.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  c.tables.assign(kv_len.size() * c.max_blocks, -1);
  int next = 0;
  for (size_t s = 0; s < kv_len.size(); ++s)
    for (int b = 0; b < nblk[s]; ++b) c.tables[s * c.max_blocks + b] = perm[next++];
  const size_t n = static_cast<size_t>(c.num_blocks) * sh.kv_heads * sh.block_size * sh.head_dim;
  c.k.assign(n, kNaN);
  c.v.assign(n, kNaN);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t s = 0; s < kv_len.size(); ++s)
    for (int pos = 0; pos < kv_len[s]; ++pos)
      for (int h = 0; h < sh.kv_heads; ++h) {
        const size_t o = c.at(sh, static_cast<int>(s), pos, h);
        for (int d = 0; d < sh.head_dim; ++d) {
          c.k[o + d] = representable<T>(dist(rng));
          c.v[o + d] = representable<T>(dist(rng));
        }
      }
  return c;
}

// Queries with std 3: scores then have std ~3, so the softmax is peaked and the running
// max matters.
template <typename T>
std::vector<float> make_queries(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> q(n);
  for (float& x : q) x = representable<T>(dist(rng));
  return q;
}

// out[d] = softmax_j(scale * q . K[j]) V[j] over keys 0..nkeys-1 of `seq`, in double.
void reference_row(const Shape& sh, const PagedCache& c, int seq, int kvh, const float* q,
                   int nkeys, double scale, double* out) {
  std::vector<double> p(nkeys);
  double mx = -INFINITY;
  for (int j = 0; j < nkeys; ++j) {
    const float* k = &c.k[c.at(sh, seq, j, kvh)];
    double dot = 0.0;
    for (int d = 0; d < sh.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
    p[j] = dot * scale;
    mx = std::max(mx, p[j]);
  }
  double sum = 0.0;
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (int d = 0; d < sh.head_dim; ++d) out[d] = 0.0;
  for (int j = 0; j < nkeys; ++j) {
    const float* v = &c.v[c.at(sh, seq, j, kvh)];
    for (int d = 0; d < sh.head_dim; ++d) out[d] += p[j] * v[d];
  }
  for (int d = 0; d < sh.head_dim; ++d) out[d] /= sum;
}

// Compares `got` (the whole out buffer) with `ref` where `written` is set and checks that
// every other element still holds the 0xff poison bytes.
//
// Tolerances. fp32 runs plain FFMA with fp32 accumulation: max |got - ref| / max(1, |ref|)
// <= 1e-5 (what the CPU goldens need). bf16 is compared against the reference of the same
// bf16-rounded inputs: rounding the output alone costs up to 2^-9 relative (NMSE ~1e-6),
// and the tensor-core path also rounds P to bf16 before the PV product (another 2^-9 per
// weight, averaged over the keys), so NMSE <= 1e-4 and max |err| <= 2e-2 * max |ref| leave
// an order of magnitude of margin while catching any indexing or masking error, which
// shows as O(1) relative error.
template <typename T>
void expect_matches(const std::vector<T>& got, const std::vector<double>& ref,
                    const std::vector<char>& written) {
  double max_rel = 0.0, max_abs = 0.0, err2 = 0.0, ref2 = 0.0, max_ref = 0.0;
  size_t bad_written = 0, bad_untouched = 0, first_bad = SIZE_MAX;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!written[i]) {
      const unsigned char* b = reinterpret_cast<const unsigned char*>(&got[i]);
      if (!std::all_of(b, b + sizeof(T), [](unsigned char x) { return x == 0xff; })) {
        ++bad_untouched;
        first_bad = std::min(first_bad, i);
      }
      continue;
    }
    const double g = from_storage(got[i]);
    if (!std::isfinite(g)) {
      ++bad_written;
      first_bad = std::min(first_bad, i);
      continue;
    }
    const double e = std::fabs(g - ref[i]);
    max_rel = std::max(max_rel, e / std::max(1.0, std::fabs(ref[i])));
    max_abs = std::max(max_abs, e);
    max_ref = std::max(max_ref, std::fabs(ref[i]));
    err2 += e * e;
    ref2 += ref[i] * ref[i];
  }
  EXPECT_EQ(bad_written, 0u) << "written elements left NaN, first at " << first_bad;
  EXPECT_EQ(bad_untouched, 0u) << "elements outside the output were written, first at "
                               << first_bad;
  if (std::is_same_v<T, float>) {
    EXPECT_LE(max_rel, 1e-5);
  } else {
    EXPECT_LE(err2, 1e-4 * ref2) << "NMSE " << err2 / ref2;
    EXPECT_LE(max_abs, 2e-2 * max_ref);
  }
}

// ---------------------------------------------------------------------------------------
struct PrefillCase {
  Shape sh;
  std::vector<std::pair<int, int>> seqs;  // (pos0, q_len)
  int q_pad = 0, out_pad = 0;             // extra elements per q / out row
  bool misalign = false;                  // caches one element off 16-byte alignment
};

template <typename T>
void run_prefill(const PrefillCase& pc, std::mt19937& rng) {
  const Shape& sh = pc.sh;
  SCOPED_TRACE(describe(sh) + (std::is_same_v<T, bf16> ? " bf16" : " fp32") +
               (pc.misalign ? " misaligned" : ""));
  const int n = static_cast<int>(pc.seqs.size());
  const int width = sh.num_heads * sh.head_dim;
  const int q_stride = width + pc.q_pad, out_stride = width + pc.out_pad;
  std::vector<int> q_len(n), pos0(n), kv_len(n), row_start(n);
  int rows = 0;
  for (int s = 0; s < n; ++s) {
    pos0[s] = pc.seqs[s].first;
    q_len[s] = pc.seqs[s].second;
    kv_len[s] = pos0[s] + q_len[s];
    row_start[s] = rows;
    rows += q_len[s] + (s % 2);  // a gap row after every other seq: must stay untouched
  }
  const PagedCache cache = make_cache<T>(sh, kv_len, rng);
  const std::vector<float> q = make_queries<T>(static_cast<size_t>(rows) * q_stride, rng);
  std::vector<int> tile_seq, tile_q0;
  cuda::build_prefill_tiles(q_len.data(), n, &tile_seq, &tile_q0);

  const size_t out_n = static_cast<size_t>(rows) * out_stride;
  const size_t off = pc.misalign ? 1 : 0;
  DeviceArray<T> dq(q.size()), dk(cache.k.size(), off), dv(cache.v.size(), off), dout(out_n);
  DeviceArray<int> dtab(cache.tables.size()), drow(n), dlen(n), dpos(n), dts(tile_seq.size()),
      dtq(tile_q0.size());
  dq.upload(to_device_type<T>(q));
  dk.upload(to_device_type<T>(cache.k));
  dv.upload(to_device_type<T>(cache.v));
  dout.poison(out_n);
  dtab.upload(cache.tables);
  drow.upload(row_start);
  dlen.upload(q_len);
  dpos.upload(pos0);
  dts.upload(tile_seq);
  dtq.upload(tile_q0);

  cuda::PrefillAttentionParams p;
  p.num_seqs = n;
  p.num_heads = sh.num_heads;
  p.kv_heads = sh.kv_heads;
  p.head_dim = sh.head_dim;
  p.block_size = sh.block_size;
  p.max_blocks = cache.max_blocks;
  p.q_row_start = drow.get();
  p.q_len = dlen.get();
  p.pos0 = dpos.get();
  p.block_tables = dtab.get();
  p.tile_seq = dts.get();
  p.tile_q0 = dtq.get();
  p.num_tiles = static_cast<int>(tile_seq.size());
  p.q_stride = q_stride;
  p.out_stride = out_stride;
  p.scale = 1.0f / std::sqrt(static_cast<float>(sh.head_dim));
  cuda::prefill_attention<T>(dq.get(), dk.get(), dv.get(), dout.get(), p, nullptr);
  SW_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<T> got = dout.download(out_n);

  std::vector<double> ref(out_n, 0.0);
  std::vector<char> written(out_n, 0);
  const int group = sh.num_heads / sh.kv_heads;
  for (int s = 0; s < n; ++s)
    for (int i = 0; i < q_len[s]; ++i) {
      const size_t row = static_cast<size_t>(row_start[s] + i);
      for (int h = 0; h < sh.num_heads; ++h) {
        const size_t o = row * out_stride + static_cast<size_t>(h) * sh.head_dim;
        reference_row(sh, cache, s, h / group, &q[row * q_stride + h * sh.head_dim],
                      pos0[s] + i + 1, p.scale, &ref[o]);
        std::fill(written.begin() + o, written.begin() + o + sh.head_dim, 1);
      }
    }
  expect_matches(got, ref, written);
}

std::vector<PrefillCase> prefill_cases() {
  std::vector<PrefillCase> c;
  // Tiny test-model shapes, both block sizes, fresh prompts and chunked continuations.
  c.push_back({{8, 8, 4, 16}, {{0, 1}, {0, 37}, {5, 64}, {100, 130}, {0, 300}}, 0, 0});
  c.push_back({{8, 4, 2, 8}, {{0, 65}, {33, 1}, {200, 150}}, 2 * 2 * 8, 0});
  c.push_back({{32, 4, 2, 8}, {{0, 65}, {33, 1}, {200, 150}, {17, 64}}, 2 * 2 * 32, 8});
  c.push_back({{32, 8, 8, 16}, {{0, 300}, {64, 64}, {1000, 5}}, 0, 0});
  c.push_back({{64, 8, 8, 16}, {{0, 128}, {64, 64}, {300, 100}, {1, 2}}, 0, 0});
  c.push_back({{64, 8, 4, 8}, {{0, 257}, {129, 63}}, 2 * 4 * 64, 0});
  // Production head size: 32/8 heads, diagonal across two key tiles (pos0 % 64 != 0).
  c.push_back({{128, 32, 8, 16}, {{0, 200}, {129, 70}, {500, 1}}, 2 * 8 * 128, 0});
  c.push_back({{128, 8, 4, 8}, {{0, 300}, {700, 90}, {63, 65}}, 0, 8});
  // Generic head sizes (any 1..256) and the bf16 fallbacks (odd stride, misaligned cache).
  c.push_back({{1, 4, 2, 16}, {{0, 70}, {10, 3}}, 0, 0});
  c.push_back({{40, 4, 4, 16}, {{0, 90}, {50, 40}}, 0, 0});
  c.push_back({{96, 6, 2, 16}, {{0, 80}, {30, 20}}, 0, 0});
  c.push_back({{256, 4, 1, 16}, {{0, 70}, {100, 33}}, 0, 0});
  c.push_back({{128, 8, 2, 16}, {{0, 100}, {37, 50}}, 3, 1});
  PrefillCase mis{{64, 4, 2, 16}, {{0, 100}, {20, 30}}, 0, 0};
  mis.misalign = true;
  c.push_back(mis);
  return c;
}

TEST(CudaAttention, PrefillFp32MatchesReference) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(1234);
  for (const PrefillCase& pc : prefill_cases()) run_prefill<float>(pc, rng);
}

TEST(CudaAttention, PrefillBf16MatchesReference) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(5678);
  for (const PrefillCase& pc : prefill_cases()) run_prefill<bf16>(pc, rng);
}

TEST(CudaAttention, BuildPrefillTilesAppendsPerSeq) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::vector<int> ts = {7}, tq = {0};
  const int q_len[] = {1, 64, 65, 130};
  cuda::build_prefill_tiles(q_len, 4, &ts, &tq);
  EXPECT_EQ(ts, (std::vector<int>{7, 0, 1, 2, 2, 3, 3, 3}));
  EXPECT_EQ(tq, (std::vector<int>{0, 0, 0, 0, 64, 0, 64, 128}));
}

// ---------------------------------------------------------------------------------------
struct DecodeCase {
  Shape sh;
  std::vector<int> ctx;  // 0 = padding seq
  int max_context;
  int q_pad = 0, out_pad = 0;
  bool misalign = false;
};

// Runs decode for `ctx_runs` (each a set of lengths for the same seqs and max_context);
// with `graph`, the first run is captured into a CUDA graph and every run replays it.
template <typename T>
void run_decode(const DecodeCase& dc, std::mt19937& rng, bool graph = false,
                std::vector<std::vector<int>> ctx_runs = {}) {
  const Shape& sh = dc.sh;
  SCOPED_TRACE(describe(sh) + (std::is_same_v<T, bf16> ? " bf16" : " fp32") + " max_context " +
               std::to_string(dc.max_context) + (graph ? " graph" : ""));
  if (ctx_runs.empty()) ctx_runs.push_back(dc.ctx);
  const int n = static_cast<int>(dc.ctx.size());
  const int width = sh.num_heads * sh.head_dim;
  const int q_stride = width + dc.q_pad, out_stride = width + dc.out_pad;
  // Cache sized for the longest length any run uses.
  std::vector<int> cap(n, 0);
  for (const auto& run : ctx_runs)
    for (int s = 0; s < n; ++s) cap[s] = std::max(cap[s], run[s]);
  const PagedCache cache = make_cache<T>(sh, cap, rng);
  // Rows: a shuffled order with two rows that belong to no seq.
  const int rows = n + 2;
  std::vector<int> row_of(rows);
  std::iota(row_of.begin(), row_of.end(), 0);
  std::shuffle(row_of.begin(), row_of.end(), rng);
  row_of.resize(n);
  const std::vector<float> q = make_queries<T>(static_cast<size_t>(rows) * q_stride, rng);

  const size_t out_n = static_cast<size_t>(rows) * out_stride;
  const size_t ws_n =
      cuda::decode_attention_workspace_floats(n, sh.num_heads, sh.head_dim, dc.max_context);
  const size_t off = dc.misalign ? 1 : 0;
  DeviceArray<T> dq(q.size()), dk(cache.k.size(), off), dv(cache.v.size(), off), dout(out_n);
  DeviceArray<float> dws(std::max<size_t>(ws_n, 1));
  DeviceArray<int> dtab(cache.tables.size()), drow(n), dctx(n);
  dq.upload(to_device_type<T>(q));
  dk.upload(to_device_type<T>(cache.k));
  dv.upload(to_device_type<T>(cache.v));
  dtab.upload(cache.tables);
  drow.upload(row_of);
  dws.poison(std::max<size_t>(ws_n, 1));

  cuda::DecodeAttentionParams p;
  p.num_seqs = n;
  p.num_heads = sh.num_heads;
  p.kv_heads = sh.kv_heads;
  p.head_dim = sh.head_dim;
  p.block_size = sh.block_size;
  p.max_blocks = cache.max_blocks;
  p.q_row = drow.get();
  p.context_len = dctx.get();
  p.block_tables = dtab.get();
  p.max_context = dc.max_context;
  p.q_stride = q_stride;
  p.out_stride = out_stride;
  p.scale = 1.0f / std::sqrt(static_cast<float>(sh.head_dim));
  p.workspace = dws.get();

  cudaStream_t stream;
  SW_CUDA_CHECK(cudaStreamCreate(&stream));
  cudaGraphExec_t exec = nullptr;
  if (graph) {
    cudaGraph_t g;
    SW_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    cuda::decode_attention<T>(dq.get(), dk.get(), dv.get(), dout.get(), p, stream);
    SW_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
    SW_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    SW_CUDA_CHECK(cudaGraphDestroy(g));
  }
  const int group = sh.num_heads / sh.kv_heads;
  for (const std::vector<int>& ctx : ctx_runs) {
    dctx.upload(ctx);
    dout.poison(out_n);
    if (graph)
      SW_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    else
      cuda::decode_attention<T>(dq.get(), dk.get(), dv.get(), dout.get(), p, stream);
    SW_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<T> got = dout.download(out_n);
    std::vector<double> ref(out_n, 0.0);
    std::vector<char> written(out_n, 0);
    for (int s = 0; s < n; ++s) {
      if (ctx[s] == 0) continue;  // padding: its row must keep the poison
      const size_t row = static_cast<size_t>(row_of[s]);
      for (int h = 0; h < sh.num_heads; ++h) {
        const size_t o = row * out_stride + static_cast<size_t>(h) * sh.head_dim;
        reference_row(sh, cache, s, h / group, &q[row * q_stride + h * sh.head_dim], ctx[s],
                      p.scale, &ref[o]);
        std::fill(written.begin() + o, written.begin() + o + sh.head_dim, 1);
      }
    }
    expect_matches(got, ref, written);
  }
  if (exec) SW_CUDA_CHECK(cudaGraphExecDestroy(exec));
  SW_CUDA_CHECK(cudaStreamDestroy(stream));
}

std::vector<DecodeCase> decode_cases(std::mt19937& rng) {
  std::vector<DecodeCase> c;
  c.push_back({{8, 8, 4, 16}, {1, 17, 300, 0, 600}, 640});
  c.push_back({{32, 4, 2, 8}, {256, 257, 512, 1999, 0, 2000}, 2048, 2 * 2 * 32, 8});
  c.push_back({{64, 8, 8, 16}, {100, 256, 1, 0}, 256});  // one partition: direct write
  std::uniform_int_distribution<int> len(1, 2000);
  std::vector<int> batch(16);
  for (int& x : batch) x = len(rng);
  batch[5] = 0;
  batch[9] = 2000;
  c.push_back({{128, 32, 8, 16}, batch, 2000, 2 * 8 * 128, 0});
  c.push_back({{128, 8, 4, 8}, {600, 600, 0, 600, 599}, 600});
  // GQA groups that are not a power of two or exceed 8 heads per block.
  c.push_back({{64, 24, 2, 16}, {513, 1, 700}, 768});
  c.push_back({{32, 6, 2, 16}, {300, 40}, 512});
  // Generic head sizes: wide loads or scalar ones depending on head_dim * sizeof(T).
  c.push_back({{256, 16, 2, 16}, {513, 1, 260}, 1024});
  c.push_back({{40, 4, 2, 16}, {333, 0, 77}, 400});
  c.push_back({{12, 4, 4, 8}, {700, 3}, 768});
  c.push_back({{7, 2, 1, 16}, {260, 9}, 300});
  DecodeCase mis{{128, 8, 2, 16}, {900, 10}, 1024, 1, 3};
  mis.misalign = true;  // scalar-load fallback at a production head size
  c.push_back(mis);
  return c;
}

TEST(CudaAttention, DecodeFp32MatchesReference) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(42);
  for (const DecodeCase& dc : decode_cases(rng)) run_decode<float>(dc, rng);
}

TEST(CudaAttention, DecodeBf16MatchesReference) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(43);
  for (const DecodeCase& dc : decode_cases(rng)) run_decode<bf16>(dc, rng);
}

// One graph captured for max_context replays correctly for other lengths (no host-side
// length in the launch), including padding seqs and the single-partition grid.
TEST(CudaAttention, DecodeGraphReplaysForNewLengths) {
  if (!cuda::gpu_available()) GTEST_SKIP() << "no CUDA GPU found";
  std::mt19937 rng(44);
  const DecodeCase dc{{32, 8, 2, 16}, {1500, 3, 700, 0}, 1536};
  run_decode<float>(dc, rng, true, {{1500, 3, 700, 0}, {20, 1536, 0, 256}, {1, 1, 1, 1}});
  run_decode<bf16>(dc, rng, true, {{1500, 3, 700, 0}, {257, 0, 1024, 99}});
  const DecodeCase small{{64, 4, 4, 16}, {200, 1}, 256};
  run_decode<bf16>(small, rng, true, {{200, 1}, {0, 256}});
}

}  // namespace
}  // namespace splitwise::kernels
