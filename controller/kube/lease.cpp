#include "controller/kube/lease.h"

#include <cstdio>
#include <ctime>

namespace splitwise::kube {

std::string format_micro_time(SystemTime t) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::int64_t secs = micros / 1'000'000;
  std::int64_t frac = micros % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

std::optional<SystemTime> parse_micro_time(std::string_view text) {
  int y, mo, d, h, mi, s, consumed = 0;
  const std::string str(text);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) !=
          6 ||
      consumed != 19) {
    return std::nullopt;
  }
  std::int64_t micros = 0;
  std::size_t i = 19;
  if (i < str.size() && str[i] == '.') {
    ++i;
    int digits = 0;
    while (i < str.size() && std::isdigit(static_cast<unsigned char>(str[i]))) {
      if (digits < 6) {
        micros = micros * 10 + (str[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 6; ++digits) micros *= 10;
  }
  if (i + 1 != str.size() || str[i] != 'Z') return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::microseconds(micros);
}

LeaseRecord lease_record_from(const nlohmann::json& lease) {
  LeaseRecord record;
  if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) return record;
  const nlohmann::json& spec = lease["spec"];
  if (spec.contains("holderIdentity") && spec["holderIdentity"].is_string()) {
    record.holder = spec["holderIdentity"].get<std::string>();
  }
  if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number_integer()) {
    record.lease_duration_s = spec["leaseDurationSeconds"].get<int>();
  }
  if (spec.contains("leaseTransitions") && spec["leaseTransitions"].is_number_integer()) {
    record.transitions = spec["leaseTransitions"].get<int>();
  }
  if (spec.contains("acquireTime") && spec["acquireTime"].is_string()) {
    record.acquire_time = parse_micro_time(spec["acquireTime"].get<std::string>());
  }
  if (spec.contains("renewTime") && spec["renewTime"].is_string()) {
    record.renew_time = parse_micro_time(spec["renewTime"].get<std::string>());
  }
  return record;
}

nlohmann::json lease_spec(const LeaseRecord& record) {
  nlohmann::json spec = {{"holderIdentity", record.holder},
                         {"leaseDurationSeconds", record.lease_duration_s},
                         {"leaseTransitions", record.transitions}};
  if (record.acquire_time) spec["acquireTime"] = format_micro_time(*record.acquire_time);
  if (record.renew_time) spec["renewTime"] = format_micro_time(*record.renew_time);
  return spec;
}

LeaseDecision decide_lease(const std::optional<LeaseRecord>& current, const std::string& identity,
                           SystemTime now, SystemTime observed_at,
                           std::chrono::seconds lease_duration) {
  LeaseRecord mine;
  mine.holder = identity;
  mine.lease_duration_s = static_cast<int>(lease_duration.count());
  mine.acquire_time = now;
  mine.renew_time = now;
  if (!current) return {LeaseAction::kCreate, mine};
  if (current->holder == identity) {
    LeaseRecord next = *current;
    next.renew_time = now;
    next.lease_duration_s = mine.lease_duration_s;
    if (!next.acquire_time) next.acquire_time = now;
    return {LeaseAction::kRenew, next};
  }
  const std::chrono::seconds held_for(current->lease_duration_s > 0 ? current->lease_duration_s
                                                                    : lease_duration.count());
  const bool free = current->holder.empty();
  const bool expired = observed_at + held_for <= now;
  if (!free && !expired) return {LeaseAction::kWait, *current};
  mine.transitions = current->transitions + 1;
  return {LeaseAction::kAcquire, mine};
}

}  // namespace splitwise::kube
