// Field paths, merge patch, apply merge and selectors of the fake apiserver.
#include <algorithm>
#include <chrono>
#include <ctime>

#include "tests/controller/fake_apiserver_internal.h"

namespace splitwise::fake::internal {

namespace {

// Only keyed lists whose every item is an object holding the key merge by key; anything
// else is one atomic value, as structured-merge-diff does for lists without a schema.
bool keyed(const std::string& field, const json& list) {
  const char* key = merge_key(field);
  if (key == nullptr || !list.is_array()) return false;
  return std::all_of(list.begin(), list.end(),
                     [&](const json& item) { return item.is_object() && item.contains(key); });
}

std::string key_step(const char* key, const json& value) {
  return std::string("k:") + key + "=" + value.dump();
}

// Parses "k:field=<json>"; the field name has no '='.
std::pair<std::string, json> parse_key_step(const std::string& step) {
  auto eq = step.find('=');
  return {step.substr(2, eq - 2), json::parse(step.substr(eq + 1))};
}

json* find_item(json& list, const std::string& key, const json& value) {
  for (auto& item : list) {
    if (item.is_object() && item.contains(key) && item[key] == value) return &item;
  }
  return nullptr;
}

void collect(const json& value, const std::string& field, Path& path, FieldSet& out) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [k, v] : value.items()) {
      path.push_back("f:" + k);
      collect(v, k, path, out);
      path.pop_back();
    }
    return;
  }
  if (value.is_array() && !value.empty() && keyed(field, value)) {
    const char* key = merge_key(field);
    for (const auto& item : value) {
      path.push_back(key_step(key, item[key]));
      collect(item, "", path, out);
      path.pop_back();
    }
    return;
  }
  out.insert(path);
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Splits on commas outside parentheses ("a in (x,y),b=c").
std::vector<std::string> split_terms(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty()) out.push_back(trim(cur));
  return out;
}

}  // namespace

const char* merge_key(const std::string& list_field) {
  static const std::map<std::string, const char*> kKeys = {
      {"containers", "name"}, {"initContainers", "name"}, {"env", "name"},
      {"ports", "name"},      {"volumes", "name"},        {"volumeMounts", "name"},
      {"conditions", "type"}, {"ownerReferences", "uid"}, {"tolerations", "key"}};
  auto it = kKeys.find(list_field);
  return it == kKeys.end() ? nullptr : it->second;
}

void collect_leaves(const json& value, const Path& prefix, FieldSet& out) {
  Path path = prefix;
  std::string field = prefix.empty() ? "" : prefix.back().substr(2);
  collect(value, field, path, out);
}

const json* get_at(const json& root, const Path& path) {
  const json* cur = &root;
  for (const auto& step : path) {
    if (step.rfind("f:", 0) == 0) {
      if (!cur->is_object()) return nullptr;
      auto it = cur->find(step.substr(2));
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else {
      if (!cur->is_array()) return nullptr;
      auto [key, value] = parse_key_step(step);
      const json* found = find_item(const_cast<json&>(*cur), key, value);
      if (found == nullptr) return nullptr;
      cur = found;
    }
  }
  return cur;
}

namespace {

// The key field of a keyed item ("name" below "k:name=..."): it goes with the item.
bool is_key_leaf(const Path& path) {
  size_t n = path.size();
  return n >= 2 && path[n - 2].rfind("k:", 0) == 0 &&
         parse_key_step(path[n - 2]).first == path[n - 1].substr(2);
}

void remove_one(json& root, const Path& path) {
  // Walk down, remembering the containers, then erase upwards while they are empty.
  std::vector<json*> chain{&root};
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    json* next = const_cast<json*>(get_at(*chain.back(), Path{path[i]}));
    if (next == nullptr) return;
    chain.push_back(next);
  }
  size_t start = path.size();
  if (is_key_leaf(path)) {
    if (chain.back()->size() > 1) return;  // other fields of the item are still owned
    start = path.size() - 1;               // remove the item itself
  }
  for (size_t i = start; i-- > 0;) {
    json& parent = *chain[i];
    const std::string& step = path[i];
    if (step.rfind("f:", 0) == 0) {
      if (parent.is_object()) parent.erase(step.substr(2));
    } else if (parent.is_array()) {
      auto [key, value] = parse_key_step(step);
      for (auto it = parent.begin(); it != parent.end(); ++it) {
        if (it->is_object() && it->contains(key) && (*it)[key] == value) {
          parent.erase(it);
          break;
        }
      }
    }
    if (i == 0 || !parent.empty()) return;
    if (i >= 1 && path[i - 1].rfind("k:", 0) == 0) return;  // an emptied item is handled above
  }
}

}  // namespace

void remove_fields(json& root, const FieldSet& paths) {
  // Items' key fields last, so the other fields of an item are found by key first.
  for (const auto& p : paths) {
    if (!p.empty() && !is_key_leaf(p)) remove_one(root, p);
  }
  for (const auto& p : paths) {
    if (!p.empty() && is_key_leaf(p)) remove_one(root, p);
  }
}

void merge_apply(json& live, const json& applied) {
  if (!live.is_object() || !applied.is_object()) {
    live = applied;
    return;
  }
  for (const auto& [k, v] : applied.items()) {
    auto it = live.find(k);
    if (it != live.end() && it->is_object() && v.is_object()) {  // {} merges to no change
      merge_apply(*it, v);
    } else if (it != live.end() && keyed(k, *it) && keyed(k, v)) {
      const char* key = merge_key(k);
      for (const auto& item : v) {
        json* existing = find_item(*it, key, item[key]);
        if (existing) {
          merge_apply(*existing, item);
        } else {
          it->push_back(item);
        }
      }
    } else {
      live[k] = v;
    }
  }
}

void merge_patch(json& target, const json& patch) {
  if (!patch.is_object()) {
    target = patch;
    return;
  }
  if (!target.is_object()) target = json::object();
  for (const auto& [k, v] : patch.items()) {
    if (v.is_null()) {
      target.erase(k);
    } else {
      merge_patch(target[k], v);
    }
  }
}

std::string path_string(const Path& path) {
  std::string out;
  for (const auto& step : path) {
    if (step.rfind("f:", 0) == 0) {
      out += "." + step.substr(2);
    } else {
      auto [key, value] = parse_key_step(step);
      out += "[" + key + "=" + value.dump() + "]";
    }
  }
  return out;
}

bool Selector::matches(const json& labels) const {
  for (const auto& t : terms) {
    const json* v = labels.is_object() && labels.contains(t.key) ? &labels[t.key] : nullptr;
    std::string s = v && v->is_string() ? v->get<std::string>() : "";
    bool in = v && std::find(t.values.begin(), t.values.end(), s) != t.values.end();
    switch (t.op) {
      case Term::Op::kEq:
      case Term::Op::kIn:
        if (!in) return false;
        break;
      case Term::Op::kNe:
      case Term::Op::kNotIn:
        if (in) return false;
        break;
      case Term::Op::kExists:
        if (!v) return false;
        break;
      case Term::Op::kNotExists:
        if (v) return false;
        break;
    }
  }
  return true;
}

Result<Selector> parse_label_selector(const std::string& text) {
  Selector sel;
  for (const auto& term : split_terms(text)) {
    Selector::Term t;
    size_t pos;
    if ((pos = term.find(" notin ")) != std::string::npos ||
        (pos = term.find(" in ")) != std::string::npos) {
      bool notin = term.compare(pos, 7, " notin ") == 0;
      t.key = trim(term.substr(0, pos));
      t.op = notin ? Selector::Term::Op::kNotIn : Selector::Term::Op::kIn;
      auto open = term.find('('), close = term.rfind(')');
      if (open == std::string::npos || close == std::string::npos || close < open) {
        return Status::error("unable to parse requirement: " + term);
      }
      for (const auto& v : split_terms(term.substr(open + 1, close - open - 1))) {
        t.values.push_back(v);
      }
    } else if ((pos = term.find("!=")) != std::string::npos) {
      t = {trim(term.substr(0, pos)), Selector::Term::Op::kNe, {trim(term.substr(pos + 2))}};
    } else if ((pos = term.find("==")) != std::string::npos) {
      t = {trim(term.substr(0, pos)), Selector::Term::Op::kEq, {trim(term.substr(pos + 2))}};
    } else if ((pos = term.find('=')) != std::string::npos) {
      t = {trim(term.substr(0, pos)), Selector::Term::Op::kEq, {trim(term.substr(pos + 1))}};
    } else if (!term.empty() && term[0] == '!') {
      t = {trim(term.substr(1)), Selector::Term::Op::kNotExists, {}};
    } else {
      t = {term, Selector::Term::Op::kExists, {}};
    }
    if (t.key.empty()) return Status::error("unable to parse requirement: " + term);
    sel.terms.push_back(std::move(t));
  }
  return sel;
}

Result<Selector> parse_field_selector(const std::string& text) {
  auto sel = parse_label_selector(text);
  if (!sel.ok()) return sel;
  for (const auto& t : sel->terms) {
    bool known = t.key == "metadata.name" || t.key == "metadata.namespace";
    bool op_ok = t.op == Selector::Term::Op::kEq || t.op == Selector::Term::Op::kNe;
    if (!known || !op_ok) return Status::error("field label not supported: " + t.key);
  }
  return sel;
}

json field_view(const json& object) {
  const json& meta = object.value("metadata", json::object());
  return {{"metadata.name", meta.value("name", "")},
          {"metadata.namespace", meta.value("namespace", "")}};
}

json status_json(const ApiError& error, const std::string& name, const std::string& group,
                 const std::string& resource) {
  json details = json::object();
  if (!name.empty()) details["name"] = name;
  if (!resource.empty()) {
    details["group"] = group;
    details["kind"] = resource;
  }
  return {{"kind", "Status"},    {"apiVersion", "v1"},       {"metadata", json::object()},
          {"status", "Failure"}, {"message", error.message}, {"reason", error.reason},
          {"details", details},  {"code", error.code}};
}

std::string now_rfc3339() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace splitwise::fake::internal
