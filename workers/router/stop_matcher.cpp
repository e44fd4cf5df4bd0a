#include "workers/router/stop_matcher.h"

#include <algorithm>

namespace splitwise::router {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty()) continue;
    stops_.push_back(std::move(stops[i]));
    original_index_.push_back(static_cast<int>(i));
  }
}

StopMatcher::Output StopMatcher::push(std::string_view piece) {
  Output out;
  if (stopped_) {
    out.stopped = true;
    return out;
  }
  held_.append(piece);

  // held_ held no whole stop string before this piece, so any match ends inside the piece;
  // the first occurrence of each stop string is the one that completes first.
  size_t best_end = std::string::npos;
  size_t best_len = 0;
  int best = -1;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t at = held_.find(stops_[i]);
    if (at == std::string::npos) continue;
    const size_t end = at + stops_[i].size();
    if (end < best_end || (end == best_end && stops_[i].size() > best_len)) {
      best_end = end;
      best_len = stops_[i].size();
      best = static_cast<int>(i);
    }
  }
  if (best >= 0) {
    out.text = held_.substr(0, best_end - best_len);
    out.stopped = stopped_ = true;
    out.stop_index = original_index_[best];
    held_.clear();
    return out;
  }

  const size_t keep = partial_suffix();
  out.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

size_t StopMatcher::partial_suffix() const {
  size_t longest = 0;
  for (const std::string& stop : stops_) {
    // Only proper prefixes: a whole stop string would have matched above.
    for (size_t k = std::min(held_.size(), stop.size() - 1); k > longest; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(stop).substr(0, k)) {
        longest = k;
        break;
      }
    }
  }
  return longest;
}

}  // namespace splitwise::router
