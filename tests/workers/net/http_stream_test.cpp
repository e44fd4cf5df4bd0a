// Streaming responses end to end: chunked writes from other threads, prompt delivery,
// client disconnects seen by the server, cancel, and many streams at once.
#include <atomic>
#include <condition_variable>

#include "tests/workers/net/http_test_util.h"

namespace splitwise::net::testing {
namespace {

// Collects one client stream and lets the test wait for its end.
struct StreamProbe {
  std::mutex mu;
  std::condition_variable cv;
  int status = 0;
  std::vector<std::string> lines;  // guarded by mu
  std::optional<Status> end;       // guarded by mu
  int ends = 0;                    // guarded by mu

  std::function<void()> start(HttpClient& client, uint16_t port, const std::string& target,
                              int idle_ms = 5000) {
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    return client.stream(
        "127.0.0.1", port, req, idle_ms, [this](const HttpResponse& head) { status = head.status; },
        [this](std::string_view line) {
          std::lock_guard lock(mu);
          lines.emplace_back(line);
          cv.notify_all();
        },
        [this](Status st) {
          std::lock_guard lock(mu);
          end = st;
          ++ends;
          cv.notify_all();
        });
  }

  bool wait_lines(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return lines.size() >= n; });
  }

  Status wait_end(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, timeout, [&] { return end.has_value(); })) {
      return Status::error("test: stream did not end");
    }
    return *end;
  }
};

// Signals once, from any thread.
struct Flag {
  std::promise<void> promise;
  std::atomic<bool> set{false};
  void fire() {
    if (!set.exchange(true)) promise.set_value();
  }
};

class HttpStreamTest : public HttpFixture {
 protected:
  // GET /count?n=N streams "line i" for i in [0, N) from a helper thread.
  void add_count_route(std::chrono::milliseconds pause = 0ms) {
    route("GET", "/count", [this, pause](HttpRequest req, std::shared_ptr<ResponseWriter> w) {
      int n = std::stoi(req.target.substr(req.target.find("n=") + 2));
      spawn([w, n, pause] {
        w->start_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
        for (int i = 0; i < n; ++i) {
          if (!w->write("line " + std::to_string(i) + "\n")) return;
          if (pause > 0ms) std::this_thread::sleep_for(pause);
        }
        w->finish();
      });
    });
  }
};

TEST_F(HttpStreamTest, HundredChunksArriveInOrder) {
  add_count_route();
  start();
  StreamProbe probe;
  probe.start(client_, port_, "/count?n=100");
  Status st = probe.wait_end();
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(probe.status, 200);
  ASSERT_EQ(probe.lines.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(probe.lines[i], "line " + std::to_string(i));
  EXPECT_EQ(probe.ends, 1);
}

TEST_F(HttpStreamTest, EachChunkIsDeliveredBeforeTheNextIsWritten) {
  // Ping-pong: the server writes line i+1 only after the client has seen line i, so any
  // buffering on either side stalls the test instead of merely slowing it.
  auto seen = std::make_shared<std::atomic<int>>(-1);
  route("GET", "/pingpong", [this, seen](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    spawn([w, seen] {
      w->start_stream(200, "text/event-stream");
      for (int i = 0; i < 20; ++i) {
        w->write("data: " + std::to_string(i) + "\n");
        auto deadline = std::chrono::steady_clock::now() + 1s;
        while (seen->load() < i && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(100us);
        }
      }
      w->finish();
    });
  });
  start();
  HttpRequest req;
  req.target = "/pingpong";
  std::promise<Status> end;
  auto t0 = std::chrono::steady_clock::now();
  client_.stream(
      "127.0.0.1", port_, req, 5000, [](const HttpResponse&) {},
      [seen](std::string_view line) { seen->store(std::stoi(std::string(line.substr(6)))); },
      [&end](Status st) { end.set_value(st); });
  EXPECT_TRUE(end.get_future().get().ok());
  EXPECT_EQ(seen->load(), 19);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // ~20 round trips, no 1 s stalls
}

TEST_F(HttpStreamTest, ClientDisconnectIsNoticedWhileServerIsSilent) {
  auto gone = std::make_shared<Flag>();
  std::promise<std::shared_ptr<ResponseWriter>> writer;
  route("GET", "/silent", [&writer, gone](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->on_client_gone([gone] { gone->fire(); });
    w->start_stream(200, "text/event-stream");
    w->write("first\n");
    writer.set_value(w);  // held, never written again: only the read watch can notice
  });
  start();
  RawClient raw(port_);
  raw.send("GET /silent HTTP/1.1\r\nHost: x\r\n\r\n");
  auto w = writer.get_future().get();
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(w->client_gone());
  raw.close();
  EXPECT_EQ(gone->promise.get_future().wait_for(1s), std::future_status::ready);
  EXPECT_TRUE(w->client_gone());
  EXPECT_FALSE(w->write("dropped\n"));
  auto late = std::make_shared<Flag>();  // registered after the fact: still runs
  w->on_client_gone([late] { late->fire(); });
  EXPECT_EQ(late->promise.get_future().wait_for(1s), std::future_status::ready);
  w->finish();
}

TEST_F(HttpStreamTest, CancelEndsStreamOnceAndServerSeesClientGone) {
  auto gone = std::make_shared<Flag>();
  route("GET", "/forever", [this, gone](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->on_client_gone([gone] { gone->fire(); });
    spawn([w] {
      w->start_stream(200, "text/event-stream");
      for (int i = 0; w->write("tick " + std::to_string(i) + "\n"); ++i) {
        std::this_thread::sleep_for(5ms);
      }
    });
  });
  start();
  StreamProbe probe;
  auto cancel = probe.start(client_, port_, "/forever");
  ASSERT_TRUE(probe.wait_lines(3));
  cancel();
  Status st = probe.wait_end();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "cancelled");
  EXPECT_EQ(gone->promise.get_future().wait_for(1s), std::future_status::ready);
  cancel();  // a second cancel, and one after the end, change nothing
  std::this_thread::sleep_for(50ms);
  std::lock_guard lock(probe.mu);
  EXPECT_EQ(probe.ends, 1);
}

TEST_F(HttpStreamTest, WriterDroppedMidStreamBreaksTheBody) {
  route("GET", "/broken", [](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->start_stream(200, "text/plain");
    w->write("partial\n");
  });
  start();
  StreamProbe probe;
  probe.start(client_, port_, "/broken");
  Status st = probe.wait_end();
  EXPECT_FALSE(st.ok());
  ASSERT_EQ(probe.lines.size(), 1u);
  EXPECT_EQ(probe.lines[0], "partial");
}

TEST_F(HttpStreamTest, StopEndsRunningStreams) {
  auto gone = std::make_shared<Flag>();
  std::promise<std::shared_ptr<ResponseWriter>> writer;
  route("GET", "/held", [&writer, gone](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->on_client_gone([gone] { gone->fire(); });
    w->start_stream(200, "text/plain");
    w->write("one\n");
    writer.set_value(w);
  });
  start();
  StreamProbe probe;
  probe.start(client_, port_, "/held");
  auto w = writer.get_future().get();
  ASSERT_TRUE(probe.wait_lines(1));
  server_->stop();
  EXPECT_EQ(gone->promise.get_future().wait_for(1s), std::future_status::ready);
  EXPECT_FALSE(probe.wait_end().ok());
}

TEST_F(HttpStreamTest, SixtyFourParallelStreams) {
  add_count_route(1ms);
  start();
  constexpr int kStreams = 64;
  constexpr int kLines = 30;
  std::vector<std::unique_ptr<StreamProbe>> probes;
  for (int i = 0; i < kStreams; ++i) {
    probes.push_back(std::make_unique<StreamProbe>());
    probes.back()->start(client_, port_, "/count?n=" + std::to_string(kLines));
  }
  for (auto& probe : probes) {
    Status st = probe->wait_end(20s);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ(probe->lines.size(), static_cast<size_t>(kLines));
    for (int i = 0; i < kLines; ++i) EXPECT_EQ(probe->lines[i], "line " + std::to_string(i));
  }
}

}  // namespace
}  // namespace splitwise::net::testing
