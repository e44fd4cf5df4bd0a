// The router's view of its workers: polled GET /internal/state for health and load, with
// local bookkeeping of what the router itself placed since the last poll (so a burst of
// requests between two polls does not all land on the same worker).
// Lives on the router's io_context thread; not thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

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
  std::string id() const { return host + ":" + std::to_string(port); }
};

struct PoolOptions {
  std::chrono::milliseconds poll_interval{250};
  int poll_timeout_ms = 1000;
  int failures_to_unhealthy = 2;  // consecutive failed polls
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
  };
  void poll();
  void schedule();

  boost::asio::io_context& io_;
  net::HttpClient& client_;
  std::vector<Entry> workers_;
  PoolOptions options_;
  boost::asio::steady_timer timer_;
  bool stopped_ = false;
};

}  // namespace splitwise::router
