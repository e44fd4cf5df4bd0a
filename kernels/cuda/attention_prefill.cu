// Paged causal GQA prefill attention: a FlashAttention-2-style bf16 tensor-core kernel
// for head_dim 32/64/128 and a plain-FFMA kernel for every other case (fp32 always).
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dtype.cuh"

namespace splitwise::kernels::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;  // 4 warps, both kernels
constexpr int kWarps = kThreads / 32;

// Element offset of key `key`'s row in a [num_blocks, kv_heads, block_size, head_dim] cache.
__device__ __forceinline__ size_t kv_row_offset(const int* block_table, int key, int block_size,
                                                int kv_heads, int kvh, int head_dim) {
  const int blk = block_table[key / block_size];
  return ((static_cast<size_t>(blk) * kv_heads + kvh) * block_size + key % block_size) *
         static_cast<size_t>(head_dim);
}

// ---------------------------------------------------------------------------------------
// Generic path: any head_dim in [1, 32 * kDpl], any T, no alignment assumptions, plain FFMA
// (no tf32, no fast math: the fp32 path reproduces CPU goldens to 1e-5).
//
// A block owns kRows query rows of one tile and one head; each warp kRw of those rows. Keys
// go through shared memory in chunks of 32 (lane j scores key j against all kRw rows), with
// an online softmax per row. kRw shrinks as head_dim grows so that the output accumulator
// o[kRw][kDpl] stays at <= 32 registers.
template <int kDpl>
struct GenericShape {
  static constexpr int kRw = kDpl <= 2 ? 16 : 32 / kDpl;  // query rows per warp
  static constexpr int kRows = kWarps * kRw;              // query rows per block
  static constexpr int kSplits = kPrefillTileRows / kRows;
  static constexpr int kKeys = 32;        // keys per shared-memory chunk
  static constexpr int kPst = kRw + 4;    // p row stride: float4-aligned, fewer bank conflicts
  static constexpr int kVst = 32 * kDpl;  // V row stride (zero-padded)
};

// Shared-memory carve-up of the generic kernel (bytes), in order: key offsets, p, q, v, k.
struct GenericSmem {
  int hd4, kst;
  size_t off_p, off_q, off_v, off_k, bytes;
};

template <int kDpl>
__host__ __device__ GenericSmem generic_smem(int head_dim) {
  using S = GenericShape<kDpl>;
  GenericSmem s{};
  s.hd4 = (head_dim + 3) & ~3;
  s.kst = s.hd4 + 1;  // odd stride: lane j reading row j hits 32 distinct banks
  s.off_p = S::kKeys * sizeof(long long);
  s.off_q = s.off_p + sizeof(float) * kWarps * S::kKeys * S::kPst;
  s.off_v = s.off_q + sizeof(float) * S::kRows * s.hd4;
  s.off_k = s.off_v + sizeof(float) * S::kKeys * S::kVst;
  s.bytes = s.off_k + sizeof(float) * S::kKeys * s.kst;
  return s;
}

template <typename T, int kDpl>
__global__ void __launch_bounds__(kThreads, 2) prefill_generic_kernel(
    const T* __restrict__ q,        // [rows, q_stride]
    const T* __restrict__ k_cache,  // [num_blocks, kv_heads, block_size, head_dim]
    const T* __restrict__ v_cache,  // [num_blocks, kv_heads, block_size, head_dim]
    T* __restrict__ out,            // [rows, out_stride]
    const PrefillAttentionParams p) {
  using S = GenericShape<kDpl>;
  constexpr int kRw = S::kRw;
  const int hd = p.head_dim;
  const GenericSmem sm = generic_smem<kDpl>(hd);
  extern __shared__ __align__(16) unsigned char smem_generic[];
  long long* koff = reinterpret_cast<long long*>(smem_generic);   // [kKeys], -1 = no key
  float* ps = reinterpret_cast<float*>(smem_generic + sm.off_p);  // [kWarps, kKeys, kPst]
  float* qs = reinterpret_cast<float*>(smem_generic + sm.off_q);  // [kRows, hd4], scaled
  float* vs = reinterpret_cast<float*>(smem_generic + sm.off_v);  // [kKeys, kVst]
  float* ks = reinterpret_cast<float*>(smem_generic + sm.off_k);  // [kKeys, kst]

  const int head = blockIdx.x;
  const int tile = p.num_tiles - 1 - static_cast<int>(blockIdx.y);  // heavy tiles first
  const int seq = p.tile_seq[tile];
  const int qlen = p.q_len[seq];
  const int q0 = p.tile_q0[tile] + static_cast<int>(blockIdx.z) * S::kRows;
  if (q0 >= qlen) return;  // block-uniform, before any barrier
  const int pos0 = p.pos0[seq];
  const int kv_end = pos0 + qlen;
  const int kv_hi = min(pos0 + q0 + S::kRows, kv_end);  // keys this block needs: [0, kv_hi)
  const int kvh = head / (p.num_heads / p.kv_heads);
  const int row0 = p.q_row_start[seq] + q0;
  const int* bt = p.block_tables + static_cast<size_t>(seq) * p.max_blocks;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int hd4 = sm.hd4, kst = sm.kst;

  for (int i = tid; i < S::kRows * hd4; i += kThreads) {
    const int r = i / hd4, d = i - r * hd4;
    float v = 0.0f;
    if (q0 + r < qlen && d < hd)
      v = to_float(
              q[static_cast<size_t>(row0 + r) * p.q_stride + static_cast<size_t>(head) * hd + d]) *
          p.scale;
    qs[i] = v;
  }

  float o[kRw][kDpl], m[kRw], l[kRw];
#pragma unroll
  for (int r = 0; r < kRw; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;  // this lane's share of the row sum; reduced over the warp at the end
#pragma unroll
    for (int i = 0; i < kDpl; ++i) o[r][i] = 0.0f;
  }
  const int wr0 = warp * kRw;  // first row of this warp within the block
  const float* krow = ks + lane * kst;
  float* pw = ps + warp * S::kKeys * S::kPst;

  // Ascending chunks: key 0 (in the first chunk) is visible to every row, so each row's
  // running max is finite from the first chunk on and exp(-inf - m) is a clean 0.
  for (int c0 = 0; c0 < kv_hi; c0 += S::kKeys) {
    __syncthreads();  // previous chunk fully read (and qs written, the first time)
    if (tid < S::kKeys) {
      const int key = c0 + tid;
      koff[tid] =
          key < kv_hi
              ? static_cast<long long>(kv_row_offset(bt, key, p.block_size, p.kv_heads, kvh, hd))
              : -1;
    }
    __syncthreads();
    for (int i = tid; i < S::kKeys * hd4; i += kThreads) {
      const int j = i / hd4, d = i - j * hd4;
      const long long off = koff[j];
      ks[j * kst + d] = (off >= 0 && d < hd) ? to_float(k_cache[off + d]) : 0.0f;
    }
    for (int i = tid; i < S::kKeys * S::kVst; i += kThreads) {
      const int j = i / S::kVst, d = i % S::kVst;
      const long long off = koff[j];
      vs[i] = (off >= 0 && d < hd) ? to_float(v_cache[off + d]) : 0.0f;
    }
    __syncthreads();

    float s[kRw];
#pragma unroll
    for (int r = 0; r < kRw; ++r) s[r] = 0.0f;
    for (int d = 0; d < hd4; d += 4) {
      const float k0 = krow[d], k1 = krow[d + 1], k2 = krow[d + 2], k3 = krow[d + 3];
#pragma unroll
      for (int r = 0; r < kRw; ++r) {
        const float4 qv = *reinterpret_cast<const float4*>(qs + (wr0 + r) * hd4 + d);
        s[r] = fmaf(qv.x, k0, s[r]);
        s[r] = fmaf(qv.y, k1, s[r]);
        s[r] = fmaf(qv.z, k2, s[r]);
        s[r] = fmaf(qv.w, k3, s[r]);
      }
    }

    const int key = c0 + lane;
#pragma unroll
    for (int r = 0; r < kRw; ++r) {
      const int lim = min(pos0 + q0 + wr0 + r, kv_end - 1);  // last visible key of the row
      const float sr = key > lim ? -INFINITY : s[r];
      float mx = sr;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m[r], mx);
      const float alpha = expf(m[r] - m_new);
      const float pr = expf(sr - m_new);
      m[r] = m_new;
      l[r] = l[r] * alpha + pr;
#pragma unroll
      for (int i = 0; i < kDpl; ++i) o[r][i] *= alpha;
      pw[lane * S::kPst + r] = pr;
    }
    __syncwarp();
    // Keys past kv_hi carry p = 0 and zero V rows, so every chunk runs all 32.
#pragma unroll 8
    for (int j = 0; j < S::kKeys; ++j) {
      float v[kDpl];
#pragma unroll
      for (int i = 0; i < kDpl; ++i) v[i] = vs[j * S::kVst + lane + 32 * i];
#pragma unroll
      for (int r4 = 0; r4 < kRw; r4 += 4) {
        const float4 pr = *reinterpret_cast<const float4*>(pw + j * S::kPst + r4);
        const float pv[4] = {pr.x, pr.y, pr.z, pr.w};
#pragma unroll
        for (int rr = 0; rr < 4; ++rr)
#pragma unroll
          for (int i = 0; i < kDpl; ++i) o[r4 + rr][i] = fmaf(pv[rr], v[i], o[r4 + rr][i]);
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < kRw; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) l[r] += __shfl_xor_sync(0xffffffffu, l[r], off);
  }
#pragma unroll
  for (int r = 0; r < kRw; ++r) {
    const float inv = 1.0f / l[r];
    T* orow =
        out + static_cast<size_t>(row0 + wr0 + r) * p.out_stride + static_cast<size_t>(head) * hd;
#pragma unroll
    for (int i = 0; i < kDpl; ++i) {
      const int d = lane + 32 * i;
      if (q0 + wr0 + r < qlen && d < hd) orow[d] = from_float<T>(o[r][i] * inv);
    }
  }
}

template <typename T, int kDpl>
void launch_prefill_generic(const T* q, const T* k_cache, const T* v_cache, T* out,
                            const PrefillAttentionParams& p, cudaStream_t stream) {
  const size_t smem = generic_smem<kDpl>(p.head_dim).bytes;
  if (smem > 48 * 1024)
    SW_CUDA_CHECK(cudaFuncSetAttribute(prefill_generic_kernel<T, kDpl>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(p.num_heads, p.num_tiles, GenericShape<kDpl>::kSplits);
  prefill_generic_kernel<T, kDpl><<<grid, kThreads, smem, stream>>>(q, k_cache, v_cache, out, p);
  SW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_prefill_generic_any(const T* q, const T* k_cache, const T* v_cache, T* out,
                                const PrefillAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim <= 32)
    launch_prefill_generic<T, 1>(q, k_cache, v_cache, out, p, stream);
  else if (p.head_dim <= 64)
    launch_prefill_generic<T, 2>(q, k_cache, v_cache, out, p, stream);
  else if (p.head_dim <= 128)
    launch_prefill_generic<T, 4>(q, k_cache, v_cache, out, p, stream);
  else
    launch_prefill_generic<T, 8>(q, k_cache, v_cache, out, p, stream);
}

// ---------------------------------------------------------------------------------------
// Tensor-core path (bf16, head_dim 32/64/128): FlashAttention-2 with mma.sync m16n8k16.
// A block owns one 64-row query tile of one head; warp w owns rows 16w..16w+15, keeps its Q
// fragments and its O accumulator in registers, and walks 64-key K/V tiles gathered from
// the paged cache with cp.async into a double buffer. Tiles wholly above the diagonal are
// never loaded; only tiles that cross a warp's diagonal (or the end of the keys) are masked.
// Shared rows are swizzled (16-byte chunk c of row r lives at chunk c ^ swz(r)), so the 8
// row addresses of every ldmatrix phase and every cp.async quarter-warp hit distinct banks.
constexpr int kTileKeys = 64;

template <int kHd>
__device__ __forceinline__ int swz(int row) {
  return kHd >= 64 ? (row & 7) : ((row >> 1) & 3);  // 128-byte rows need the 2-row variant
}

// The inline PTX below needs sm_80+ (cp.async, bf16 mma). Builds for older targets compile
// a trap instead, and tc_built() keeps the launcher off these kernels there.
__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// 16-byte async copy; src_bytes = 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                        uint32_t& r3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
#endif
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                          uint32_t& r3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
#endif
}

// c += a * b: a 16x16 (row), b 16x8 (col), c 16x8 fp32.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <int kHd>
constexpr size_t tc_smem_bytes() {
  return sizeof(bf16) * (kPrefillTileRows + 4 * kTileKeys) * kHd;  // Q + 2 x (K + V)
}

template <int kHd>
__global__ void __launch_bounds__(kThreads, 2)
    prefill_tc_kernel(const bf16* __restrict__ q,        // [rows, q_stride]
                      const bf16* __restrict__ k_cache,  // [num_blocks, kv_heads, block_size, kHd]
                      const bf16* __restrict__ v_cache,  // [num_blocks, kv_heads, block_size, kHd]
                      bf16* __restrict__ out,            // [rows, out_stride]
                      const PrefillAttentionParams p) {
  constexpr int kCpr = kHd / 8;                  // 16-byte chunks per row
  constexpr int kRowsPerPass = kThreads / kCpr;  // rows one cp.async sweep of the block covers
  constexpr int kPasses = kTileKeys / kRowsPerPass;
  constexpr int kDimBlocks = kHd / 16;  // k-steps of S = Q K^T
  constexpr int kONb = kHd / 8;         // 8-wide n-blocks of O
  constexpr int kSNb = kTileKeys / 8;   // 8-wide n-blocks of S
  extern __shared__ __align__(128) unsigned char smem_tc[];
  bf16* qs = reinterpret_cast<bf16*>(smem_tc);  // [64, kHd]; reused to stage O
  bf16* ks = qs + kPrefillTileRows * kHd;       // [2, 64, kHd]
  bf16* vs = ks + 2 * kTileKeys * kHd;          // [2, 64, kHd]

  const int head = blockIdx.x;
  const int tile = p.num_tiles - 1 - static_cast<int>(blockIdx.y);  // heavy tiles first
  const int seq = p.tile_seq[tile];
  const int q0 = p.tile_q0[tile];
  const int qlen = p.q_len[seq];
  const int pos0 = p.pos0[seq];
  const int kv_end = pos0 + qlen;
  const int kv_hi = min(pos0 + q0 + kPrefillTileRows, kv_end);  // keys needed: [0, kv_hi)
  const int n_tiles = (kv_hi + kTileKeys - 1) / kTileKeys;
  const int kvh = head / (p.num_heads / p.kv_heads);
  const int row0 = p.q_row_start[seq] + q0;
  const int* bt = p.block_tables + static_cast<size_t>(seq) * p.max_blocks;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  // cp.async role: chunk ld_c of rows ld_r + i * kRowsPerPass.
  const int ld_c = tid % kCpr, ld_r = tid / kCpr;
  for (int i = 0; i < kPasses; ++i) {
    const int r = ld_r + i * kRowsPerPass;
    const bool valid = q0 + r < qlen;
    const bf16* src = valid ? q + static_cast<size_t>(row0 + r) * p.q_stride +
                                  static_cast<size_t>(head) * kHd + ld_c * 8
                            : q;
    cp_async16(smem_addr(qs + r * kHd + ((ld_c ^ swz<kHd>(r)) * 8)), src, valid);
  }
  // Block-table walk without a division per row: rows kRowsPerPass apart are step_b
  // blocks plus step_s slots apart. The block ids of a tile are fetched one tile ahead of
  // its cp.async issue, so that load's latency never stalls the issuing warp.
  const int step_b = kRowsPerPass / p.block_size, step_s = kRowsPerPass % p.block_size;
  auto fetch_ids = [&](int t, int(&ids)[kPasses]) {
    const int key0 = t * kTileKeys + ld_r;
    int b = key0 / p.block_size, slot = key0 - b * p.block_size;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      ids[i] = key0 + i * kRowsPerPass < kv_hi ? bt[b] : 0;
      b += step_b;
      slot += step_s;
      if (slot >= p.block_size) {
        slot -= p.block_size;
        ++b;
      }
    }
  };
  auto load_kv = [&](int t, int buf, const int(&ids)[kPasses]) {
    bf16* kd = ks + buf * kTileKeys * kHd;
    bf16* vd = vs + buf * kTileKeys * kHd;
    const int key0 = t * kTileKeys + ld_r;
    int slot = key0 % p.block_size;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = ld_r + i * kRowsPerPass;
      const bool valid = key0 + i * kRowsPerPass < kv_hi;  // rows past the keys: zeros
      const size_t off =
          valid ? ((static_cast<size_t>(ids[i]) * p.kv_heads + kvh) * p.block_size + slot) * kHd +
                      ld_c * 8
                : 0;
      const int so = r * kHd + ((ld_c ^ swz<kHd>(r)) * 8);
      cp_async16(smem_addr(kd + so), k_cache + off, valid);
      cp_async16(smem_addr(vd + so), v_cache + off, valid);
      slot += step_s;
      if (slot >= p.block_size) slot -= p.block_size;
    }
  };
  int ids[kPasses];
  fetch_ids(0, ids);
  load_kv(0, 0, ids);
  cp_async_commit();
  if (n_tiles > 1) fetch_ids(1, ids);

  // Fragment coordinates (PTX mma.m16n8k16 layouts): this thread holds rows g and g + 8 of
  // its warp's 16, columns 2t and 2t + 1 of every 8-wide n-block.
  const int g = lane >> 2, t4 = lane & 3;
  const int wrow = warp * 16;
  // ldmatrix row addresses: every 8-row phase starts at a multiple of 8, so the swizzle
  // term of a lane's row is lane-constant and folds into one xor per access.
  const int lr = lane & 7, mi = lane >> 3;
  const int lsw = swz<kHd>(lr);
  const uint32_t q_base = smem_addr(qs + (wrow + (lane & 15)) * kHd);
  const int q_x = (mi >> 1) ^ lsw;  // chunk = 2 * kk + (mi >> 1)
  const uint32_t k_base = smem_addr(ks + (lr + (mi >> 1) * 8) * kHd);
  const int k_x = (mi & 1) ^ lsw;  // keys 8 * (mi >> 1) + lr, chunk 2 * kk + (mi & 1)
  const uint32_t v_base = smem_addr(vs + (lr + (mi & 1) * 8) * kHd);
  const int v_x = (mi >> 1) ^ lsw;  // keys 8 * (mi & 1) + lr, chunk 2 * nb + (mi >> 1)
  constexpr uint32_t kBufBytes = kTileKeys * kHd * sizeof(bf16);
  constexpr uint32_t kRowBytes = kHd * sizeof(bf16);

  const float scale_log2 = p.scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2 e)
  const int qpos = pos0 + q0 + wrow + g;                   // position of row g
  const int lim0 = min(qpos, kv_end - 1), lim1 = min(qpos + 8, kv_end - 1);
  const int warp_lim = min(pos0 + q0 + wrow, kv_end - 1);  // smallest limit in the warp

  uint32_t qf[kDimBlocks][4];
  float o[kONb][4];
#pragma unroll
  for (int nb = 0; nb < kONb; ++nb) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_tiles) {
      load_kv(t + 1, buf ^ 1, ids);
      if (t + 2 < n_tiles) fetch_ids(t + 2, ids);
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but tile t + 1 has landed
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < kDimBlocks; ++kk)
        ldsm_x4(q_base + (((2 * kk) ^ q_x) << 4), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
    }

    float s[kSNb][4];
#pragma unroll
    for (int nb = 0; nb < kSNb; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
    const uint32_t kb = k_base + buf * kBufBytes;
#pragma unroll
    for (int kk = 0; kk < kDimBlocks; ++kk) {
#pragma unroll
      for (int np = 0; np < kSNb / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(kb + np * 16 * kRowBytes + (((2 * kk) ^ k_x) << 4), b0, b1, b2, b3);
        mma_bf16(s[2 * np], qf[kk], b0, b1);
        mma_bf16(s[2 * np + 1], qf[kk], b2, b3);
      }
    }

    const int kt0 = t * kTileKeys;
    if (kt0 + kTileKeys - 1 > warp_lim) {  // tile crosses this warp's diagonal or key end
#pragma unroll
      for (int nb = 0; nb < kSNb; ++nb) {
        const int key = kt0 + nb * 8 + 2 * t4;
        if (key > lim0) s[nb][0] = -INFINITY;
        if (key + 1 > lim0) s[nb][1] = -INFINITY;
        if (key > lim1) s[nb][2] = -INFINITY;
        if (key + 1 > lim1) s[nb][3] = -INFINITY;
      }
    }

    // Online softmax; a row's 64 scores sit in the 4 threads of a quad.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < kSNb; ++nb) {
      mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    // Key 0 is in tile 0 and visible to every row, so the maxima are finite from t = 0 on.
    const float mn0 = fmaxf(m0, mx0 * scale_log2), mn1 = fmaxf(m1, mx1 * scale_log2);
    const float a0 = exp2_approx(m0 - mn0), a1 = exp2_approx(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int nb = 0; nb < kSNb; ++nb) {
      s[nb][0] = exp2_approx(fmaf(s[nb][0], scale_log2, -mn0));
      s[nb][1] = exp2_approx(fmaf(s[nb][1], scale_log2, -mn0));
      s[nb][2] = exp2_approx(fmaf(s[nb][2], scale_log2, -mn1));
      s[nb][3] = exp2_approx(fmaf(s[nb][3], scale_log2, -mn1));
      rs0 += s[nb][0] + s[nb][1];
      rs1 += s[nb][2] + s[nb][3];
    }
    l0 = l0 * a0 + rs0;
    l1 = l1 * a1 + rs1;
#pragma unroll
    for (int nb = 0; nb < kONb; ++nb) {
      o[nb][0] *= a0;
      o[nb][1] *= a0;
      o[nb][2] *= a1;
      o[nb][3] *= a1;
    }

    // O += P V: the S accumulators of n-blocks 2kk, 2kk + 1 are exactly the A fragment of
    // keys 16kk..16kk + 15 once packed to bf16.
    const uint32_t vb = v_base + buf * kBufBytes;
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) {
      const uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                             pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < kONb / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(vb + kk * 16 * kRowBytes + (((2 * np) ^ v_x) << 4), b0, b1, b2, b3);
        mma_bf16(o[2 * np], a, b0, b1);
        mma_bf16(o[2 * np + 1], a, b2, b3);
      }
    }
    __syncthreads();  // buffer `buf` is refilled by the next iteration's prefetch
  }

  // Epilogue: normalise, stage this warp's 16 rows in its own rows of qs (only this warp
  // read them), then write 16-byte chunks of the valid rows.
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  const int r0 = wrow + g, r1 = r0 + 8;
#pragma unroll
  for (int nb = 0; nb < kONb; ++nb) {
    *reinterpret_cast<uint32_t*>(qs + r0 * kHd + ((nb ^ swz<kHd>(r0)) * 8) + 2 * t4) =
        pack_bf16(o[nb][0] * inv0, o[nb][1] * inv0);
    *reinterpret_cast<uint32_t*>(qs + r1 * kHd + ((nb ^ swz<kHd>(r1)) * 8) + 2 * t4) =
        pack_bf16(o[nb][2] * inv1, o[nb][3] * inv1);
  }
  __syncwarp();
#pragma unroll
  for (int i = lane; i < 16 * kCpr; i += 32) {
    const int r = wrow + i / kCpr, c = i % kCpr;
    if (q0 + r >= qlen) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(qs + r * kHd + ((c ^ swz<kHd>(r)) * 8));
    *reinterpret_cast<uint4*>(out + static_cast<size_t>(row0 + r) * p.out_stride +
                              static_cast<size_t>(head) * kHd + c * 8) = v;
  }
}

template <int kHd>
void launch_prefill_tc(const bf16* q, const bf16* k_cache, const bf16* v_cache, bf16* out,
                       const PrefillAttentionParams& p, cudaStream_t stream) {
  constexpr size_t smem = tc_smem_bytes<kHd>();
  if (smem > 48 * 1024)
    SW_CUDA_CHECK(cudaFuncSetAttribute(prefill_tc_kernel<kHd>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(p.num_heads, p.num_tiles);
  prefill_tc_kernel<kHd><<<grid, kThreads, smem, stream>>>(q, k_cache, v_cache, out, p);
  SW_CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// The tensor-core kernel moves 16-byte chunks of q, the caches and out.
// True when the binary the driver picked for this kernel targets sm_80+ (bf16 mma,
// cp.async); a build for older targets runs the generic path instead of trapping.
template <int kHd>
bool tc_built() {
  static const bool built = [] {
    cudaFuncAttributes a{};
    SW_CUDA_CHECK(cudaFuncGetAttributes(&a, prefill_tc_kernel<kHd>));
    return a.ptxVersion >= 80;
  }();
  return built;
}

bool tc_eligible(const void* q, const void* k_cache, const void* v_cache, const void* out,
                 const PrefillAttentionParams& p) {
  const bool dim_ok = (p.head_dim == 32 && tc_built<32>()) ||
                      (p.head_dim == 64 && tc_built<64>()) ||
                      (p.head_dim == 128 && tc_built<128>());
  return dim_ok && p.q_stride % 8 == 0 && p.out_stride % 8 == 0 && aligned16(q) &&
         aligned16(k_cache) && aligned16(v_cache) && aligned16(out);
}

}  // namespace

void build_prefill_tiles(const int* q_len, int num_seqs, std::vector<int>* tile_seq,
                         std::vector<int>* tile_q0) {
  for (int s = 0; s < num_seqs; ++s) {
    for (int q0 = 0; q0 < q_len[s]; q0 += kPrefillTileRows) {
      tile_seq->push_back(s);
      tile_q0->push_back(q0);
    }
  }
}

template <typename T>
void prefill_attention(const T* q, const T* k_cache, const T* v_cache, T* out,
                       const PrefillAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim < 1 || p.head_dim > 256 || p.kv_heads < 1 || p.num_heads % p.kv_heads != 0)
    fail("attention", "head_dim must be in [1, 256] and num_heads a multiple of kv_heads",
         "prefill_attention", __FILE__, __LINE__);
  if (p.num_tiles == 0) return;
  if constexpr (std::is_same_v<T, bf16>) {
    if (tc_eligible(q, k_cache, v_cache, out, p)) {
      if (p.head_dim == 128)
        launch_prefill_tc<128>(q, k_cache, v_cache, out, p, stream);
      else if (p.head_dim == 64)
        launch_prefill_tc<64>(q, k_cache, v_cache, out, p, stream);
      else
        launch_prefill_tc<32>(q, k_cache, v_cache, out, p, stream);
      return;
    }
  }
  launch_prefill_generic_any<T>(q, k_cache, v_cache, out, p, stream);
}

template void prefill_attention<float>(const float*, const float*, const float*, float*,
                                       const PrefillAttentionParams&, cudaStream_t);
template void prefill_attention<bf16>(const bf16*, const bf16*, const bf16*, bf16*,
                                      const PrefillAttentionParams&, cudaStream_t);

}  // namespace splitwise::kernels::cuda
