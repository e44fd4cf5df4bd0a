#include "controller/kube/api_error.h"

namespace splitwise::kube {

std::string default_reason(int http_status) {
  switch (http_status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return http_status >= 500 ? "InternalError" : "Unknown";
  }
}

ApiError api_error_from_response(int http_status, const std::string& body) {
  ApiError error{http_status, default_reason(http_status), ""};
  const nlohmann::json status = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object() && status.value("kind", "") == "Status") {
    if (status.contains("reason") && status["reason"].is_string() &&
        !status["reason"].get<std::string>().empty()) {
      error.reason = status["reason"].get<std::string>();
    }
    if (status.contains("message") && status["message"].is_string()) {
      error.message = status["message"].get<std::string>();
    }
  } else {
    error.message = body.substr(0, 512);
  }
  if (error.message.empty()) error.message = error.reason;
  return error;
}

std::string ApiError::to_string() const {
  if (is_transport()) return "transport error: " + message;
  return "HTTP " + std::to_string(code) + " " + reason + ": " + message;
}

}  // namespace splitwise::kube
