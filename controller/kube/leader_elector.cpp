#include "controller/kube/leader_elector.h"

#include <spdlog/spdlog.h>

namespace splitwise::kube {

const Resource& RestLeaseClient::leases() {
  static const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};
  return kLeases;
}

ApiResult<json> RestLeaseClient::get(const std::string& ns, const std::string& name) {
  return rest_.get(leases(), ns, name);
}

ApiResult<json> RestLeaseClient::create(const std::string& ns, const json& lease) {
  return rest_.create(leases(), ns, lease);
}

ApiResult<json> RestLeaseClient::update(const std::string& ns, const json& lease) {
  return rest_.update(leases(), ns, lease);
}

LeaderElector::LeaderElector(LeaseClient& client, LeaderElectionConfig config)
    : client_(client), config_(std::move(config)) {}

std::string LeaderElector::leader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leader_;
}

void LeaderElector::stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

bool LeaderElector::sleep_for(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, delay, [this] { return stopped_; });
  return !stopped_;
}

void LeaderElector::observe(const LeaseRecord& record, SystemTime now) {
  std::string new_leader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!observed_ || *observed_ != record) {
      observed_ = record;
      observed_at_ = now;
    }
    if (record.holder != leader_) {
      leader_ = record.holder;
      new_leader = record.holder;
    }
  }
  if (!new_leader.empty() && config_.on_new_leader) config_.on_new_leader(new_leader);
}

LeaderElector::Round LeaderElector::try_acquire_or_renew() {
  const auto duration = std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration);
  // A 409 means someone wrote in between: re-read and decide again, once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const SystemTime now = config_.now();
    ApiResult<json> got = client_.get(config_.lease_namespace, config_.lease_name);
    if (!got.ok() && !got.error().is_not_found()) {
      spdlog::warn("leader election: reading lease {}/{}: {}", config_.lease_namespace,
                   config_.lease_name, got.error().to_string());
      return Round::kError;
    }
    std::optional<LeaseRecord> current;
    if (got.ok()) {
      current = lease_record_from(*got);
      observe(*current, now);
    }
    SystemTime observed_at;
    {
      std::lock_guard<std::mutex> lock(mu_);
      observed_at = observed_at_;
    }
    const LeaseDecision decision =
        decide_lease(current, config_.identity, now, observed_at, duration);
    if (decision.action == LeaseAction::kWait) return Round::kHeldByOther;

    ApiResult<json> written = json();
    if (decision.action == LeaseAction::kCreate) {
      json lease = {
          {"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
          {"spec", lease_spec(decision.next)}};
      written = client_.create(config_.lease_namespace, lease);
    } else {
      json lease = *got;  // keeps metadata.resourceVersion: optimistic concurrency
      lease["spec"] = lease_spec(decision.next);
      written = client_.update(config_.lease_namespace, lease);
    }
    if (written.ok()) {
      observe(decision.next, now);
      std::lock_guard<std::mutex> lock(mu_);
      last_lease_ = *written;
      return Round::kHeld;
    }
    if (written.error().is_conflict() || written.error().is_already_exists()) continue;
    spdlog::warn("leader election: writing lease {}/{}: {}", config_.lease_namespace,
                 config_.lease_name, written.error().to_string());
    return Round::kError;
  }
  return Round::kError;
}

ApiStatus LeaderElector::release() {
  ApiResult<json> got = client_.get(config_.lease_namespace, config_.lease_name);
  if (!got.ok()) return got.error();
  LeaseRecord record = lease_record_from(*got);
  if (record.holder != config_.identity) return Empty{};
  const SystemTime now = config_.now();
  record.holder.clear();
  record.lease_duration_s = 1;
  record.renew_time = now;
  record.acquire_time = now;
  json lease = *got;
  lease["spec"] = lease_spec(record);
  ApiResult<json> written = client_.update(config_.lease_namespace, lease);
  if (!written.ok()) return written.error();
  return Empty{};
}

void LeaderElector::run() {
  while (true) {
    // Candidate.
    while (try_acquire_or_renew() != Round::kHeld) {
      if (!sleep_for(config_.retry_period)) return;
    }
    leading_ = true;
    spdlog::info("leader election: {} now leads {}/{}", config_.identity, config_.lease_namespace,
                 config_.lease_name);
    if (config_.on_started_leading) config_.on_started_leading();
    // Leader.
    auto last_renew = std::chrono::steady_clock::now();
    bool stopped = false;
    while (true) {
      if (!sleep_for(config_.retry_period)) {
        stopped = true;
        break;
      }
      const Round round = try_acquire_or_renew();
      if (round == Round::kHeld) {
        last_renew = std::chrono::steady_clock::now();
        continue;
      }
      if (round == Round::kHeldByOther) break;  // someone took it: we are no longer leader
      if (std::chrono::steady_clock::now() - last_renew >= config_.renew_deadline) break;
    }
    leading_ = false;
    if (stopped && config_.release_on_stop) {
      if (ApiStatus st = release(); !st.ok()) {
        spdlog::warn("leader election: releasing lease: {}", st.error().to_string());
      }
    }
    spdlog::info("leader election: {} stopped leading", config_.identity);
    if (config_.on_stopped_leading) config_.on_stopped_leading();
    if (stopped) return;
  }
}

}  // namespace splitwise::kube
