// The OpenAI HTTP API's data: request validation for /v1/completions and
// /v1/chat/completions, and the JSON shapes of responses, stream chunks and errors. Pure
// (bytes in, values out): the HTTP server and the streaming loop live elsewhere.
//
// Validation is strict on purpose: a parameter this server would silently ignore (n=3,
// logprobs, tools, a misspelt field) is a 400 naming it, so a client never gets an answer
// to a question it did not ask. Neutral values of unsupported parameters (logprobs:
// false, presence_penalty: 0, tools: [], ...) and nulls pass, since SDKs send them.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "workers/router/chat_template.h"

namespace splitwise::router {

// An error in OpenAI's shape: send `http_status` with error_json(error) as the body.
struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // the request field at fault, e.g. "messages[1].content"; "" -> null
  std::string code;   // e.g. "context_length_exceeded"; "" -> null
};

// A value or the ApiError that answers the request instead.
template <typename T>
class ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

inline constexpr int kDefaultCompletionMaxTokens = 16;  // OpenAI's default for completions
inline constexpr int kMaxStopStrings = 4;

struct CompletionRequest {
  bool chat = false;
  std::string model;                  // "" when absent: the router serves its one model
  std::string prompt;                 // completions
  std::vector<ChatMessage> messages;  // chat; "developer" arrives as "system"
  // Completions: always set (default 16). Chat: nullopt means "until the context is full"
  // (resolve_max_tokens() turns it into a number once the prompt is tokenized).
  std::optional<int> max_tokens;
  double temperature = 1.0;
  double top_p = 1.0;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;  // non-empty strings, at most kMaxStopStrings
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
};

// Validates one request body. Errors are 400 invalid_request_error naming the field.
ApiResult<CompletionRequest> parse_completion_request(std::string_view body, bool chat);

// Tokens to generate once the prompt's length is known: max_tokens, or for chat without
// one, what the context leaves. A prompt that leaves no room, or prompt + max_tokens over
// the context, is OpenAI's 400 "context_length_exceeded".
ApiResult<int> resolve_max_tokens(const CompletionRequest& request, int prompt_tokens,
                                  int context_length);

enum class FinishReason { kNone, kStop, kLength };  // kNone: still running (null in JSON)

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t total_tokens() const { return prompt_tokens + completion_tokens; }
};

// "cmpl-<16 hex>" or "chatcmpl-<16 hex>"; `entropy` comes from the caller's generator.
std::string make_request_id(bool chat, uint64_t entropy);

// Whole (non-streamed) responses.
nlohmann::json completion_json(std::string_view id, std::string_view model, int64_t created,
                               std::string_view text, FinishReason finish, const Usage& usage);
nlohmann::json chat_completion_json(std::string_view id, std::string_view model, int64_t created,
                                    std::string_view text, FinishReason finish, const Usage& usage);

// Stream chunks. Chat: the `first` chunk carries delta.role = "assistant"; the last one
// has a finish reason and, with no text, an empty delta.
nlohmann::json completion_chunk_json(std::string_view id, std::string_view model, int64_t created,
                                     std::string_view text, FinishReason finish);
nlohmann::json chat_chunk_json(std::string_view id, std::string_view model, int64_t created,
                               bool first, std::string_view text, FinishReason finish);
// The extra last chunk of stream_options.include_usage: no choices, only usage.
nlohmann::json usage_chunk_json(std::string_view id, std::string_view model, int64_t created,
                                bool chat, const Usage& usage);

// {"error": {"message", "type", "param", "code"}}.
nlohmann::json error_json(const ApiError& error);

// Serializes without throwing: generated text cut mid-character (it should not be, but a
// model can emit any bytes) becomes U+FFFD instead of an exception in the server.
std::string to_body(const nlohmann::json& value);
std::string sse_event(const nlohmann::json& value);  // "data: <json>\n\n"
std::string sse_done();                              // "data: [DONE]\n\n"

}  // namespace splitwise::router
