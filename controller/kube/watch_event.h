// One line of a watch stream: {"type": "ADDED", "object": {...}}.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "workers/engine/status.h"

namespace splitwise::kube {

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

struct WatchEvent {
  WatchEventType type = WatchEventType::kAdded;
  nlohmann::json object;  // for kError a metav1.Status
};

Result<WatchEvent> parse_watch_event(std::string_view line);

// An ERROR event saying the watch's resourceVersion is too old (HTTP 410 Gone /
// reason Expired): the only cure is a fresh list.
bool is_gone_event(const WatchEvent& event);

// metadata.resourceVersion, or "".
std::string resource_version_of(const nlohmann::json& object);
// "namespace/name" for namespaced objects, "name" otherwise (client-go's key format).
std::string object_key(const nlohmann::json& object);

const char* to_string(WatchEventType type);

}  // namespace splitwise::kube
