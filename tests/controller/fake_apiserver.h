// A fake Kubernetes API server for the operator's tests: real HTTP (the project's Beast
// server on 127.0.0.1), real JSON, and the apiserver semantics a controller depends on:
// one global resourceVersion, generation, 409 AlreadyExists/Conflict, status subresource,
// merge patch and server-side apply with per-manager field ownership, finalizers,
// owner-reference garbage collection, watches with bookmarks and 410 Expired, discovery,
// and injectable faults. No admission, RBAC, validation or defaulting beyond metadata.
//
// Resources are named in the C++ API by plural ("deployments") or by "group/version/plural"
// ("apps/v1/deployments", "v1/configmaps" for the core group).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::fake {

using json = nlohmann::json;

struct ResourceInfo {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural: "deployments"
  std::string kind;      // "Deployment"
  bool namespaced = true;
  bool status_subresource = false;
};

struct FakeApiServerOptions {
  // monitoring.coreos.com/v1 (ServiceMonitor) is discoverable and served only when set.
  bool serve_monitoring = false;
  // Deletes objects whose ownerReferences name a deleted object's uid (background GC,
  // done synchronously within the owner's deletion).
  bool garbage_collector = true;
  size_t watch_history = 1000;     // events kept for watches that resume from an RV
  int bookmark_interval_ms = 200;  // 0: no bookmarks
  // A watch from an RV older than the history: true answers 200 and a first event
  // {"type":"ERROR","object":Status 410 Expired} (what kube-apiserver does today);
  // false answers HTTP 410 with the Status. A fault can force the event form per request.
  bool expired_watch_as_event = false;
  std::vector<ResourceInfo> extra_resources;  // served next to the built-in table
  uint64_t seed = 1;                          // for probabilistic faults
};

// Matches requests by HTTP method ("" any) and regexes (ECMAScript, searched, "" any)
// over the path and the raw query string.
struct FaultRule {
  enum class Action {
    kStatus,          // answer `status` (429 carries Retry-After: retry_after_s)
    kDelay,           // wait delay_ms, then serve the request normally
    kDrop,            // close the connection without a usable answer (see .cpp)
    kCutWatch,        // serve the watch, then break the stream after cut_after_events
    kExpiredAsEvent,  // watch: answer 200 with an ERROR 410 Expired event, then end
  };
  std::string method;
  std::string path_regex;
  std::string query_regex;
  Action action = Action::kStatus;
  int status = 500;
  int retry_after_s = 1;
  int delay_ms = 0;
  int cut_after_events = 0;
  int times = 1;             // how many matching requests it hits; < 0: forever
  double probability = 1.0;  // each matching request is hit with this probability
};

struct RequestRecord {
  std::string method;  // HTTP method
  std::string path;
  std::string query;     // raw, without '?'
  std::string verb;      // get list watch create update patch apply delete discovery
  std::string resource;  // "deployments", "inferenceclusters/status", "" for discovery
  std::string ns;
  std::string name;
  int code = 0;  // status answered (0 for a dropped connection or a stream)
};

struct Counters {
  // (verb, resource) -> requests, as in RequestRecord; faulted requests count too.
  std::map<std::pair<std::string, std::string>, int> requests;
  int writes = 0;                  // writes that changed an object (each bumped the RV)
  int noop_writes = 0;             // PUT/PATCH/apply that changed nothing (no RV bump)
  int noop_applies = 0;            // of those, server-side applies
  std::vector<RequestRecord> log;  // every HTTP request, in arrival order
  int count(const std::string& verb, const std::string& resource) const {
    auto it = requests.find({verb, resource});
    return it == requests.end() ? 0 : it->second;
  }
};

class FakeApiServer {
 public:
  explicit FakeApiServer(FakeApiServerOptions options = {});
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  Status start();  // listens on 127.0.0.1, port chosen by the kernel
  void stop();     // closes watches and connections; the store survives
  uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:PORT"

  // Object access, through the same code paths as HTTP requests (watches see the
  // writes), as if a person used kubectl. Errors carry "CODE Reason: message".
  std::optional<json> get(const std::string& resource, const std::string& ns,
                          const std::string& name) const;
  std::vector<json> list(const std::string& resource, const std::string& ns = "") const;
  Result<json> create(const std::string& resource, json object);
  // Replaces the object (creates it when absent); without metadata.resourceVersion the
  // update is unconditional. Status changes are ignored where a status subresource exists.
  Result<json> put_object(const std::string& resource, json object);
  Result<json> update_status(const std::string& resource, const std::string& ns,
                             const std::string& name, json status);
  Result<json> merge_patch(const std::string& resource, const std::string& ns,
                           const std::string& name, const json& patch);
  Result<json> apply(const std::string& resource, json object, const std::string& field_manager,
                     bool force = false);
  Status remove(const std::string& resource, const std::string& ns, const std::string& name);
  std::vector<json> events() const;  // core/v1 Events, all namespaces
  // Field manager -> owned paths (".spec.replicas", ".spec.containers[name=\"app\"].image").
  std::map<std::string, std::vector<std::string>> managed_fields(const std::string& resource,
                                                                 const std::string& ns,
                                                                 const std::string& name) const;
  std::string resource_version() const;  // the global counter now

  Counters counters() const;
  void reset_counters();

  // Thread-safe at any time. Returns the rule's id.
  int set_fault(FaultRule rule);
  void clear_faults();
  int fault_hits(int id) const;
  // Drops the whole watch history: a watch from any RV before now gets 410 Expired.
  void compact();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::fake
