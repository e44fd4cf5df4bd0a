// Chat templates: the Llama-2, Llama-3 and ChatML shapes real models ship, written here
// in their tokenizer_config.json form. Expected strings come from Jinja2 3.1 itself with
// trim_blocks and lstrip_blocks on, the way Hugging Face renders chat templates.
#include "workers/router/chat_template.h"

#include <gtest/gtest.h>

#include <vector>

namespace splitwise::router {
namespace {

const char* kLlama3 =
    R"J({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})J";

const char* kChatMl = R"J({%- for message in messages %}
    {%- if loop.first and message.role != 'system' %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)J";

const char* kLlama2 =
    R"J({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})J";

// Whitespace control, comments, operators, filters, slices and scoping in one place.
const char* kFeatures = R"J({# a comment #}
{% for m in messages %}
  {% if m.role == 'user' %}
U:{{ m.content }}
  {% elif m.role == 'assistant' -%}
    A: {{ m.content -}}   
  {% else %}
S={{ m.content }}
  {% endif %}
{% endfor %}
{{- '[' ~ messages|length ~ ']' }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ messages[-1].role }} {{ messages[5] is defined }}
{% if messages[0].content.strip() in ['hi', 'yo'] and not add_generation_prompt is none %}in{% endif %}
{{ 'x' if messages|length > 2 else 'y' }}|{{ ('a' if false) }}|{{ missing or 'dflt' }}|{{ 'q' and 3 }}|{{ messages[1:2][0].content|trim }}|{{ 'abcdef'[1:-2] }}
{% set outer = 1 %}{% for m in messages %}{% set outer = 2 %}{% endfor %}{{ outer }}{# loop scope #}
)J";

const ChatTemplateOptions kOptions{.bos_token = "<s>", .eos_token = "</s>"};

const std::vector<ChatMessage> kSysUser = {{"system", "You are helpful."},
                                           {"user", "  Hi there \n"}};
const std::vector<ChatMessage> kConv = {
    {"system", "Be brief."}, {"user", "Hello"}, {"assistant", " Hi! "}, {"user", "Bye"}};
const std::vector<ChatMessage> kUserOnly = {{"user", "Hello"}};

std::string render_ok(const char* source, const std::vector<ChatMessage>& messages,
                      bool add_generation_prompt = true) {
  Result<ChatTemplate> t = ChatTemplate::compile(source);
  EXPECT_TRUE(t.ok()) << t.status().message();
  if (!t.ok()) return "";
  ChatTemplateOptions options = kOptions;
  options.add_generation_prompt = add_generation_prompt;
  Result<std::string> out = t->render(messages, options);
  EXPECT_TRUE(out.ok()) << out.status().message();
  return out.ok() ? out.value() : "";
}

std::string compile_error(const std::string& source) {
  Result<ChatTemplate> t = ChatTemplate::compile(source);
  return t.ok() ? "(compiled)" : t.status().message();
}

std::string render_error(const std::string& source, const std::vector<ChatMessage>& messages) {
  Result<ChatTemplate> t = ChatTemplate::compile(source);
  if (!t.ok()) return "compile: " + t.status().message();
  Result<std::string> out = t->render(messages, kOptions);
  return out.ok() ? "(rendered)" : out.status().message();
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render_ok(kLlama3, kSysUser),
            "<s><|start_header_id|>system<|end_header_id|>\n\nYou are "
            "helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi "
            "there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_ok(kLlama3, kConv, /*add_generation_prompt=*/false),
            "<s><|start_header_id|>system<|end_header_id|>\n\nBe "
            "brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>user<|end_"
            "header_id|>\n\nBye<|eot_id|>");
}

TEST(ChatTemplate, ChatMl) {
  EXPECT_EQ(render_ok(kChatMl, kUserOnly),
            "<|im_start|>system\nYou are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_ok(kChatMl, kConv),
            "<|im_start|>system\nBe "
            "brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n Hi! "
            "<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama2) {
  EXPECT_EQ(
      render_ok(kLlama2, kConv),
      "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi! </s><s>[INST] Bye [/INST]");
  EXPECT_EQ(render_ok(kLlama2, kSysUser),
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\n  Hi there [/INST]");
  EXPECT_EQ(render_ok(kLlama2, kUserOnly, false), "<s>[INST] Hello [/INST]");
}

TEST(ChatTemplate, RaiseExceptionFailsTheRender) {
  const std::vector<ChatMessage> twice = {{"user", "a"}, {"user", "b"}};
  EXPECT_EQ(render_error(kLlama2, twice),
            "chat template: Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplate, WhitespaceControlOperatorsAndScoping) {
  EXPECT_EQ(render_ok(kFeatures, kConv),
            "S=Be brief.\nU:Hello\nA:  Hi! U:Bye\n[4] 3 -4 2 user False\nx||dflt|3|Hello|bcd\n1");
  EXPECT_EQ(render_ok(kFeatures, {{"user", " hi "}, {"assistant", "yes"}, {"system", "s"}}),
            "U: hi \nA: yesS=s\n[3] 3 -4 2 system False\ninx||dflt|3|yes|bcd\n1");
  EXPECT_EQ(
      render_ok(kFeatures, kSysUser),
      "S=You are helpful.\nU:  Hi there \n\n[2] 3 -4 2 user False\ny||dflt|3|Hi there|bcd\n1");
}

TEST(ChatTemplate, ReadingIntoUndefinedIsAnErrorPrintingItIsNot) {
  EXPECT_EQ(render_ok("[{{ missing }}]", kUserOnly), "[]");
  EXPECT_EQ(render_error("{{ missing.attr }}", kUserOnly),
            "chat template: cannot read attr of an undefined value at byte 16");
  EXPECT_EQ(render_error("{{ messages[1:2][0].content }}", kUserOnly).substr(0, 38),
            "chat template: cannot read content of ");
  // Only on the path taken: the same read in an untaken branch is fine.
  EXPECT_EQ(render_ok("{% if false %}{{ missing.attr }}{% endif %}ok", kUserOnly), "ok");
}

TEST(ChatTemplate, ValueErrors) {
  EXPECT_NE(render_error("{{ 'a' + 1 }}", kUserOnly).find("cannot apply + to string and number"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 1 % 0 }}", kUserOnly).find("division by zero"), std::string::npos);
  EXPECT_NE(
      render_error("{% for c in 'abc' %}{% endfor %}", kUserOnly).find("cannot loop over string"),
      std::string::npos);
}

TEST(ChatTemplate, UnsupportedConstructsFailAtCompileEvenInUntakenBranches) {
  const std::string prefix = "chat template: unsupported chat template construct: ";
  EXPECT_EQ(compile_error("{% macro f() %}{% endmacro %}"), prefix + "{% macro %}");
  EXPECT_EQ(compile_error("{% if false %}{{ messages | tojson }}{% endif %}"),
            prefix + "filter tojson");
  EXPECT_EQ(compile_error("{% set ns = namespace(found=false) %}"),
            prefix + "function namespace()");
  EXPECT_EQ(compile_error("{% set ns.found = true %}"), prefix + "{% set ns. %}");
  EXPECT_EQ(compile_error("{% for k, v in x %}{% endfor %}"), prefix + "for loop over k,");
  EXPECT_EQ(compile_error("{% for m in messages if m.role %}{% endfor %}"), prefix + "for ... if");
  EXPECT_EQ(compile_error("{% for m in messages %}{% else %}{% endfor %}"),
            prefix + "{% for %} ... {% else %}");
  EXPECT_EQ(compile_error("{{ x.split('a') }}"), prefix + "method .split()");
  EXPECT_EQ(compile_error("{{ x is divisibleby(3) }}"), prefix + "test divisibleby");
  EXPECT_EQ(compile_error("{{ {'a': 1} }}"), prefix + "dict literal");
  EXPECT_EQ(compile_error("{{ 1.5 }}"),
            "chat template: unsupported chat template construct: number at byte 3");
  EXPECT_EQ(compile_error("{{ 3 / 2 }}"), prefix + "operator / (floats)");
  EXPECT_EQ(compile_error("{{ x[::2] }}"), prefix + "slice step");
  EXPECT_EQ(compile_error("{% generation %}{% endgeneration %}"), prefix + "{% generation %}");
}

TEST(ChatTemplate, SyntaxErrorsNameThePlace) {
  EXPECT_EQ(compile_error("{% if x %}a"), "chat template: missing {% endif %} at byte 11");
  EXPECT_EQ(compile_error("{% endfor %}"), "chat template: unexpected {% endfor %} at byte 3");
  EXPECT_EQ(compile_error("{{ 'abc }}"), "chat template: unclosed string at byte 3");
  EXPECT_EQ(compile_error("{{ x "), "chat template: unclosed tag at byte 0");
  EXPECT_EQ(compile_error("{# note"), "chat template: unclosed tag at byte 0");
  EXPECT_EQ(compile_error("{{ x y }}"), "chat template: expected the end of the tag at byte 5");
  EXPECT_EQ(compile_error("{{ x @ y }}"), "chat template: unexpected character at byte 5");
  EXPECT_EQ(compile_error("{{ }}"), "chat template: expected an expression at byte 3");
}

TEST(ChatTemplate, FallbackFormat) {
  EXPECT_EQ(render_fallback(kConv),
            "system: Be brief.\nuser: Hello\nassistant:  Hi! \nuser: Bye\nassistant:");
  EXPECT_EQ(render_fallback({}), "assistant:");
  Result<std::string> out = render_chat(kUserOnly, std::nullopt);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out.value(), "user: Hello\nassistant:");
}

TEST(ChatTemplate, RenderChatUsesTheTemplateAndReportsItsErrors) {
  Result<std::string> out = render_chat(kUserOnly, std::string(kChatMl), kOptions);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out.value(),
            "<|im_start|>system\nYou are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  out = render_chat(kUserOnly, std::string("{% macro x %}"));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("unsupported chat template construct"), std::string::npos);
}

}  // namespace
}  // namespace splitwise::router
