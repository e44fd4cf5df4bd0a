// Server behaviour for plain (non-streaming) requests: routing, errors, limits,
// keep-alive, timeouts and stop().
#include <nlohmann/json.hpp>

#include "tests/workers/net/http_test_util.h"

namespace splitwise::net::testing {
namespace {

using nlohmann::json;

class HttpServerTest : public HttpFixture {
 protected:
  void SetUp() override {
    route("GET", "/hello", [](HttpRequest req, std::shared_ptr<ResponseWriter> w) {
      w->respond(200, "text/plain", "hello " + req.target, {{"X-Test", "yes"}});
    });
    route("POST", "/echo", [](HttpRequest req, std::shared_ptr<ResponseWriter> w) {
      json in = json::parse(req.body, nullptr, false);
      json out = {{"method", req.method},
                  {"target", req.target},
                  {"content_type", req.headers["content-type"]},
                  {"body", in}};
      w->respond(200, "application/json", out.dump());
    });
    route("GET", "/echo",
          [](HttpRequest, std::shared_ptr<ResponseWriter> w) { w->respond(204, "", ""); });
    route("GET", "/dropped", [](HttpRequest, std::shared_ptr<ResponseWriter>) {});
    route("GET", "/throws",
          [](HttpRequest, std::shared_ptr<ResponseWriter>) { throw std::runtime_error("boom"); });
  }

  static json error_of(const HttpResponse& r) { return json::parse(r.body)["error"]; }
};

TEST_F(HttpServerTest, RoutesByPathAndIgnoresQuery) {
  start();
  auto r = fetch("GET", "/hello?x=1");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello /hello?x=1");
  EXPECT_EQ(r->headers["x-test"], "yes");
  EXPECT_EQ(r->headers["content-type"], "text/plain");

  r = fetch("GET", "/echo");  // same path, other method, other handler
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->headers.count("content-length"), 0u);
}

TEST_F(HttpServerTest, EchoesJsonBody) {
  start();
  auto r = fetch("POST", "/echo", R"({"prompt":"hi","max_tokens":3})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->status, 200);
  json out = json::parse(r->body);
  EXPECT_EQ(out["method"], "POST");
  EXPECT_EQ(out["content_type"], "application/json");
  EXPECT_EQ(out["body"]["prompt"], "hi");
  EXPECT_EQ(out["body"]["max_tokens"], 3);
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405) {
  start();
  auto r = fetch("GET", "/nope");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_of(*r)["type"], "invalid_request_error");
  EXPECT_NE(error_of(*r)["message"].get<std::string>().find("/nope"), std::string::npos);

  r = fetch("DELETE", "/echo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->headers["allow"], "GET, POST");
  EXPECT_EQ(error_of(*r)["type"], "invalid_request_error");
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  options_.max_body_bytes = 1000;
  start();
  auto r = fetch("POST", "/echo", std::string(1 << 20, 'x'));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(error_of(*r)["type"], "invalid_request_error");
  EXPECT_EQ(r->headers["connection"], "close");

  r = fetch("POST", "/echo", R"({"small":true})");  // still serving
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitIs413) {
  options_.max_body_bytes = 10;
  start();
  RawClient raw(port_);
  raw.send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(raw.read_response()), 413);
  EXPECT_TRUE(raw.wait_closed());
}

TEST_F(HttpServerTest, MalformedRequestIs400AndServerKeepsServing) {
  start();
  RawClient raw(port_);
  raw.send("THIS IS NOT HTTP\r\n\r\n");
  std::string response = raw.read_response();
  EXPECT_EQ(status_of(response), 400);
  EXPECT_NE(response.find("invalid_request_error"), std::string::npos);
  EXPECT_TRUE(raw.wait_closed());

  RawClient bad_length(port_);
  bad_length.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
  EXPECT_EQ(status_of(bad_length.read_response()), 400);

  auto r = fetch("GET", "/hello");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  RawClient raw(port_);
  raw.send("GET /hello?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string first = raw.read_response();
  EXPECT_EQ(status_of(first), 200);
  EXPECT_NE(first.find("hello /hello?n=1"), std::string::npos);
  raw.send("GET /hello?n=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string second = raw.read_response();
  EXPECT_EQ(status_of(second), 200);
  EXPECT_NE(second.find("hello /hello?n=2"), std::string::npos);
}

TEST_F(HttpServerTest, PipelinedRequestsAnswerInOrder) {
  start();
  RawClient raw(port_);
  raw.send(
      "GET /hello?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
      "GET /hello?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(raw.read_response().find("hello /hello?n=1"), std::string::npos);
  EXPECT_NE(raw.read_response().find("\"method\":\"POST\""), std::string::npos);
  std::string third = raw.read_response();
  EXPECT_NE(third.find("hello /hello?n=3"), std::string::npos);
  EXPECT_NE(third.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(raw.wait_closed());
}

TEST_F(HttpServerTest, WriterDroppedWithoutAnswerIs500) {
  start();
  auto r = fetch("GET", "/dropped");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(error_of(*r)["type"], "server_error");

  r = fetch("GET", "/throws");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
}

TEST_F(HttpServerTest, AnswersFromAnotherThread) {
  route("GET", "/later", [this](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    spawn([w] {
      std::this_thread::sleep_for(20ms);
      w->respond(200, "text/plain", "late");
    });
  });
  start();
  auto r = fetch("GET", "/later");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "late");
}

TEST_F(HttpServerTest, ExpectContinueGetsInterimResponse) {
  start();
  RawClient raw(port_);
  raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(status_of(raw.read_response()), 100);
  raw.send("{}");
  EXPECT_EQ(status_of(raw.read_response()), 200);
}

TEST_F(HttpServerTest, IdleAndSlowHeaderConnectionsAreClosed) {
  options_.idle_timeout_s = 1;
  options_.header_timeout_s = 1;
  start();
  RawClient idle(port_);
  RawClient slow(port_);
  slow.send("GET /hello HTTP/1.1\r\nHost:");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.wait_closed());
  EXPECT_TRUE(slow.wait_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(HttpServerTest, StopClosesListenerAndConnections) {
  start();
  RawClient raw(port_);
  raw.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(raw.read_response()), 200);
  server_->stop();
  EXPECT_TRUE(raw.wait_closed());
  auto r = fetch("GET", "/hello");
  EXPECT_FALSE(r.ok());
}

TEST_F(HttpServerTest, StartFailsWithAddressInUse) {
  start();
  ServerOptions opts;
  opts.port = port_;
  HttpServer second(io_, opts);
  Status st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace splitwise::net::testing
