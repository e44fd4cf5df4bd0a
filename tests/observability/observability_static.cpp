// The chart's dashboards and alert rules without a running system: promtool checks and
// unit-tests the rules, parses every dashboard query, and every metric name they read is
// one the code defines. Skips the promtool parts when promtool is not installed.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "tests/observability/obs_queries.h"
#include "tests/test_util.h"

namespace splitwise::obs {
namespace {

using json = nlohmann::json;

#define REQUIRE_PROMTOOL()                                                     \
  if (find_program("promtool").empty()) {                                      \
    GTEST_SKIP() << "promtool is not installed (Debian package `prometheus`; " \
                    "tests/observability/install_prometheus.sh installs it)";  \
  }

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "  " + l + "\n";
  return out;
}

std::string read(const fs::path& p) { return testing::read_file(p); }

TEST(ObservabilityRules, PromtoolCheckRules) {
  REQUIRE_PROMTOOL();
  const RunResult r = run({"promtool", "check", "rules", rules_file().string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(ObservabilityRules, PromtoolUnitTests) {
  REQUIRE_PROMTOOL();
  const RunResult r =
      run({"promtool", "test", "rules", (tests_dir() / "alerts_test.yaml").string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Every alert has a unit test in which it fires and one in which it stays quiet.
TEST(ObservabilityRules, EveryAlertIsTestedFiringAndQuiet) {
  const YAML::Node rules = YAML::LoadFile(rules_file().string());
  const YAML::Node tests = YAML::LoadFile((tests_dir() / "alerts_test.yaml").string());
  std::set<std::string> fires, quiet;
  for (const auto& t : tests["tests"])
    for (const auto& a : t["alert_rule_test"])
      (a["exp_alerts"] && a["exp_alerts"].size() > 0 ? fires : quiet)
          .insert(a["alertname"].as<std::string>());
  int alerts = 0;
  for (const auto& g : rules["groups"])
    for (const auto& r : g["rules"]) {
      if (!r["alert"]) continue;
      ++alerts;
      const std::string name = r["alert"].as<std::string>();
      EXPECT_TRUE(fires.count(name)) << name << ": no test in which it fires";
      EXPECT_TRUE(quiet.count(name)) << name << ": no test in which it stays quiet";
    }
  EXPECT_GT(alerts, 0);
}

TEST(ObservabilityRules, EveryAlertHasForSeverityAndAnnotations) {
  const YAML::Node rules = YAML::LoadFile(rules_file().string());
  ASSERT_TRUE(rules["groups"]) << "a Prometheus rule file has a top-level `groups:`";
  const std::set<std::string> severities = {"critical", "warning", "info"};
  for (const auto& g : rules["groups"])
    for (const auto& r : g["rules"]) {
      if (!r["alert"]) continue;
      const std::string name = r["alert"].as<std::string>();
      EXPECT_TRUE(r["for"]) << name << ": no for:";
      EXPECT_TRUE(severities.count(r["labels"]["severity"].as<std::string>("")))
          << name << ": severity label must be critical, warning or info";
      for (const char* a : {"summary", "description", "runbook"})
        EXPECT_FALSE(r["annotations"][a].as<std::string>("").empty())
            << name << ": no " << a << " annotation";
    }
}

// Grafana conventions the chart relies on: uids that never change, a data source
// variable behind every query, $__rate_interval for every range.
TEST(ObservabilityDashboards, Structure) {
  const std::map<std::string, std::string> expected_uids = {
      {"overview.json", "splitwise-overview"},
      {"pools.json", "splitwise-pools"},
      {"kv-transfer.json", "splitwise-kv-transfer"},
      {"operator.json", "splitwise-operator"}};
  std::set<std::string> seen;
  for (const auto& e : fs::directory_iterator(dashboards_dir())) {
    if (e.path().extension() != ".json") continue;
    const std::string file = e.path().filename().string();
    seen.insert(file);
    SCOPED_TRACE(file);
    const json d = json::parse(read(e.path()), nullptr, false);
    ASSERT_FALSE(d.is_discarded()) << "not valid JSON";
    const auto uid = expected_uids.find(file);
    ASSERT_NE(uid, expected_uids.end()) << "a new dashboard: add its uid to this test";
    EXPECT_EQ(d.value("uid", ""), uid->second) << "uids are stable: links and bookmarks use them";
    EXPECT_LE(uid->second.size(), 40u) << "Grafana limits uids to 40 characters";
    EXPECT_FALSE(d.value("title", "").empty());
    EXPECT_NE(d.value("tags", json::array()).dump().find("\"splitwise\""), std::string::npos);
    EXPECT_FALSE(d.contains("id") && !d["id"].is_null()) << "no instance-specific id";

    bool datasource_var = false;
    for (const json& v : d["templating"]["list"])
      if (v.value("name", "") == "datasource")
        datasource_var =
            v.value("type", "") == "datasource" && v.value("query", "") == "prometheus";
    EXPECT_TRUE(datasource_var) << "needs a variable `datasource` of type datasource (prometheus)";

    std::set<int> ids;
    static const std::regex range(R"(\[([^\]]*)\])");
    for (const json& p : d["panels"]) {
      const std::string title = p.value("title", "");
      EXPECT_TRUE(ids.insert(p.value("id", -1)).second) << "duplicate panel id in " << title;
      const json& pos = p.value("gridPos", json::object());
      EXPECT_LE(pos.value("x", 0) + pos.value("w", 0), 24) << title << ": wider than the grid";
      if (p.value("type", "") == "row") continue;
      EXPECT_FALSE(p.value("description", "").empty()) << title << ": no description";
      EXPECT_EQ(p["datasource"].value("uid", ""), "${datasource}") << title;
      ASSERT_FALSE(p.value("targets", json::array()).empty()) << title << ": no query";
      for (const json& t : p["targets"]) {
        EXPECT_EQ(t["datasource"].value("uid", ""), "${datasource}") << title;
        const std::string expr = t.value("expr", "");
        for (auto it = std::sregex_iterator(expr.begin(), expr.end(), range);
             it != std::sregex_iterator(); ++it)
          EXPECT_EQ((*it)[1].str(), "$__rate_interval")
              << title << ": a range other than [$__rate_interval] in " << expr;
      }
    }
  }
  for (const auto& [file, uid] : expected_uids) EXPECT_TRUE(seen.count(file)) << file << " missing";
}

// Every query parses: promtool checks them as the expressions of recording rules.
TEST(ObservabilityDashboards, QueriesParse) {
  REQUIRE_PROMTOOL();
  std::vector<std::string> errors;
  const std::vector<Query> queries = dashboard_queries({.rate_interval = "1m"}, errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  ASSERT_FALSE(queries.empty());

  // One group per query, named after it, so that promtool's error says which one failed.
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "groups" << YAML::Value << YAML::BeginSeq;
  for (size_t i = 0; i < queries.size(); ++i) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value
        << std::to_string(i) + ": " + queries[i].where << YAML::Key << "rules" << YAML::Value
        << YAML::BeginSeq << YAML::BeginMap << YAML::Key << "record" << YAML::Value
        << "dashboard_query_" + std::to_string(i) << YAML::Key << "expr" << YAML::Value
        << YAML::Literal << queries[i].expr << YAML::EndMap << YAML::EndSeq << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  const fs::path file = testing::fresh_temp_dir() / "dashboard_queries.yaml";
  std::ofstream(file) << out.c_str() << "\n";
  const RunResult r = run({"promtool", "check", "rules", file.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SUCCESS: " + std::to_string(queries.size()) + " rules found"),
            std::string::npos)
      << r.output;
}

// Without Prometheus: every metric a dashboard or alert reads is defined in the code (as
// a quoted name in workers/ or controller/), is a recording rule of the rules file, or is
// listed in pending_metrics.txt. The live test checks the same names against real data.
TEST(ObservabilityMetrics, EveryNameIsDefined) {
  std::string sources;
  for (const char* dir : {"workers", "controller"})
    for (const auto& e : fs::recursive_directory_iterator(source_dir() / dir))
      if (e.path().extension() == ".cpp" || e.path().extension() == ".h") sources += read(e.path());
  const auto pending = read_metric_list(tests_dir() / "pending_metrics.txt");
  const auto gpu = read_metric_list(tests_dir() / "gpu_only_metrics.txt");

  std::vector<std::string> errors;
  std::vector<Query> queries = dashboard_queries({}, errors);
  const std::vector<Query> rules = rule_queries(errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  std::set<std::string> recorded;
  for (const YAML::Node& g : YAML::LoadFile(rules_file().string())["groups"])
    for (const YAML::Node& r : g["rules"])
      if (r["record"]) recorded.insert(r["record"].as<std::string>());
  queries.insert(queries.end(), rules.begin(), rules.end());

  std::set<std::string> undefined;
  for (const Query& q : queries)
    for (const std::string& name : metric_names(q.expr)) {
      const std::string family = metric_family(name);
      if (name == "up" || recorded.count(name) || pending.count(family)) continue;
      if (sources.find('"' + family + '"') == std::string::npos &&
          sources.find('"' + name + '"') == std::string::npos)
        undefined.insert(name + " (" + q.where + ")");
    }
  EXPECT_TRUE(undefined.empty()) << "metric names no code defines:\n"
                                 << joined({undefined.begin(), undefined.end()});

  // The GPU-only list excuses missing data on CPU; it must name real GPU metrics.
  const std::string gpu_source = read(source_dir() / "workers/worker/gpu_metrics.cpp");
  for (const auto& [name, why] : gpu)
    EXPECT_NE(gpu_source.find('"' + name + '"'), std::string::npos)
        << "gpu_only_metrics.txt: " << name << " is not defined in workers/worker/gpu_metrics.cpp";
}

TEST(ObservabilityMetrics, NameExtraction) {
  EXPECT_EQ(metric_names("sum by (le, role) (rate(a_bucket{x=\"b:c\"}[5m])) / on (i) group_left "
                         "(gpu_type) b or vector(0) > bool 1 and c offset 20m"),
            (std::set<std::string>{"a_bucket", "b", "c"}));
  EXPECT_EQ(metric_names("label_replace(x:y:z, \"d\", \"$1\", \"s\", \"(.+)-router\")"),
            (std::set<std::string>{"x:y:z"}));
  EXPECT_EQ(metric_names("histogram_quantile(0.99, sum(rate(m[1m])) without (pod))"),
            (std::set<std::string>{"m"}));
  EXPECT_EQ(metric_family("a_seconds_bucket"), "a_seconds");
  std::vector<std::string> unknown;
  EXPECT_EQ(substitute("rate(m{n=~\"${ns}\", s=~\"$cl-x\"}[$__rate_interval]) [[ns]] $1",
                       {{"ns", ".*"}, {"cl", "c"}, {"__rate_interval", "4s"}}, unknown),
            "rate(m{n=~\".*\", s=~\"c-x\"}[4s]) .* $1");
  EXPECT_TRUE(unknown.empty());
  substitute("${nope:regex}", {}, unknown);
  EXPECT_EQ(unknown, std::vector<std::string>{"nope"});
}

}  // namespace
}  // namespace splitwise::obs
