// The autoscaler's load observation: parsing the router's metrics and Prometheus answers,
// rates between scrapes, and HttpLoadSource against real HTTP servers that answer well,
// with garbage, or not at all.
#include "controller/load_metrics.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cmath>
#include <thread>

#include "workers/net/http.h"

namespace splitwise::controller {
namespace {

std::string router_text(double n, double prompt_sum, double m, double output_sum) {
  auto line = [](const char* name, double v) {
    return std::string(name) + " " + std::to_string(v) + "\n";
  };
  return "# HELP splitwise_router_prompt_tokens Prompt tokens\n"
         "# TYPE splitwise_router_prompt_tokens histogram\n"
         "splitwise_router_prompt_tokens_bucket{le=\"+Inf\"} " +
         std::to_string(n) + "\n" + line("splitwise_router_prompt_tokens_sum", prompt_sum) +
         line("splitwise_router_prompt_tokens_count", n) +
         line("splitwise_router_output_tokens_sum", output_sum) +
         line("splitwise_router_output_tokens_count", m) + "splitwise_router_inflight_requests 3\n";
}

TEST(LoadMetrics, ParsesTheRouterCounters) {
  auto c = parse_router_metrics(router_text(10, 12000, 10, 2000));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_DOUBLE_EQ(c->prompt_count, 10);
  EXPECT_DOUBLE_EQ(c->prompt_sum, 12000);
  EXPECT_DOUBLE_EQ(c->output_sum, 2000);
}

TEST(LoadMetrics, MissingOrBadSeriesIsAnError) {
  auto missing = parse_router_metrics("splitwise_router_prompt_tokens_sum 1\n");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("splitwise_router_prompt_tokens_count"),
            std::string::npos);
  auto bad =
      parse_router_metrics(router_text(1, 1, 1, 1) + "splitwise_router_prompt_tokens_sum x\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a number"), std::string::npos);
  EXPECT_FALSE(parse_router_metrics("<html>502 Bad Gateway</html>").ok());
}

TEST(LoadMetrics, RatesBetweenScrapes) {
  RouterCounters a{10000, 10, 2000, 10}, b{34000, 30, 6000, 30};
  auto o = load_between(a, b, 10);
  ASSERT_TRUE(o.ok());
  EXPECT_DOUBLE_EQ(o->arrival_rate, 2);
  EXPECT_DOUBLE_EQ(o->mean_prompt_tokens, 1200);
  EXPECT_DOUBLE_EQ(o->mean_output_tokens, 200);
  auto idle = load_between(b, b, 10);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->arrival_rate, 0);
  EXPECT_FALSE(load_between(b, a, 10).ok()) << "a restarted router's counters went back";
  EXPECT_FALSE(load_between(a, b, 0).ok());
}

TEST(LoadMetrics, PrometheusInstantQueries) {
  auto one = parse_instant_query(
      R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"4.5"]}]}})");
  ASSERT_TRUE(one.ok());
  EXPECT_DOUBLE_EQ(*one, 4.5);
  auto none =
      parse_instant_query(R"({"status":"success","data":{"resultType":"vector","result":[]}})");
  ASSERT_FALSE(none.ok()) << "no series is a misconfiguration, not zero traffic";
  EXPECT_NE(none.status().message().find("no series"), std::string::npos);
  auto nan = parse_instant_query(
      R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}})");
  ASSERT_TRUE(nan.ok());
  EXPECT_TRUE(std::isnan(*nan)) << "NaN passes through, for plausible() to refuse";
  EXPECT_FALSE(parse_instant_query(R"({"status":"error","error":"bad_data"})").ok());
  EXPECT_FALSE(parse_instant_query("not json").ok());
  EXPECT_FALSE(
      parse_instant_query(R"({"status":"success","data":{"resultType":"matrix","result":[]}})")
          .ok());
}

// A real HTTP server on loopback that answers every GET with `body`.
class Server {
 public:
  explicit Server(std::function<std::string(const std::string&)> body) : server_(io_, {}) {
    server_.fallback([this, body](net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
      targets.push_back(req.target);
      w->respond(200, "text/plain", body(req.target));
    });
    EXPECT_TRUE(server_.start().ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Server() {
    server_.stop();
    io_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  std::vector<std::string> targets;

 private:
  boost::asio::io_context io_;
  net::HttpServer server_;
  std::thread thread_;
};

TEST(HttpLoadSource, ScrapesTheRouterTwiceForARate) {
  double n = 10;
  Server router([&](const std::string&) { return router_text(n, n * 1000, n, n * 100); });
  HttpLoadSource source;
  auto first = source.observe("ns/c", "", router.url() + "/metrics", "", 100);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.status().message().find("first scrape"), std::string::npos);
  n = 40;
  auto second = source.observe("ns/c", "", router.url() + "/metrics", "", 110);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_DOUBLE_EQ(second->arrival_rate, 3);
  EXPECT_DOUBLE_EQ(second->mean_prompt_tokens, 1000);
  EXPECT_EQ(router.targets.back(), "/metrics");
}

TEST(HttpLoadSource, GarbageAndRefusedConnectionsAreErrors) {
  Server garbage([](const std::string&) { return "<html>oops</html>"; });
  HttpLoadSource source;
  EXPECT_FALSE(source.observe("ns/c", "", garbage.url() + "/metrics", "", 1).ok());
  EXPECT_FALSE(source.observe("ns/c", garbage.url(), "", "namespace=\"ns\"", 1).ok());
  // A port nobody listens on: connection refused, quickly.
  std::string closed;
  {
    Server gone([](const std::string&) { return ""; });
    closed = gone.url();
  }
  auto refused = source.observe("ns/d", "", closed + "/metrics", "", 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(refused.status().message().empty());
}

TEST(HttpLoadSource, QueriesPrometheusForRatesOverAllRouters) {
  Server prom([](const std::string& target) {
    // count rate 2/s, prompt sum rate 2400/s, output sum rate 400/s.
    const char* v = target.find("prompt_tokens_count") != std::string::npos   ? "2"
                    : target.find("prompt_tokens_sum") != std::string::npos   ? "2400"
                    : target.find("output_tokens_count") != std::string::npos ? "2"
                                                                              : "400";
    return std::string(
               R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,")") +
           v + R"("]}]}})";
  });
  HttpLoadSource source;
  auto o = source.observe("ns/c", prom.url(), "", "namespace=\"ns\",service=\"c-router\"", 1);
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_DOUBLE_EQ(o->arrival_rate, 2);
  EXPECT_DOUBLE_EQ(o->mean_prompt_tokens, 1200);
  EXPECT_DOUBLE_EQ(o->mean_output_tokens, 200);
  ASSERT_EQ(prom.targets.size(), 4u);
  EXPECT_EQ(prom.targets[0].rfind("/api/v1/query?query=", 0), 0u);
  EXPECT_NE(prom.targets[0].find("c-router"), std::string::npos) << prom.targets[0];
}

}  // namespace
}  // namespace splitwise::controller
