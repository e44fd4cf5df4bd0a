#include "controller/kube/backoff.h"

#include <gtest/gtest.h>

#include <set>

#include "controller/kube/api_error.h"

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;

TEST(BackoffTest, CeilingDoublesAndCaps) {
  BackoffPolicy policy{100ms, 1000ms, 0.5};
  EXPECT_EQ(backoff_ceiling(policy, 0), 100ms);
  EXPECT_EQ(backoff_ceiling(policy, 1), 200ms);
  EXPECT_EQ(backoff_ceiling(policy, 3), 800ms);
  EXPECT_EQ(backoff_ceiling(policy, 4), 1000ms);
  EXPECT_EQ(backoff_ceiling(policy, 1000), 1000ms);  // no overflow
}

TEST(BackoffTest, JitterStaysInBoundsAndVaries) {
  BackoffPolicy policy{100ms, 10'000ms, 0.5};
  std::mt19937_64 rng(7);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const auto ceiling = backoff_ceiling(policy, attempt);
    std::set<long> seen;
    for (int i = 0; i < 200; ++i) {
      const auto d = backoff_delay(policy, attempt, rng);
      EXPECT_GE(d.count(), ceiling.count() / 2 - 1);
      EXPECT_LE(d, ceiling);
      seen.insert(d.count());
    }
    EXPECT_GT(seen.size(), 5u) << "no jitter at attempt " << attempt;
  }
  BackoffPolicy none{100ms, 1000ms, 0.0};
  EXPECT_EQ(backoff_delay(none, 2, rng), 400ms);
}

TEST(BackoffTest, StatefulBackoffGrowsAndResets) {
  Backoff b(BackoffPolicy{10ms, 1000ms, 0.0}, 1);
  EXPECT_EQ(b.next(), 10ms);
  EXPECT_EQ(b.next(), 20ms);
  EXPECT_EQ(b.next(), 40ms);
  b.reset();
  EXPECT_EQ(b.next(), 10ms);
}

TEST(RetryAfterTest, ParsesSecondsAndDates) {
  EXPECT_EQ(parse_retry_after("3"), std::chrono::milliseconds(3000));
  EXPECT_EQ(parse_retry_after(" 0 "), std::chrono::milliseconds(0));
  const auto now = std::chrono::system_clock::from_time_t(1445412480);  // 2015-10-21 07:28:00
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            std::chrono::milliseconds(10'000));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), std::chrono::milliseconds(0));
  EXPECT_FALSE(parse_retry_after(""));
  EXPECT_FALSE(parse_retry_after("soon"));
  EXPECT_FALSE(parse_retry_after("-1"));
  EXPECT_FALSE(parse_retry_after("99999999999999"));
}

TEST(ApiErrorTest, MapsStatusBodies) {
  ApiError conflict = api_error_from_response(
      409,
      R"({"kind":"Status","status":"Failure","reason":"Conflict","message":"the object has been modified","code":409})");
  EXPECT_TRUE(conflict.is_conflict());
  EXPECT_FALSE(conflict.is_already_exists());
  EXPECT_EQ(conflict.message, "the object has been modified");

  ApiError exists = api_error_from_response(
      409, R"({"kind":"Status","reason":"AlreadyExists","message":"x exists","code":409})");
  EXPECT_TRUE(exists.is_already_exists());
  EXPECT_FALSE(exists.is_conflict());

  ApiError not_found = api_error_from_response(404, "");
  EXPECT_TRUE(not_found.is_not_found());
  EXPECT_EQ(not_found.reason, "NotFound");
  EXPECT_FALSE(not_found.is_retryable());

  EXPECT_TRUE(api_error_from_response(410, "").is_gone());
  EXPECT_TRUE(api_error_from_response(422, "").is_invalid());
  EXPECT_TRUE(api_error_from_response(429, "").is_too_many_requests());
  EXPECT_TRUE(api_error_from_response(429, "").is_retryable());
  EXPECT_TRUE(api_error_from_response(503, "upstream down").is_server_error());
  EXPECT_EQ(api_error_from_response(503, "upstream down").message, "upstream down");
  EXPECT_TRUE(ApiError::transport("refused").is_transport());
  EXPECT_TRUE(ApiError::transport("refused").is_retryable());
  EXPECT_FALSE(api_error_from_response(400, "").is_retryable());
}

}  // namespace
}  // namespace splitwise::kube
