// The router's view of its workers: polled GET /internal/state for health and load, with
// local bookkeeping of what the router itself placed since the last poll (so a burst of
// requests between two polls does not all land on the same worker).
// Lives on the router's io_context thread; not thread-safe.
//
// An address marked `discover` is a DNS name standing for a set of workers (a Kubernetes
// headless Service): it is resolved every resolve_interval and each address it returns is
// a worker of its own, so every replica of a pool is used and a request's KV reservation
// and KV stream reach the same pod. Workers whose address leaves the answer are marked
// gone, not erased: indices into the pool stay valid for requests in flight.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>

#include <chrono>
#include <string>
#include <vector>

#include "workers/net/http.h"
#include "workers/router/cluster_policy.h"
#include "workers/worker/protocol.h"

namespace splitwise::router {

struct WorkerAddress {
  worker::Role role = worker::Role::kMixed;
  std::string host;
  uint16_t port = 0;
  bool discover = false;  // host is a DNS name for a set of workers
  std::string id() const { return host + ":" + std::to_string(port); }
};

// Resolves a host name to addresses (dotted IPv4 or IPv6 text); calls back on the
// io_context's thread. Tests substitute their own.
using Resolver = std::function<void(const std::string& host,
                                    std::function<void(Result<std::vector<std::string>>)>)>;

// A discovered worker's slot is reused this long after its address left the DNS answer
// (longer than any request placed on it can still be running or failing over).
inline constexpr std::chrono::minutes kReuseGoneAfter{30};

struct PoolOptions {
  std::chrono::milliseconds poll_interval{250};
  int poll_timeout_ms = 1000;
  int failures_to_unhealthy = 2;                     // consecutive failed polls
  std::chrono::milliseconds resolve_interval{5000};  // for `discover` addresses
  Resolver resolver;                                 // empty: the system's (asio)
};

class WorkerPool {
 public:
  WorkerPool(boost::asio::io_context& io, net::HttpClient& client,
             std::vector<WorkerAddress> workers, PoolOptions options = {});

  void start();  // first poll now, then every poll_interval
  void stop();

  size_t size() const { return workers_.size(); }
  const WorkerAddress& address(int i) const { return workers_[i].address; }
  const worker::WorkerState& state(int i) const { return workers_[i].state; }
  bool healthy(int i) const { return workers_[i].healthy; }
  int healthy_count(worker::Role role) const;
  // Workers of `role` the pool currently knows (discovered ones that left excluded).
  int known_count(worker::Role role) const;
  bool any_polled() const;

  // Inputs for cluster_policy::place, with local placements added in.
  std::vector<WorkerView> views() const;
  // Records a placement until the next poll reports it.
  void placed(int worker, int64_t prefill_tokens, int kv_blocks);
  // A request to the worker failed at the connection level: stop using it until a poll
  // succeeds again.
  void mark_failed(int worker);

 private:
  struct Entry {
    WorkerAddress address;
    worker::WorkerState state;
    bool healthy = false;
    bool polled = false;
    int failures = 0;
    int64_t local_prefill_tokens = 0;
    int local_blocks = 0;
    int64_t local_requests = 0;
    int seed = -1;      // index into seeds_ for discovered workers
    bool gone = false;  // its address left the DNS answer
    std::chrono::steady_clock::time_point gone_at{};
  };
  static Entry entry(WorkerAddress address) {
    Entry e;
    e.address = std::move(address);
    return e;
  }
  void poll();
  void schedule();
  void resolve();
  void resolved(int seed, const std::vector<std::string>& addresses);

  boost::asio::io_context& io_;
  net::HttpClient& client_;
  std::vector<Entry> workers_;
  std::vector<WorkerAddress> seeds_;  // `discover` addresses
  PoolOptions options_;
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer resolve_timer_;
  bool stopped_ = false;
};

}  // namespace splitwise::router
