// A weighted histogram on log-spaced bins (2% wide), for distributions with too many
// samples to keep, such as the gap before every generated token of a run.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace splitwise::sim {

class LogHistogram {
 public:
  // Values below `min` land in the first bin, above `max` in the last.
  explicit LogHistogram(double min = 1e-5, double max = 1e4, double ratio = 1.02)
      : min_(min),
        log_ratio_(std::log(ratio)),
        counts_(static_cast<size_t>(std::ceil(std::log(max / min) / std::log(ratio))) + 1, 0) {}

  void add(double value, int64_t weight = 1) {
    if (weight <= 0) return;
    counts_[bin(value)] += weight;
    total_ += weight;
  }
  int64_t total() const { return total_; }
  // The value at quantile q (0..1): the upper edge of the bin holding it, so never
  // smaller than the true quantile and at most 2% above it.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    const double target = q * static_cast<double>(total_);
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (static_cast<double>(seen) >= target && counts_[i] > 0) return upper(i);
    }
    return upper(counts_.size() - 1);
  }

 private:
  size_t bin(double v) const {
    if (!(v > min_)) return 0;
    const auto i = static_cast<size_t>(std::ceil(std::log(v / min_) / log_ratio_));
    return i < counts_.size() ? i : counts_.size() - 1;
  }
  double upper(size_t i) const { return min_ * std::exp(log_ratio_ * static_cast<double>(i)); }

  double min_, log_ratio_;
  std::vector<int64_t> counts_;
  int64_t total_ = 0;
};

}  // namespace splitwise::sim
