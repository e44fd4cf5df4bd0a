#include "tests/observability/obs_queries.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

namespace splitwise::obs {

namespace {

using json = nlohmann::json;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool ident_char(char c) { return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Index just past the string literal that starts at `i` (", ' or `).
size_t skip_string(std::string_view s, size_t i) {
  const char quote = s[i];
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\' && quote != '`') {
      ++i;
    } else if (s[i] == quote) {
      return i + 1;
    }
  }
  return s.size();
}

// Index just past the bracket that closes the one at `i`, skipping strings inside.
size_t skip_group(std::string_view s, size_t i) {
  const char open = s[i];
  const char close = open == '(' ? ')' : open == '{' ? '}' : ']';
  int depth = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = skip_string(s, i);
      continue;
    }
    if (c == open) ++depth;
    if (c == close && --depth == 0) return i + 1;
    ++i;
  }
  return s.size();
}

// The value a test gives variable `v`: Grafana's "All" value, or a textbox's default. False
// with `why` empty for variables that never appear in an expr (the data source).
bool variable_value(const json& v, std::string& value, std::string& why) {
  const std::string type = v.value("type", "");
  if (type == "datasource" || type == "interval" || type == "adhoc") return false;
  if (type == "query" || type == "custom") {
    if (!v.value("includeAll", false) || !v.contains("allValue") || !v["allValue"].is_string() ||
        v["allValue"].get<std::string>().empty()) {
      why = "needs includeAll with an allValue (e.g. \".*\") so that the tests can select All";
      return false;
    }
    value = v["allValue"];
    return true;
  }
  if (type == "textbox" || type == "constant") {
    const json& q = v.contains("query") ? v["query"] : json();
    if (!q.is_string() || q.get<std::string>().empty()) {
      why = "has no default value in `query`";
      return false;
    }
    value = q;
    return true;
  }
  why = "has type '" + type + "', which the tests do not know how to fill";
  return false;
}

// label_values(<selector>, <label>) -> (selector, label); false for other forms.
bool parse_label_values(const std::string& q, std::string& selector, std::string& label) {
  static const std::regex re(
      R"(^\s*label_values\(\s*(.+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$)");
  std::smatch m;
  if (!std::regex_match(q, m, re)) return false;
  selector = m[1];
  label = m[2];
  return true;
}

}  // namespace

fs::path source_dir() { return SPLITWISE_SOURCE_DIR; }
fs::path dashboards_dir() { return source_dir() / "helm/splitwise/dashboards"; }
fs::path rules_file() { return source_dir() / "helm/splitwise/rules/splitwise-alerts.yaml"; }
fs::path tests_dir() { return source_dir() / "tests/observability"; }

std::string substitute(std::string_view text, const std::map<std::string, std::string>& values,
                       std::vector<std::string>& unknown) {
  // Grafana's own pattern: $name, [[name]] or [[name:format]], ${name} or ${name:format}.
  static const std::regex re(
      R"(\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::\w+)?\]\]|\$\{([A-Za-z_]\w*)(?::[^}]+)?\})");
  std::string out;
  const std::string s(text);
  auto begin = std::sregex_iterator(s.begin(), s.end(), re);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    const std::string name = m[1].matched ? m[1].str() : m[2].matched ? m[2].str() : m[3].str();
    out.append(s, last, static_cast<size_t>(m.position(0)) - last);
    if (auto v = values.find(name); v != values.end()) {
      out += v->second;
    } else {
      unknown.push_back(name);
      out += m.str(0);
    }
    last = static_cast<size_t>(m.position(0) + m.length(0));
  }
  out.append(s, last, std::string::npos);
  return out;
}

std::vector<Query> dashboard_queries(const Substitution& sub, std::vector<std::string>& errors) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dashboards_dir()))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) errors.push_back("no dashboards in " + dashboards_dir().string());

  std::vector<Query> out;
  for (const fs::path& file : files) {
    const std::string name = file.filename().string();
    const json d = json::parse(read_text(file), nullptr, false);
    if (d.is_discarded() || !d.is_object()) {
      errors.push_back(name + ": not valid JSON");
      continue;
    }
    std::map<std::string, std::string> values{{"__rate_interval", sub.rate_interval}};
    const json vars =
        d.contains("templating") ? d["templating"].value("list", json::array()) : json::array();
    for (const json& v : vars) {
      std::string value, why;
      if (variable_value(v, value, why)) {
        values[v.value("name", "")] = value;
      } else if (!why.empty()) {
        errors.push_back(name + ": variable " + v.value("name", "?") + " " + why);
      }
    }
    const auto fill = [&](const std::string& where, const std::string& text) {
      std::vector<std::string> unknown;
      std::string expr = substitute(text, values, unknown);
      for (const std::string& u : unknown)
        errors.push_back(where + ": unknown variable $" + u + " in: " + text);
      return expr;
    };
    for (const json& v : vars) {
      if (v.value("type", "") != "query") continue;
      const json& q = v.contains("query") ? v["query"] : json();
      const std::string text = q.is_string()   ? q.get<std::string>()
                               : q.is_object() ? q.value("query", "")
                                               : "";
      const std::string where = name + " variable " + v.value("name", "?");
      std::string selector, label;
      if (!parse_label_values(text, selector, label)) {
        errors.push_back(
            where + ": only label_values(<metric selector>, <label>) is supported, got: " + text);
        continue;
      }
      Query query;
      query.kind = Query::Kind::kVariable;
      query.where = where;
      query.expr = "group by (" + label + ") (" + fill(where, selector) + ")";
      query.label = label;
      std::string regex = v.value("regex", "");
      if (regex.size() >= 2 && regex.front() == '/' && regex.back() == '/')
        regex = regex.substr(1, regex.size() - 2);
      query.regex = regex;
      out.push_back(std::move(query));
    }
    // Panels, and panels inside collapsed rows.
    std::vector<json> panels;
    for (const json& p : d.value("panels", json::array())) {
      panels.push_back(p);
      for (const json& inner : p.value("panels", json::array())) panels.push_back(inner);
    }
    for (const json& p : panels) {
      for (const json& t : p.value("targets", json::array())) {
        if (!t.contains("expr")) continue;
        Query query;
        query.where = name + " panel " + std::to_string(p.value("id", 0)) + " '" +
                      p.value("title", "") + "' target " + t.value("refId", "?");
        query.expr = fill(query.where, t.value("expr", ""));
        out.push_back(std::move(query));
      }
    }
  }
  return out;
}

std::vector<Query> rule_queries(std::vector<std::string>& errors) {
  std::vector<Query> out;
  YAML::Node root;
  try {
    root = YAML::LoadFile(rules_file().string());
  } catch (const std::exception& e) {
    errors.push_back(rules_file().string() + ": " + e.what());
    return out;
  }
  for (const auto& group : root["groups"]) {
    const std::string gname = group["name"].as<std::string>("?");
    for (const auto& rule : group["rules"]) {
      Query q;
      if (rule["alert"]) {
        q.kind = Query::Kind::kAlert;
        q.where = "alert " + rule["alert"].as<std::string>();
      } else {
        q.kind = Query::Kind::kRecord;
        q.where = "recording rule " + rule["record"].as<std::string>("?");
      }
      q.where += " (group " + gname + ")";
      q.expr = rule["expr"].as<std::string>("");
      out.push_back(std::move(q));
    }
  }
  if (out.empty()) errors.push_back(rules_file().string() + ": no rules");
  return out;
}

std::set<std::string> metric_names(std::string_view s) {
  // Aggregation operators too: in `sum by (x) (...)` no parenthesis follows the name.
  static const std::set<std::string, std::less<>> keywords = {
      "and",   "or",     "unless",  "bool", "offset",   "inf",        "nan",
      "atan2", "by",     "without", "on",   "ignoring", "group_left", "group_right",
      "start", "end",    "sum",     "avg",  "count",    "min",        "max",
      "group", "stddev", "stdvar",  "topk", "bottomk",  "quantile",   "count_values"};
  static const std::set<std::string, std::less<>> label_lists = {
      "by", "without", "on", "ignoring", "group_left", "group_right"};
  std::set<std::string> names;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = skip_string(s, i);
    } else if (c == '{' || c == '[') {
      i = skip_group(s, i);  // label matchers, ranges and subqueries: no metric names
    } else if (c == '#') {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < s.size() && (ident_char(s[i]) || s[i] == '.')) ++i;  // 14.4, 20m, 1e3
    } else if (ident_start(c)) {
      const size_t start = i;
      while (i < s.size() && ident_char(s[i])) ++i;
      const std::string_view word = s.substr(start, i - start);
      size_t next = i;
      while (next < s.size() && std::isspace(static_cast<unsigned char>(s[next]))) ++next;
      const bool call = next < s.size() && s[next] == '(';
      if (call && label_lists.count(word)) {
        i = skip_group(s, next);  // by (namespace, pool): label names
      } else if (!call && !keywords.count(word)) {
        names.emplace(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

std::string metric_family(std::string_view name) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"})
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
      return std::string(name.substr(0, name.size() - suffix.size()));
  return std::string(name);
}

std::map<std::string, std::string> read_metric_list(const fs::path& path) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line)) {
    const size_t hash = line.find('#');
    std::string why = hash == std::string::npos ? "" : line.substr(hash + 1);
    std::string name = line.substr(0, hash);
    name.erase(std::remove_if(name.begin(), name.end(), ::isspace), name.end());
    why.erase(0, why.find_first_not_of(' '));
    if (!name.empty()) out[name] = why;
  }
  return out;
}

fs::path find_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path p = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  RunResult r;
  const fs::path program =
      argv[0].find('/') == std::string::npos ? find_program(argv[0]) : fs::path(argv[0]);
  if (program.empty()) {
    r.output = argv[0] + ": not found on PATH";
    return r;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.output = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args[0] = const_cast<char*>(program.c_str());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    r.output = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // the deadline check above ends it
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.output.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    r.output += "\n(killed after " + std::to_string(timeout.count()) + " ms)";
  } else if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else {
    r.output += "\n(died of signal " + std::to_string(WTERMSIG(status)) + ")";
  }
  return r;
}

}  // namespace splitwise::obs
