#include "controller/kube/rest_client.h"

#include <spdlog/spdlog.h>

#include <random>
#include <thread>

namespace splitwise::kube {

std::string url_encode(std::string_view value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string resource_path(const Resource& res, const std::string& ns, const std::string& name,
                          const std::string& subresource) {
  std::string path =
      res.group.empty() ? "/api/" + res.version : "/apis/" + res.group + "/" + res.version;
  if (res.namespaced && !ns.empty()) path += "/namespaces/" + ns;
  path += "/" + res.resource;
  if (!name.empty()) path += "/" + name;
  if (!subresource.empty()) path += "/" + subresource;
  return path;
}

namespace {

void add_param(std::string& target, const std::string& key, const std::string& value) {
  if (value.empty()) return;
  target += (target.find('?') == std::string::npos ? '?' : '&');
  target += key + "=" + url_encode(value);
}

HttpRequest make_request(std::string method, std::string target, std::string body = "",
                         std::string content_type = "") {
  HttpRequest request;
  request.method = std::move(method);
  request.target = std::move(target);
  request.body = std::move(body);
  request.content_type = std::move(content_type);
  return request;
}

std::string name_of(const json& object) {
  if (!object.is_object() || !object.contains("metadata")) return "";
  return object["metadata"].value("name", "");
}

}  // namespace

Result<std::unique_ptr<RestClient>> RestClient::create(const ClusterConfig& config,
                                                       RetryPolicy retry) {
  Result<std::unique_ptr<HttpClient>> http = HttpClient::create(config);
  if (!http.ok()) return http.status();
  return std::unique_ptr<RestClient>(new RestClient(std::move(*http), retry));
}

RestClient::RestClient(std::unique_ptr<HttpClient> http, RetryPolicy retry)
    : http_(std::move(http)), retry_(retry) {}

ApiResult<json> RestClient::attempt(const HttpRequest& request) {
  for (int auth_try = 0;; ++auth_try) {
    Result<HttpResponse> response = http_->request(request);
    if (!response.ok()) return ApiError::transport(response.status().message());
    const int code = response->status;
    if (code == 401 && auth_try == 0 && http_->config().token &&
        !http_->config().token->path().empty()) {
      http_->config().token->invalidate();  // the kubelet may have rotated the token
      continue;
    }
    if (code >= 200 && code < 300) {
      if (response->body.empty()) return json::object();
      json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded()) {
        return ApiError{code, "InvalidResponse",
                        "response of " + request.method + " " + request.target + " is not JSON"};
      }
      return body;
    }
    ApiError error = api_error_from_response(code, response->body);
    if (const std::string after = response->header("retry-after"); !after.empty()) {
      if (auto delay = parse_retry_after(after)) error.retry_after = *delay;
    }
    return error;
  }
}

ApiResult<json> RestClient::call(const HttpRequest& request, bool idempotent) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  for (int attempt_no = 0;; ++attempt_no) {
    ApiResult<json> result = attempt(request);
    if (result.ok()) return result;
    const ApiError& error = result.error();
    const bool retryable = error.is_too_many_requests() || (idempotent && error.is_retryable());
    if (!retryable || attempt_no + 1 >= retry_.max_attempts) return result;
    std::chrono::milliseconds delay = backoff_delay(retry_.backoff, attempt_no, rng);
    if (error.retry_after.count() > 0) delay = std::min(error.retry_after, retry_.max_retry_after);
    spdlog::debug("kube: {} {} failed ({}), retry {} in {} ms", request.method, request.target,
                  error.to_string(), attempt_no + 1, delay.count());
    std::this_thread::sleep_for(delay);
  }
}

ApiResult<json> RestClient::get(const Resource& res, const std::string& ns,
                                const std::string& name) {
  return call(make_request("GET", resource_path(res, ns, name)), true);
}

ApiResult<json> RestClient::list(const Resource& res, const std::string& ns,
                                 const ListOptions& options) {
  json merged;
  std::string continue_token;
  do {
    std::string target = resource_path(res, ns);
    add_param(target, "labelSelector", options.label_selector);
    add_param(target, "fieldSelector", options.field_selector);
    if (options.page_size > 0) add_param(target, "limit", std::to_string(options.page_size));
    add_param(target, "continue", continue_token);
    ApiResult<json> page = call(make_request("GET", target), true);
    if (!page.ok()) return page;
    json& body = *page;
    if (!body.contains("items") || body["items"].is_null()) body["items"] = json::array();
    continue_token = body.contains("metadata") ? body["metadata"].value("continue", "") : "";
    if (merged.is_null()) {
      // The first page's resourceVersion is the snapshot all pages belong to.
      merged = std::move(body);
      if (merged.contains("metadata")) merged["metadata"].erase("continue");
    } else {
      for (auto& item : body["items"]) merged["items"].push_back(std::move(item));
    }
  } while (!continue_token.empty());
  return merged;
}

ApiResult<json> RestClient::create(const Resource& res, const std::string& ns, const json& object) {
  return call(make_request("POST", resource_path(res, ns), object.dump(), "application/json"),
              false);
}

ApiResult<json> RestClient::update(const Resource& res, const std::string& ns, const json& object) {
  return call(make_request("PUT", resource_path(res, ns, name_of(object)), object.dump(),
                           "application/json"),
              true);
}

ApiResult<json> RestClient::update_status(const Resource& res, const std::string& ns,
                                          const json& object) {
  return call(make_request("PUT", resource_path(res, ns, name_of(object), "status"), object.dump(),
                           "application/json"),
              true);
}

ApiResult<json> RestClient::patch(const Resource& res, const std::string& ns,
                                  const std::string& name, const json& merge_patch,
                                  const std::string& subresource) {
  return call(make_request("PATCH", resource_path(res, ns, name, subresource), merge_patch.dump(),
                           "application/merge-patch+json"),
              false);
}

ApiResult<json> RestClient::apply(const Resource& res, const std::string& ns, const json& object,
                                  const std::string& field_manager, bool force,
                                  const std::string& subresource) {
  std::string target = resource_path(res, ns, name_of(object), subresource);
  add_param(target, "fieldManager", field_manager);
  if (force) add_param(target, "force", "true");
  // JSON is YAML, and the apiserver takes it as an apply patch.
  return call(make_request("PATCH", target, object.dump(), "application/apply-patch+yaml"), true);
}

ApiResult<json> RestClient::remove(const Resource& res, const std::string& ns,
                                   const std::string& name, const std::string& propagation) {
  HttpRequest request = make_request("DELETE", resource_path(res, ns, name));
  if (!propagation.empty()) {
    request.body =
        json{{"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"propagationPolicy", propagation}}
            .dump();
    request.content_type = "application/json";
  }
  return call(request, true);
}

ApiStatus RestClient::watch(const Resource& res, const std::string& ns, const WatchOptions& options,
                            const std::function<bool(std::string_view)>& on_line,
                            CancelToken* cancel) {
  std::string target = resource_path(res, ns);
  add_param(target, "watch", "true");
  add_param(target, "resourceVersion", options.resource_version);
  add_param(target, "labelSelector", options.label_selector);
  add_param(target, "fieldSelector", options.field_selector);
  if (options.allow_bookmarks) add_param(target, "allowWatchBookmarks", "true");
  if (options.timeout_seconds > 0) {
    add_param(target, "timeoutSeconds", std::to_string(options.timeout_seconds));
  }
  HttpRequest request = make_request("GET", target);
  // Idle limit: the server ends the watch at timeoutSeconds and sends bookmarks about
  // every minute, so a silent minute past the timeout means a dead connection.
  const auto idle = std::chrono::seconds(std::max(options.timeout_seconds, 60) + 60);
  Result<HttpResponse> response = http_->stream_lines(request, on_line, cancel, idle);
  if (!response.ok()) return ApiError::transport(response.status().message());
  if (response->status == 401 && http_->config().token) http_->config().token->invalidate();
  if (response->status < 200 || response->status >= 300) {
    ApiError error = api_error_from_response(response->status, response->body);
    if (auto after = parse_retry_after(response->header("retry-after"))) error.retry_after = *after;
    return error;
  }
  return Empty{};
}

ApiResult<bool> RestClient::discover(const std::string& group, const std::string& version,
                                     const std::string& resource) {
  const std::string target = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  ApiResult<json> list = call(make_request("GET", target), true);
  if (!list.ok()) {
    if (list.error().is_not_found()) return false;
    return list.error();
  }
  if (list->contains("resources") && (*list)["resources"].is_array()) {
    for (const json& r : (*list)["resources"]) {
      if (r.value("name", "") == resource) return true;
    }
  }
  return false;
}

}  // namespace splitwise::kube
