#include "tests/e2e/cluster_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace splitwise::e2e {

namespace {
using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One blocking HTTP/1.1 exchange ("Connection: close"), read incrementally so that a
// streamed body can be consumed while it arrives.
class Exchange {
 public:
  explicit Exchange(Millis timeout) : deadline_(Clock::now() + timeout) {}
  ~Exchange() { hang_up(); }

  bool send(const Endpoint& ep, const std::string& request) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // never inherited by children
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(ep.port);
    if (fd_ < 0 || inet_pton(AF_INET, ep.host.c_str(), &addr.sin_addr) != 1)
      return fail("bad socket or address " + ep.str());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return fail("connect " + ep.str() + ": " + std::strerror(errno));
    // A server may answer (413) and close before it has read a large body: stop sending
    // then, and read the answer anyway.
    for (size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads the status line and headers.
  bool read_head(HttpResult* r) {
    size_t end;
    while ((end = raw_.find("\r\n\r\n")) == std::string::npos)
      if (!read_more()) return fail(eof_ ? "connection closed before the response head" : error_);
    const std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    size_t pos = head.find("\r\n");
    const std::string status_line = head.substr(0, pos);
    if (status_line.size() < 12 || status_line.compare(0, 5, "HTTP/") != 0)
      return fail("bad status line: " + status_line);
    r->status = std::atoi(status_line.c_str() + 9);
    while (pos != std::string::npos && pos < head.size()) {
      const size_t next = head.find("\r\n", pos + 2);
      const std::string line =
          head.substr(pos + 2, next == std::string::npos ? next : next - pos - 2);
      if (const size_t colon = line.find(':'); colon != std::string::npos) {
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        r->headers[lower(line.substr(0, colon))] = line.substr(v);
      }
      pos = next;
    }
    chunked_ = lower(r->headers["transfer-encoding"]).find("chunked") != std::string::npos;
    if (!chunked_ && r->headers.count("content-length"))
      length_ = std::stoll(r->headers["content-length"]);
    return true;
  }

  // Appends body bytes that have arrived to *out, reading more first when none are
  // buffered. Returns false at the end of the body or on an error (see done()/error()).
  bool read_body(std::string* out) {
    for (;;) {
      if (decode(out)) return !done_;
      if (done_) return false;
      if (!read_more()) {
        if (eof_ && !chunked_ && length_ < 0) done_ = true;  // body delimited by close
        if (!done_ && error_.empty()) error_ = "connection closed mid-body";
        return false;
      }
    }
  }

  bool done() const { return done_; }
  const std::string& error() const { return error_; }
  void hang_up() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool fail(const std::string& why) {
    error_ = why;
    return false;
  }

  bool read_more() {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline_));
    if (ready <= 0) return fail(ready == 0 ? "timed out" : std::strerror(errno));
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return fail(std::string("recv: ") + std::strerror(errno));
    if (n == 0) {
      eof_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }

  // Moves decoded body bytes from raw_ to *out; true when it moved any or the body ended.
  bool decode(std::string* out) {
    const size_t before = out->size();
    if (!chunked_) {
      size_t take = raw_.size();
      if (length_ >= 0) take = std::min<size_t>(take, static_cast<size_t>(length_ - got_));
      out->append(raw_, 0, take);
      raw_.erase(0, take);
      got_ += static_cast<int64_t>(take);
      if (length_ >= 0 && got_ == length_) done_ = true;
      return out->size() > before || done_;
    }
    while (!done_) {
      const size_t eol = raw_.find("\r\n");
      if (eol == std::string::npos) break;
      const size_t size = std::strtoull(raw_.c_str(), nullptr, 16);
      if (size == 0) {
        done_ = true;  // trailers, if any, are ignored
        break;
      }
      if (raw_.size() < eol + 2 + size + 2) break;
      out->append(raw_, eol + 2, size);
      raw_.erase(0, eol + 2 + size + 2);
    }
    return out->size() > before || done_;
  }

  Clock::time_point deadline_;
  int fd_ = -1;
  std::string raw_;
  std::string error_;
  bool eof_ = false, chunked_ = false, done_ = false;
  int64_t length_ = -1, got_ = 0;
};

std::string request_text(const Endpoint& ep, const std::string& method, const std::string& target,
                         const std::string* body, const std::string& accept) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: " + ep.str() +
                  "\r\nConnection: close\r\nAccept: " + accept + "\r\n";
  if (body)
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body->size()) +
         "\r\n\r\n" + *body;
  else
    r += "\r\n";
  return r;
}

HttpResult exchange(const Endpoint& ep, const std::string& request, Millis timeout) {
  HttpResult r;
  Exchange x(timeout);
  if (!x.send(ep, request) || !x.read_head(&r)) {
    r.error = x.error();
    return r;
  }
  while (x.read_body(&r.body)) {
  }
  if (!x.done()) r.error = x.error();
  return r;
}
}  // namespace

std::optional<Endpoint> parse_endpoint(std::string_view s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const int port = std::atoi(std::string(s.substr(colon + 1)).c_str());
  if (port <= 0 || port > 65535) return std::nullopt;
  return Endpoint{std::string(s.substr(0, colon)), static_cast<uint16_t>(port)};
}

HttpResult http_get(const Endpoint& ep, const std::string& target, Millis timeout) {
  return exchange(ep, request_text(ep, "GET", target, nullptr, "*/*"), timeout);
}

HttpResult http_post(const Endpoint& ep, const std::string& target, const std::string& body,
                     Millis timeout) {
  return exchange(ep, request_text(ep, "POST", target, &body, "*/*"), timeout);
}

SseResult http_post_sse(const Endpoint& ep, const std::string& target, const std::string& body,
                        const std::function<bool(const std::string&)>& on_event, Millis timeout) {
  SseResult out;
  HttpResult head;
  Exchange x(timeout);
  if (!x.send(ep, request_text(ep, "POST", target, &body, "text/event-stream")) ||
      !x.read_head(&head)) {
    out.error = x.error();
    return out;
  }
  out.status = head.status;
  std::string text;
  bool more = true;
  while (more) {
    more = x.read_body(&text);
    if (out.status != 200) continue;
    // Events end with a blank line; a data line is "data:" and an optional space.
    for (size_t end; (end = text.find("\n\n")) != std::string::npos;) {
      std::string data;
      for (size_t pos = 0; pos < end;) {
        size_t eol = text.find('\n', pos);
        if (eol > end) eol = end;
        const std::string line = text.substr(pos, eol - pos);
        if (line.starts_with("data:")) {
          if (!data.empty()) data += "\n";
          data += line.substr(line.size() > 5 && line[5] == ' ' ? 6 : 5);
        }
        pos = eol + 1;
      }
      text.erase(0, end + 2);
      out.events.push_back(data);
      if (on_event && !on_event(data)) {
        x.hang_up();
        out.disconnected = true;
        return out;
      }
    }
  }
  if (out.status != 200) out.body = text;
  out.complete = x.done();
  if (!x.done()) out.error = x.error();
  return out;
}

std::optional<double> metric(std::string_view text, std::string_view name, const Labels& labels) {
  std::optional<double> sum;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string line(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos || line.compare(0, name_end, name) != 0 ||
        name_end != name.size())
      continue;
    Labels got;
    size_t i = name_end;
    if (line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        const std::string key = line.substr(i, eq - i);
        std::string value;
        for (i = eq + 2; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        got[key] = value;
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    bool match = true;
    for (const auto& [k, v] : labels) match = match && got.count(k) && got[k] == v;
    if (!match) continue;
    sum = sum.value_or(0) + std::strtod(line.c_str() + i, nullptr);
  }
  return sum;
}

}  // namespace splitwise::e2e
