#include "workers/router/openai_api.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "workers/engine/utf8.h"

namespace splitwise::router {
namespace {

using json = nlohmann::json;
using MaybeError = std::optional<ApiError>;

ApiError invalid(std::string message, std::string param) {
  return {400, "invalid_request_error", std::move(message), std::move(param), ""};
}

// JSON's own names, which is what a client author sees in the body they sent.
std::string json_type(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return v.type_name();
}

ApiError wrong_type(const std::string& param, const std::string& expected, const json& v) {
  return invalid("invalid type for '" + param + "': expected " + expected + ", got " + json_type(v),
                 param);
}

// Integers in [lo, hi]. Integral floats (16.0, 1e3) count, as Python SDKs may send them.
MaybeError read_int(const json& v, const std::string& param, int64_t lo, int64_t hi, int64_t& out) {
  const ApiError range = invalid(
      param + " must be between " + std::to_string(lo) + " and " + std::to_string(hi), param);
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(hi)) return range;
    out = static_cast<int64_t>(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
    const double d = v.get<double>();
    // Compare as doubles first: converting an out-of-range double to int64 is undefined.
    if (d < static_cast<double>(lo) || d >= 0x1p63 || d > static_cast<double>(hi)) return range;
    out = static_cast<int64_t>(d);
  } else {
    return wrong_type(param, "an integer", v);
  }
  if (out < lo || out > hi) return range;
  return std::nullopt;
}

MaybeError read_bool(const json& v, const std::string& param, bool& out) {
  if (!v.is_boolean()) return wrong_type(param, "a boolean", v);
  out = v.get<bool>();
  return std::nullopt;
}

MaybeError read_number(const json& v, const std::string& param, double& out) {
  if (!v.is_number()) return wrong_type(param, "a number", v);
  out = v.get<double>();
  return std::nullopt;
}

MaybeError read_prompt(const json& v, CompletionRequest& r) {
  if (v.is_string()) {
    r.prompt = v.get<std::string>();
    return std::nullopt;
  }
  if (!v.is_array()) return wrong_type("prompt", "a string", v);
  if (v.size() == 1 && v[0].is_string()) {
    r.prompt = v[0].get<std::string>();
    return std::nullopt;
  }
  const bool token_ids = !v.empty() && (v[0].is_number() || v[0].is_array());
  return invalid(token_ids ? "only one prompt is supported, as text: token-id prompts are not"
                           : "only one prompt is supported (a string or an array of one string)",
                 "prompt");
}

// Content is a string, or text parts [{"type": "text", "text": ...}], joined by newlines.
MaybeError read_content(const json& v, const std::string& param, std::string& out) {
  if (v.is_string()) {
    out = v.get<std::string>();
    return std::nullopt;
  }
  if (!v.is_array()) return wrong_type(param, "a string or an array of text parts", v);
  for (size_t j = 0; j < v.size(); ++j) {
    const std::string part = param + "[" + std::to_string(j) + "]";
    if (!v[j].is_object() || v[j].value("type", json()) != "text" ||
        !v[j].value("text", json()).is_string()) {
      return invalid("only text content parts ({\"type\": \"text\", \"text\": ...}) are supported",
                     part);
    }
    out += (j ? "\n" : "") + v[j]["text"].get<std::string>();
  }
  return std::nullopt;
}

MaybeError read_messages(const json& v, CompletionRequest& r) {
  if (!v.is_array()) return wrong_type("messages", "an array", v);
  if (v.empty()) return invalid("messages must not be empty", "messages");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string param = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) return wrong_type(param, "an object", m);
    ChatMessage message;
    for (const auto& [key, value] : m.items()) {
      if (key == "role") {
        if (!value.is_string()) return wrong_type(param + ".role", "a string", value);
        message.role = value.get<std::string>();
        if (message.role == "developer") message.role = "system";  // OpenAI's newer name
        if (message.role != "system" && message.role != "user" && message.role != "assistant") {
          return invalid(
              param + ".role must be one of system, user, assistant; got '" + message.role + "'",
              param + ".role");
        }
      } else if (key == "content") {
        if (auto e = read_content(value, param + ".content", message.content)) return e;
      } else if (key != "name") {  // name only tells same-role speakers apart: ignored
        return invalid("unsupported parameter: " + param + "." + key, param + "." + key);
      }
    }
    if (!m.contains("role"))
      return invalid("missing required parameter: " + param + ".role", param + ".role");
    if (!m.contains("content"))
      return invalid("missing required parameter: " + param + ".content", param + ".content");
    r.messages.push_back(std::move(message));
  }
  return std::nullopt;
}

MaybeError read_stop(const json& v, CompletionRequest& r) {
  if (v.is_string()) {
    if (!v.get<std::string>().empty()) r.stop.push_back(v.get<std::string>());
    return std::nullopt;
  }
  if (!v.is_array()) return wrong_type("stop", "a string or an array of strings", v);
  if (v.size() > kMaxStopStrings) {
    return invalid("stop holds at most " + std::to_string(kMaxStopStrings) + " strings", "stop");
  }
  for (const json& s : v) {
    if (!s.is_string()) return wrong_type("stop", "a string or an array of strings", s);
    if (!s.get<std::string>().empty()) r.stop.push_back(s.get<std::string>());  // "" stops nothing
  }
  return std::nullopt;
}

// Parameters this server does not implement, with the value that asks for nothing.
const std::map<std::string, json>& neutral_values(bool chat) {
  static const std::map<std::string, json> common = {{"logprobs", false},
                                                     {"logit_bias", json::object()},
                                                     {"presence_penalty", 0},
                                                     {"frequency_penalty", 0}};
  static const std::map<std::string, json> completions = [] {
    auto m = common;
    m.insert({{"echo", false}, {"best_of", 1}, {"suffix", ""}});
    return m;
  }();
  static const std::map<std::string, json> chats = [] {
    auto m = common;
    m.insert({{"top_logprobs", 0},
              {"tools", json::array()},
              {"functions", json::array()},
              {"tool_choice", "none"},
              {"function_call", "none"},
              {"response_format", {{"type", "text"}}}});
    return m;
  }();
  return chat ? chats : completions;
}

MaybeError read_field(const std::string& key, const json& v, bool chat, CompletionRequest& r,
                      std::optional<int>& max_completion_tokens, bool& has_stream_options) {
  int64_t n = 0;
  if (key == "model") {
    if (!v.is_string()) return wrong_type(key, "a string", v);
    r.model = v.get<std::string>();
  } else if (key == "prompt" && !chat) {
    return read_prompt(v, r);
  } else if (key == "messages" && chat) {
    return read_messages(v, r);
  } else if (key == "max_tokens" || (key == "max_completion_tokens" && chat)) {
    if (auto e = read_int(v, key, 1, std::numeric_limits<int32_t>::max(), n)) return e;
    (key == "max_tokens" ? r.max_tokens : max_completion_tokens) = static_cast<int>(n);
  } else if (key == "temperature") {
    if (auto e = read_number(v, key, r.temperature)) return e;
    if (r.temperature < 0 || r.temperature > 2)
      return invalid("temperature must be between 0 and 2", key);
  } else if (key == "top_p") {
    if (auto e = read_number(v, key, r.top_p)) return e;
    if (!(r.top_p > 0 && r.top_p <= 1))
      return invalid("top_p must be greater than 0 and at most 1", key);
  } else if (key == "seed") {
    if (auto e = read_int(v, key, std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), n))
      return e;
    r.seed = n;
  } else if (key == "stop") {
    return read_stop(v, r);
  } else if (key == "stream") {
    return read_bool(v, key, r.stream);
  } else if (key == "stream_options") {
    if (!v.is_object()) return wrong_type(key, "an object", v);
    has_stream_options = true;
    for (const auto& [k, x] : v.items()) {
      if (k != "include_usage")
        return invalid("unknown parameter: stream_options." + k, "stream_options." + k);
      if (!x.is_null()) {
        if (auto e = read_bool(x, "stream_options.include_usage", r.include_usage)) return e;
      }
    }
  } else if (key == "n") {
    if (auto e = read_int(v, key, 1, 1, n)) {
      return e->message.starts_with("invalid type")
                 ? e
                 : invalid("n must be 1: one choice per request is supported", key);
    }
  } else if (key == "user") {
    if (!v.is_string()) return wrong_type(key, "a string", v);  // an end-user id: unused
  } else if (const auto& neutral = neutral_values(chat); neutral.count(key)) {
    if (v != neutral.at(key)) return invalid("unsupported parameter: " + key, key);
  } else {
    return invalid("unknown parameter: " + key, key);
  }
  return std::nullopt;
}

// Position of the first byte that is not part of well-formed UTF-8, or npos.
size_t first_invalid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const engine::utf8::Decoded d = engine::utf8::decode_at(s, pos);
    if (d.step != engine::utf8::Step::kChar) return pos;
    pos += d.length;
  }
  return std::string_view::npos;
}

json finish_json(FinishReason f) {
  return f == FinishReason::kNone ? json(nullptr)
                                  : json(f == FinishReason::kStop ? "stop" : "length");
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.total_tokens()}};
}

json envelope(std::string_view id, std::string_view object, std::string_view model, int64_t created,
              json choice) {
  return {{"id", id},
          {"object", object},
          {"created", created},
          {"model", model},
          {"choices", choice.is_null() ? json::array() : json::array({std::move(choice)})}};
}

}  // namespace

ApiResult<CompletionRequest> parse_completion_request(std::string_view body, bool chat) {
  if (const size_t bad = first_invalid_utf8(body); bad != std::string_view::npos) {
    return invalid("request body is not valid UTF-8 (byte " + std::to_string(bad) + ")", "");
  }
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 9: ...".
    const std::string what = e.what();
    const size_t at = what.find("] ");
    return invalid("invalid JSON body: " + (at == std::string::npos ? what : what.substr(at + 2)),
                   "");
  }
  if (!doc.is_object()) return invalid("request body must be a JSON object", "");

  CompletionRequest r;
  r.chat = chat;
  std::optional<int> max_completion_tokens;
  bool has_stream_options = false;
  for (const auto& [key, value] : doc.items()) {
    if (value.is_null()) continue;  // null means "not given" for every optional field
    if (auto e = read_field(key, value, chat, r, max_completion_tokens, has_stream_options))
      return *e;
  }

  const char* required = chat ? "messages" : "prompt";
  if (!doc.contains(required) || doc[required].is_null()) {
    return invalid(std::string("missing required parameter: ") + required, required);
  }
  if (max_completion_tokens) {
    if (r.max_tokens && *r.max_tokens != *max_completion_tokens) {
      return invalid("max_tokens and max_completion_tokens disagree; set only one",
                     "max_completion_tokens");
    }
    r.max_tokens = max_completion_tokens;
  }
  if (!chat && !r.max_tokens) r.max_tokens = kDefaultCompletionMaxTokens;
  if (has_stream_options && !r.stream) {
    return invalid("stream_options is only allowed when stream is true", "stream_options");
  }
  return r;
}

ApiResult<int> resolve_max_tokens(const CompletionRequest& request, int prompt_tokens,
                                  int context_length) {
  const std::string where = request.chat ? "messages" : "prompt";
  const std::string limit =
      "This model's maximum context length is " + std::to_string(context_length) + " tokens. ";
  ApiError error = invalid("", where);
  error.code = "context_length_exceeded";
  if (prompt_tokens >= context_length) {
    error.message =
        limit + "However, your " + where + " resulted in " + std::to_string(prompt_tokens) +
        " tokens, which leaves no room for a completion. Please reduce the length of the " + where +
        ".";
    return error;
  }
  if (!request.max_tokens) return context_length - prompt_tokens;
  const int64_t total = int64_t{prompt_tokens} + *request.max_tokens;
  if (total > context_length) {
    error.message = limit + "However, you requested " + std::to_string(total) + " tokens (" +
                    std::to_string(prompt_tokens) + " in the " + where + ", " +
                    std::to_string(*request.max_tokens) +
                    " in the completion). Please reduce the length of the " + where +
                    " or completion.";
    return error;
  }
  return *request.max_tokens;
}

std::string make_request_id(bool chat, uint64_t entropy) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(entropy));
  return std::string(chat ? "chatcmpl-" : "cmpl-") + hex;
}

json completion_json(std::string_view id, std::string_view model, int64_t created,
                     std::string_view text, FinishReason finish, const Usage& usage) {
  json out = envelope(id, "text_completion", model, created,
                      {{"index", 0},
                       {"text", text},
                       {"logprobs", nullptr},
                       {"finish_reason", finish_json(finish)}});
  out["usage"] = usage_json(usage);
  return out;
}

json chat_completion_json(std::string_view id, std::string_view model, int64_t created,
                          std::string_view text, FinishReason finish, const Usage& usage) {
  json out = envelope(id, "chat.completion", model, created,
                      {{"index", 0},
                       {"message", {{"role", "assistant"}, {"content", text}}},
                       {"logprobs", nullptr},
                       {"finish_reason", finish_json(finish)}});
  out["usage"] = usage_json(usage);
  return out;
}

json completion_chunk_json(std::string_view id, std::string_view model, int64_t created,
                           std::string_view text, FinishReason finish) {
  return envelope(id, "text_completion", model, created,
                  {{"index", 0},
                   {"text", text},
                   {"logprobs", nullptr},
                   {"finish_reason", finish_json(finish)}});
}

json chat_chunk_json(std::string_view id, std::string_view model, int64_t created, bool first,
                     std::string_view text, FinishReason finish) {
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  // The closing chunk carries only the finish reason: an empty delta, as OpenAI sends.
  if (first || !text.empty() || finish == FinishReason::kNone) delta["content"] = text;
  return envelope(id, "chat.completion.chunk", model, created,
                  {{"index", 0},
                   {"delta", std::move(delta)},
                   {"logprobs", nullptr},
                   {"finish_reason", finish_json(finish)}});
}

json usage_chunk_json(std::string_view id, std::string_view model, int64_t created, bool chat,
                      const Usage& usage) {
  json out =
      envelope(id, chat ? "chat.completion.chunk" : "text_completion", model, created, nullptr);
  out["usage"] = usage_json(usage);
  return out;
}

json error_json(const ApiError& error) {
  const auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return {{"error",
           {{"message", error.message},
            {"type", error.type},
            {"param", or_null(error.param)},
            {"code", or_null(error.code)}}}};
}

std::string to_body(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& value) { return "data: " + to_body(value) + "\n\n"; }

std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace splitwise::router
