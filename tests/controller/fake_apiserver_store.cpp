// The object store of the fake apiserver: CRUD, resourceVersion, generation, status
// subresource, merge patch, server-side apply, finalizers and the garbage collector.
#include <algorithm>
#include <cstdio>

#include "tests/controller/fake_apiserver_internal.h"

namespace splitwise::fake::internal {

namespace {

std::string api_version(const ResourceInfo& t) {
  return t.group.empty() ? t.version : t.group + "/" + t.version;
}

std::string qualified(const ResourceInfo& t) {
  return t.group.empty() ? t.resource : t.resource + "." + t.group;
}

ApiResponse error(int code, const std::string& reason, const std::string& message,
                  const Store::Op& op) {
  return {code, status_json({code, reason, message}, op.name, op.type ? op.type->group : "",
                            op.type ? op.type->resource : "")};
}

ApiResponse not_found(const Store::Op& op) {
  return error(404, "NotFound", qualified(*op.type) + " \"" + op.name + "\" not found", op);
}

ApiResponse conflict(const Store::Op& op) {
  return error(409, "Conflict",
               "Operation cannot be fulfilled on " + qualified(*op.type) + " \"" + op.name +
                   "\": the object has been modified; please apply your changes to the latest "
                   "version and try again",
               op);
}

// The part of an object that field managers own: no identity or server-set metadata;
// for `status_part` only the status, else everything but a status that has its own
// subresource.
json managed_view(const ResourceInfo& t, const json& object, bool status_part) {
  if (status_part) {
    return object.contains("status") ? json{{"status", object["status"]}} : json::object();
  }
  json view = object;
  view.erase("apiVersion");
  view.erase("kind");
  if (t.status_subresource) view.erase("status");
  if (view.contains("metadata")) {
    json meta = json::object();
    for (const char* k : {"labels", "annotations", "finalizers", "ownerReferences"}) {
      if (view["metadata"].contains(k)) meta[k] = view["metadata"][k];
    }
    if (meta.empty()) {
      view.erase("metadata");
    } else {
      view["metadata"] = meta;
    }
  }
  return view;
}

json full_view(const ResourceInfo& t, const json& object) {
  json view = managed_view(t, object, false);
  if (object.contains("status")) view["status"] = object["status"];
  return view;
}

// Generation follows the spec: everything but metadata and status.
json spec_part(const json& object) {
  json copy = object;
  copy.erase("metadata");
  copy.erase("status");
  return copy;
}

bool is_prefix(const Path& prefix, const Path& path) {
  return prefix.size() <= path.size() && std::equal(prefix.begin(), prefix.end(), path.begin());
}

std::string part_name(const std::string& manager, bool status) {
  return status ? manager + "|status" : manager;
}

bool has_finalizers(const json& object) {
  const json& meta = object["metadata"];
  return meta.contains("finalizers") && meta["finalizers"].is_array() &&
         !meta["finalizers"].empty();
}

}  // namespace

Store::Store(const FakeApiServerOptions& options) : options_(options) {}

ApiResponse Store::execute(const Op& op) {
  std::lock_guard lock(mu_);
  if (op.verb == "get") return do_get(op);
  if (op.verb == "list") return do_list(op);
  if (op.verb == "create") {
    if (!op.body.is_object()) return error(400, "BadRequest", "the body is not an object", op);
    std::string manager = op.field_manager.empty() ? "unknown" : op.field_manager;
    return do_create(op, op.body, manager);
  }
  if (op.verb == "update") return do_update(op);
  if (op.verb == "patch") return do_patch(op);
  if (op.verb == "apply") return do_apply(op);
  if (op.verb == "delete") return do_delete(op);
  return error(405, "MethodNotAllowed", "verb " + op.verb + " is not supported", op);
}

ApiResponse Store::do_get(const Op& op) {
  auto it = objects_.find({op.type, op.ns, op.name});
  if (it == objects_.end()) return not_found(op);
  return {200, it->second.object};
}

ApiResponse Store::do_list(const Op& op) {
  auto labels = parse_label_selector(op.query.get("labelSelector"));
  auto fields = parse_field_selector(op.query.get("fieldSelector"));
  if (!labels.ok()) return error(400, "BadRequest", labels.status().message(), op);
  if (!fields.ok()) return error(400, "BadRequest", fields.status().message(), op);
  json items = json::array();
  for (const auto& [key, stored] : objects_) {
    if (std::get<0>(key) != op.type || (!op.ns.empty() && std::get<1>(key) != op.ns)) continue;
    const json& obj = stored.object;
    if (!labels->matches(obj["metadata"].value("labels", json::object()))) continue;
    if (!fields->matches(field_view(obj))) continue;
    items.push_back(obj);
  }
  // Every list is served from the latest state: enough for a relist after a 410, since
  // a client may resume watching from the list's RV.
  return {200,
          {{"kind", op.type->kind + "List"},
           {"apiVersion", api_version(*op.type)},
           {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
           {"items", items}}};
}

ApiResponse Store::do_create(const Op& op, json object, const std::string& manager) {
  const ResourceInfo& t = *op.type;
  if (object.contains("kind") && object["kind"] != t.kind) {
    return error(400, "BadRequest", "kind " + object["kind"].dump() + " does not match " + t.kind,
                 op);
  }
  object["apiVersion"] = api_version(t);
  object["kind"] = t.kind;
  if (!object.contains("metadata") || !object["metadata"].is_object()) {
    object["metadata"] = json::object();
  }
  json& meta = object["metadata"];
  if (t.namespaced) {
    std::string body_ns = meta.value("namespace", "");
    if (!body_ns.empty() && body_ns != op.ns) {
      return error(400, "BadRequest",
                   "the namespace of the provided object does not match the namespace sent "
                   "on the request",
                   op);
    }
    meta["namespace"] = op.ns;
  } else {
    meta.erase("namespace");
  }
  std::string name = meta.value("name", "");
  if (name.empty() && !meta.value("generateName", "").empty()) {
    char suffix[8];
    std::snprintf(suffix, sizeof(suffix), "%05llx",
                  static_cast<unsigned long long>((uid_counter_ * 2654435761ULL) & 0xfffff));
    name = meta["generateName"].get<std::string>() + suffix;
    meta["name"] = name;
  }
  Op named = op;
  named.name = name;
  if (name.empty()) {
    return error(422, "Invalid", t.kind + " is invalid: metadata.name: Required value", named);
  }
  Key key{op.type, t.namespaced ? op.ns : "", name};
  if (objects_.count(key)) {
    return error(409, "AlreadyExists", qualified(t) + " \"" + name + "\" already exists", named);
  }
  if (t.status_subresource) object.erase("status");
  char uid[40];
  std::snprintf(uid, sizeof(uid), "6b1c0de0-0000-4000-8000-%012llx",
                static_cast<unsigned long long>(++uid_counter_));
  meta["uid"] = uid;
  meta["creationTimestamp"] = now_rfc3339();
  meta["generation"] = 1;
  meta.erase("deletionTimestamp");
  meta.erase("deletionGracePeriodSeconds");
  meta.erase("managedFields");
  meta["resourceVersion"] = next_rv();
  StoredObject stored;
  stored.object = object;
  collect_leaves(managed_view(t, object, false), {}, stored.managers[manager]);
  if (stored.managers[manager].empty()) stored.managers.erase(manager);
  objects_[key] = std::move(stored);
  ++counters_.writes;
  emit(op.type, "ADDED", object);
  return {201, object};
}

ApiResponse Store::do_update(const Op& op) {
  if (!op.body.is_object()) return error(400, "BadRequest", "the body is not an object", op);
  auto it = objects_.find({op.type, op.ns, op.name});
  if (it == objects_.end()) return not_found(op);
  const json& meta = op.body.value("metadata", json::object());
  if (meta.value("name", op.name) != op.name) {
    return error(400, "BadRequest", "the name of the object does not match the URL", op);
  }
  std::string rv = meta.value("resourceVersion", "");
  const json& old = it->second.object;
  if (rv.empty() && !op.unconditional) {
    return error(422, "Invalid",
                 op.type->kind + " \"" + op.name +
                     "\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be "
                     "specified for an update",
                 op);
  }
  if (!rv.empty() && rv != old["metadata"]["resourceVersion"]) return conflict(op);
  json updated;
  if (op.status) {
    updated = old;
    if (op.body.contains("status")) {
      updated["status"] = op.body["status"];
    } else {
      updated.erase("status");
    }
  } else {
    updated = op.body;
    if (op.type->status_subresource) {
      updated.erase("status");
      if (old.contains("status")) updated["status"] = old["status"];
    }
  }
  auto managers = it->second.managers;
  std::string manager = op.field_manager.empty() ? "unknown" : op.field_manager;
  record_update_ownership(op, old, updated, manager, managers);
  return commit_update(op, it->second, std::move(updated), manager, false, std::move(managers));
}

ApiResponse Store::do_patch(const Op& op) {
  auto it = objects_.find({op.type, op.ns, op.name});
  if (it == objects_.end()) return not_found(op);
  const json& old = it->second.object;
  json patched = old;
  if (op.patch_type == "json") {
    try {
      patched = old.patch(op.body);
    } catch (const std::exception& e) {
      return error(422, "Invalid", std::string("the JSON patch does not apply: ") + e.what(), op);
    }
  } else {
    if (!op.body.is_object()) return error(400, "BadRequest", "the patch is not an object", op);
    const json& meta = op.body.value("metadata", json::object());
    if (meta.is_object() && meta.contains("resourceVersion") &&
        meta["resourceVersion"] != old["metadata"]["resourceVersion"]) {
      return conflict(op);
    }
    merge_patch(patched, op.body);
  }
  json updated = old;
  if (op.status) {
    if (patched.contains("status")) updated["status"] = patched["status"];
  } else {
    updated = patched;
    if (op.type->status_subresource) {
      updated.erase("status");
      if (old.contains("status")) updated["status"] = old["status"];
    }
  }
  auto managers = it->second.managers;
  std::string manager = op.field_manager.empty() ? "unknown" : op.field_manager;
  record_update_ownership(op, old, updated, manager, managers);
  return commit_update(op, it->second, std::move(updated), manager, false, std::move(managers));
}

ApiResponse Store::do_apply(const Op& op) {
  const ResourceInfo& t = *op.type;
  if (op.field_manager.empty()) {
    return error(422, "Invalid",
                 "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is "
                 "required for apply patch",
                 op);
  }
  if (!op.body.is_object()) return error(400, "BadRequest", "the apply body is not an object", op);
  const json& meta = op.body.value("metadata", json::object());
  if (meta.value("name", op.name) != op.name) {
    return error(400, "BadRequest", "the name of the object does not match the URL", op);
  }
  if (op.body.contains("kind") && op.body["kind"] != t.kind) {
    return error(400, "BadRequest", "kind " + op.body["kind"].dump() + " does not match", op);
  }
  json applied = managed_view(t, op.body, op.status);
  std::string part = part_name(op.field_manager, op.status);
  auto it = objects_.find({op.type, op.ns, op.name});
  if (it == objects_.end()) {
    if (op.status) return not_found(op);
    json object = {{"metadata", {{"name", op.name}}}};
    merge_apply(object, applied);
    return do_create(op, std::move(object), part);
  }
  StoredObject& stored = it->second;
  json live_view = full_view(t, stored.object);
  FieldSet leaves;
  collect_leaves(applied, {}, leaves);
  auto managers = stored.managers;

  std::vector<std::pair<std::string, Path>> conflicts;
  for (const auto& p : leaves) {
    const json* want = get_at(applied, p);
    const json* have = get_at(live_view, p);
    for (auto& [other, owned] : managers) {
      if (other == part || !owned.count(p)) continue;
      if (have != nullptr && want != nullptr && *have == *want) continue;  // shared
      if (op.force) {
        owned.erase(p);
      } else {
        conflicts.push_back({other, p});
      }
    }
  }
  if (!conflicts.empty()) {
    std::string message = "Apply failed with " + std::to_string(conflicts.size()) + " conflict" +
                          (conflicts.size() > 1 ? "s" : "") + ":";
    json causes = json::array();
    for (const auto& [other, p] : conflicts) {
      std::string what = "conflict with \"" + other + "\": " + path_string(p);
      message += " " + what;
      causes.push_back(
          {{"type", "FieldManagerConflict"}, {"message", what}, {"field", path_string(p)}});
    }
    auto resp = error(409, "Conflict", message, op);
    resp.body["details"]["causes"] = causes;
    return resp;
  }

  json updated = stored.object;
  merge_apply(updated, applied);
  // Fields this manager applied before and omits now go, unless another manager (or this
  // apply, at a deeper or shallower path) still holds them.
  FieldSet removed;
  for (const auto& p : managers[part]) {
    if (leaves.count(p)) continue;
    // q holds p when it lies below p, or above p as an atomic value (an empty object
    // only claims that the object exists, not what it holds).
    auto holds = [&](const Path& q, const json& root) {
      if (is_prefix(p, q)) return true;
      if (!is_prefix(q, p)) return false;
      const json* v = get_at(root, q);
      return v == nullptr || !(v->is_object() && v->empty());
    };
    bool held = false;
    for (const auto& q : leaves) held = held || holds(q, applied);
    for (const auto& [other, owned] : managers) {
      if (other == part) continue;
      for (const auto& q : owned) held = held || holds(q, live_view);
    }
    if (!held) removed.insert(p);
  }
  remove_fields(updated, removed);
  managers[part] = leaves;
  return commit_update(op, stored, std::move(updated), part, true, std::move(managers));
}

void Store::record_update_ownership(const Op& op, const json& before, const json& after,
                                    const std::string& manager,
                                    std::map<std::string, FieldSet>& managers) const {
  std::string part = part_name(manager, op.status);
  json after_view = managed_view(*op.type, after, op.status);
  json before_view = managed_view(*op.type, before, op.status);
  FieldSet leaves;
  collect_leaves(after_view, {}, leaves);
  for (const auto& p : leaves) {
    const json* was = get_at(before_view, p);
    if (was != nullptr && *was == *get_at(after_view, p)) continue;
    for (auto& [other, owned] : managers) owned.erase(p);
    managers[part].insert(p);
  }
}

ApiResponse Store::commit_update(const Op& op, StoredObject& stored, json updated,
                                 const std::string& manager, bool is_apply,
                                 std::map<std::string, FieldSet> managers) {
  const json& old = stored.object;
  const json& old_meta = old["metadata"];
  updated["apiVersion"] = old["apiVersion"];
  updated["kind"] = old["kind"];
  if (!updated.contains("metadata") || !updated["metadata"].is_object()) {
    updated["metadata"] = json::object();
  }
  json& meta = updated["metadata"];
  meta.erase("managedFields");
  for (const char* k : {"name", "namespace", "uid", "creationTimestamp", "generation",
                        "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    if (old_meta.contains(k)) {
      meta[k] = old_meta[k];
    } else {
      meta.erase(k);
    }
  }
  // Ownership of fields that no longer exist goes with them.
  json view = full_view(*op.type, updated);
  for (auto it = managers.begin(); it != managers.end();) {
    for (auto p = it->second.begin(); p != it->second.end();) {
      p = get_at(view, *p) == nullptr ? it->second.erase(p) : std::next(p);
    }
    it = it->second.empty() ? managers.erase(it) : std::next(it);
  }
  (void)manager;
  stored.managers = std::move(managers);
  if (updated == old) {
    ++counters_.noop_writes;
    if (is_apply) ++counters_.noop_applies;
    return {200, old};
  }
  if (spec_part(updated) != spec_part(old))
    meta["generation"] = old_meta.value("generation", 0) + 1;
  if (meta.contains("deletionTimestamp") && !has_finalizers(updated)) {
    // The last finalizer went: the update is the deletion (one RV, one DELETED event).
    stored.object = updated;
    return {200, remove_object({op.type, op.type->namespaced ? op.ns : "", op.name})};
  }
  meta["resourceVersion"] = next_rv();
  stored.object = updated;
  ++counters_.writes;
  emit(op.type, "MODIFIED", updated);
  return {200, updated};
}

ApiResponse Store::do_delete(const Op& op) {
  Key key{op.type, op.ns, op.name};
  auto it = objects_.find(key);
  if (it == objects_.end()) return not_found(op);
  json& object = it->second.object;
  if (op.body.is_object() && op.body.contains("preconditions")) {
    const json& pre = op.body["preconditions"];
    if (pre.contains("resourceVersion") &&
        pre["resourceVersion"] != object["metadata"]["resourceVersion"]) {
      return conflict(op);
    }
    if (pre.contains("uid") && pre["uid"] != object["metadata"]["uid"]) return conflict(op);
  }
  if (!has_finalizers(object)) return {200, remove_object(key)};
  json& meta = object["metadata"];
  if (meta.contains("deletionTimestamp")) return {200, object};
  meta["deletionTimestamp"] = now_rfc3339();
  meta["deletionGracePeriodSeconds"] = 0;
  meta["generation"] = meta.value("generation", 0) + 1;
  meta["resourceVersion"] = next_rv();
  ++counters_.writes;
  emit(op.type, "MODIFIED", object);
  return {200, object};
}

json Store::remove_object(const Key& key) {
  auto it = objects_.find(key);
  json object = std::move(it->second.object);
  objects_.erase(it);
  object["metadata"]["resourceVersion"] = next_rv();
  ++counters_.writes;
  emit(std::get<0>(key), "DELETED", object);
  if (options_.garbage_collector) collect_garbage(object["metadata"].value("uid", ""));
  return object;
}

void Store::collect_garbage(const std::string& owner_uid) {
  std::vector<Key> dependents;
  for (const auto& [key, stored] : objects_) {
    const json& refs = stored.object["metadata"].value("ownerReferences", json::array());
    for (const auto& ref : refs) {
      if (ref.value("uid", "") == owner_uid) dependents.push_back(key);
    }
  }
  std::set<std::string> live_uids;
  for (const auto& [key, stored] : objects_) {
    live_uids.insert(stored.object["metadata"].value("uid", ""));
  }
  for (const auto& key : dependents) {
    auto it = objects_.find(key);
    if (it == objects_.end()) continue;  // went with an earlier dependent
    json& meta = it->second.object["metadata"];
    json kept = json::array();
    for (const auto& ref : meta["ownerReferences"]) {
      if (live_uids.count(ref.value("uid", "")) && ref.value("uid", "") != owner_uid) {
        kept.push_back(ref);
      }
    }
    Op op;
    op.verb = "delete";
    op.type = std::get<0>(key);
    op.ns = std::get<1>(key);
    op.name = std::get<2>(key);
    if (!kept.empty()) {
      // Another owner lives: only the dangling reference goes.
      meta["ownerReferences"] = kept;
      meta["resourceVersion"] = next_rv();
      ++counters_.writes;
      emit(std::get<0>(key), "MODIFIED", it->second.object);
    } else {
      do_delete(op);
    }
  }
}

std::optional<json> Store::get(const ResourceInfo* type, const std::string& ns,
                               const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find({type, ns, name});
  if (it == objects_.end()) return std::nullopt;
  return it->second.object;
}

std::map<std::string, FieldSet> Store::managers(const ResourceInfo* type, const std::string& ns,
                                                const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find({type, ns, name});
  if (it == objects_.end()) return {};
  return it->second.managers;
}

uint64_t Store::rv() const {
  std::lock_guard lock(mu_);
  return rv_;
}

void Store::count_request(RequestRecord record) {
  std::lock_guard lock(mu_);
  ++counters_.requests[{record.verb, record.resource}];
  counters_.log.push_back(std::move(record));
}

Counters Store::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void Store::reset_counters() {
  std::lock_guard lock(mu_);
  counters_ = Counters();
}

}  // namespace splitwise::fake::internal
