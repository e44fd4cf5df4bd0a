// Exponential backoff with jitter, shared by the REST retries, the watch loop and
// leader election. Jitter spreads many clients that failed together (an apiserver
// restart) so they do not come back in one wave.
#pragma once

#include <chrono>
#include <optional>
#include <random>
#include <string_view>

namespace splitwise::kube {

struct BackoffPolicy {
  std::chrono::milliseconds base{100};
  std::chrono::milliseconds cap{30'000};
  double jitter = 0.5;  // the delay is drawn uniformly from [d * (1 - jitter), d]
};

// The un-jittered delay after `attempt` failures (0-based): base * 2^attempt, capped.
std::chrono::milliseconds backoff_ceiling(const BackoffPolicy& policy, int attempt);

// A jittered delay in [ceiling * (1 - jitter), ceiling].
std::chrono::milliseconds backoff_delay(const BackoffPolicy& policy, int attempt,
                                        std::mt19937_64& rng);

// A stateful backoff: next() grows per call, reset() after a success.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy, std::uint64_t seed = std::random_device{}())
      : policy_(policy), rng_(seed) {}
  std::chrono::milliseconds next() { return backoff_delay(policy_, attempt_++, rng_); }
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  BackoffPolicy policy_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

// Parses an HTTP Retry-After value: delta-seconds ("3") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT", relative to `now`). nullopt when unparsable;
// a date in the past gives zero.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace splitwise::kube
