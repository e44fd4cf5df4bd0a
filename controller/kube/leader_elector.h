// Leader election over a coordination.k8s.io/v1 Lease, client-go style: candidates
// poll every retry period; the leader renews every retry period and steps down when it
// could not renew for renew_deadline (well before lease_duration, so it stops acting
// before anyone else may start). On a graceful stop the leader releases the lease
// (empty holder, leaseDurationSeconds 1) so a standby takes over at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "controller/kube/lease.h"
#include "controller/kube/rest_client.h"

namespace splitwise::kube {

// The three Lease calls the elector makes; RestLeaseClient implements them, tests fake them.
class LeaseClient {
 public:
  virtual ~LeaseClient() = default;
  virtual ApiResult<json> get(const std::string& ns, const std::string& name) = 0;
  virtual ApiResult<json> create(const std::string& ns, const json& lease) = 0;
  virtual ApiResult<json> update(const std::string& ns, const json& lease) = 0;
};

class RestLeaseClient : public LeaseClient {
 public:
  explicit RestLeaseClient(RestClient& rest) : rest_(rest) {}
  ApiResult<json> get(const std::string& ns, const std::string& name) override;
  ApiResult<json> create(const std::string& ns, const json& lease) override;
  ApiResult<json> update(const std::string& ns, const json& lease) override;
  static const Resource& leases();

 private:
  RestClient& rest_;
};

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  std::string identity;  // unique per candidate, e.g. the pod name
  std::chrono::milliseconds lease_duration{15'000};
  std::chrono::milliseconds renew_deadline{10'000};
  std::chrono::milliseconds retry_period{2'000};
  bool release_on_stop = true;
  // Called on the elector's thread; must not block (start work on another thread).
  std::function<void()> on_started_leading;
  std::function<void()> on_stopped_leading;
  std::function<void(const std::string& identity)> on_new_leader;
  // Time written into the lease and used for expiry; injectable for tests.
  std::function<SystemTime()> now = [] { return std::chrono::system_clock::now(); };
};

class LeaderElector {
 public:
  LeaderElector(LeaseClient& client, LeaderElectionConfig config);

  // Campaigns, leads, and campaigns again after losing the lease, until stop().
  void run();
  void stop();

  bool is_leader() const { return leading_.load(); }
  std::string leader() const;

  // One round (exposed for tests): read the lease, then create / acquire / renew it.
  enum class Round { kHeld, kHeldByOther, kError };
  Round try_acquire_or_renew();
  // Gives the lease up if we hold it.
  ApiStatus release();

 private:
  bool sleep_for(std::chrono::milliseconds delay);
  void observe(const LeaseRecord& record, SystemTime now);

  LeaseClient& client_;
  const LeaderElectionConfig config_;
  std::atomic<bool> leading_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;                 // guarded by mu_
  std::optional<LeaseRecord> observed_;  // guarded by mu_
  SystemTime observed_at_{};             // guarded by mu_
  std::string leader_;                   // guarded by mu_
  json last_lease_;                      // guarded by mu_: the lease as last read/written
};

}  // namespace splitwise::kube
