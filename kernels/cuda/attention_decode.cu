// Paged GQA decode attention, flash-decoding split-K: one block per (kv head, head group,
// seq, partition of kDecodePartitionKeys keys) writes a partial (max, sum, unnormalised out)
// per query head; a small second kernel merges the partitions. The grid depends only on
// max_context, so a captured graph replays for any context lengths up to it.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kPart = kDecodePartitionKeys;
constexpr int kMaxHeadDim = 256;

// kVec consecutive elements of a K/V row: one 16-byte load when kVec * sizeof(T) == 16
// (rows and caches 16-byte aligned, checked by the launcher), else one scalar load.
template <typename T, int kVec>
struct Chunk {
  static constexpr bool kWide = kVec > 1;
  static_assert(!kWide || kVec * sizeof(T) == 16, "wide chunks are 16 bytes");
  using Raw = std::conditional_t<kWide, uint4, T>;

  __device__ __forceinline__ static Raw load(const T* ptr) {
    if constexpr (kWide)
      return __ldg(reinterpret_cast<const uint4*>(ptr));
    else
      return *ptr;
  }
  __device__ __forceinline__ static Raw zero() {
    if constexpr (kWide)
      return make_uint4(0u, 0u, 0u, 0u);
    else
      return T(0.0f);
  }
  __device__ __forceinline__ static void unpack(const Raw& r, float (&f)[kVec]) {
    if constexpr (!kWide) {
      f[0] = to_float(r);
    } else if constexpr (std::is_same_v<T, float>) {
      f[0] = __uint_as_float(r.x);
      f[1] = __uint_as_float(r.y);
      f[2] = __uint_as_float(r.z);
      f[3] = __uint_as_float(r.w);
    } else {  // bf16 pairs: the low half of each word is the lower-index element
      const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
      }
    }
  }
};

// koff[j] = element offset of key k0 + j's row, for j < nkeys (one block-table read per
// key, shared by every warp of the block).
__device__ __forceinline__ void key_offsets(long long* koff,  // [nkeys] shared
                                            const int* bt,    // [max_blocks] this seq's table
                                            int k0, int nkeys, int kvh, int head_dim,
                                            const DecodeAttentionParams& p) {
  for (int j = threadIdx.x; j < nkeys; j += blockDim.x) {
    const int key = k0 + j;
    const int blk = bt[key / p.block_size];
    koff[j] =
        ((static_cast<long long>(blk) * p.kv_heads + kvh) * p.block_size + key % p.block_size) *
        head_dim;
  }
}

// Launch-time shape of the partition kernel. A key row's nchunks chunks are spread over
// `lanes` (a power of two <= 32) consecutive lanes, cpl chunks each: chunk cc * lanes + c
// belongs to lane c. The block scores kThreads / lanes keys at a time.
struct DecodeShape {
  int lanes_log2, nchunks, head_groups, num_parts;
  bool direct;  // one partition: normalise and write out, no merge kernel
};

// Shared memory: key row offsets, then scores [kHeads, kPart] reused as the cross-warp
// reduction buffer [kWarps, kHeads, head_dim], then per-head max and sum.
template <int kHeads>
__host__ __device__ constexpr size_t decode_smem_bytes(int head_dim) {
  const int floats =
      kHeads * kPart > kWarps * kHeads * head_dim ? kHeads * kPart : kWarps * kHeads * head_dim;
  return kPart * sizeof(long long) + sizeof(float) * (floats + 2 * kHeads);
}

template <typename T, int kVec, int kHeads>
__global__ void __launch_bounds__(kThreads, 4) decode_partition_kernel(
    const T* __restrict__ q,        // [rows, q_stride]
    const T* __restrict__ k_cache,  // [num_blocks, kv_heads, block_size, head_dim]
    const T* __restrict__ v_cache,  // [num_blocks, kv_heads, block_size, head_dim]
    T* __restrict__ out,            // [rows, out_stride]; written only when sh.direct
    const DecodeAttentionParams p, const DecodeShape sh) {
  using C = Chunk<T, kVec>;
  constexpr int kMaxCpl = 8 / kVec;      // head_dim <= 32 lanes * kMaxCpl * kVec = 256
  constexpr int kDims = kMaxCpl * kVec;  // dims one lane owns at most
  constexpr int kU = kVec == 8 ? 8 : 4;  // keys whose loads one thread has in flight
  const int part = blockIdx.x, seq = blockIdx.z;
  const int ctx = p.context_len[seq];
  const int k0 = part * kPart;
  if (k0 >= ctx) return;  // past this seq's context (padding: ctx == 0); block-uniform
  const int nkeys = min(kPart, ctx - k0);
  const int kvh = blockIdx.y / sh.head_groups, hg = blockIdx.y - kvh * sh.head_groups;
  const int group = p.num_heads / p.kv_heads;
  const int h0 = kvh * group + hg * kHeads;  // first query head of this block
  const int nh = min(kHeads, group - hg * kHeads);
  const int hd = p.head_dim;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int lanes = 1 << sh.lanes_log2;
  const int c = tid & (lanes - 1);  // chunk lane within the key
  const int slot = tid >> sh.lanes_log2;
  const int kps = kThreads >> sh.lanes_log2;  // keys per block step

  extern __shared__ __align__(16) unsigned char smem_decode[];
  long long* koff = reinterpret_cast<long long*>(smem_decode);  // [kPart]
  float* sc = reinterpret_cast<float*>(koff + kPart);           // [kHeads, kPart]
  float* red = sc;                                              // [kWarps, kHeads, hd]
  const int sc_floats = max(kHeads * kPart, kWarps * kHeads * hd);
  float* st_m = sc + sc_floats;  // [kHeads]
  float* st_l = st_m + kHeads;   // [kHeads]

  const int* bt = p.block_tables + static_cast<size_t>(seq) * p.max_blocks;
  key_offsets(koff, bt, k0, nkeys, kvh, hd, p);

  // This lane's slice of every head's query, pre-scaled, in registers for the whole block.
  const int qrow = p.q_row[seq];
  float qr[kHeads][kDims];
#pragma unroll
  for (int g = 0; g < kHeads; ++g)
#pragma unroll
    for (int cc = 0; cc < kMaxCpl; ++cc)
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        const int ch = (cc << sh.lanes_log2) + c;
        qr[g][cc * kVec + v] = (g < nh && ch < sh.nchunks)
                                   ? to_float(q[static_cast<size_t>(qrow) * p.q_stride +
                                                static_cast<size_t>(h0 + g) * hd + ch * kVec + v]) *
                                         p.scale
                                   : 0.0f;
      }
  __syncthreads();

  // Phase 1: scores. Loads of kU keys are issued before any is used; the key loop is
  // warp-uniform so the shuffles below see converged lanes.
  for (int jb = 0; jb < nkeys; jb += kps * kU) {
    typename C::Raw raw[kU][kMaxCpl];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = jb + u * kps + slot;
#pragma unroll
      for (int cc = 0; cc < kMaxCpl; ++cc) {
        const int ch = (cc << sh.lanes_log2) + c;
        raw[u][cc] =
            (j < nkeys && ch < sh.nchunks) ? C::load(k_cache + koff[j] + ch * kVec) : C::zero();
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      float dot[kHeads];
#pragma unroll
      for (int g = 0; g < kHeads; ++g) dot[g] = 0.0f;
#pragma unroll
      for (int cc = 0; cc < kMaxCpl; ++cc) {
        float f[kVec];
        C::unpack(raw[u][cc], f);
#pragma unroll
        for (int g = 0; g < kHeads; ++g)
#pragma unroll
          for (int v = 0; v < kVec; ++v) dot[g] = fmaf(qr[g][cc * kVec + v], f[v], dot[g]);
      }
      for (int off = lanes >> 1; off > 0; off >>= 1) {
#pragma unroll
        for (int g = 0; g < kHeads; ++g) dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], off);
      }
      const int j = jb + u * kps + slot;
      if (c == 0 && j < nkeys) {
#pragma unroll
        for (int g = 0; g < kHeads; ++g)
          if (g < nh) sc[g * kPart + j] = dot[g];
      }
    }
  }
  __syncthreads();

  // Softmax over the partition, one warp per head: sc becomes exp(s - max).
  for (int g = warp; g < nh; g += kWarps) {
    float* row = sc + g * kPart;
    float mx = -INFINITY;
    for (int j = lane; j < nkeys; j += 32) mx = fmaxf(mx, row[j]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float sum = 0.0f;
    for (int j = lane; j < nkeys; j += 32) {
      const float e = expf(row[j] - mx);
      row[j] = e;
      sum += e;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
      st_m[g] = mx;
      st_l[g] = sum;
    }
  }
  __syncthreads();

  // Phase 2: acc[g] = sum_j p[g][j] * V[j] over this lane's dims and keys.
  float acc[kHeads][kDims];
#pragma unroll
  for (int g = 0; g < kHeads; ++g)
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc[g][e] = 0.0f;
  for (int jb = 0; jb < nkeys; jb += kps * kU) {
    typename C::Raw raw[kU][kMaxCpl];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = jb + u * kps + slot;
#pragma unroll
      for (int cc = 0; cc < kMaxCpl; ++cc) {
        const int ch = (cc << sh.lanes_log2) + c;
        raw[u][cc] =
            (j < nkeys && ch < sh.nchunks) ? C::load(v_cache + koff[j] + ch * kVec) : C::zero();
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = jb + u * kps + slot;
      if (j >= nkeys) continue;  // sc past nkeys holds stale values
      float pg[kHeads];
#pragma unroll
      for (int g = 0; g < kHeads; ++g) pg[g] = g < nh ? sc[g * kPart + j] : 0.0f;
#pragma unroll
      for (int cc = 0; cc < kMaxCpl; ++cc) {
        float f[kVec];
        C::unpack(raw[u][cc], f);
#pragma unroll
        for (int g = 0; g < kHeads; ++g)
#pragma unroll
          for (int v = 0; v < kVec; ++v)
            acc[g][cc * kVec + v] = fmaf(pg[g], f[v], acc[g][cc * kVec + v]);
      }
    }
  }

  // Sum the key slots: within a warp by shuffles, across warps through shared memory.
  for (int off = lanes; off < 32; off <<= 1) {
#pragma unroll
    for (int g = 0; g < kHeads; ++g)
#pragma unroll
      for (int e = 0; e < kDims; ++e) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], off);
  }
  __syncthreads();  // all reads of sc done: red aliases it
  if (lane < lanes) {
#pragma unroll
    for (int g = 0; g < kHeads; ++g)
#pragma unroll
      for (int cc = 0; cc < kMaxCpl; ++cc)
#pragma unroll
        for (int v = 0; v < kVec; ++v) {
          const int ch = (cc << sh.lanes_log2) + c;
          if (g < nh && ch < sh.nchunks)
            red[(warp * kHeads + g) * hd + ch * kVec + v] = acc[g][cc * kVec + v];
        }
  }
  __syncthreads();

  const size_t ws_rows = static_cast<size_t>(p.num_seqs) * p.num_heads * sh.num_parts;
  for (int i = tid; i < nh * hd; i += kThreads) {
    const int g = i / hd, d = i - g * hd;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += red[(w * kHeads + g) * hd + d];
    if (sh.direct) {
      out[static_cast<size_t>(qrow) * p.out_stride + static_cast<size_t>(h0 + g) * hd + d] =
          from_float<T>(o / st_l[g]);
    } else {
      const size_t r = (static_cast<size_t>(seq) * p.num_heads + h0 + g) * sh.num_parts + part;
      p.workspace[r * hd + d] = o;
    }
  }
  if (!sh.direct && tid < nh) {
    const size_t r = (static_cast<size_t>(seq) * p.num_heads + h0 + tid) * sh.num_parts + part;
    p.workspace[ws_rows * hd + r] = st_m[tid];
    p.workspace[ws_rows * (hd + 1) + r] = st_l[tid];
  }
}

// Merges the partitions of one (head, seq): out = sum_i w_i o_i / sum_i w_i l_i with
// w_i = exp(m_i - max m). Every thread recomputes the few weights it needs (cheap, and no
// shared memory that would grow with the partition count).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    decode_reduce_kernel(T* __restrict__ out,  // [rows, out_stride]
                         const DecodeAttentionParams p, int num_parts) {
  const int head = blockIdx.x, seq = blockIdx.y;
  const int ctx = p.context_len[seq];
  if (ctx <= 0) return;
  const int np = min(num_parts, (ctx + kPart - 1) / kPart);
  const int hd = p.head_dim;
  const size_t ws_rows = static_cast<size_t>(p.num_seqs) * p.num_heads * num_parts;
  const size_t r0 = (static_cast<size_t>(seq) * p.num_heads + head) * num_parts;
  const float* ws_o = p.workspace + r0 * hd;            // [np, hd]
  const float* ws_m = p.workspace + ws_rows * hd + r0;  // [np]
  const float* ws_l = ws_m + ws_rows;                   // [np]
  float mx = -INFINITY;
  for (int i = 0; i < np; ++i) mx = fmaxf(mx, ws_m[i]);
  float sum = 0.0f;
  for (int i = 0; i < np; ++i) sum = fmaf(expf(ws_m[i] - mx), ws_l[i], sum);
  const float inv = 1.0f / sum;
  T* orow = out + static_cast<size_t>(p.q_row[seq]) * p.out_stride + static_cast<size_t>(head) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float o = 0.0f;
    for (int i = 0; i < np; ++i)
      o = fmaf(expf(ws_m[i] - mx), ws_o[static_cast<size_t>(i) * hd + d], o);
    orow[d] = from_float<T>(o * inv);
  }
}

// ---------------------------------------------------------------------------------------
// Tensor-core path (bf16, head_dim 64/128, up to 8 query heads per block). Each warp walks
// 16-key steps of the partition (steps warp, warp + 4, ...) with its own online softmax,
// loading K and V rows with 16-byte loads straight into mma fragments; the warps merge
// through shared memory at the end. Sums over dims and over keys do not care about order,
// which is what lets contiguous 16-byte rows stand in for the fragment layouts:
//   S = Q K^T (m16n8k16, rows = heads, cols = keys): thread (g, t4) loads dims
//     32c + 8t4 .. +7 of key g and uses them as the k-slots of two k-steps; its Q
//     fragment takes the same dims of head g, so every product pairs matching dims.
//   O^T = V^T P^T (rows = dims, cols = heads, k = keys): P^T is exactly the S accumulator
//     layout; thread (g, t4) loads dims D = g * hd / 8 .. + hd / 8 of keys 2t4, 2t4 + 1,
//     2t4 + 8, 2t4 + 9 and byte-permutes pairs of keys into the A fragment, so O^T row
//     (m-tile i, g) is dim D + 2i and row (i, g + 8) is dim D + 2i + 1.
constexpr int kMmaHeads = 8;  // the n8 of the PV mma

// Needs sm_80+; builds for older targets compile a trap and mma_built() keeps the launcher
// off the kernel there.
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <int kHd>
constexpr size_t decode_mma_smem_bytes() {
  return kPart * sizeof(long long) + sizeof(float) * kWarps * kMmaHeads * (kHd + 2);
}

template <int kHd>
__global__ void __launch_bounds__(kThreads, 3)
    decode_mma_kernel(const bf16* __restrict__ q,        // [rows, q_stride]
                      const bf16* __restrict__ k_cache,  // [num_blocks, kv_heads, block_size, kHd]
                      const bf16* __restrict__ v_cache,  // [num_blocks, kv_heads, block_size, kHd]
                      bf16* __restrict__ out,  // [rows, out_stride]; written only when sh.direct
                      const DecodeAttentionParams p, const DecodeShape sh) {
  constexpr int kChunks = kHd / 32;       // K loads per key row (dims 32c + 8t4 .. +7)
  constexpr int kDimsPerG = kHd / 8;      // V dims of one row group
  constexpr int kVLoads = kDimsPerG / 8;  // V loads per key row
  constexpr int kMt = kHd / 16;           // m-tiles of O^T
  constexpr int kStep = 16;               // keys per warp step
  const int part = blockIdx.x, seq = blockIdx.z;
  const int ctx = p.context_len[seq];
  const int k0 = part * kPart;
  if (k0 >= ctx) return;  // past this seq's context (padding: ctx == 0); block-uniform
  const int nkeys = min(kPart, ctx - k0);
  const int kvh = blockIdx.y / sh.head_groups, hg = blockIdx.y - kvh * sh.head_groups;
  const int group = p.num_heads / p.kv_heads;
  const int h0 = kvh * group + hg * kMmaHeads;
  const int nh = min(kMmaHeads, group - hg * kMmaHeads);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;

  extern __shared__ __align__(16) unsigned char smem_decode_mma[];
  long long* koff = reinterpret_cast<long long*>(smem_decode_mma);  // [kPart]
  float* cm = reinterpret_cast<float*>(koff + kPart);               // [kWarps, 8]
  float* cl = cm + kWarps * kMmaHeads;                              // [kWarps, 8]
  float* co = cl + kWarps * kMmaHeads;                              // [kWarps, 8, kHd]

  const int* bt = p.block_tables + static_cast<size_t>(seq) * p.max_blocks;
  key_offsets(koff, bt, k0, nkeys, kvh, kHd, p);
  // Q fragment words of head g (bf16 pairs of dims 32c + 8t4 + 2w), read element-wise:
  // no alignment needed on q. Rows of heads past nh stay zero.
  const int qrow = p.q_row[seq];
  uint32_t qw[kChunks][4];
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      qw[c][w] = 0u;
      if (g < nh) {
        const unsigned short* qp = reinterpret_cast<const unsigned short*>(
            q + static_cast<size_t>(qrow) * p.q_stride + static_cast<size_t>(h0 + g) * kHd +
            32 * c + 8 * t4 + 2 * w);
        qw[c][w] = static_cast<uint32_t>(qp[0]) | (static_cast<uint32_t>(qp[1]) << 16);
      }
    }
  __syncthreads();

  const float sl2 = p.scale * 1.4426950408889634f;  // scores in log2 units
  float o[kMt][4];
#pragma unroll
  for (int i = 0; i < kMt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // head g; l is this thread's share of the row sum
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int kb = warp * kStep; kb < nkeys; kb += kWarps * kStep) {
    uint4 kr[2][kChunks];
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
      const int j = kb + 8 * nb + g;
      const bf16* row = k_cache + (j < nkeys ? koff[j] : 0) + 8 * t4;
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
        kr[nb][c] = j < nkeys ? __ldg(reinterpret_cast<const uint4*>(row + 32 * c)) : zero;
    }
    uint4 vr[4][kVLoads];  // keys kb + 2t4 + {0, 1, 8, 9}
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = kb + 2 * t4 + (e & 1) + 8 * (e >> 1);
      const bf16* row = v_cache + (j < nkeys ? koff[j] : 0) + g * kDimsPerG;
#pragma unroll
      for (int v = 0; v < kVLoads; ++v)
        vr[e][v] = j < nkeys ? __ldg(reinterpret_cast<const uint4*>(row + 8 * v)) : zero;
    }

    float sc[2][4];
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
      sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          mma_bf16(sc[nb], qw[c][2 * h], 0u, qw[c][2 * h + 1], 0u, word(kr[nb][c], 2 * h),
                   word(kr[nb][c], 2 * h + 1));
    }

    // Online softmax of head g over this step's 16 keys (4 per thread, a quad per row).
    float sv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = kb + 8 * (i >> 1) + 2 * t4 + (i & 1);
      sv[i] = j < nkeys ? sc[i >> 1][i & 1] * sl2 : -INFINITY;
    }
    float mx = fmaxf(fmaxf(sv[0], sv[1]), fmaxf(sv[2], sv[3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);  // finite: key kb is in range
    const float alpha = exp2_approx(m - m_new);
    m = m_new;
#pragma unroll
    for (int i = 0; i < 4; ++i) sv[i] = exp2_approx(sv[i] - m_new);
    l = l * alpha + (sv[0] + sv[1]) + (sv[2] + sv[3]);
    // O^T columns are heads 2t4 and 2t4 + 1, whose alphas live in rows g = 2t4, 2t4 + 1.
    const float a_lo = __shfl_sync(0xffffffffu, alpha, 8 * t4);
    const float a_hi = __shfl_sync(0xffffffffu, alpha, 8 * t4 + 4);
    const __nv_bfloat162 p01 = __floats2bfloat162_rn(sv[0], sv[1]);
    const __nv_bfloat162 p89 = __floats2bfloat162_rn(sv[2], sv[3]);
    const uint32_t b0 = *reinterpret_cast<const uint32_t*>(&p01);
    const uint32_t b1 = *reinterpret_cast<const uint32_t*>(&p89);
#pragma unroll
    for (int i = 0; i < kMt; ++i) {
      o[i][0] *= a_lo;
      o[i][1] *= a_hi;
      o[i][2] *= a_lo;
      o[i][3] *= a_hi;
      const uint32_t wa = word(vr[0][i / 4], i % 4), wb = word(vr[1][i / 4], i % 4);
      const uint32_t wc = word(vr[2][i / 4], i % 4), wd = word(vr[3][i / 4], i % 4);
      mma_bf16(o[i], __byte_perm(wa, wb, 0x5410), __byte_perm(wa, wb, 0x7632),
               __byte_perm(wc, wd, 0x5410), __byte_perm(wc, wd, 0x7632), b0, b1);
    }
  }

  // Merge the warps: each publishes (m, l, O) per head, then every output element takes
  // the max-rescaled sum. A warp that had no keys has m = -inf and contributes zero.
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (t4 == 0) {
    cm[warp * kMmaHeads + g] = m;
    cl[warp * kMmaHeads + g] = l;
  }
  float* cw = co + warp * kMmaHeads * kHd;
#pragma unroll
  for (int i = 0; i < kMt; ++i) {
    const int d = g * kDimsPerG + 2 * i;
    cw[(2 * t4) * kHd + d] = o[i][0];
    cw[(2 * t4 + 1) * kHd + d] = o[i][1];
    cw[(2 * t4) * kHd + d + 1] = o[i][2];
    cw[(2 * t4 + 1) * kHd + d + 1] = o[i][3];
  }
  __syncthreads();
  const size_t ws_rows = static_cast<size_t>(p.num_seqs) * p.num_heads * sh.num_parts;
  for (int idx = tid; idx < nh * kHd; idx += kThreads) {
    const int hh = idx / kHd, d = idx - hh * kHd;
    float mmax = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mmax = fmaxf(mmax, cm[w * kMmaHeads + hh]);
    float acc = 0.0f, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2_approx(cm[w * kMmaHeads + hh] - mmax);
      acc = fmaf(f, co[(w * kMmaHeads + hh) * kHd + d], acc);
      sum = fmaf(f, cl[w * kMmaHeads + hh], sum);
    }
    if (sh.direct) {
      out[static_cast<size_t>(qrow) * p.out_stride + static_cast<size_t>(h0 + hh) * kHd + d] =
          __float2bfloat16_rn(acc / sum);
    } else {
      const size_t r = (static_cast<size_t>(seq) * p.num_heads + h0 + hh) * sh.num_parts + part;
      p.workspace[r * kHd + d] = acc;
      if (d == 0) {
        p.workspace[ws_rows * kHd + r] = mmax * 0.6931471805599453f;  // natural-log units
        p.workspace[ws_rows * (kHd + 1) + r] = sum;
      }
    }
  }
}

template <int kHd>
void launch_decode_mma(const bf16* q, const bf16* k_cache, const bf16* v_cache, bf16* out,
                       const DecodeAttentionParams& p, DecodeShape sh, cudaStream_t stream) {
  const int group = p.num_heads / p.kv_heads;
  sh.head_groups = (group + kMmaHeads - 1) / kMmaHeads;
  const dim3 grid(sh.num_parts, p.kv_heads * sh.head_groups, p.num_seqs);
  decode_mma_kernel<kHd>
      <<<grid, kThreads, decode_mma_smem_bytes<kHd>(), stream>>>(q, k_cache, v_cache, out, p, sh);
  SW_CUDA_CHECK_LAUNCH();
}

// True when the binary the driver picked for this kernel targets sm_80+ (bf16 mma); a
// build for older targets runs the CUDA-core path instead of trapping.
template <int kHd>
bool mma_built() {
  static const bool built = [] {
    cudaFuncAttributes a{};
    SW_CUDA_CHECK(cudaFuncGetAttributes(&a, decode_mma_kernel<kHd>));
    return a.ptxVersion >= 80;
  }();
  return built;
}

int decode_num_parts(int max_context) { return (max_context + kPart - 1) / kPart; }

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T, int kVec, int kHeads>
void launch_decode_partitions(const T* q, const T* k_cache, const T* v_cache, T* out,
                              const DecodeAttentionParams& p, const DecodeShape& sh,
                              cudaStream_t stream) {
  const size_t smem = decode_smem_bytes<kHeads>(p.head_dim);  // <= 35 KB: no opt-in needed
  const dim3 grid(sh.num_parts, p.kv_heads * sh.head_groups, p.num_seqs);
  decode_partition_kernel<T, kVec, kHeads>
      <<<grid, kThreads, smem, stream>>>(q, k_cache, v_cache, out, p, sh);
  SW_CUDA_CHECK_LAUNCH();
}

template <typename T, int kVec>
void launch_decode_heads(const T* q, const T* k_cache, const T* v_cache, T* out,
                         const DecodeAttentionParams& p, DecodeShape sh, cudaStream_t stream) {
  // Up to 8 query heads of a GQA group share a block (and each K/V byte read); larger groups
  // take several blocks, whose repeated reads of the same rows mostly hit L2.
  const int group = p.num_heads / p.kv_heads;
  const int heads = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
  sh.head_groups = (group + heads - 1) / heads;
  switch (heads) {
    case 1:
      return launch_decode_partitions<T, kVec, 1>(q, k_cache, v_cache, out, p, sh, stream);
    case 2:
      return launch_decode_partitions<T, kVec, 2>(q, k_cache, v_cache, out, p, sh, stream);
    case 4:
      return launch_decode_partitions<T, kVec, 4>(q, k_cache, v_cache, out, p, sh, stream);
    default:
      return launch_decode_partitions<T, kVec, 8>(q, k_cache, v_cache, out, p, sh, stream);
  }
}

// bf16 with head_dim 64/128 and aligned caches runs on tensor cores; everything else on the
// CUDA-core kernel, with 16-byte loads where rows allow them.
template <typename T>
void launch_decode_any(const T* q, const T* k_cache, const T* v_cache, T* out,
                       const DecodeAttentionParams& p, const DecodeShape& sh, bool wide,
                       cudaStream_t stream) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (wide && p.head_dim == 128 && mma_built<128>())
      return launch_decode_mma<128>(q, k_cache, v_cache, out, p, sh, stream);
    if (wide && p.head_dim == 64 && mma_built<64>())
      return launch_decode_mma<64>(q, k_cache, v_cache, out, p, sh, stream);
  }
  if (wide)
    return launch_decode_heads<T, static_cast<int>(16 / sizeof(T))>(q, k_cache, v_cache, out, p, sh,
                                                                    stream);
  launch_decode_heads<T, 1>(q, k_cache, v_cache, out, p, sh, stream);
}

}  // namespace

size_t decode_attention_workspace_floats(int num_seqs, int num_heads, int head_dim,
                                         int max_context) {
  const int parts = decode_num_parts(max_context);
  if (parts <= 1) return 0;
  return static_cast<size_t>(num_seqs) * num_heads * parts * (head_dim + 2);
}

template <typename T>
void decode_attention(const T* q, const T* k_cache, const T* v_cache, T* out,
                      const DecodeAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim < 1 || p.head_dim > kMaxHeadDim || p.kv_heads < 1 || p.num_heads % p.kv_heads != 0)
    fail("attention", "head_dim must be in [1, 256] and num_heads a multiple of kv_heads",
         "decode_attention", __FILE__, __LINE__);
  if (p.num_seqs == 0 || p.max_context <= 0) return;
  DecodeShape sh{};
  sh.num_parts = decode_num_parts(p.max_context);
  sh.direct = sh.num_parts == 1;
  const bool wide = (p.head_dim * sizeof(T)) % 16 == 0 && aligned16(k_cache) && aligned16(v_cache);
  const int vec = wide ? static_cast<int>(16 / sizeof(T)) : 1;
  sh.nchunks = p.head_dim / vec;
  sh.lanes_log2 = 0;
  while ((1 << sh.lanes_log2) < sh.nchunks && sh.lanes_log2 < 5) ++sh.lanes_log2;
  launch_decode_any<T>(q, k_cache, v_cache, out, p, sh, wide, stream);
  if (!sh.direct) {
    decode_reduce_kernel<T>
        <<<dim3(p.num_heads, p.num_seqs), kThreads, 0, stream>>>(out, p, sh.num_parts);
    SW_CUDA_CHECK_LAUNCH();
  }
}

template void decode_attention<float>(const float*, const float*, const float*, float*,
                                      const DecodeAttentionParams&, cudaStream_t);
template void decode_attention<bf16>(const bf16*, const bf16*, const bf16*, bf16*,
                                     const DecodeAttentionParams&, cudaStream_t);

}  // namespace splitwise::kernels::cuda
