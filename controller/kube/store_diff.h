// The pure part of an informer relist: what changed between the cache and a fresh list.
// Objects deleted while no watch was open exist only in the cache and must still reach
// the handlers as deletes; objects whose resourceVersion moved are updates.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace splitwise::kube {

struct StoreDiff {
  std::vector<nlohmann::json> added;
  std::vector<std::pair<nlohmann::json, nlohmann::json>> updated;  // (old, new)
  std::vector<nlohmann::json> deleted;                             // last known state
  bool empty() const { return added.empty() && updated.empty() && deleted.empty(); }
};

// `cached` is keyed by object_key(); `listed` is the fresh list's items.
StoreDiff diff_relist(const std::map<std::string, nlohmann::json>& cached,
                      const std::vector<nlohmann::json>& listed);

}  // namespace splitwise::kube
