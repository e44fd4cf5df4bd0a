// JSON messages between the router and the workers (HTTP bodies and NDJSON stream lines).
// Header-only so the router can speak it without linking the engine.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::worker {

enum class Role { kPrompt, kToken, kMixed };

inline const char* to_string(Role r) {
  switch (r) {
    case Role::kPrompt:
      return "prompt";
    case Role::kToken:
      return "token";
    case Role::kMixed:
      return "mixed";
  }
  return "?";
}

inline std::optional<Role> parse_role(const std::string& s) {
  if (s == "prompt") return Role::kPrompt;
  if (s == "token") return Role::kToken;
  if (s == "mixed") return Role::kMixed;
  return std::nullopt;
}

// One request's work, sent by the router:
//   POST /internal/prefill   (prompt role; kv_host/kv_port: the token worker's receiver)
//   POST /internal/decode    (token role; streams NDJSON lines, see below)
//   POST /internal/generate  (mixed role: both phases; streams NDJSON lines)
struct WorkRequest {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int64_t sample_index = 0;  // draw index of the first new token (resumed requests)
  int max_new_tokens = 16;
  std::vector<int32_t> stop_ids;
  std::string kv_host;  // prefill only
  int kv_port = 0;      // prefill only
};

inline nlohmann::json to_json(const WorkRequest& r) {
  nlohmann::json j = {{"id", r.id},
                      {"prompt", r.prompt},
                      {"temperature", r.temperature},
                      {"top_k", r.top_k},
                      {"top_p", r.top_p},
                      {"seed", r.seed},
                      {"max_new_tokens", r.max_new_tokens},
                      {"stop_ids", r.stop_ids}};
  if (!r.kv_host.empty()) {
    j["kv_host"] = r.kv_host;
    j["kv_port"] = r.kv_port;
  }
  return j;
}

inline Result<WorkRequest> parse_work_request(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::error("body is not a JSON object");
  try {
    WorkRequest r;
    r.id = j.at("id").get<uint64_t>();
    r.prompt = j.at("prompt").get<std::vector<int32_t>>();
    r.temperature = j.value("temperature", 0.0f);
    r.top_k = j.value("top_k", 0);
    r.top_p = j.value("top_p", 1.0f);
    r.seed = j.value("seed", uint64_t{0});
    r.sample_index = j.value("sample_index", int64_t{0});
    r.max_new_tokens = j.value("max_new_tokens", 16);
    r.stop_ids = j.value("stop_ids", std::vector<int32_t>{});
    r.kv_host = j.value("kv_host", std::string());
    r.kv_port = j.value("kv_port", 0);
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Status::error(std::string("bad work request: ") + e.what());
  }
}

// NDJSON lines of a token stream, one JSON object per line:
//   {"reserved":true}                  decode only: KV blocks are reserved, send the prefill
//   {"token":123}                      one generated token (the first comes from the prefill)
//   {"finish":"stop"|"length"}         the last line of a finished request
//   {"error":"..."}                    the request failed; the stream ends
inline std::string token_line(int32_t token) {
  return "{\"token\":" + std::to_string(token) + "}\n";
}
inline std::string finish_line(const std::string& reason) {
  return "{\"finish\":\"" + reason + "\"}\n";
}
inline std::string error_line(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump() + "\n";
}

// GET /internal/state: what the router's cluster scheduler needs to place requests.
struct WorkerState {
  Role role = Role::kMixed;
  int64_t pending_prefill_tokens = 0;
  int64_t queued_requests = 0;
  int free_kv_blocks = 0;
  int total_kv_blocks = 0;
  int block_size = 0;
  int kv_port = 0;
  int max_context = 0;
};

inline nlohmann::json to_json(const WorkerState& s) {
  return {{"role", to_string(s.role)},
          {"pending_prefill_tokens", s.pending_prefill_tokens},
          {"queued_requests", s.queued_requests},
          {"free_kv_blocks", s.free_kv_blocks},
          {"total_kv_blocks", s.total_kv_blocks},
          {"block_size", s.block_size},
          {"kv_port", s.kv_port},
          {"max_context", s.max_context}};
}

inline Result<WorkerState> parse_worker_state(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::error("state is not a JSON object");
  try {
    WorkerState s;
    const auto role = parse_role(j.at("role").get<std::string>());
    if (!role) return Status::error("unknown role in worker state");
    s.role = *role;
    s.pending_prefill_tokens = j.at("pending_prefill_tokens").get<int64_t>();
    s.queued_requests = j.at("queued_requests").get<int64_t>();
    s.free_kv_blocks = j.at("free_kv_blocks").get<int>();
    s.total_kv_blocks = j.at("total_kv_blocks").get<int>();
    s.block_size = j.at("block_size").get<int>();
    s.kv_port = j.value("kv_port", 0);
    s.max_context = j.value("max_context", 0);
    return s;
  } catch (const nlohmann::json::exception& e) {
    return Status::error(std::string("bad worker state: ") + e.what());
  }
}

}  // namespace splitwise::worker
