// YAML <-> JSON for Kubernetes objects: manifests are written in YAML, the API speaks JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "workers/engine/status.h"

namespace splitwise::controller {

using Json = nlohmann::json;

// Plain scalars become numbers, booleans or null where YAML 1.2's core schema says so;
// quoted scalars stay strings (so "1" and 'true' keep their quotes' meaning).
Result<Json> yaml_to_json(const std::string& yaml_text);
// Every document of a multi-document stream ("---" separated).
Result<std::vector<Json>> yaml_documents_to_json(const std::string& yaml_text);

// Block-style YAML with keys in sorted order (nlohmann objects are sorted): stable text
// for golden files. Strings that would read back as another type are quoted.
std::string json_to_yaml(const Json& value);

}  // namespace splitwise::controller
