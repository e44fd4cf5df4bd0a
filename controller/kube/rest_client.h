// Typed verbs over the Kubernetes REST API. Errors come back as ApiError (see
// api_error.h). Idempotent verbs (GET, PUT, DELETE, server-side apply) are retried on
// transport errors, 429 and 5xx with jittered exponential backoff, honouring
// Retry-After; POST and merge patches are retried on 429 only (the server refused them
// before doing anything). A 401 re-reads a rotated token once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "controller/kube/api_error.h"
#include "controller/kube/backoff.h"
#include "controller/kube/http_client.h"

namespace splitwise::kube {

using json = nlohmann::json;

// A resource type, e.g. {"apps", "v1", "deployments", true}; group "" is the core group.
struct Resource {
  std::string group;
  std::string version;
  std::string resource;  // plural, lower case
  bool namespaced = true;

  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
};

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  int page_size = 500;  // list() follows continue tokens and returns one merged list
};

struct WatchOptions {
  std::string resource_version;
  std::string label_selector;
  std::string field_selector;
  int timeout_seconds = 300;  // server-side end of the watch
  bool allow_bookmarks = true;
};

struct RetryPolicy {
  int max_attempts = 5;  // including the first
  BackoffPolicy backoff{std::chrono::milliseconds(200), std::chrono::milliseconds(10'000), 0.5};
  std::chrono::milliseconds max_retry_after{60'000};  // caps a server's Retry-After
};

// Percent-encodes a query parameter value.
std::string url_encode(std::string_view value);

// "/api/v1/namespaces/ns/pods/name" style paths (ns ignored for cluster-scoped types).
std::string resource_path(const Resource& res, const std::string& ns, const std::string& name = "",
                          const std::string& subresource = "");

// Interface of what the informer's list/watch loop needs; RestClient implements it, tests
// fake it.
class ListWatchClient {
 public:
  virtual ~ListWatchClient() = default;
  virtual ApiResult<json> list(const Resource& res, const std::string& ns,
                               const ListOptions& options) = 0;
  // Streams watch lines to on_line until the server ends the watch, on_line returns
  // false or `cancel` fires; errors (incl. an HTTP 410) come back as ApiError.
  virtual ApiStatus watch(const Resource& res, const std::string& ns, const WatchOptions& options,
                          const std::function<bool(std::string_view)>& on_line,
                          CancelToken* cancel) = 0;
};

class RestClient : public ListWatchClient {
 public:
  static Result<std::unique_ptr<RestClient>> create(const ClusterConfig& config,
                                                    RetryPolicy retry = {});

  ApiResult<json> get(const Resource& res, const std::string& ns, const std::string& name);
  ApiResult<json> list(const Resource& res, const std::string& ns,
                       const ListOptions& options) override;
  ApiResult<json> create(const Resource& res, const std::string& ns, const json& object);
  // PUT; the object carries metadata.name and (for optimistic concurrency)
  // metadata.resourceVersion.
  ApiResult<json> update(const Resource& res, const std::string& ns, const json& object);
  ApiResult<json> update_status(const Resource& res, const std::string& ns, const json& object);
  // JSON merge patch (RFC 7386).
  ApiResult<json> patch(const Resource& res, const std::string& ns, const std::string& name,
                        const json& merge_patch, const std::string& subresource = "");
  // Server-side apply of a full intent object (apiVersion, kind, metadata.name).
  ApiResult<json> apply(const Resource& res, const std::string& ns, const json& object,
                        const std::string& field_manager, bool force = true,
                        const std::string& subresource = "");
  // DELETE; propagation "Background" / "Foreground" / "Orphan" or "" for the default.
  ApiResult<json> remove(const Resource& res, const std::string& ns, const std::string& name,
                         const std::string& propagation = "");
  ApiStatus watch(const Resource& res, const std::string& ns, const WatchOptions& options,
                  const std::function<bool(std::string_view)>& on_line,
                  CancelToken* cancel) override;

  // Discovery: is `resource` served at group/version? 404 -> false.
  ApiResult<bool> discover(const std::string& group, const std::string& version,
                           const std::string& resource);
  bool has_api(const std::string& group, const std::string& version, const std::string& resource) {
    ApiResult<bool> found = discover(group, version, resource);
    return found.ok() && *found;
  }

  // One raw call with the retry policy; `idempotent` widens what is retried.
  ApiResult<json> call(const HttpRequest& request, bool idempotent);

  HttpClient& http() { return *http_; }

 private:
  RestClient(std::unique_ptr<HttpClient> http, RetryPolicy retry);
  // A single attempt, with the 401 token refresh.
  ApiResult<json> attempt(const HttpRequest& request);

  std::unique_ptr<HttpClient> http_;
  RetryPolicy retry_;
};

}  // namespace splitwise::kube
