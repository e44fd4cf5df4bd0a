// Request validation (every accepted shape and every 400) and the exact response shapes
// OpenAI clients parse.
#include "workers/router/openai_api.h"

#include <gtest/gtest.h>

#include <string>

namespace splitwise::router {
namespace {

using json = nlohmann::json;

CompletionRequest ok(const std::string& body, bool chat = false) {
  ApiResult<CompletionRequest> r = parse_completion_request(body, chat);
  EXPECT_TRUE(r.ok()) << body << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : CompletionRequest{};
}

ApiError bad(const std::string& body, bool chat = false) {
  ApiResult<CompletionRequest> r = parse_completion_request(body, chat);
  EXPECT_FALSE(r.ok()) << body;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().http_status, 400);
  EXPECT_EQ(r.error().type, "invalid_request_error");
  return r.error();
}

// The message of the error a completions body gets, with its param checked.
std::string bad_message(const std::string& body, const std::string& param, bool chat = false) {
  const ApiError e = bad(body, chat);
  EXPECT_EQ(e.param, param) << body;
  return e.message;
}

const std::string kChatUser = R"("messages": [{"role": "user", "content": "hi"}])";

TEST(OpenAiApi, CompletionDefaults) {
  const CompletionRequest r = ok(R"({"prompt": "Once upon"})");
  EXPECT_FALSE(r.chat);
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.prompt, "Once upon");
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_EQ(r.temperature, 1.0);
  EXPECT_EQ(r.top_p, 1.0);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
}

TEST(OpenAiApi, CompletionEveryField) {
  const CompletionRequest r = ok(R"({
    "model": "llama", "prompt": ["Once upon"], "max_tokens": 5, "temperature": 0,
    "top_p": 0.5, "seed": -42, "stop": ["\n", "", "THE END"], "stream": true,
    "stream_options": {"include_usage": true}, "n": 1, "user": "u-1",
    "logprobs": null, "echo": false, "best_of": 1, "presence_penalty": 0,
    "frequency_penalty": 0.0, "logit_bias": {}, "suffix": null})");
  EXPECT_EQ(r.model, "llama");
  EXPECT_EQ(r.prompt, "Once upon");
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.temperature, 0.0);
  EXPECT_EQ(r.top_p, 0.5);
  EXPECT_EQ(r.seed, -42);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "THE END"}));  // "" stops nothing
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(OpenAiApi, ChatMessages) {
  const CompletionRequest r = ok(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "name": "ann", "content": [{"type": "text", "text": "a"},
                                                  {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": ""}]})",
                                 /*chat=*/true);
  EXPECT_TRUE(r.chat);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_FALSE(r.max_tokens.has_value());  // chat: until the context is full
}

TEST(OpenAiApi, ChatMaxCompletionTokens) {
  EXPECT_EQ(ok("{" + kChatUser + R"(, "max_completion_tokens": 7})", true).max_tokens, 7);
  EXPECT_EQ(ok("{" + kChatUser + R"(, "max_tokens": 9})", true).max_tokens, 9);
  EXPECT_EQ(
      ok("{" + kChatUser + R"(, "max_tokens": 7, "max_completion_tokens": 7})", true).max_tokens,
      7);
  EXPECT_EQ(bad_message("{" + kChatUser + R"(, "max_tokens": 7, "max_completion_tokens": 8})",
                        "max_completion_tokens", true),
            "max_tokens and max_completion_tokens disagree; set only one");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "max_completion_tokens": 7})", "max_completion_tokens"),
            "unknown parameter: max_completion_tokens");
}

TEST(OpenAiApi, MaxTokensRange) {
  const std::string range = "max_tokens must be between 1 and 2147483647";
  for (const char* v : {"0", "-1", "1000000000000", "2147483648", "1e12", "99999999999999999999999",
                        "18446744073709551615"}) {
    EXPECT_EQ(bad_message(std::string(R"({"prompt": "x", "max_tokens": )") + v + "}", "max_tokens"),
              range)
        << v;
  }
  EXPECT_EQ(ok(R"({"prompt": "x", "max_tokens": 2147483647})").max_tokens, 2147483647);
  EXPECT_EQ(ok(R"({"prompt": "x", "max_tokens": 16.0})").max_tokens, 16);
  EXPECT_EQ(bad_message(R"({"prompt": "x", "max_tokens": 16.5})", "max_tokens"),
            "invalid type for 'max_tokens': expected an integer, got number");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "max_tokens": "16"})", "max_tokens"),
            "invalid type for 'max_tokens': expected an integer, got string");
}

TEST(OpenAiApi, SamplingRanges) {
  EXPECT_EQ(ok(R"({"prompt": "x", "temperature": 2})").temperature, 2.0);
  for (const char* v : {"2.01", "-0.1"}) {
    EXPECT_EQ(
        bad_message(std::string(R"({"prompt": "x", "temperature": )") + v + "}", "temperature"),
        "temperature must be between 0 and 2");
  }
  EXPECT_EQ(bad_message(R"({"prompt": "x", "temperature": "hot"})", "temperature"),
            "invalid type for 'temperature': expected a number, got string");
  EXPECT_EQ(ok(R"({"prompt": "x", "top_p": 1})").top_p, 1.0);
  for (const char* v : {"0", "1.01", "-1"}) {
    EXPECT_EQ(bad_message(std::string(R"({"prompt": "x", "top_p": )") + v + "}", "top_p"),
              "top_p must be greater than 0 and at most 1");
  }
  EXPECT_EQ(ok(R"({"prompt": "x", "seed": 9223372036854775807})").seed, INT64_MAX);
  EXPECT_EQ(bad_message(R"({"prompt": "x", "seed": 9223372036854775808})", "seed"),
            "seed must be between -9223372036854775808 and 9223372036854775807");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "seed": 1.5})", "seed"),
            "invalid type for 'seed': expected an integer, got number");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "n": 2})", "n"),
            "n must be 1: one choice per request is supported");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "n": "1"})", "n"),
            "invalid type for 'n': expected an integer, got string");
}

TEST(OpenAiApi, Stop) {
  EXPECT_EQ(ok(R"({"prompt": "x", "stop": "\n\n"})").stop, std::vector<std::string>{"\n\n"});
  EXPECT_TRUE(ok(R"({"prompt": "x", "stop": ""})").stop.empty());
  EXPECT_EQ(ok(R"({"prompt": "x", "stop": ["a", "b", "c", "d"]})").stop.size(), 4u);
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"),
            "stop holds at most 4 strings");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stop": ["a", 1]})", "stop"),
            "invalid type for 'stop': expected a string or an array of strings, got integer");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stop": 3})", "stop"),
            "invalid type for 'stop': expected a string or an array of strings, got integer");
}

TEST(OpenAiApi, StreamOptions) {
  EXPECT_FALSE(ok(R"({"prompt": "x", "stream": true, "stream_options": {}})").include_usage);
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stream_options": {"include_usage": true}})",
                        "stream_options"),
            "stream_options is only allowed when stream is true");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stream": true, "stream_options": {"x": 1}})",
                        "stream_options.x"),
            "unknown parameter: stream_options.x");
  EXPECT_EQ(
      bad_message(R"({"prompt": "x", "stream": true, "stream_options": true})", "stream_options"),
      "invalid type for 'stream_options': expected an object, got boolean");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "stream": "yes"})", "stream"),
            "invalid type for 'stream': expected a boolean, got string");
}

TEST(OpenAiApi, PromptShapes) {
  const std::string one = "only one prompt is supported (a string or an array of one string)";
  EXPECT_EQ(bad_message(R"({"prompt": ["a", "b"]})", "prompt"), one);
  EXPECT_EQ(bad_message(R"({"prompt": []})", "prompt"), one);
  for (const char* tokens : {R"({"prompt": [1, 2, 3]})", R"({"prompt": [[1, 2]]})"}) {
    EXPECT_EQ(bad_message(tokens, "prompt"),
              "only one prompt is supported, as text: token-id prompts are not");
  }
  EXPECT_EQ(bad_message(R"({"prompt": 5})", "prompt"),
            "invalid type for 'prompt': expected a string, got integer");
  EXPECT_EQ(bad_message(R"({"model": "m"})", "prompt"), "missing required parameter: prompt");
  EXPECT_EQ(bad_message(R"({"prompt": null})", "prompt"), "missing required parameter: prompt");
  EXPECT_EQ(ok(R"({"prompt": ""})").prompt, "");
}

TEST(OpenAiApi, MessageShapes) {
  const auto chat_bad = [](const std::string& messages, const std::string& param) {
    return bad_message(R"({"messages": )" + messages + "}", param, true);
  };
  EXPECT_EQ(chat_bad("[]", "messages"), "messages must not be empty");
  EXPECT_EQ(chat_bad(R"("hi")", "messages"),
            "invalid type for 'messages': expected an array, got string");
  EXPECT_EQ(chat_bad(R"(["hi"])", "messages[0]"),
            "invalid type for 'messages[0]': expected an object, got string");
  EXPECT_EQ(chat_bad(R"([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])",
                     "messages[1].role"),
            "messages[1].role must be one of system, user, assistant; got 'tool'");
  EXPECT_EQ(chat_bad(R"([{"role": 1, "content": "a"}])", "messages[0].role"),
            "invalid type for 'messages[0].role': expected a string, got integer");
  EXPECT_EQ(chat_bad(R"([{"role": "user"}])", "messages[0].content"),
            "missing required parameter: messages[0].content");
  EXPECT_EQ(chat_bad(R"([{"content": "a"}])", "messages[0].role"),
            "missing required parameter: messages[0].role");
  EXPECT_EQ(chat_bad(R"([{"role": "user", "content": 5}])", "messages[0].content"),
            "invalid type for 'messages[0].content': expected a string or an array of text "
            "parts, got integer");
  EXPECT_EQ(chat_bad(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])",
                     "messages[0].content[0]"),
            R"(only text content parts ({"type": "text", "text": ...}) are supported)");
  EXPECT_EQ(chat_bad(R"([{"role": "assistant", "content": "", "tool_calls": []}])",
                     "messages[0].tool_calls"),
            "unsupported parameter: messages[0].tool_calls");
  EXPECT_EQ(bad_message(R"({"model": "m"})", "messages", true),
            "missing required parameter: messages");
}

TEST(OpenAiApi, UnsupportedParametersAreNamed) {
  for (const char* field : {R"("logprobs": 5)", R"("echo": true)", R"("best_of": 2)",
                            R"("logit_bias": {"50256": -100})", R"("presence_penalty": 0.5)",
                            R"("frequency_penalty": -1)", R"("suffix": "end")"}) {
    const std::string body = std::string(R"({"prompt": "x", )") + field + "}";
    const std::string name = json::parse(std::string("{") + field + "}").begin().key();
    EXPECT_EQ(bad_message(body, name), "unsupported parameter: " + name) << body;
  }
  for (const char* field :
       {R"("logprobs": true)", R"("top_logprobs": 2)", R"("tools": [{"type": "function"}])",
        R"("functions": [{}])", R"("tool_choice": "auto")", R"("function_call": "auto")",
        R"("response_format": {"type": "json_object"})"}) {
    const std::string body = "{" + kChatUser + ", " + field + "}";
    const std::string name = json::parse(std::string("{") + field + "}").begin().key();
    EXPECT_EQ(bad_message(body, name, true), "unsupported parameter: " + name) << body;
  }
  // What SDKs send by default asks for nothing, and passes.
  ok("{" + kChatUser +
         R"(, "logprobs": false, "top_logprobs": 0, "tools": [], "tool_choice": "none",
         "response_format": {"type": "text"}, "presence_penalty": 0, "logit_bias": null})",
     true);
}

TEST(OpenAiApi, UnknownParametersAreNamed) {
  EXPECT_EQ(bad_message(R"({"prompt": "x", "temprature": 1})", "temprature"),
            "unknown parameter: temprature");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "messages": []})", "messages"),
            "unknown parameter: messages");
  EXPECT_EQ(bad_message("{" + kChatUser + R"(, "prompt": "x"})", "prompt", true),
            "unknown parameter: prompt");
  EXPECT_EQ(bad_message("{" + kChatUser + R"(, "echo": false})", "echo", true),
            "unknown parameter: echo");
  EXPECT_EQ(bad_message(R"({"prompt": "x", "model": 5})", "model"),
            "invalid type for 'model': expected a string, got integer");
}

TEST(OpenAiApi, MalformedBodies) {
  EXPECT_EQ(bad_message(R"({"prompt": )", ""),
            "invalid JSON body: parse error at line 1, column 12: syntax error while parsing value "
            "- unexpected end of input; expected '[', '{', or a literal");
  EXPECT_NE(bad_message("{\n\"prompt\": \"x\",,}", "").find("at line 2, column 15"),
            std::string::npos);
  EXPECT_EQ(bad_message("", "").rfind("invalid JSON body: parse error at line 1, column 1", 0), 0u);
  EXPECT_EQ(bad_message("[1]", ""), "request body must be a JSON object");
  EXPECT_EQ(bad_message("{\"prompt\": \"ab\xFF\"}", ""),
            "request body is not valid UTF-8 (byte 14)");
  EXPECT_EQ(bad_message("{\"prompt\": \"\xE6\x97\"}", ""),
            "request body is not valid UTF-8 (byte 12)");
  // A lone surrogate escape is not a character either.
  EXPECT_NE(bad_message(R"({"prompt": "\ud800"})", "").find("surrogate"), std::string::npos);
  EXPECT_EQ(ok("{\"prompt\": \"caf\xC3\xA9 \\u00e9\"}").prompt, "caf\xC3\xA9 \xC3\xA9");
}

TEST(OpenAiApi, DeepNestingNeitherCrashesNorPasses) {
  const int depth = 200000;
  EXPECT_FALSE(parse_completion_request(std::string(depth, '['), false).ok());
  const std::string nested = std::string(depth, '[') + std::string(depth, ']');
  EXPECT_EQ(bad_message(R"({"prompt": "x", "extra": )" + nested + "}", "extra"),
            "unknown parameter: extra");
}

TEST(OpenAiApi, ResolveMaxTokens) {
  const CompletionRequest completion = ok(R"({"prompt": "x"})");
  ApiResult<int> r = resolve_max_tokens(completion, 10, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 16);
  r = resolve_max_tokens(completion, 90, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "context_length_exceeded");
  EXPECT_EQ(r.error().param, "prompt");
  EXPECT_EQ(r.error().message,
            "This model's maximum context length is 100 tokens. However, you requested 106 tokens "
            "(90 in the prompt, 16 in the completion). Please reduce the length of the prompt or "
            "completion.");

  const CompletionRequest chat = ok("{" + kChatUser + "}", true);
  r = resolve_max_tokens(chat, 30, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 70);
  r = resolve_max_tokens(chat, 100, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().param, "messages");
  EXPECT_NE(r.error().message.find("your messages resulted in 100 tokens"), std::string::npos);
}

TEST(OpenAiApi, RequestIds) {
  EXPECT_EQ(make_request_id(false, 0xabc), "cmpl-0000000000000abc");
  EXPECT_EQ(make_request_id(true, ~uint64_t{0}), "chatcmpl-ffffffffffffffff");
}

TEST(OpenAiApi, WholeResponses) {
  const Usage usage{.prompt_tokens = 5, .completion_tokens = 3};
  EXPECT_EQ(completion_json("cmpl-1", "m", 1700000000, "Hello", FinishReason::kLength, usage),
            json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
              "model": "m", "choices": [{"index": 0, "text": "Hello", "logprobs": null,
              "finish_reason": "length"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})"));
  EXPECT_EQ(chat_completion_json("chatcmpl-1", "m", 7, "Hi!", FinishReason::kStop, usage),
            json::parse(R"({"id": "chatcmpl-1", "object": "chat.completion", "created": 7,
              "model": "m", "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Hi!"}}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})"));
}

TEST(OpenAiApi, StreamChunks) {
  const auto choice = [](const json& chunk) { return chunk["choices"][0]; };
  json c = completion_chunk_json("cmpl-1", "m", 7, "He", FinishReason::kNone);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(choice(c), json::parse(R"({"index": 0, "text": "He", "logprobs": null,
                                       "finish_reason": null})"));
  EXPECT_EQ(
      choice(completion_chunk_json("cmpl-1", "m", 7, "", FinishReason::kStop))["finish_reason"],
      "stop");

  c = chat_chunk_json("chatcmpl-1", "m", 7, /*first=*/true, "", FinishReason::kNone);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["id"], "chatcmpl-1");
  EXPECT_EQ(choice(c)["delta"], json::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_EQ(choice(c)["finish_reason"], nullptr);
  c = chat_chunk_json("chatcmpl-1", "m", 7, false, "lo", FinishReason::kNone);
  EXPECT_EQ(choice(c)["delta"], json::parse(R"({"content": "lo"})"));
  c = chat_chunk_json("chatcmpl-1", "m", 7, false, "", FinishReason::kLength);
  EXPECT_EQ(choice(c)["delta"], json::object());
  EXPECT_EQ(choice(c)["finish_reason"], "length");
  c = chat_chunk_json("chatcmpl-1", "m", 7, false, "!", FinishReason::kStop);
  EXPECT_EQ(choice(c)["delta"], json::parse(R"({"content": "!"})"));

  c = usage_chunk_json("chatcmpl-1", "m", 7, true, {.prompt_tokens = 2, .completion_tokens = 1});
  EXPECT_EQ(c["choices"], json::array());
  EXPECT_EQ(c["usage"]["total_tokens"], 3);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(usage_chunk_json("cmpl-1", "m", 7, false, {})["object"], "text_completion");
}

TEST(OpenAiApi, SseFraming) {
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // Bytes that are not UTF-8 must not throw out of the server.
  const json chunk = completion_chunk_json("cmpl-1", "m", 7, "a\xE6\x97", FinishReason::kNone);
  EXPECT_NE(sse_event(chunk).find("a\xEF\xBF\xBD"), std::string::npos);
}

TEST(OpenAiApi, ErrorShape) {
  EXPECT_EQ(error_json(bad(R"({"prompt": "x", "n": 3})")),
            json::parse(R"({"error": {"message": "n must be 1: one choice per request is supported",
                            "type": "invalid_request_error", "param": "n", "code": null}})"));
  ApiError e{
      .http_status = 503, .type = "server_error", .message = "busy", .param = "", .code = ""};
  EXPECT_EQ(to_body(error_json(e)),
            R"({"error":{"code":null,"message":"busy","param":null,"type":"server_error"}})");
}

}  // namespace
}  // namespace splitwise::router
