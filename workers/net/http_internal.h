// Helpers shared by the server and client .cpp files; not part of the public API.
// Kept free of Beast so that it costs nothing to include.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace splitwise::net::internal {

// OpenAI-style error body: {"error":{"message":...,"type":...}}.
std::string error_json(std::string_view message, std::string_view type);

std::string to_lower(std::string_view text);

// Boost 1.74's Beast hands out boost::string_view; this bridges without copying.
template <typename View>
std::string_view view(const View& s) {
  return std::string_view(s.data(), s.size());
}

// "host:port", with brackets around IPv6 literals so the port stays readable.
std::string host_port(std::string_view host, uint16_t port);

// A header name or value with CR or LF would let a caller inject headers or split the
// response; such headers are dropped instead.
bool safe_header(std::string_view name, std::string_view value);

}  // namespace splitwise::net::internal
