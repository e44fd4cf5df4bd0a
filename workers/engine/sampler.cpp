#include "workers/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace splitwise::engine {

Status validate_sampling(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    return Status::error("temperature must be a finite number >= 0, got " +
                         std::to_string(p.temperature));
  if (p.top_k < 0) return Status::error("top_k must be >= 0, got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return Status::error("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  return {};
}

double uniform_at(uint64_t seed, int64_t index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(index) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;  // 53 random bits
}

TokenId Sampler::sample(std::span<const float> logits, int64_t index) {
  const int n = static_cast<int>(logits.size());
  // Below 1e-5 the scaled logits overflow (1/t is inf for subnormal t): treat as greedy,
  // which is what such a temperature means anyway.
  if (params_.temperature < kGreedyBelow) {
    // max_element returns the first maximum, matching llama2.c and transformers argmax.
    return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  candidates_.resize(n);
  for (int i = 0; i < n; ++i) candidates_[i] = {logits[i], static_cast<TokenId>(i)};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  int keep = n;
  if (params_.top_k > 0 && params_.top_k < n) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax at temperature over the kept candidates (sorted, so [0] is the max).
  const float inv_t = 1.0f / params_.temperature;
  const float mx = candidates_[0].first;
  double sum = 0.0;
  for (int i = 0; i < keep; ++i) {
    candidates_[i].first = std::exp((candidates_[i].first - mx) * inv_t);
    sum += candidates_[i].first;
  }
  if (params_.top_p < 1.0f) {
    // Smallest prefix whose mass reaches top_p; always at least one token.
    double cum = 0.0;
    int cut = 0;
    while (cut < keep) {
      cum += candidates_[cut++].first / sum;
      if (cum >= params_.top_p) break;
    }
    keep = cut;
    sum = 0.0;
    for (int i = 0; i < keep; ++i) sum += candidates_[i].first;
  }
  const double r = uniform_at(params_.seed, index) * sum;
  double acc = 0.0;
  for (int i = 0; i < keep; ++i) {
    acc += candidates_[i].first;
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;  // r landed on the rounding gap at the top
}

}  // namespace splitwise::engine
