#include "controller/kube/backoff.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <string>

namespace splitwise::kube {

std::chrono::milliseconds backoff_ceiling(const BackoffPolicy& policy, int attempt) {
  auto delay = policy.base;
  for (int i = 0; i < attempt && delay < policy.cap; ++i) delay *= 2;
  return std::min(delay, policy.cap);
}

std::chrono::milliseconds backoff_delay(const BackoffPolicy& policy, int attempt,
                                        std::mt19937_64& rng) {
  const double ceiling = static_cast<double>(backoff_ceiling(policy, attempt).count());
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  std::uniform_real_distribution<double> dist(ceiling * (1.0 - jitter), ceiling);
  return std::chrono::milliseconds(static_cast<std::int64_t>(dist(rng)));
}

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
    value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
    value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (value.size() > 9) return std::nullopt;  // absurd; refuse rather than overflow
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  std::tm tm{};
  const std::string text(value);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (at <= now) return std::chrono::milliseconds::zero();
  return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
}

}  // namespace splitwise::kube
