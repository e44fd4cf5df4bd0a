#include "workers/router/worker_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <set>

namespace splitwise::router {

namespace {
WorkerView::Role view_role(worker::Role r) {
  switch (r) {
    case worker::Role::kPrompt:
      return WorkerView::Role::kPrompt;
    case worker::Role::kToken:
      return WorkerView::Role::kToken;
    case worker::Role::kMixed:
      return WorkerView::Role::kMixed;
  }
  return WorkerView::Role::kMixed;
}
}  // namespace

WorkerPool::WorkerPool(boost::asio::io_context& io, net::HttpClient& client,
                       std::vector<WorkerAddress> workers, PoolOptions options)
    : io_(io), client_(client), options_(std::move(options)), timer_(io), resolve_timer_(io) {
  for (auto& a : workers) {
    if (a.discover)
      seeds_.push_back(std::move(a));
    else
      workers_.push_back(entry(std::move(a)));
  }
  if (!options_.resolver) {
    options_.resolver = [this](const std::string& host,
                               std::function<void(Result<std::vector<std::string>>)> done) {
      auto resolver = std::make_shared<boost::asio::ip::tcp::resolver>(io_);
      resolver->async_resolve(
          host, "", [resolver, host, done](const boost::system::error_code& ec, auto results) {
            if (ec) return done(Status::error("resolving " + host + ": " + ec.message()));
            std::vector<std::string> out;
            for (const auto& r : results) out.push_back(r.endpoint().address().to_string());
            done(std::move(out));
          });
    };
  }
}

void WorkerPool::start() {
  resolve();
  poll();
}

void WorkerPool::stop() {
  stopped_ = true;
  timer_.cancel();
  resolve_timer_.cancel();
}

void WorkerPool::resolve() {
  if (stopped_ || seeds_.empty()) return;
  for (int s = 0; s < static_cast<int>(seeds_.size()); ++s) {
    options_.resolver(seeds_[s].host, [this, s](Result<std::vector<std::string>> r) {
      if (stopped_) return;
      if (!r.ok()) {
        // Keep what is known: a DNS hiccup must not empty a pool.
        spdlog::warn("worker discovery: {}", r.status().message());
        return;
      }
      resolved(s, *r);
    });
  }
  resolve_timer_.expires_after(options_.resolve_interval);
  resolve_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) resolve();
  });
}

void WorkerPool::resolved(int seed, const std::vector<std::string>& addresses) {
  const WorkerAddress& from = seeds_[seed];
  const std::set<std::string> now(addresses.begin(), addresses.end());
  std::set<std::string> known;
  for (Entry& e : workers_) {
    if (e.seed != seed) continue;
    known.insert(e.address.host);
    const bool present = now.count(e.address.host) > 0;
    if (present && e.gone) {
      spdlog::info("worker {} ({}) is back", e.address.id(), from.host);
      e.gone = false;
      e.failures = 0;
    } else if (!present && !e.gone) {
      spdlog::info("worker {} left {}", e.address.id(), from.host);
      e.gone = true;
      e.gone_at = std::chrono::steady_clock::now();
      e.healthy = false;
    }
  }
  const auto now_t = std::chrono::steady_clock::now();
  for (const std::string& host : now) {
    if (known.count(host)) continue;
    Entry e = entry(WorkerAddress{from.role, host, from.port, false});
    e.seed = seed;
    spdlog::info("worker {} found behind {}", e.address.id(), from.host);
    // Pods come and go with every rollout: a slot gone long enough that no request can
    // still name it is reused, so the pool does not grow without bound.
    auto reuse = std::find_if(workers_.begin(), workers_.end(), [&](const Entry& old) {
      return old.seed == seed && old.gone && now_t - old.gone_at > kReuseGoneAfter;
    });
    if (reuse != workers_.end())
      *reuse = std::move(e);
    else
      workers_.push_back(std::move(e));
  }
}

int WorkerPool::healthy_count(worker::Role role) const {
  int n = 0;
  for (const Entry& e : workers_) n += e.healthy && !e.gone && e.address.role == role;
  return n;
}

int WorkerPool::known_count(worker::Role role) const {
  int n = 0;
  for (const Entry& e : workers_) n += !e.gone && e.address.role == role;
  return n;
}

bool WorkerPool::any_polled() const {
  for (const Entry& e : workers_)
    if (e.polled) return true;
  return false;
}

std::vector<WorkerView> WorkerPool::views() const {
  std::vector<WorkerView> v;
  for (const Entry& e : workers_) {
    WorkerView w;
    w.id = e.address.id();
    w.role = view_role(e.address.role);
    // A worker that says it has another role than configured is misconfigured: skip it.
    w.healthy = e.healthy && !e.gone && e.state.role == e.address.role;
    w.pending_prefill_tokens = e.state.pending_prefill_tokens + e.local_prefill_tokens;
    w.queued_requests = e.state.queued_requests + e.local_requests;
    w.free_kv_blocks = std::max(0, e.state.free_kv_blocks - e.local_blocks);
    w.total_kv_blocks = e.state.total_kv_blocks;
    w.block_size = e.state.block_size;
    v.push_back(w);
  }
  return v;
}

void WorkerPool::placed(int worker, int64_t prefill_tokens, int kv_blocks) {
  Entry& e = workers_[worker];
  e.local_prefill_tokens += prefill_tokens;
  e.local_blocks += kv_blocks;
  ++e.local_requests;
}

void WorkerPool::mark_failed(int worker) {
  Entry& e = workers_[worker];
  if (e.healthy)
    spdlog::warn("worker {} failed a request: taken out until it answers", e.address.id());
  e.healthy = false;
  e.failures = std::max(e.failures, options_.failures_to_unhealthy);
}

void WorkerPool::poll() {
  if (stopped_) return;
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i].gone) continue;
    const WorkerAddress& a = workers_[i].address;
    net::HttpRequest req;
    req.method = "GET";
    req.target = "/internal/state";
    client_.request(
        a.host, a.port, req, options_.poll_timeout_ms, [this, i](Result<net::HttpResponse> r) {
          Entry& e = workers_[i];
          if (e.gone) return;  // left while the poll was in flight
          Result<worker::WorkerState> st =
              r.ok() && r->status == 200
                  ? worker::parse_worker_state(r->body)
                  : Result<worker::WorkerState>(Status::error(
                        r.ok() ? "HTTP " + std::to_string(r->status) : r.status().message()));
          if (!st.ok()) {
            if (++e.failures >= options_.failures_to_unhealthy && e.healthy) {
              spdlog::warn("worker {} unhealthy: {}", e.address.id(), st.status().message());
              e.healthy = false;
            }
            return;
          }
          if (!e.healthy) spdlog::info("worker {} healthy", e.address.id());
          e.state = *st;
          e.healthy = true;
          e.polled = true;
          e.failures = 0;
          // The worker's own figures now include what was placed before the poll.
          e.local_prefill_tokens = 0;
          e.local_blocks = 0;
          e.local_requests = 0;
        });
  }
  schedule();
}

void WorkerPool::schedule() {
  timer_.expires_after(options_.poll_interval);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) poll();
  });
}

}  // namespace splitwise::router
