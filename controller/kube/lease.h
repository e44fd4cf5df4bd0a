// coordination.k8s.io/v1 Lease records and the pure decision of a leader-election
// round: given the lease as read, who we are and the time, what to write.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace splitwise::kube {

using SystemTime = std::chrono::system_clock::time_point;

// metav1.MicroTime: "2006-01-02T15:04:05.000000Z" (UTC).
std::string format_micro_time(SystemTime t);
// Also takes RFC 3339 without or with fewer fractional digits; nullopt if malformed.
std::optional<SystemTime> parse_micro_time(std::string_view text);

struct LeaseRecord {
  std::string holder;  // spec.holderIdentity; "" when released
  int lease_duration_s = 0;
  std::optional<SystemTime> acquire_time;
  std::optional<SystemTime> renew_time;
  int transitions = 0;

  bool operator==(const LeaseRecord&) const = default;
};

LeaseRecord lease_record_from(const nlohmann::json& lease);
// The Lease's spec for a record.
nlohmann::json lease_spec(const LeaseRecord& record);

enum class LeaseAction {
  kCreate,   // no lease yet: create it holding it
  kAcquire,  // free or expired: take it over (transitions + 1)
  kRenew,    // ours: bump renewTime
  kWait,     // someone else holds a live lease
};

struct LeaseDecision {
  LeaseAction action;
  LeaseRecord next;  // what to write (unchanged current record for kWait)
};

// `observed_at` is when this caller first saw the current record unchanged: expiry is
// judged on the local clock from then (as client-go does), so skew between the
// holder's clock and ours does not matter. A record with no holder is free.
LeaseDecision decide_lease(const std::optional<LeaseRecord>& current, const std::string& identity,
                           SystemTime now, SystemTime observed_at,
                           std::chrono::seconds lease_duration);

}  // namespace splitwise::kube
