// HttpClient and RestClient against a small plain-HTTP Beast server in the test.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "controller/kube/http_client.h"
#include "controller/kube/rest_client.h"

namespace splitwise::kube {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using Request = http::request<http::string_body>;

// Serves one connection at a time; `handler` writes the whole response on the socket.
class TestServer {
 public:
  using Handler = std::function<void(const Request&, tcp::socket&)>;
  explicit TestServer(Handler handler) : handler_(std::move(handler)), acceptor_(ioc_) {
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~TestServer() {
    stopping_ = true;
    beast::error_code ec;
    // Wake accept() with a connection of our own.
    tcp::socket poke(ioc_);
    poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stopping_) {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      beast::flat_buffer buffer;
      Request req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(req);
      }
      handler_(req, socket);
      socket.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<Request> requests_;
  std::thread thread_;
};

void respond(tcp::socket& socket, int status, const std::string& body,
             std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::response<http::string_body> res(static_cast<http::status>(status), 11);
  res.set(http::field::content_type, "application/json");
  for (auto& [k, v] : headers) res.set(k, v);
  res.body() = body;
  res.prepare_payload();
  beast::error_code ec;
  http::write(socket, res, ec);
}

ClusterConfig config_for(const TestServer& server) {
  ClusterConfig config;
  config.server = server.url();
  config.token = TokenSource::fixed("sekret");
  config.request_timeout = 2000ms;
  return config;
}

RetryPolicy fast_retry(int attempts) {
  RetryPolicy retry;
  retry.max_attempts = attempts;
  retry.backoff = BackoffPolicy{1ms, 5ms, 0.5};
  return retry;
}

TEST(ParseServerUrlTest, SplitsSchemeHostPortAndPrefix) {
  auto url = parse_server_url("https://k8s.example:6443/prefix/");
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "k8s.example");
  EXPECT_EQ(url->port, "6443");
  EXPECT_EQ(url->base_path, "/prefix");
  auto v6 = parse_server_url("http://[::1]");
  ASSERT_TRUE(v6.ok());
  EXPECT_FALSE(v6->tls);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, "80");
  EXPECT_FALSE(parse_server_url("ftp://x").ok());
  EXPECT_FALSE(parse_server_url("https://x:abc").ok());
}

TEST(FeedLinesTest, SplitsAcrossChunks) {
  std::vector<std::string> lines;
  auto collect = [&](std::string_view l) {
    lines.emplace_back(l);
    return true;
  };
  std::string pending;
  EXPECT_TRUE(feed_lines(pending, "{\"a\":1}\n{\"b\"", collect));
  EXPECT_TRUE(feed_lines(pending, ":2}\r\n\n{\"c\":3", collect));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "{\"a\":1}");
  EXPECT_EQ(lines[1], "{\"b\":2}");
  EXPECT_EQ(pending, "{\"c\":3");
  std::string p2;
  int n = 0;
  EXPECT_FALSE(feed_lines(p2, "x\ny\nz\n", [&](std::string_view) { return ++n < 2; }));
  EXPECT_EQ(n, 2);
}

TEST(HttpClientTest, SendsRequestAndReadsResponse) {
  TestServer server([](const Request& req, tcp::socket& s) {
    respond(s, 201, R"({"ok":true})", {{"X-Test", "yes"}});
  });
  auto client = HttpClient::create(config_for(server));
  ASSERT_TRUE(client.ok());
  HttpRequest req;
  req.method = "POST";
  req.target = "/api/v1/namespaces/a/configmaps";
  req.body = R"({"x":1})";
  req.content_type = "application/json";
  auto res = (*client)->request(req);
  ASSERT_TRUE(res.ok()) << res.status().message();
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->body, R"({"ok":true})");
  EXPECT_EQ(res->header("x-test"), "yes");
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method(), http::verb::post);
  EXPECT_EQ(seen[0].target(), "/api/v1/namespaces/a/configmaps");
  EXPECT_EQ(seen[0][http::field::authorization], "Bearer sekret");
  EXPECT_EQ(seen[0].body(), R"({"x":1})");
}

TEST(HttpClientTest, ConnectionRefusedIsTransportError) {
  ClusterConfig config;
  {
    TestServer server([](const Request&, tcp::socket&) {});
    config = config_for(server);
  }  // closed: nothing listens there now
  auto client = HttpClient::create(config);
  ASSERT_TRUE(client.ok());
  auto res = (*client)->request(HttpRequest{});
  EXPECT_FALSE(res.ok());
}

TEST(HttpClientTest, TimesOutOnSilentServer) {
  std::promise<void> release;
  auto released = release.get_future().share();
  TestServer server([released](const Request&, tcp::socket&) { released.wait_for(3s); });
  auto config = config_for(server);
  auto client = HttpClient::create(config);
  HttpRequest req;
  req.target = "/slow";
  req.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  auto res = (*client)->request(req);
  release.set_value();
  EXPECT_FALSE(res.ok());
  EXPECT_NE(res.status().message().find("timed out"), std::string::npos) << res.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

// Writes a body of lines without Content-Length; stays open until the client closes
// when `hold` is set.
void stream(tcp::socket& s, const std::vector<std::string>& lines, bool hold) {
  std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
  beast::error_code ec;
  asio::write(s, asio::buffer(head), ec);
  for (const auto& line : lines) {
    asio::write(s, asio::buffer(line), ec);
    std::this_thread::sleep_for(5ms);
  }
  if (hold) {
    char b[16];
    s.read_some(asio::buffer(b), ec);  // until the client goes away
  }
}

TEST(HttpClientTest, StreamsLinesSplitAcrossWrites) {
  TestServer server([](const Request&, tcp::socket& s) {
    stream(s, {"{\"n\":1}\n{\"n\"", ":2}\n", "{\"n\":3}"}, false);
  });
  auto client = HttpClient::create(config_for(server));
  std::vector<std::string> lines;
  auto res = (*client)->stream_lines(
      HttpRequest{},
      [&](std::string_view l) {
        lines.emplace_back(l);
        return true;
      },
      nullptr, 2000ms);
  ASSERT_TRUE(res.ok()) << res.status().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"n\":1}", "{\"n\":2}", "{\"n\":3}"}));
}

TEST(HttpClientTest, StreamCancelFromAnotherThread) {
  TestServer server([](const Request&, tcp::socket& s) { stream(s, {"{\"n\":1}\n"}, true); });
  auto client = HttpClient::create(config_for(server));
  CancelToken cancel;
  std::promise<void> got_line;
  std::atomic<int> lines{0};
  auto done = std::async(std::launch::async, [&] {
    return (*client)->stream_lines(
        HttpRequest{},
        [&](std::string_view) {
          if (lines++ == 0) got_line.set_value();
          return true;
        },
        &cancel, 30'000ms);
  });
  ASSERT_EQ(got_line.get_future().wait_for(3s), std::future_status::ready);
  ASSERT_EQ(done.wait_for(100ms), std::future_status::timeout);  // still streaming
  cancel.cancel();
  ASSERT_EQ(done.wait_for(3s), std::future_status::ready);
  EXPECT_EQ(lines.load(), 1);
  EXPECT_TRUE(cancel.cancelled());
}

TEST(HttpClientTest, CancelledBeforeStartDoesNotConnect) {
  TestServer server([](const Request&, tcp::socket& s) { respond(s, 200, "{}"); });
  auto client = HttpClient::create(config_for(server));
  CancelToken cancel;
  cancel.cancel();
  auto res = (*client)->request(HttpRequest{}, &cancel);
  EXPECT_FALSE(res.ok());
  EXPECT_TRUE(server.requests().empty());
}

TEST(HttpClientTest, StreamErrorStatusKeepsBody) {
  TestServer server([](const Request&, tcp::socket& s) {
    respond(s, 410, R"({"kind":"Status","reason":"Expired","code":410})");
  });
  auto client = HttpClient::create(config_for(server));
  int lines = 0;
  auto res = (*client)->stream_lines(
      HttpRequest{}, [&](std::string_view) { return ++lines > 0; }, nullptr, 2000ms);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 410);
  EXPECT_EQ(lines, 0);
  EXPECT_NE(res->body.find("Expired"), std::string::npos);
}

const Resource kDeployments{"apps", "v1", "deployments", true};
const Resource kNodes{"", "v1", "nodes", false};

TEST(RestClientTest, PathsAndVerbs) {
  TestServer server([](const Request& req, tcp::socket& s) {
    respond(s, 200, R"({"kind":"Deployment","metadata":{"name":"d"}})");
  });
  auto rest = RestClient::create(config_for(server), fast_retry(1));
  ASSERT_TRUE(rest.ok());
  RestClient& c = **rest;
  json obj = {{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"metadata", {{"name", "d"}}}};
  EXPECT_TRUE(c.get(kDeployments, "ns", "d").ok());
  EXPECT_TRUE(c.get(kNodes, "ignored", "n1").ok());
  EXPECT_TRUE(c.create(kDeployments, "ns", obj).ok());
  EXPECT_TRUE(c.update(kDeployments, "ns", obj).ok());
  EXPECT_TRUE(c.update_status(kDeployments, "ns", obj).ok());
  EXPECT_TRUE(c.patch(kDeployments, "ns", "d", json{{"spec", {{"replicas", 2}}}}).ok());
  EXPECT_TRUE(c.apply(kDeployments, "ns", obj, "splitwise").ok());
  EXPECT_TRUE(c.remove(kDeployments, "ns", "d", "Foreground").ok());
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen[0].target(), "/apis/apps/v1/namespaces/ns/deployments/d");
  EXPECT_EQ(seen[1].target(), "/api/v1/nodes/n1");
  EXPECT_EQ(seen[2].method(), http::verb::post);
  EXPECT_EQ(seen[2].target(), "/apis/apps/v1/namespaces/ns/deployments");
  EXPECT_EQ(seen[3].method(), http::verb::put);
  EXPECT_EQ(seen[4].target(), "/apis/apps/v1/namespaces/ns/deployments/d/status");
  EXPECT_EQ(seen[5][http::field::content_type], "application/merge-patch+json");
  EXPECT_EQ(seen[6].method(), http::verb::patch);
  EXPECT_EQ(seen[6].target(),
            "/apis/apps/v1/namespaces/ns/deployments/d?fieldManager=splitwise&force=true");
  EXPECT_EQ(seen[6][http::field::content_type], "application/apply-patch+yaml");
  EXPECT_EQ(json::parse(std::string(seen[6].body())), obj);
  EXPECT_EQ(seen[7].method(), http::verb::delete_);
  EXPECT_NE(seen[7].body().find("Foreground"), std::string::npos);
}

TEST(RestClientTest, MapsErrorStatuses) {
  std::atomic<int> code{404};
  std::atomic<const char*> reason{"NotFound"};
  TestServer server([&](const Request&, tcp::socket& s) {
    json status = {
        {"kind", "Status"}, {"code", code.load()}, {"reason", reason.load()}, {"message", "msg"}};
    respond(s, code.load(), status.dump());
  });
  auto rest = RestClient::create(config_for(server), fast_retry(1));
  RestClient& c = **rest;
  auto r = c.get(kDeployments, "ns", "d");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().is_not_found());
  code = 409;
  reason = "AlreadyExists";
  r = c.create(kDeployments, "ns", json::object());
  EXPECT_TRUE(r.error().is_already_exists());
  reason = "Conflict";
  r = c.update(kDeployments, "ns", json{{"metadata", {{"name", "d"}}}});
  EXPECT_TRUE(r.error().is_conflict());
  code = 422;
  reason = "Invalid";
  EXPECT_TRUE(c.create(kDeployments, "ns", json::object()).error().is_invalid());
  code = 410;
  reason = "Expired";
  EXPECT_TRUE(c.list(kDeployments, "ns", {}).error().is_gone());
  EXPECT_EQ(c.list(kDeployments, "ns", {}).error().message, "msg");
}

TEST(RestClientTest, RetriesIdempotentVerbsOn5xxAndHonoursRetryAfter) {
  std::atomic<int> calls{0};
  TestServer server([&](const Request&, tcp::socket& s) {
    const int n = calls++;
    if (n == 0) {
      respond(s, 429, R"({"kind":"Status","reason":"TooManyRequests"})", {{"Retry-After", "1"}});
    } else if (n == 1) {
      respond(s, 503, "");
    } else {
      respond(s, 200, R"({"ok":1})");
    }
  });
  auto rest = RestClient::create(config_for(server), fast_retry(5));
  const auto start = std::chrono::steady_clock::now();
  auto r = (*rest)->get(kDeployments, "ns", "d");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(calls.load(), 3);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 950ms);  // Retry-After: 1
}

TEST(RestClientTest, DoesNotRetryCreateOn5xxButGivesUpAfterMaxAttempts) {
  std::atomic<int> calls{0};
  TestServer server([&](const Request&, tcp::socket& s) {
    ++calls;
    respond(s, 500, "");
  });
  auto rest = RestClient::create(config_for(server), fast_retry(3));
  auto created = (*rest)->create(kDeployments, "ns", json::object());
  ASSERT_FALSE(created.ok());
  EXPECT_TRUE(created.error().is_server_error());
  EXPECT_EQ(calls.load(), 1);
  auto got = (*rest)->get(kDeployments, "ns", "d");
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(calls.load(), 4);  // 1 + 3 attempts
}

TEST(RestClientTest, ListFollowsContinueTokens) {
  TestServer server([](const Request& req, tcp::socket& s) {
    if (req.target().find("continue=") == beast::string_view::npos) {
      respond(
          s, 200,
          R"({"metadata":{"resourceVersion":"10","continue":"tok"},"items":[{"metadata":{"name":"a"}}]})");
    } else {
      respond(s, 200,
              R"({"metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"b"}}]})");
    }
  });
  auto rest = RestClient::create(config_for(server), fast_retry(1));
  ListOptions options;
  options.label_selector = "app=x,tier in (a,b)";
  auto list = (*rest)->list(kDeployments, "ns", options);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)["items"].size(), 2u);
  EXPECT_EQ((*list)["metadata"]["resourceVersion"], "10");
  EXPECT_FALSE((*list)["metadata"].contains("continue"));
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0].target().find("labelSelector=app%3Dx%2Ctier%20in%20%28a%2Cb%29"),
            beast::string_view::npos);
  EXPECT_NE(seen[1].target().find("continue=tok"), beast::string_view::npos);
}

TEST(RestClientTest, DiscoveryAndWatchQuery) {
  TestServer server([](const Request& req, tcp::socket& s) {
    if (req.target() == "/apis/splitwise.io/v1alpha1") {
      respond(s, 200, R"({"resources":[{"name":"inferenceclusters"}]})");
    } else if (req.target().starts_with("/apis/monitoring.coreos.com")) {
      respond(s, 404, "");
    } else {
      stream(s,
             {R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})"
              "\n"},
             false);
    }
  });
  auto rest = RestClient::create(config_for(server), fast_retry(1));
  EXPECT_TRUE((*rest)->has_api("splitwise.io", "v1alpha1", "inferenceclusters"));
  EXPECT_FALSE((*rest)->has_api("splitwise.io", "v1alpha1", "other"));
  EXPECT_FALSE((*rest)->has_api("monitoring.coreos.com", "v1", "servicemonitors"));
  auto found = (*rest)->discover("monitoring.coreos.com", "v1", "servicemonitors");
  ASSERT_TRUE(found.ok());
  WatchOptions options;
  options.resource_version = "42";
  options.timeout_seconds = 321;
  int lines = 0;
  auto st = (*rest)->watch(
      kDeployments, "ns", options, [&](std::string_view) { return ++lines > 0; }, nullptr);
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(lines, 1);
  const std::string target(server.requests().back().target());
  EXPECT_NE(target.find("watch=true"), std::string::npos);
  EXPECT_NE(target.find("resourceVersion=42"), std::string::npos);
  EXPECT_NE(target.find("allowWatchBookmarks=true"), std::string::npos);
  EXPECT_NE(target.find("timeoutSeconds=321"), std::string::npos);
}

}  // namespace
}  // namespace splitwise::kube
