#include "controller/kube/watch_event.h"

namespace splitwise::kube {

Result<WatchEvent> parse_watch_event(std::string_view line) {
  const nlohmann::json doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return Status::error("watch event is not a JSON object");
  if (!doc.contains("type") || !doc["type"].is_string()) {
    return Status::error("watch event has no string 'type'");
  }
  if (!doc.contains("object") || !doc["object"].is_object()) {
    return Status::error("watch event has no 'object'");
  }
  const std::string type = doc["type"].get<std::string>();
  WatchEvent event;
  if (type == "ADDED") {
    event.type = WatchEventType::kAdded;
  } else if (type == "MODIFIED") {
    event.type = WatchEventType::kModified;
  } else if (type == "DELETED") {
    event.type = WatchEventType::kDeleted;
  } else if (type == "BOOKMARK") {
    event.type = WatchEventType::kBookmark;
  } else if (type == "ERROR") {
    event.type = WatchEventType::kError;
  } else {
    return Status::error("unknown watch event type '" + type + "'");
  }
  event.object = doc["object"];
  return event;
}

bool is_gone_event(const WatchEvent& event) {
  if (event.type != WatchEventType::kError) return false;
  const nlohmann::json& status = event.object;
  if (status.contains("code") && status["code"].is_number_integer() &&
      status["code"].get<int>() == 410) {
    return true;
  }
  const std::string reason = status.value("reason", "");
  return reason == "Expired" || reason == "Gone";
}

std::string resource_version_of(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata")) return "";
  const nlohmann::json& meta = object["metadata"];
  if (!meta.is_object() || !meta.contains("resourceVersion") ||
      !meta["resourceVersion"].is_string()) {
    return "";
  }
  return meta["resourceVersion"].get<std::string>();
}

std::string object_key(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("metadata")) return "";
  const nlohmann::json& meta = object["metadata"];
  const std::string name = meta.value("name", "");
  const std::string ns = meta.value("namespace", "");
  return ns.empty() ? name : ns + "/" + name;
}

const char* to_string(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded:
      return "ADDED";
    case WatchEventType::kModified:
      return "MODIFIED";
    case WatchEventType::kDeleted:
      return "DELETED";
    case WatchEventType::kBookmark:
      return "BOOKMARK";
    case WatchEventType::kError:
      return "ERROR";
  }
  return "?";
}

}  // namespace splitwise::kube
