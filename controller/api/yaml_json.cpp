#include "controller/api/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <regex>

namespace splitwise::controller {

namespace {

// YAML 1.2 core schema resolution of plain scalars.
Json plain_scalar(const std::string& s) {
  static const std::regex int_re(R"([-+]?[0-9]+)");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, int_re)) {
    try {
      return std::stoll(s);
    } catch (const std::out_of_range&) {
      return s;
    }
  }
  if (std::regex_match(s, float_re)) return std::stod(s);
  return s;
}

Result<Json> convert(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json(nullptr);
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!": they are strings whatever they contain.
      return n.Tag() == "!" ? Json(n.Scalar()) : plain_scalar(n.Scalar());
    case YAML::NodeType::Sequence: {
      Json a = Json::array();
      for (const auto& item : n) {
        Result<Json> v = convert(item);
        if (!v.ok()) return v.status();
        a.push_back(std::move(*v));
      }
      return a;
    }
    case YAML::NodeType::Map: {
      Json o = Json::object();
      for (const auto& kv : n) {
        Result<Json> v = convert(kv.second);
        if (!v.ok()) return v.status();
        o[kv.first.as<std::string>()] = std::move(*v);
      }
      return o;
    }
  }
  return Status::error("unknown YAML node type");
}

bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  if (!plain_scalar(s).is_string()) return true;  // would read back as a number/bool/null
  static const std::regex special(R"(^[-?:,\[\]{}#&*!|>'"%@`\s]|[:#]\s|\s$|^---|\n)");
  return std::regex_search(s, special);
}

void emit(YAML::Emitter& out, const Json& v) {
  if (v.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, item] : v.items()) {
      out << YAML::Key << k << YAML::Value;
      emit(out, item);
    }
    out << YAML::EndMap;
  } else if (v.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& item : v) emit(out, item);
    out << YAML::EndSeq;
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (needs_quotes(s)) out << YAML::DoubleQuoted;
    out << s;
  } else if (v.is_boolean()) {
    out << (v.get<bool>() ? "true" : "false");
  } else if (v.is_null()) {
    out << YAML::Null;
  } else {
    out << v.dump();
  }
}

}  // namespace

Result<Json> yaml_to_json(const std::string& yaml_text) {
  try {
    return convert(YAML::Load(yaml_text));
  } catch (const YAML::Exception& e) {
    return Status::error(std::string("invalid YAML: ") + e.what());
  }
}

Result<std::vector<Json>> yaml_documents_to_json(const std::string& yaml_text) {
  try {
    std::vector<Json> docs;
    for (const YAML::Node& n : YAML::LoadAll(yaml_text)) {
      if (n.IsNull()) continue;
      Result<Json> j = convert(n);
      if (!j.ok()) return j.status();
      docs.push_back(std::move(*j));
    }
    return docs;
  } catch (const YAML::Exception& e) {
    return Status::error(std::string("invalid YAML: ") + e.what());
  }
}

std::string json_to_yaml(const Json& value) {
  YAML::Emitter out;
  emit(out, value);
  return std::string(out.c_str()) + "\n";
}

}  // namespace splitwise::controller
