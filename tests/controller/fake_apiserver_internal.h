// Internals of the fake apiserver, shared by its .cpp files. Not for tests.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tests/controller/fake_apiserver.h"
#include "workers/net/http.h"

namespace splitwise::fake::internal {

// --- field paths (server-side apply) --------------------------------------------------
// A path is a list of steps: "f:name" for an object field, "k:field=<json value>" for the
// item of a list that is keyed by `field` (containers by name, conditions by type).
using Path = std::vector<std::string>;
using FieldSet = std::set<Path>;

// The list fields treated as maps keyed by one of their items' fields.
const char* merge_key(const std::string& list_field);
// Leaves of `value` (scalars, atomic lists, empty objects) below `prefix`.
void collect_leaves(const json& value, const Path& prefix, FieldSet& out);
const json* get_at(const json& root, const Path& path);
// Removes the leaves, then every object they leave empty; a keyed item goes when nothing
// but its key is left.
void remove_fields(json& root, const FieldSet& paths);
// Applied configuration merged into `live`: objects and keyed lists merge, the rest replace.
void merge_apply(json& live, const json& applied);
// RFC 7386.
void merge_patch(json& target, const json& patch);
std::string path_string(const Path& path);

// --- selectors --------------------------------------------------------------------------
struct Selector {
  struct Term {
    std::string key;
    enum class Op { kEq, kNe, kExists, kNotExists, kIn, kNotIn } op;
    std::vector<std::string> values;
  };
  std::vector<Term> terms;
  bool matches(const json& labels) const;
};
Result<Selector> parse_label_selector(const std::string& text);
// Only metadata.name and metadata.namespace (= and !=), which is what clients use.
Result<Selector> parse_field_selector(const std::string& text);
json field_view(const json& object);  // {"metadata.name":..., "metadata.namespace":...}

// --- requests -----------------------------------------------------------------------------
struct ApiError {
  int code = 500;
  std::string reason;  // "NotFound", "AlreadyExists", "Conflict", "Invalid", ...
  std::string message;
};
json status_json(const ApiError& error, const std::string& name = "", const std::string& group = "",
                 const std::string& resource = "");

struct Query {
  std::map<std::string, std::string> params;
  std::string get(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? "" : it->second;
  }
  bool flag(const std::string& key) const {
    auto v = get(key);
    return v == "true" || v == "1";
  }
};
Query parse_query(const std::string& raw);

struct ApiResponse {
  int code = 200;
  json body;
};

// --- store --------------------------------------------------------------------------------
struct Watcher {
  uint64_t id = 0;
  const ResourceInfo* type = nullptr;
  std::string ns;  // "" all namespaces
  Selector labels;
  Selector fields;
  bool bookmarks = false;
  int cut_after = -1;  // events before the stream is broken; < 0: never
  int sent = 0;
  std::shared_ptr<net::ResponseWriter> writer;
  std::shared_ptr<void> timer;  // the timeoutSeconds timer, owned here
};

struct StoredObject {
  json object;
  std::map<std::string, FieldSet> managers;  // "name" or "name|status" -> owned leaves
};

struct WatchEvent {
  uint64_t rv;
  const ResourceInfo* type;
  std::string ns;
  std::string kind;  // ADDED MODIFIED DELETED
  json object;
};

// Every object, the RV counter, the watch history and the watchers. One mutex guards all
// of it (mu_): writes are serialized like etcd's revision, and events are handed to the
// watchers' writers under it, which only queue them on the connection (never block), so
// every watcher sees events in RV order.
class Store {
 public:
  explicit Store(const FakeApiServerOptions& options);

  struct Op {
    std::string verb;  // get list create update patch apply delete
    const ResourceInfo* type = nullptr;
    std::string ns;
    std::string name;
    bool status = false;  // the /status subresource
    json body;
    std::string patch_type;  // "merge", "apply"
    std::string field_manager;
    bool force = false;
    bool unconditional = false;  // test helpers' put without RV
    Query query;
  };
  ApiResponse execute(const Op& op);

  // Watches. Returns an error response when the request cannot start a stream.
  std::optional<ApiResponse> watch(const Op& op, std::shared_ptr<net::ResponseWriter> writer,
                                   int cut_after, bool force_expired_event,
                                   std::shared_ptr<Watcher>* registered);
  void remove_watcher(uint64_t id, bool finish);
  void send_bookmarks();
  void close_watchers();
  void compact();

  std::optional<json> get(const ResourceInfo* type, const std::string& ns,
                          const std::string& name) const;
  std::map<std::string, FieldSet> managers(const ResourceInfo* type, const std::string& ns,
                                           const std::string& name) const;
  uint64_t rv() const;

  // Counters live here, under mu_, next to the writes they count.
  void count_request(RequestRecord record);
  Counters counters() const;
  void reset_counters();

 private:
  using Key = std::tuple<const ResourceInfo*, std::string, std::string>;  // type, ns, name

  ApiResponse do_get(const Op& op);
  ApiResponse do_list(const Op& op);
  ApiResponse do_create(const Op& op, json object, const std::string& manager);
  ApiResponse do_update(const Op& op);
  ApiResponse do_patch(const Op& op);
  ApiResponse do_apply(const Op& op);
  ApiResponse do_delete(const Op& op);
  // The end of every update: immutable metadata, generation, finalizers, RV, event.
  ApiResponse commit_update(const Op& op, StoredObject& stored, json updated,
                            const std::string& manager, bool is_apply,
                            std::map<std::string, FieldSet> managers);
  void record_update_ownership(const Op& op, const json& before, const json& after,
                               const std::string& manager,
                               std::map<std::string, FieldSet>& managers) const;
  json remove_object(const Key& key);  // deletes now, emits DELETED, runs the GC
  void collect_garbage(const std::string& owner_uid);
  void emit(const ResourceInfo* type, const std::string& kind, const json& object);
  bool deliver(Watcher& w, const std::string& kind, const json& object);
  std::string next_rv() { return std::to_string(++rv_); }

  const FakeApiServerOptions& options_;
  mutable std::mutex mu_;
  uint64_t rv_ = 0;
  uint64_t uid_counter_ = 0;
  std::map<Key, StoredObject> objects_;
  std::deque<WatchEvent> history_;
  uint64_t compacted_rv_ = 0;  // a watch may resume from RV r only when r >= this
  uint64_t next_watcher_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_;
  Counters counters_;
};

std::string now_rfc3339();

}  // namespace splitwise::fake::internal
