// HttpClient failure modes and body framings: timeouts, refused connections, lines split
// across chunks, Content-Length and read-until-close bodies.
#include "tests/workers/net/http_test_util.h"

namespace splitwise::net::testing {
namespace {

// A port with nothing listening: bind one, note it, close it.
uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

struct Lines {
  std::vector<std::string> lines;
  Status end = Status::error("test: no end");
};

class HttpClientTest : public HttpFixture {
 protected:
  // Streams `target` from `port` and waits for on_end; callbacks run on the io thread
  // and this thread reads only after the future is ready.
  Lines stream_lines(uint16_t port, const std::string& target, int idle_ms = 5000) {
    auto out = std::make_shared<Lines>();
    std::promise<void> done;
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    client_.stream(
        "127.0.0.1", port, req, idle_ms, [](const HttpResponse&) {},
        [out](std::string_view line) { out->lines.emplace_back(line); },
        [out, &done](Status st) {
          out->end = st;
          done.set_value();
        });
    done.get_future().wait();
    return *out;
  }

  std::vector<std::shared_ptr<ResponseWriter>> held_;  // io thread only
};

TEST_F(HttpClientTest, RequestTimesOutNamingHostAndPort) {
  route("GET", "/hang", [this](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    held_.push_back(w);  // never answered
  });
  start();
  auto t0 = std::chrono::steady_clock::now();
  auto r = fetch("GET", "/hang", "", 200);
  ASSERT_FALSE(r.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("timed out after 200 ms"), std::string::npos) << msg;
  EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port_)), std::string::npos) << msg;
}

TEST_F(HttpClientTest, RefusedConnectionNamesHostAndPort) {
  start();
  uint16_t port = free_port();
  port_ = port;
  auto r = fetch("GET", "/", "", 2000);
  ASSERT_FALSE(r.ok());
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("connecting to 127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
  EXPECT_NE(msg.find("refused"), std::string::npos) << msg;

  Lines s = stream_lines(port, "/");
  EXPECT_FALSE(s.end.ok());
  EXPECT_NE(s.end.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos);
}

TEST_F(HttpClientTest, StreamIdleTimeoutEndsWithError) {
  route("GET", "/stall", [this](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->start_stream(200, "text/plain");
    w->write("one\n");
    held_.push_back(w);
  });
  start();
  Lines s = stream_lines(port_, "/stall", 200);
  ASSERT_EQ(s.lines.size(), 1u);
  EXPECT_FALSE(s.end.ok());
  EXPECT_NE(s.end.message().find("timed out after 200 ms"), std::string::npos) << s.end.message();
}

TEST_F(HttpClientTest, LinesSplitAcrossChunksAreJoined) {
  route("GET", "/split", [](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->start_stream(200, "text/plain");
    for (const char* piece : {"par", "tial\nne", "xt\n", "\n", "tail"}) w->write(piece);
    w->finish();
  });
  start();
  Lines s = stream_lines(port_, "/split");
  ASSERT_TRUE(s.end.ok()) << s.end.message();
  EXPECT_EQ(s.lines, (std::vector<std::string>{"partial", "next", "", "tail"}));
}

TEST_F(HttpClientTest, StreamsContentLengthBody) {
  route("GET", "/fixed", [](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    w->respond(200, "text/plain", "a\nb\nc\n");
  });
  start();
  Lines s = stream_lines(port_, "/fixed");
  ASSERT_TRUE(s.end.ok()) << s.end.message();
  EXPECT_EQ(s.lines, (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(HttpClientTest, StreamsReadUntilCloseBody) {
  // A bare server: neither Content-Length nor chunked, the body ends at close.
  start();
  asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  std::thread server([&acceptor] {
    auto socket = acceptor.accept();
    char buf[4096];
    socket.read_some(asio::buffer(buf));
    asio::write(socket, asio::buffer(std::string("HTTP/1.1 200 OK\r\n\r\nx\ny\n")));
    std::this_thread::sleep_for(20ms);
    asio::write(socket, asio::buffer(std::string("z\n")));
  });
  Lines s = stream_lines(port, "/");
  server.join();
  ASSERT_TRUE(s.end.ok()) << s.end.message();
  EXPECT_EQ(s.lines, (std::vector<std::string>{"x", "y", "z"}));
}

TEST_F(HttpClientTest, RequestReadsErrorStatusAndHeaders) {
  route("POST", "/teapot", [](HttpRequest req, std::shared_ptr<ResponseWriter> w) {
    w->respond(418, "application/json", req.body, {{"X-Reply", "short"}});
  });
  start();
  auto r = fetch("POST", "/teapot", R"({"a":1})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, 418);
  EXPECT_EQ(r->body, R"({"a":1})");
  EXPECT_EQ(r->headers["x-reply"], "short");
}

}  // namespace
}  // namespace splitwise::net::testing
