#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "workers/net/http_internal.h"

namespace splitwise::net::internal {

std::string error_json(std::string_view message, std::string_view type) {
  nlohmann::json body = {{"error", {{"message", message}, {"type", type}}}};
  // Replace invalid UTF-8 instead of throwing: messages may quote client input.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string host_port(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  return out + ":" + std::to_string(port);
}

bool safe_header(std::string_view name, std::string_view value) {
  auto bad = [](std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; };
  return !name.empty() && !bad(name) && !bad(value) && name.find(':') == std::string_view::npos;
}

}  // namespace splitwise::net::internal
