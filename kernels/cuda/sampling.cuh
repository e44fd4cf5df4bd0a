#pragma once

#include <cuda_runtime.h>

namespace splitwise::kernels::cuda {

// One row's sampling parameters, as the CPU Sampler takes them (workers/engine/sampler.h),
// with the row's uniform draw made on the host by uniform_at(seed, index): draws stay a
// pure function of (seed, index) whichever backend samples.
struct SampleParams {
  float temperature = 0.0f;  // < 1e-5: greedy (lowest id among equal maxima)
  int top_k = 0;             // 0: whole vocabulary
  float top_p = 1.0f;        // (0, 1]
  double uniform = 0.0;      // [0, 1), full precision as the CPU draws it
};

// Picks one token per row with the CPU Sampler's rule: candidates ordered by logit
// (descending, ties by ascending id), the top_k first, then the shortest prefix whose mass
// reaches top_p, then the first candidate whose cumulative mass exceeds uniform * mass.
// Works without sorting: each cut is found by a binary search over the float bit patterns
// of the weights, which order like the weights themselves.
//   logits: [rows, vocab] fp32, overwritten with exp((l - max) / temperature) for
//           sampled rows (greedy rows are left as they are)
//   params: [rows] device; tokens: [rows] device, written.
void sample_tokens(float* logits, const SampleParams* params, int* tokens, int rows, int vocab,
                   cudaStream_t stream);

}  // namespace splitwise::kernels::cuda
