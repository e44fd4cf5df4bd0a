#include "controller/load_metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "controller/api/inference_cluster.h"
#include "controller/kube/http_client.h"
#include "controller/kube/rest_client.h"

namespace splitwise::controller {
namespace {

bool parse_double(std::string_view s, double& out) {
  if (s == "+Inf" || s == "-Inf" || s == "NaN") {
    out = s == "NaN" ? NAN : (s[0] == '-' ? -INFINITY : INFINITY);
    return true;
  }
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

Result<RouterCounters> parse_router_metrics(std::string_view text) {
  RouterCounters c;
  const std::pair<const char*, double*> wanted[] = {
      {"splitwise_router_prompt_tokens_sum", &c.prompt_sum},
      {"splitwise_router_prompt_tokens_count", &c.prompt_count},
      {"splitwise_router_output_tokens_sum", &c.output_sum},
      {"splitwise_router_output_tokens_count", &c.output_count}};
  bool found[4] = {false, false, false, false};
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of(" {");
    const std::string_view name = line.substr(0, name_end);
    for (int i = 0; i < 4; ++i) {
      if (name != wanted[i].first) continue;
      // "name{labels} value [timestamp]": the value follows the last '}' or the name.
      size_t v = line.rfind('}');
      v = v == std::string_view::npos ? name_end : v + 1;
      std::string_view rest = line.substr(v);
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      rest = rest.substr(0, rest.find(' '));
      double x;
      if (!parse_double(rest, x))
        return Status::error("metric " + std::string(name) + ": value '" + std::string(rest) +
                             "' is not a number");
      *wanted[i].second += x;  // summed over label sets
      found[i] = true;
    }
  }
  for (int i = 0; i < 4; ++i)
    if (!found[i])
      return Status::error(std::string("router metrics lack ") + wanted[i].first +
                           " (not a splitwise router, or an older one)");
  return c;
}

Result<LoadObservation> load_between(const RouterCounters& a, const RouterCounters& b,
                                     double seconds) {
  if (!(seconds > 0)) return Status::error("no time between the two scrapes");
  const double n = b.prompt_count - a.prompt_count;
  if (n < 0 || b.prompt_sum < a.prompt_sum || b.output_count < a.output_count ||
      b.output_sum < a.output_sum)
    return Status::error("router counters went backwards (a router restarted?)");
  LoadObservation o;
  o.arrival_rate = n / seconds;
  if (n > 0) {
    o.mean_prompt_tokens = (b.prompt_sum - a.prompt_sum) / n;
    const double m = b.output_count - a.output_count;
    o.mean_output_tokens = m > 0 ? (b.output_sum - a.output_sum) / m : 0;
  }
  return o;
}

Result<double> parse_instant_query(std::string_view body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::error("Prometheus answer is not JSON");
  if (j.value("status", "") != "success")
    return Status::error("Prometheus query failed: " + j.value("error", std::string("no reason")));
  const Json& data = j.value("data", Json::object());
  if (data.value("resultType", "") != "vector")
    return Status::error("Prometheus answer is not an instant vector");
  const Json& result = data.value("result", Json::array());
  if (!result.is_array()) return Status::error("Prometheus answer has no result array");
  // The router exports its histograms from the start, so no series at all means the
  // query matches nothing (labels, scrape config): not "no traffic".
  if (result.empty()) return Status::error("Prometheus has no series for the query");
  if (result.size() > 1) return Status::error("Prometheus answer has several series, wanted one");
  const Json& value = result[0].value("value", Json::array());
  double x;
  if (!value.is_array() || value.size() != 2 || !value[1].is_string() ||
      !parse_double(value[1].get<std::string>(), x))
    return Status::error("Prometheus sample is malformed");
  return x;
}

Result<std::string> HttpLoadSource::get(const std::string& base, const std::string& target) {
  kube::ClusterConfig config;
  config.server = base;
  config.request_timeout = std::chrono::seconds(5);
  auto client = kube::HttpClient::create(config);
  if (!client.ok()) return client.status();
  kube::HttpRequest req;
  req.target = target;
  auto resp = (*client)->request(req);
  if (!resp.ok()) return resp.status();
  if (resp->status != 200)
    return Status::error(base + target + ": HTTP " + std::to_string(resp->status));
  return std::move(resp->body);
}

Result<LoadObservation> HttpLoadSource::observe(const std::string& key,
                                                const std::string& prometheus_url,
                                                const std::string& router_metrics_url,
                                                const std::string& selector, double now_s) {
  if (!prometheus_url.empty()) {
    // Rates over all router replicas: requests, and mean lengths as sum rate / count rate.
    auto query = [&](const std::string& expr) -> Result<double> {
      auto body = get(prometheus_url, "/api/v1/query?query=" + kube::url_encode(expr));
      if (!body.ok()) return body.status();
      return parse_instant_query(*body);
    };
    auto rate = [&](const char* series) {
      return "sum(rate(" + std::string(series) + "{" + selector + "}[2m]))";
    };
    // One at a time, stopping at the first failure: a Prometheus that is down must cost a
    // reconcile worker one timeout, not four.
    double v[4];
    const char* series[4] = {
        "splitwise_router_prompt_tokens_count", "splitwise_router_prompt_tokens_sum",
        "splitwise_router_output_tokens_count", "splitwise_router_output_tokens_sum"};
    for (int i = 0; i < 4; ++i) {
      auto r = query(rate(series[i]));
      if (!r.ok()) return Status::error(r.status().message() + " (" + rate(series[i]) + ")");
      v[i] = *r;
    }
    LoadObservation o;
    o.arrival_rate = v[0];
    o.mean_prompt_tokens = v[0] > 0 ? v[1] / v[0] : 0;
    o.mean_output_tokens = v[2] > 0 ? v[3] / v[2] : 0;
    return o;
  }
  // One router: difference this scrape against the previous one.
  const size_t slash = router_metrics_url.find('/', router_metrics_url.find("://") + 3);
  const std::string base =
      slash == std::string::npos ? router_metrics_url : router_metrics_url.substr(0, slash);
  const std::string path =
      slash == std::string::npos ? "/metrics" : router_metrics_url.substr(slash);
  auto body = get(base, path);
  if (!body.ok()) return body.status();
  auto counters = parse_router_metrics(*body);
  if (!counters.ok()) return counters.status();
  std::lock_guard lock(mu_);
  auto it = last_.find(key);
  if (it == last_.end()) {
    last_[key] = {now_s, *counters};
    return Status::error("first scrape of " + router_metrics_url + "; a rate needs two");
  }
  auto obs = load_between(it->second.second, *counters, now_s - it->second.first);
  it->second = {now_s, *counters};
  return obs;
}

}  // namespace splitwise::controller
