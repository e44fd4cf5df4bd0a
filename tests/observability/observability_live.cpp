// No dead metric names: a real Prometheus server (started here on loopback, 1 s scrapes,
// the chart's rule file loaded) scrapes a local cluster (router + prompt + token worker on
// stories260K, CPU) under load, and splitwise-controller reconciling crds/examples/
// cpu-dev.yaml against the in-process fake API server. Then every dashboard query, with
// Grafana's variables set to "All", must return data over the load, and every metric an
// alert or recording rule reads must have data. Metrics listed in pending_metrics.txt
// (not exported yet) or gpu_only_metrics.txt (only GPU workers export them) are excused,
// by name; a pending metric that has data fails the test, so the list stays exact.
//
// Scrape labels mimic what the operator's ServiceMonitor gives in a cluster: namespace,
// service and job "<cluster>-<pool>", pod; the controller's scrape honours its labels.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "controller/api/yaml_json.h"
#include "tests/controller/fake_apiserver.h"
#include "tests/e2e/cluster_harness.h"
#include "tests/observability/obs_queries.h"
#include "tests/test_util.h"

namespace splitwise::obs {
namespace {

using json = nlohmann::json;
using e2e::Endpoint;
using e2e::Millis;
using e2e::Process;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kModel = "models/stories260K/stories260K.bin";
constexpr auto kLoad = 12s;  // long enough for several 4 s rate windows of traffic

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A port nothing listens on right now (for programs that cannot take port 0).
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// One Prometheus HTTP API call; the parsed "data", or an error message.
struct ApiAnswer {
  json data;
  std::string error;
};

ApiAnswer prometheus_api(const Endpoint& prom, const std::string& target) {
  const e2e::HttpResult r = e2e::http_get(prom, target, 20s);
  const json j = json::parse(r.body, nullptr, false);
  if (!j.is_object()) return {json(), "HTTP " + std::to_string(r.status) + r.error + " " + r.body};
  if (j.value("status", "") != "success")
    return {json(), j.value("errorType", "") + ": " + j.value("error", r.body)};
  return {j["data"], ""};
}

// Series of a query_range answer with at least one number that is not NaN.
std::vector<json> series_with_data(const json& data) {
  std::vector<json> out;
  for (const json& s : data.value("result", json::array())) {
    for (const json& v : s.value("values", json::array()))
      if (v.size() == 2 && v[1].is_string() && v[1].get<std::string>() != "NaN") {
        out.push_back(s);
        break;
      }
  }
  return out;
}

// One line per series: its labels and its last value that is a number.
void print_answer(const Query& q, const std::vector<json>& series) {
  std::printf("%s: %zu series\n", q.where.c_str(), series.size());
  for (const json& s : series) {
    std::string last;
    for (const json& v : s["values"])
      if (v[1] != "NaN") last = v[1];
    std::printf("    %s = %s\n", s["metric"].dump().c_str(), last.c_str());
  }
}

std::string scrape_job(const std::string& job, const std::vector<std::string>& targets,
                       const std::map<std::string, std::string>& labels, bool honor_labels) {
  std::string out = "  - job_name: " + job + "\n";
  if (honor_labels) out += "    honor_labels: true\n";
  out += "    static_configs:\n      - targets: [";
  for (size_t i = 0; i < targets.size(); ++i) out += (i ? ", \"" : "\"") + targets[i] + "\"";
  out += "]\n        labels:\n";
  for (const auto& [k, v] : labels) out += "          " + k + ": \"" + v + "\"\n";
  return out;
}

// Requests through the router for `duration` from `threads` clients: streamed and not,
// plus the failures the error panels count (an invalid request, clients that hang up).
struct LoadResult {
  std::atomic<int> ok{0}, failed{0};
  std::string first_error;
  std::mutex mu;  // guards first_error
};

void run_load(const Endpoint& router, Millis duration, int threads, LoadResult& result) {
  static const char* prompts[] = {"Once upon a time", "The little dog", "Lily and Tom went to",
                                  "One day, a big bird", "The sun was"};
  const auto end = Clock::now() + duration;
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; Clock::now() < end; ++i) {
        json body = {{"prompt", prompts[(i + t) % 5]},
                     {"max_tokens", 16 + 8 * ((i + t) % 5)},
                     {"temperature", 0}};
        int status = 0;
        std::string error;
        if (t == 0 && i % 20 == 3) {  // invalid: a model this router does not serve
          body["model"] = "no-such-model";
          status = e2e::http_post(router, "/v1/completions", body.dump()).status;
          if (status / 100 != 4) error = "unknown model answered " + std::to_string(status);
        } else if (t == 1 && i % 20 == 5) {  // the client hangs up after two chunks
          body["stream"] = true;
          body["max_tokens"] = 200;
          int events = 0;
          e2e::http_post_sse(router, "/v1/completions", body.dump(),
                             [&](const std::string&) { return ++events < 2; });
        } else if (i % 2 == 0) {
          body["stream"] = true;
          const e2e::SseResult r = e2e::http_post_sse(router, "/v1/completions", body.dump());
          status = r.status;
          if (r.status != 200 || !r.complete) error = "stream: " + r.error + r.body;
        } else {
          const e2e::HttpResult r = e2e::http_post(router, "/v1/completions", body.dump());
          status = r.status;
          if (r.status != 200) error = "HTTP " + std::to_string(r.status) + r.error + r.body;
        }
        if (!error.empty()) {
          ++result.failed;
          std::lock_guard lock(result.mu);
          if (result.first_error.empty()) result.first_error = error;
        } else if (status == 200) {
          ++result.ok;
        }
        // Leaves CPU to the scrapes and to whatever else runs beside this test.
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  for (std::thread& c : clients) c.join();
}

TEST(ObservabilityLive, EveryDashboardAndAlertQueryHasData) {
  const auto test_start = Clock::now();
  const fs::path prometheus_bin = find_program("prometheus");
  if (prometheus_bin.empty())
    GTEST_SKIP() << "the prometheus server is not installed (Debian package `prometheus`; "
                    "tests/observability/install_prometheus.sh installs it)";
  SW_REQUIRE_SHARED(model, kModel);
  const fs::path dir = testing::fresh_temp_dir();

  // The operator: fake API server in this process, splitwise-controller as a process.
  fake::FakeApiServer api;
  ASSERT_TRUE(api.start().ok());
  const fs::path kubeconfig = dir / "kubeconfig";
  std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\n"
                               "clusters: [{name: fake, cluster: {server: \""
                            << api.url()
                            << "\"}}]\n"
                               "users: [{name: test, user: {token: test}}]\n"
                               "contexts: [{name: fake, context: {cluster: fake, user: test, "
                               "namespace: splitwise-system}}]\n"
                               "current-context: fake\n";
  auto ic =
      controller::yaml_to_json(testing::read_file(source_dir() / "crds/examples/cpu-dev.yaml"));
  ASSERT_TRUE(ic.ok()) << ic.status().message();
  const std::string ns = (*ic)["metadata"]["namespace"], cluster = (*ic)["metadata"]["name"];
  // Autoscaling on, reading the router's rates from this test's Prometheus (started below
  // on this port), so the autoscaler's series exist and carry real decisions. The CPU
  // pools are sized from a small profile of stories260K on "cpu" machines, in the
  // perf_model.csv format (`splitwise-bench profile` writes the same).
  const Endpoint prom{"127.0.0.1", free_port()};
  const fs::path profile = dir / "cpu_profile.csv";
  {
    std::ofstream csv(profile);
    csv << "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,"
           "prompt_time,token_time,e2e_time,tensor_parallel\n";
    for (int b : {1, 2, 4, 8, 16, 32, 64})
      csv << "stories260K,cpu,64," << b << ",32,0,0," << 0.5 * b << "," << 0.05 * (1 + b / 8.0)
          << ",0,1\n";
  }
  (*ic)["spec"]["autoscaling"] = {
      {"enabled", true},
      {"intervalSeconds", 2},
      {"metrics", {{"prometheusURL", "http://" + prom.str()}}},
      {"profile", {{"path", profile.string()}, {"model", "stories260K"}}}};
  ASSERT_TRUE(api.create("inferenceclusters", *ic).ok());
  const uint16_t controller_port = free_port();
  std::string error;
  auto controller =
      Process::start({SPLITWISE_CONTROLLER_BIN, "--kubeconfig", kubeconfig.string(),
                      "--metrics-port", std::to_string(controller_port), "--lease-duration", "4",
                      "--renew-deadline", "3", "--retry-period", "1"},
                     "", 20s, &error);
  ASSERT_TRUE(controller) << error;

  // The serving cluster.
  e2e::Cluster serving(model);
  ASSERT_EQ(serving.start(30s), "");

  // Prometheus, one job per Service as the ServiceMonitor would have it.
  std::string config =
      "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
      "rule_files: [\"" +
      rules_file().string() + "\"]\nscrape_configs:\n";
  const auto labels = [&](const std::string& component, int index) {
    return std::map<std::string, std::string>{
        {"namespace", ns},
        {"service", cluster + "-" + component},
        {"pod", cluster + "-" + component + "-" + std::to_string(index)},
        {"endpoint", "http"}};
  };
  config += scrape_job(cluster + "-router", {serving.router().str()}, labels("router", 0), false);
  int targets = 1;
  for (const std::string role : {"prompt", "token", "mixed"}) {
    int i = 0;
    for (e2e::Worker* w : serving.workers(role)) {
      config += scrape_job(cluster + "-" + role, {w->http.str()}, labels(role, i++), false);
      ++targets;
    }
  }
  config +=
      scrape_job("splitwise-controller", {"127.0.0.1:" + std::to_string(controller_port)},
                 {{"namespace", "splitwise-system"}, {"pod", "splitwise-controller-0"}}, true);
  ++targets;
  std::ofstream(dir / "prometheus.yml") << config;
  auto prometheus = Process::start(
      {prometheus_bin.string(), "--config.file=" + (dir / "prometheus.yml").string(),
       "--storage.tsdb.path=" + (dir / "tsdb").string(), "--web.listen-address=" + prom.str()},
      "", 20s, &error);
  ASSERT_TRUE(prometheus) << error;
  ASSERT_TRUE(e2e::poll_until([&] { return e2e::http_get(prom, "/-/ready", 2s).status == 200; },
                              20s, 100ms))
      << prometheus->output();
  std::string last_up;
  const bool all_up = e2e::poll_until(
      [&] {
        const ApiAnswer a = prometheus_api(prom, "/api/v1/query?query=" + url_encode("sum(up)"));
        last_up = a.error.empty() ? a.data.dump() : a.error;
        const json& r = a.data.is_object() ? a.data["result"] : json();
        return r.is_array() && r.size() == 1 && r[0]["value"][1] == std::to_string(targets);
      },
      20s, 200ms);
  ASSERT_TRUE(all_up) << "not every target is up: " << last_up << "\n" << config;
  const double stack_seconds = since(test_start);

  // Load, then a few scrapes and rule evaluations more.
  const double load_start = unix_now();
  LoadResult load;
  run_load(serving.router(), kLoad, 3, load);
  EXPECT_EQ(load.failed.load(), 0) << load.first_error;
  EXPECT_GT(load.ok.load(), 20);
  std::this_thread::sleep_for(3s);
  const double end = unix_now();

  // What has data, by name.
  const ApiAnswer names = prometheus_api(
      prom, "/api/v1/query?query=" + url_encode("group by (__name__) ({__name__=~\".+\"})"));
  ASSERT_EQ(names.error, "");
  std::set<std::string> present;
  for (const json& s : names.data["result"]) present.insert(s["metric"]["__name__"]);
  const auto pending = read_metric_list(tests_dir() / "pending_metrics.txt");
  const auto gpu_only = read_metric_list(tests_dir() / "gpu_only_metrics.txt");
  const auto excused = [&](const std::string& name) {
    return pending.count(metric_family(name)) || gpu_only.count(metric_family(name));
  };

  std::vector<std::string> errors;
  // Scrapes are 1 s apart: Grafana's $__rate_interval is then 4 scrape intervals.
  std::vector<Query> queries = dashboard_queries({.rate_interval = "4s"}, errors);
  const std::vector<Query> rules = rule_queries(errors);
  queries.insert(queries.end(), rules.begin(), rules.end());
  ASSERT_TRUE(errors.empty()) << errors.front();

  // SPLITWISE_OBS_VERBOSE=1 prints what every dashboard query returned.
  const bool verbose = std::getenv("SPLITWISE_OBS_VERBOSE") != nullptr;
  std::set<std::string> pending_used, excused_seen;
  std::vector<std::string> failures;
  const std::string range =
      "&start=" + std::to_string(load_start) + "&end=" + std::to_string(end) + "&step=1";
  for (const Query& q : queries) {
    std::vector<std::string> missing_excused;
    for (const std::string& name : metric_names(q.expr)) {
      if (pending.count(metric_family(name))) pending_used.insert(metric_family(name));
      if (present.count(name)) continue;
      if (excused(name)) {
        missing_excused.push_back(name);
        excused_seen.insert(metric_family(name));
      } else {
        failures.push_back(q.where + ": metric " + name + " has no data");
      }
    }
    const ApiAnswer a =
        prometheus_api(prom, "/api/v1/query_range?query=" + url_encode(q.expr) + range);
    if (!a.error.empty()) {
      failures.push_back(q.where + ": " + a.error + "\n    " + q.expr);
      continue;
    }
    if (q.kind == Query::Kind::kRecord || q.kind == Query::Kind::kAlert) continue;
    const std::vector<json> data = series_with_data(a.data);
    if (verbose) print_answer(q, data);
    if (data.empty()) {
      if (missing_excused.empty()) failures.push_back(q.where + ": no data\n    " + q.expr);
      continue;
    }
    if (q.kind == Query::Kind::kVariable && !q.regex.empty()) {
      const std::regex re(q.regex);
      bool matched = false;
      for (const json& s : data) matched |= std::regex_search(s["metric"].value(q.label, ""), re);
      if (!matched)
        failures.push_back(q.where + ": no value of " + q.label + " matches /" + q.regex + "/");
    }
  }
  for (const auto& [name, why] : pending) {
    const bool has_data =
        present.count(name) || present.count(name + "_bucket") || present.count(name + "_count");
    if (has_data)
      failures.push_back("pending_metrics.txt: " + name + " has data now: delete its line");
    else if (!pending_used.count(name))
      failures.push_back("pending_metrics.txt: " + name + " is used by no dashboard or rule");
  }

  // Every rule evaluates cleanly (a many-to-many join only fails at evaluation).
  const ApiAnswer rule_state = prometheus_api(prom, "/api/v1/rules");
  ASSERT_EQ(rule_state.error, "");
  int rules_evaluated = 0;
  for (const json& g : rule_state.data["groups"])
    for (const json& r : g["rules"]) {
      ++rules_evaluated;
      if (r.value("health", "") == "err")
        failures.push_back("rule " + r.value("name", "") + ": " + r.value("lastError", ""));
    }
  EXPECT_EQ(rules_evaluated, static_cast<int>(rules.size()));

  // The operator's autoscaler read the router's rates through this Prometheus (the
  // scrape labels match what its query selects) and turned them into decisions.
  const ApiAnswer up = prometheus_api(
      prom, "/api/v1/query?query=" + url_encode("max(splitwise_autoscaler_metrics_up)"));
  ASSERT_EQ(up.error, "");
  ASSERT_FALSE(up.data["result"].empty()) << "the autoscaler exported no metrics_up";
  EXPECT_EQ(up.data["result"][0]["value"][1].get<std::string>(), "1")
      << "the autoscaler could not read the load:\n"
      << controller->output();

  std::string report;
  for (const std::string& f : failures) report += "  " + f + "\n";
  EXPECT_TRUE(failures.empty()) << failures.size() << " problem(s):\n" << report;

  std::string excused_list;
  for (const std::string& n : excused_seen) excused_list += " " + n;
  std::printf(
      "stack up in %.1f s; %d requests in %.0f s; %zu queries (%zu from rules) checked; "
      "%zu metric names with data; excused without data:%s; %.1f s in all\n",
      stack_seconds, load.ok.load(), std::chrono::duration<double>(kLoad).count(), queries.size(),
      rules.size(), present.size(), excused_list.c_str(), since(test_start));
  if (HasFailure()) {
    std::printf("--- controller:\n%s\n--- prometheus:\n%s\n%s\n", controller->output().c_str(),
                prometheus->output().c_str(), serving.logs().c_str());
  }
  // SPLITWISE_OBS_HOLD_S=<seconds> keeps everything up to explore Prometheus by hand.
  if (const char* hold = std::getenv("SPLITWISE_OBS_HOLD_S")) {
    std::printf("holding for %s s: Prometheus at http://%s, router at %s\n", hold,
                prom.str().c_str(), serving.router().str().c_str());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(std::atoi(hold)));
  }
  prometheus->stop();
  controller->stop();
}

}  // namespace
}  // namespace splitwise::obs
