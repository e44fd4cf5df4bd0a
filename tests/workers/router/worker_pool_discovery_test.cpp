// WorkerPool's DNS discovery: a headless Service name stands for every address it
// resolves to. Fake workers answer /internal/state on 127.0.0.1 and 127.0.0.2 (both
// loopback on Linux); a scripted resolver plays the DNS.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "tests/test_util.h"
#include "workers/net/http.h"
#include "workers/router/router_config.h"
#include "workers/router/worker_pool.h"

namespace splitwise::router {
namespace {

using namespace std::chrono_literals;

// A worker's state endpoint on one loopback address.
class FakeWorker {
 public:
  FakeWorker(boost::asio::io_context& io, const std::string& host, uint16_t port)
      : server_(io, net::ServerOptions{host, port}) {
    server_.route("GET", "/internal/state",
                  [](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
                    worker::WorkerState s;
                    s.role = worker::Role::kToken;
                    s.free_kv_blocks = 100;
                    s.total_kv_blocks = 100;
                    s.block_size = 16;
                    w->respond(200, "application/json", worker::to_json(s).dump());
                  });
    ok = server_.start().ok();
  }
  ~FakeWorker() { server_.stop(); }
  uint16_t port() const { return server_.port(); }
  bool ok = false;

 private:
  net::HttpServer server_;
};

class DiscoveryTest : public ::testing::Test {
 protected:
  template <typename F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return fut.get();
  }
  void SetUp() override {
    a_ = std::make_unique<FakeWorker>(io_, "127.0.0.1", 0);
    ASSERT_TRUE(a_->ok);
    // The second fake listens on the same port at another loopback address, as two pods
    // of one Service do.
    b_ = std::make_unique<FakeWorker>(io_, "127.0.0.2", a_->port());
    if (!b_->ok) GTEST_SKIP() << "127.0.0.2 is not a usable loopback address here";
    client_ = std::make_unique<net::HttpClient>(io_);
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }
  void TearDown() override {
    if (pool_) on_io([this] { pool_->stop(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  void make_pool() {
    PoolOptions opts;
    opts.poll_interval = 20ms;
    opts.resolve_interval = 20ms;
    opts.resolver = [this](const std::string& host,
                           std::function<void(Result<std::vector<std::string>>)> done) {
      ++resolves_;
      last_host_ = host;
      if (!dns_error_.empty()) return done(Status::error(dns_error_));
      done(dns_);
    };
    WorkerAddress seed{worker::Role::kToken, "llama-token.inference.svc", a_->port(), true};
    pool_ = std::make_unique<WorkerPool>(io_, *client_, std::vector<WorkerAddress>{seed}, opts);
    on_io([this] { pool_->start(); });
  }
  // Waits until `pred` (run on the io thread) holds, up to 5 s.
  bool eventually(std::function<bool()> pred) {
    for (int i = 0; i < 250; ++i) {
      if (on_io([&] { return pred(); })) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  int healthy() {
    return on_io([this] { return pool_->healthy_count(worker::Role::kToken); });
  }

  boost::asio::io_context io_;
  std::unique_ptr<FakeWorker> a_, b_;
  std::unique_ptr<net::HttpClient> client_;
  std::unique_ptr<WorkerPool> pool_;
  std::thread thread_;
  std::vector<std::string> dns_{"127.0.0.1"};
  std::string dns_error_;
  std::string last_host_;
  int resolves_ = 0;
};

TEST_F(DiscoveryTest, EveryAddressIsAWorkerAndLeaversAreDropped) {
  make_pool();
  ASSERT_TRUE(eventually([&] { return pool_->healthy_count(worker::Role::kToken) == 1; }));
  EXPECT_EQ(on_io([&] { return last_host_; }), "llama-token.inference.svc");
  EXPECT_EQ(on_io([&] { return pool_->address(0).id(); }),
            "127.0.0.1:" + std::to_string(a_->port()));

  // A second pod becomes ready: two workers, each placed on by its own address.
  on_io([&] { dns_ = {"127.0.0.1", "127.0.0.2"}; });
  ASSERT_TRUE(eventually([&] { return pool_->healthy_count(worker::Role::kToken) == 2; }));
  auto views = on_io([&] { return pool_->views(); });
  ASSERT_EQ(views.size(), 2u);
  EXPECT_NE(views[0].id, views[1].id);

  // The first pod leaves the Service: it is no longer a worker, and indices stay put.
  on_io([&] { dns_ = {"127.0.0.2"}; });
  ASSERT_TRUE(eventually([&] {
    return pool_->healthy_count(worker::Role::kToken) == 1 &&
           pool_->known_count(worker::Role::kToken) == 1;
  }));
  views = on_io([&] { return pool_->views(); });
  ASSERT_EQ(views.size(), 2u);
  EXPECT_FALSE(views[0].healthy);
  EXPECT_TRUE(views[1].healthy);

  // It comes back: the same entry serves again.
  on_io([&] { dns_ = {"127.0.0.1", "127.0.0.2"}; });
  ASSERT_TRUE(eventually([&] { return pool_->healthy_count(worker::Role::kToken) == 2; }));
  EXPECT_EQ(on_io([&] { return pool_->views().size(); }), 2u);
}

TEST_F(DiscoveryTest, DnsFailureKeepsTheKnownWorkers) {
  make_pool();
  on_io([&] { dns_ = {"127.0.0.1", "127.0.0.2"}; });
  ASSERT_TRUE(eventually([&] { return pool_->healthy_count(worker::Role::kToken) == 2; }));
  on_io([&] { dns_error_ = "SERVFAIL"; });
  const int before = on_io([&] { return resolves_; });
  ASSERT_TRUE(eventually([&] { return resolves_ > before + 3; }));
  EXPECT_EQ(healthy(), 2);
}

TEST(RouterConfigDiscovery, ReadsDiscoverDnsAndRejectsOtherValues) {
  const auto dir = testing::fresh_temp_dir();
  const auto good = dir / "good.yaml";
  {
    std::ofstream f(good);
    f << "workers:\n  - {role: token, address: svc.ns.svc:8000, discover: dns}\n"
         "  - {role: prompt, address: 127.0.0.1:8101}\n";
  }
  std::vector<WorkerAddress> w;
  ASSERT_TRUE(read_workers_yaml(good.string(), &w).ok());
  ASSERT_EQ(w.size(), 2u);
  EXPECT_TRUE(w[0].discover);
  EXPECT_FALSE(w[1].discover);
  const auto bad = dir / "bad.yaml";
  {
    std::ofstream f(bad);
    f << "workers:\n  - {role: token, address: svc:8000, discover: srv}\n";
  }
  w.clear();
  const Status st = read_workers_yaml(bad.string(), &w);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("discover 'srv'"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace splitwise::router
