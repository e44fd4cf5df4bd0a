// Errors of Kubernetes API calls, typed so callers can tell a missing object (404)
// from a stale write (409 Conflict), a duplicate create (409 AlreadyExists), an expired
// resourceVersion (410), a rejected object (422), throttling (429) and server or
// transport failures without matching on message text.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include "workers/engine/status.h"

namespace splitwise::kube {

struct ApiError {
  int code = 0;         // HTTP status; 0 for transport failures (no response)
  std::string reason;   // metav1.Status reason: NotFound, Conflict, AlreadyExists, ...
  std::string message;  // a person-readable explanation
  std::chrono::milliseconds retry_after{0};  // from the Retry-After header, when sent

  bool is_transport() const { return code == 0; }
  bool is_not_found() const { return code == 404; }
  bool is_already_exists() const { return code == 409 && reason == "AlreadyExists"; }
  // A stale resourceVersion on update: re-read and retry.
  bool is_conflict() const { return code == 409 && reason != "AlreadyExists"; }
  bool is_gone() const { return code == 410; }
  bool is_invalid() const { return code == 422; }
  bool is_too_many_requests() const { return code == 429; }
  bool is_server_error() const { return code >= 500; }
  bool is_unauthorized() const { return code == 401; }
  bool is_forbidden() const { return code == 403; }
  // Worth retrying for an idempotent request.
  bool is_retryable() const {
    return is_transport() || is_too_many_requests() || is_server_error();
  }

  std::string to_string() const;
  Status to_status() const { return Status::error(to_string()); }

  static ApiError transport(std::string message) {
    return ApiError{0, "Transport", std::move(message)};
  }
};

// Builds an ApiError from an HTTP status and response body (a metav1.Status when the
// apiserver sent one; otherwise a reason derived from the code).
ApiError api_error_from_response(int http_status, const std::string& body);

// The reason the apiserver uses for a code when the body did not say.
std::string default_reason(int http_status);

// A value or an ApiError.
template <typename T>
class ApiResult {
 public:
  ApiResult(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  ApiResult(ApiError error) : value_(std::move(error)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(value_); }
  const ApiError& error() const { return std::get<ApiError>(value_); }
  Status status() const { return ok() ? Status() : error().to_status(); }
  T& value() & { return std::get<T>(value_); }
  const T& value() const& { return std::get<T>(value_); }
  T&& value() && { return std::get<T>(std::move(value_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, ApiError> value_;
};

struct Empty {};
using ApiStatus = ApiResult<Empty>;

}  // namespace splitwise::kube
