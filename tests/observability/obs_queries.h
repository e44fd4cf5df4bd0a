// The PromQL of the Helm chart's dashboards and alert rules, as the observability tests
// see it: every query with the Grafana variables substituted the way Grafana would, the
// metric names a query reads, the lists of metrics a test may find without data, and a
// way to run promtool.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace splitwise::obs {

namespace fs = std::filesystem;

// Where the chart's files live in the source tree.
fs::path source_dir();
fs::path dashboards_dir();  // helm/splitwise/dashboards
fs::path rules_file();      // helm/splitwise/rules/splitwise-alerts.yaml
fs::path tests_dir();       // tests/observability

struct Query {
  enum class Kind {
    kPanel,     // a dashboard panel's target: must return data
    kVariable,  // a dashboard variable's label_values(): must return data
    kRecord,    // a recording rule: its metric names must have data
    kAlert,     // an alerting rule: its metric names must have data
  };
  Kind kind = Kind::kPanel;
  std::string where;  // "overview.json panel 3 'Requests/s' target A", for messages
  std::string expr;   // PromQL, variables substituted
  // kVariable only: the label whose values the variable lists, and its regex (JS-style
  // /.../ without the slashes; empty: none), which must match at least one value.
  std::string label;
  std::string regex;
};

// Values for a dashboard's variables: the "All" value (allValue) of query and custom
// variables, the default of textboxes and constants, and `rate_interval` for
// $__rate_interval. An error names a variable the test cannot give a value to.
struct Substitution {
  std::string rate_interval = "1m";
};

// Every panel target and variable query of every dashboards/*.json, substituted. Appends
// problems (bad JSON, an unknown variable in an expr, a label_values() it cannot read)
// to `errors`.
std::vector<Query> dashboard_queries(const Substitution& sub, std::vector<std::string>& errors);

// Every recording and alerting rule of the rules file.
std::vector<Query> rule_queries(std::vector<std::string>& errors);

// `text` with Grafana's variable references ($name, ${name}, ${name:format}, [[name]])
// replaced from `values`. A reference to a name not in `values` is an error ($1 and other
// references that cannot be a Grafana variable, e.g. label_replace's, stay as they are).
std::string substitute(std::string_view text, const std::map<std::string, std::string>& values,
                       std::vector<std::string>& unknown);

// The metric names a PromQL expression selects (not functions, keywords, label names or
// the labels of by/without/on/ignoring/group_left/group_right).
std::set<std::string> metric_names(std::string_view promql);

// The family a series name belongs to: without a histogram's _bucket/_sum/_count.
std::string metric_family(std::string_view name);

// A list file of metric families, one a line: "name  # why". Comments and blank lines
// are skipped. Missing file: empty.
std::map<std::string, std::string> read_metric_list(const fs::path& path);

struct RunResult {
  int exit_code = -1;  // -1: it did not run or did not exit (output says why)
  std::string output;  // stdout and stderr together
};

// Runs argv[0] (searched on PATH) to completion, or kills it after `timeout`.
RunResult run(const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The full path of `program` on PATH; empty when not found.
fs::path find_program(const std::string& program);

}  // namespace splitwise::obs
