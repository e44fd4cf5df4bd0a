#include "controller/kube/store_diff.h"

#include <unordered_set>

#include "controller/kube/watch_event.h"

namespace splitwise::kube {

StoreDiff diff_relist(const std::map<std::string, nlohmann::json>& cached,
                      const std::vector<nlohmann::json>& listed) {
  StoreDiff diff;
  std::unordered_set<std::string> seen;
  for (const nlohmann::json& object : listed) {
    const std::string key = object_key(object);
    seen.insert(key);
    auto it = cached.find(key);
    if (it == cached.end()) {
      diff.added.push_back(object);
      continue;
    }
    const std::string old_rv = resource_version_of(it->second);
    const std::string new_rv = resource_version_of(object);
    // Same resourceVersion means the same object; without one, compare contents.
    // A changed uid (deleted and re-created in the gap) is an update here as in
    // client-go; handlers see the new uid.
    const bool changed =
        (old_rv.empty() || new_rv.empty()) ? it->second != object : old_rv != new_rv;
    if (changed) diff.updated.emplace_back(it->second, object);
  }
  for (const auto& [key, object] : cached) {
    if (!seen.count(key)) diff.deleted.push_back(object);
  }
  return diff;
}

}  // namespace splitwise::kube
