// A single-pass Jinja subset: the source is lexed once into tokens, and rendering walks
// the tokens directly (no syntax tree). Untaken branches are walked with output and
// value errors switched off (`active_`): that keeps the position right, and lets
// compile() check every branch with one inactive walk. Values are nlohmann::json;
// "undefined" is the discarded value, which Jinja prints as "" and treats as false.
#include "workers/router/chat_template.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace splitwise::router {

using json = nlohmann::json;

enum class Tok { kText, kExprOpen, kStmtOpen, kClose, kName, kOp, kLiteral, kEnd };

struct ChatTemplate::Token {
  Tok type;
  std::string text;  // text, name or operator
  json value;        // kLiteral
  size_t offset;     // in the source, for error messages
};

namespace {

using Token = ChatTemplate::Token;

struct TemplateError {
  std::string message;
};

json undefined() { return json(json::value_t::discarded); }

bool truthy(const json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  return (v.is_string() || v.is_array() || v.is_object()) && !v.empty();
}

std::string to_str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_discarded()) return "";
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_word(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string strip(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  while (left && b < e && is_space(s[b])) ++b;
  while (right && e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Longest first, so "==" is not read as "=" "=".
constexpr std::string_view kOps[] = {"==", "!=", "<=", ">=", "//", "+", "-", "*",
                                     "/",  "%",  "~",  "(",  ")",  "[", "]", ".",
                                     ",",  ":",  "|",  "<",  ">",  "=", "{", "}"};

// Splits the source into text and tag tokens, applying whitespace control: {%- / -%}
// strip all whitespace on that side; HF renders with trim_blocks (drop the newline after
// a block tag) and lstrip_blocks (drop the indentation before one), so do we.
std::vector<Token> lex(std::string_view src) {
  std::vector<Token> out;
  size_t pos = 0;
  bool strip_next = false, trim_newline = false;
  for (;;) {
    const size_t tag = std::min({src.find("{{", pos), src.find("{%", pos), src.find("{#", pos)});
    const bool minus_open = tag != src.npos && src.substr(tag + 2, 1) == "-";
    size_t b = pos, e = std::min(tag, src.size());
    if (strip_next) {
      while (b < e && is_space(src[b])) ++b;
    } else if (trim_newline && b < e && src[b] == '\n') {
      ++b;
    }
    if (minus_open) {
      while (e > b && is_space(src[e - 1])) --e;
    } else if (tag != src.npos && src[tag + 1] != '{') {
      size_t k = e;
      while (k > b && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if (k == 0 || src[k - 1] == '\n') e = k;
    }
    if (e > b) out.push_back({Tok::kText, std::string(src.substr(b, e - b)), {}, b});
    if (tag == src.npos) break;

    const char kind = src[tag + 1];
    const std::string closer = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t p = tag + 2 + (minus_open ? 1 : 0);
    if (kind != '#') out.push_back({kind == '{' ? Tok::kExprOpen : Tok::kStmtOpen, "", {}, tag});
    for (;;) {
      if (kind == '#') p = std::min(src.find(closer, p), src.size());
      while (p < src.size() && is_space(src[p])) ++p;
      if (p >= src.size()) throw TemplateError{"unclosed tag at byte " + std::to_string(tag)};
      const bool minus = src[p] == '-' && src.substr(p + 1, 2) == closer;
      if (minus || src.substr(p, 2) == closer) {
        if (kind != '#') out.push_back({Tok::kClose, "", {}, p});
        strip_next = minus || (kind == '#' && src[p - 1] == '-');
        trim_newline = kind != '{';
        pos = p + 2 + (minus ? 1 : 0);
        break;
      }
      const size_t start = p;
      const char c = src[p];
      if (c == '\'' || c == '"') {
        std::string s;
        for (++p; p < src.size() && src[p] != c; ++p) {
          if (src[p] == '\\' && p + 1 < src.size()) {
            const char x = src[++p];
            s += x == 'n' ? '\n' : x == 't' ? '\t' : x == 'r' ? '\r' : x;
          } else {
            s += src[p];
          }
        }
        if (p++ >= src.size())
          throw TemplateError{"unclosed string at byte " + std::to_string(start)};
        out.push_back({Tok::kLiteral, "", json(s), start});
      } else if (is_word(c)) {
        while (p < src.size() && is_word(src[p])) ++p;
        const std::string_view word = src.substr(start, p - start);
        int64_t n = 0;
        if (!std::isdigit(static_cast<unsigned char>(c))) {
          out.push_back({Tok::kName, std::string(word), {}, start});
        } else if (std::from_chars(word.data(), word.data() + word.size(), n).ptr ==
                       word.data() + word.size() &&
                   src.substr(p, 1) != ".") {
          out.push_back({Tok::kLiteral, "", json(n), start});
        } else {  // floats, 0x..., 1e3: no template we target needs them
          throw TemplateError{"unsupported chat template construct: number at byte " +
                              std::to_string(start)};
        }
      } else {
        const auto op = std::find_if(std::begin(kOps), std::end(kOps), [&](std::string_view o) {
          return src.substr(p, o.size()) == o;
        });
        if (op == std::end(kOps))
          throw TemplateError{"unexpected character at byte " + std::to_string(p)};
        out.push_back({Tok::kOp, std::string(*op), {}, start});
        p += op->size();
      }
    }
  }
  out.push_back({Tok::kEnd, "", {}, src.size()});
  return out;
}

// Binary operators by precedence, loosest first (Jinja's order); level 2 is prefix `not`.
constexpr std::string_view kLevels[] = {
    " or ", " and ", "", " == != < > <= >= in not in is ", " ~ ", " + - ", " * / // % "};
constexpr int kUnaryLevel = 7;

class Interpreter {
 public:
  Interpreter(const std::vector<Token>& tokens, bool active) : t_(tokens), active_(active) {}

  std::string run(json globals) {
    scopes_.push_back(std::move(globals));
    block({});
    return std::move(out_);
  }

 private:
  const Token& peek(size_t k = 0) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  // Names and operators never share spelling, so one test serves both.
  bool is(std::string_view text, size_t k = 0) const {
    return (peek(k).type == Tok::kOp || peek(k).type == Tok::kName) && peek(k).text == text;
  }
  bool accept(std::string_view text) { return is(text) && (++pos_, true); }
  [[noreturn]] void fail(const std::string& what) const {
    throw TemplateError{what + " at byte " + std::to_string(peek().offset)};
  }
  [[noreturn]] static void unsupported(const std::string& what) {
    throw TemplateError{"unsupported chat template construct: " + what};
  }
  // Errors that depend on values count only on the path actually taken.
  json value_error(const std::string& what) const {
    if (active_) fail(what);
    return undefined();
  }
  void expect(std::string_view op) {
    if (!accept(op)) fail("expected '" + std::string(op) + "'");
  }
  void expect_close() {
    if (peek().type != Tok::kClose) fail("expected the end of the tag");
    ++pos_;
  }
  std::string name() {
    if (peek().type != Tok::kName) fail("expected a name");
    return t_[pos_++].text;
  }

  // Runs statements until a {% keyword %} in `ends`, which is returned with its tag open.
  std::string block(std::initializer_list<std::string_view> ends) {
    for (;;) {
      const Token& t = t_[pos_];
      if (t.type == Tok::kEnd) {
        if (ends.size() == 0) return "";
        fail("missing {% " + std::string(ends.end()[-1]) + " %}");
      }
      ++pos_;
      if (t.type == Tok::kText) {
        if (active_) out_ += t.text;
        continue;
      }
      if (t.type == Tok::kExprOpen) {
        const json v = expr();
        expect_close();
        if (active_) out_ += to_str(v);
        continue;
      }
      const std::string kw = name();
      if (std::find(ends.begin(), ends.end(), kw) != ends.end()) return kw;
      if (kw == "if") {
        if_stmt();
      } else if (kw == "for") {
        for_stmt();
      } else if (kw == "set") {
        const std::string var = name();
        if (!accept("=")) {
          unsupported(peek().type == Tok::kClose ? "block {% set %}"
                                                 : "{% set " + var + peek().text + " %}");
        }
        json v = expr();
        expect_close();
        if (active_) scopes_.back()[var] = std::move(v);
      } else if (kw == "elif" || kw == "else" || kw.starts_with("end")) {
        --pos_, fail("unexpected {% " + kw + " %}");
      } else {
        unsupported("{% " + kw + " %}");
      }
    }
  }

  void if_stmt() {
    const bool outer = active_;
    bool taken = false;
    std::string kw = "if";
    while (kw == "if" || kw == "elif") {
      active_ = outer && !taken;
      const bool cond = truthy(expr());
      expect_close();
      active_ = active_ && cond;
      taken = taken || cond;
      kw = block({"elif", "else", "endif"});
    }
    if (kw == "else") {
      expect_close();
      active_ = outer && !taken;
      block({"endif"});
    }
    expect_close();
    active_ = outer;
  }

  void for_stmt() {
    const std::string var = name();
    if (!accept("in")) unsupported("for loop over " + var + peek().text);
    const json seq = binary(0);  // Jinja takes no `a if b else c` here
    if (peek().type != Tok::kClose) unsupported("for ... " + peek().text);
    expect_close();
    if (active_ && !seq.is_array() && !seq.is_null() && !seq.is_discarded()) {
      value_error("cannot loop over " + std::string(seq.type_name()));
    }
    const bool outer = active_;
    json items = seq.is_array() ? seq : json::array();
    if (!active_ || items.empty()) {
      active_ = false;  // walk the body once, silently, to find its end
      items = json::array({undefined()});
    }
    const size_t body = pos_, n = items.size();
    for (size_t i = 0; i < n; ++i) {
      pos_ = body;
      // Jinja scopes assignments to the iteration: a fresh scope per pass.
      scopes_.push_back({{var, items[i]},
                         {"loop",
                          {{"index0", i},
                           {"index", i + 1},
                           {"first", i == 0},
                           {"last", i + 1 == n},
                           {"length", n}}}});
      if (block({"endfor", "else"}) == "else") unsupported("{% for %} ... {% else %}");
      scopes_.pop_back();
    }
    expect_close();
    active_ = outer;
  }

  json expr() {
    json v = binary(0);
    if (!accept("if")) return v;
    const bool saved = active_;
    const bool cond = truthy(binary(0));
    json other = undefined();
    if (accept("else")) {
      active_ = saved && !cond;
      other = expr();
      active_ = saved;
    }
    return cond ? v : other;
  }

  json binary(int level) {
    if (level == 2) return accept("not") ? json(!truthy(binary(2))) : binary(3);
    if (level == kUnaryLevel) {
      if (accept("-")) return operate("-", json(0), binary(kUnaryLevel));
      return postfix();
    }
    json v = binary(level + 1);
    for (;;) {
      std::string op = peek().type == Tok::kOp || peek().type == Tok::kName ? peek().text : "";
      if (op == "not" && is("in", 1)) op = "not in";
      if (op.empty() || kLevels[level].find(" " + op + " ") == std::string_view::npos) return v;
      pos_ += op == "not in" ? 2 : 1;
      if (level <= 1) {
        // `or`/`and` return an operand, as in Python, and skip the other's errors.
        const bool left_decides = (level == 0) == truthy(v);
        const bool saved = active_;
        active_ = saved && !left_decides;
        json r = binary(level + 1);
        active_ = saved;
        if (!left_decides) v = std::move(r);
      } else if (op == "is") {
        const bool negate = accept("not");
        v = negate != test(v, name());
      } else {
        v = operate(op, v, binary(level + 1));
      }
    }
  }

  json operate(const std::string& op, const json& a, const json& b) {
    if (op == "==" || op == "!=") return (a == b) == (op == "==");
    if (op == "in" || op == "not in") return contains(b, a) != (op == "not in");
    if (op == "~") return to_str(a) + to_str(b);
    if (op == "+" && a.is_string() && b.is_string())
      return a.get<std::string>() + b.get<std::string>();
    if (op == "+" && a.is_array() && b.is_array()) {
      json r = a;
      r.insert(r.end(), b.begin(), b.end());
      return r;
    }
    if (op == "/") unsupported("operator / (floats)");
    const bool ints = a.is_number_integer() && b.is_number_integer();
    if ((op[0] == '<' || op[0] == '>') && (ints || (a.is_string() && b.is_string()))) {
      return op == "<" ? a < b : op == ">" ? a > b : op == "<=" ? a <= b : a >= b;
    }
    if (!ints)
      return value_error("cannot apply " + op + " to " + a.type_name() + " and " + b.type_name());
    const int64_t x = a.get<int64_t>(), y = b.get<int64_t>();
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (y == 0) return value_error("division by zero");
    const int64_t q = x / y - ((x % y != 0 && (x < 0) != (y < 0)) ? 1 : 0);  // Python floors
    return op == "//" ? q : x - q * y;
  }

  json postfix() {
    json v = primary();
    for (;;) {
      if (accept(".")) {
        const std::string attr = name();
        v = accept("(") ? builtin(attr + "()", v, args()) : member(v, json(attr));
      } else if (accept("[")) {
        v = subscript(v);
      } else if (accept("|")) {
        const std::string f = name();
        v = builtin("|" + f, v, accept("(") ? args() : std::vector<json>{});
      } else {
        return v;
      }
    }
  }

  json primary() {
    const Token& t = t_[pos_++];
    if (t.type == Tok::kLiteral) return t.value;
    if (t.type == Tok::kName) {
      if (t.text == "true" || t.text == "True") return true;
      if (t.text == "false" || t.text == "False") return false;
      if (t.text == "none" || t.text == "None") return nullptr;
      if (accept("(")) {
        if (t.text != "raise_exception") unsupported("function " + t.text + "()");
        const std::vector<json> a = args();
        if (active_) throw TemplateError{a.empty() ? "raise_exception()" : to_str(a[0])};
        return undefined();
      }
      for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
        if (s->contains(t.text)) return (*s)[t.text];
      }
      return undefined();
    }
    if (t.type == Tok::kOp && t.text == "(") {
      json v = expr();
      expect(")");
      return v;
    }
    if (t.type == Tok::kOp && t.text == "[") {
      json list = json::array();
      while (!accept("]")) {
        list.push_back(expr());
        if (!is("]")) expect(",");
      }
      return list;
    }
    --pos_;
    if (t.type == Tok::kOp && t.text == "{") unsupported("dict literal");
    fail("expected an expression");
  }

  // After '(': the arguments up to ')'.
  std::vector<json> args() {
    std::vector<json> out;
    while (!accept(")")) {
      if (peek().type == Tok::kName && is("=", 1)) unsupported("keyword argument");
      out.push_back(expr());
      if (!is(")")) expect(",");
    }
    return out;
  }

  json member(const json& v, const json& key) const {
    // As in Jinja: an undefined value prints as "", but reading into one is an error.
    if (v.is_discarded())
      return value_error("cannot read " + to_str(key) + " of an undefined value");
    if (v.is_object() && key.is_string()) {
      const auto it = v.find(key.get<std::string>());
      return it == v.end() ? undefined() : *it;
    }
    if (!v.is_array() || !key.is_number_integer()) return undefined();
    const int64_t n = v.size(),
                  i = key.get<int64_t>() < 0 ? key.get<int64_t>() + n : key.get<int64_t>();
    return i >= 0 && i < n ? v[i] : undefined();
  }

  // After '[': x[key], or a Python slice x[a:b] of a list or a string.
  json subscript(const json& v) {
    json a = undefined(), b = undefined();
    if (!is(":")) a = expr();
    if (!accept(":")) {
      expect("]");
      return member(v, a);
    }
    if (!is("]") && !is(":")) b = expr();
    if (!accept("]")) unsupported("slice step");
    if (!v.is_array() && !v.is_string())
      return value_error("cannot slice " + std::string(v.type_name()));
    const int64_t n = v.is_array() ? v.size() : v.get<std::string>().size();
    const auto bound = [n](const json& x, int64_t dflt) {
      const int64_t i = x.is_number_integer() ? x.get<int64_t>() : dflt;
      return std::clamp(i < 0 ? i + n : i, int64_t{0}, n);
    };
    const int64_t lo = bound(a, 0), hi = std::max(lo, bound(b, n));
    if (v.is_string()) return v.get<std::string>().substr(lo, hi - lo);
    return json(v.begin() + lo, v.begin() + hi);
  }

  // Filters ("|trim") and methods ("strip()") in one place: several are the same thing.
  json builtin(const std::string& f, const json& v, const std::vector<json>& a) {
    if (f == "|length" && a.empty()) {
      if (v.is_string()) return v.get_ref<const std::string&>().size();
      return v.is_array() || v.is_object() ? json(v.size()) : value_error("length of " + to_str(v));
    }
    const bool left = f == "|trim" || f == "strip()" || f == "lstrip()";
    const bool right = f == "|trim" || f == "strip()" || f == "rstrip()";
    if (!left && !right) unsupported(f[0] == '|' ? "filter " + f.substr(1) : "method ." + f);
    if (!a.empty()) unsupported(f + " with arguments");
    return strip(to_str(v), left, right);
  }

  bool test(const json& v, const std::string& name) const {
    if (name != "defined" && name != "undefined" && name != "none" && name != "string") {
      unsupported("test " + name);
    }
    if (is("(")) unsupported("test with arguments");
    if (name == "none" || name == "string") return name == "none" ? v.is_null() : v.is_string();
    return v.is_discarded() == (name == "undefined");
  }

  bool contains(const json& haystack, const json& needle) const {
    if (haystack.is_string() && needle.is_string()) {
      return haystack.get<std::string>().find(needle.get<std::string>()) != std::string::npos;
    }
    if (haystack.is_array())
      return std::find(haystack.begin(), haystack.end(), needle) != haystack.end();
    if (haystack.is_object() && needle.is_string())
      return haystack.contains(needle.get<std::string>());
    value_error(std::string("'in' on ") + haystack.type_name());
    return false;
  }

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  bool active_;
  std::string out_;
  std::vector<json> scopes_;  // globals first; each loop iteration pushes one
};

}  // namespace

Result<ChatTemplate> ChatTemplate::compile(std::string_view source) {
  try {
    auto tokens = std::make_shared<const std::vector<Token>>(lex(source));
    Interpreter(*tokens, /*active=*/false).run(json::object());
    return ChatTemplate(std::move(tokens));
  } catch (const TemplateError& e) {
    return Status::error("chat template: " + e.message);
  }
}

Result<std::string> ChatTemplate::render(std::span<const ChatMessage> messages,
                                         const ChatTemplateOptions& options) const {
  json list = json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  json globals = {{"messages", std::move(list)},
                  {"bos_token", options.bos_token},
                  {"eos_token", options.eos_token},
                  {"add_generation_prompt", options.add_generation_prompt}};
  try {
    return Interpreter(*tokens_, /*active=*/true).run(std::move(globals));
  } catch (const TemplateError& e) {
    return Status::error("chat template: " + e.message);
  }
}

std::string render_fallback(std::span<const ChatMessage> messages) {
  std::string out;
  for (const ChatMessage& m : messages) out += m.role + ": " + m.content + "\n";
  return out + "assistant:";
}

Result<std::string> render_chat(std::span<const ChatMessage> messages,
                                const std::optional<std::string>& template_source,
                                const ChatTemplateOptions& options) {
  if (!template_source) return render_fallback(messages);
  Result<ChatTemplate> compiled = ChatTemplate::compile(*template_source);
  if (!compiled.ok()) return compiled.status();
  return compiled->render(messages, options);
}

}  // namespace splitwise::router
