// Chat messages -> prompt text. Models ship a Jinja chat template (tokenizer_config.json
// "chat_template"); this runs the subset that Llama-2/3 and ChatML style templates use,
// and refuses anything else up front so the caller can fall back instead of rendering a
// prompt the model was not trained on.
//
// Supported: text, {{ expr }}, {% if/elif/else/endif %}, {% for x in expr %} with loop.
// index0/index/first/last/length, {% set name = expr %} (scoped to the loop
// iteration, as in Jinja), {# comments #}, whitespace control {%- -%} {{- -}}, and HF's
// trim_blocks + lstrip_blocks. Expressions: string/integer/true/false/none literals, list
// literals, variables, x.attr, x['key'], x[i], x[a:b], + - * // % ~, == != < > <= >=,
// in / not in, and/or/not, `a if c else b`, is [not] defined/undefined/none/string,
// filters trim/length, methods strip/lstrip/rstrip, raise_exception().
// Anything else (macro, namespace, tojson, loop filters, ...) fails compile() with
// "unsupported chat template construct: X".
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workers/engine/status.h"

namespace splitwise::router {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatTemplateOptions {
  std::string bos_token;
  std::string eos_token;
  bool add_generation_prompt = true;  // end with the assistant header, ready to generate
};

class ChatTemplate {
 public:
  // Parses `source` and walks every branch once without output, so a syntax error or an
  // unsupported construct anywhere (even in a branch a given chat never takes) is found
  // here, at model load, not on some later request.
  static Result<ChatTemplate> compile(std::string_view source);

  // Thread-safe: a compiled template is immutable. Errors are the template's own
  // raise_exception() messages (the conversation breaks the model's rules: answer the
  // client 400, do not fall back) or value errors in the template.
  Result<std::string> render(std::span<const ChatMessage> messages,
                             const ChatTemplateOptions& options) const;

  struct Token;

 private:
  explicit ChatTemplate(std::shared_ptr<const std::vector<Token>> tokens)
      : tokens_(std::move(tokens)) {}
  std::shared_ptr<const std::vector<Token>> tokens_;
};

// The format used when a model has no usable template: every message as
// "<role>: <content>\n", then "assistant:" to prompt the reply. Plain enough for base
// models to continue; chat-tuned models want their own template.
std::string render_fallback(std::span<const ChatMessage> messages);

// With a template: compile() + render(); without one: render_fallback(). Templates
// usually emit bos_token themselves, so encode the result without adding another BOS.
Result<std::string> render_chat(std::span<const ChatMessage> messages,
                                const std::optional<std::string>& template_source,
                                const ChatTemplateOptions& options = {});

}  // namespace splitwise::router
