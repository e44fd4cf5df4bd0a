#include "tests/e2e/cluster_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

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

std::string field_of(std::string_view line, std::string_view key) {
  const std::string k = " " + std::string(key) + "=";
  const std::string padded = " " + std::string(line);
  const size_t at = padded.find(k);
  if (at == std::string::npos) return "";
  const size_t start = at + k.size();
  return padded.substr(start, padded.find_first_of(" \r\n", start) - start);
}

bool poll_until(const std::function<bool()>& done, Millis timeout, Millis interval) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

std::unique_ptr<Process> Process::start(const std::vector<std::string>& argv,
                                        const std::string& ready_prefix, Millis timeout,
                                        std::string* error) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return nullptr;
  }
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test binary dies -> so does the child
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copies
    ::dup2(fds[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    *error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<Process> p(new Process());
  p->pid_ = pid;
  p->out_fd_ = fds[0];
  p->drainer_ = std::thread([raw = p.get()] { raw->drain(); });

  // A complete line that starts with the prefix (a line is complete once its '\n' came).
  auto find_ready = [&] {
    for (size_t pos = 0, eol; (eol = p->output_.find('\n', pos)) != std::string::npos;
         pos = eol + 1) {
      if (p->output_.compare(pos, ready_prefix.size(), ready_prefix) == 0) {
        p->ready_line_ = p->output_.substr(pos, eol - pos);
        return true;
      }
    }
    return false;
  };
  std::unique_lock lock(p->mu_);
  p->cv_.wait_until(lock, Clock::now() + timeout, [&] { return find_ready() || p->eof_; });
  if (!p->ready_line_.empty()) return p;
  const bool closed = p->eof_;
  std::string output = p->output_;
  lock.unlock();
  std::string how = " was not ready in time";
  if (closed && p->wait_for(2s)) {
    const int st = p->wait_status_;
    how = WIFSIGNALED(st) ? " died of signal " + std::to_string(WTERMSIG(st))
                          : " exited with status " + std::to_string(WEXITSTATUS(st));
    how += " before it was ready";
  }
  *error = argv[0] + how + "; its output:\n" + output;
  return nullptr;  // p's destructor kills and reaps the child
}

void Process::drain() {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard lock(mu_);
    if (n <= 0) {
      eof_ = true;
      cv_.notify_all();
      return;
    }
    output_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
}

Process::~Process() {
  kill9();
  if (drainer_.joinable()) drainer_.join();
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::string Process::output() const {
  std::lock_guard lock(mu_);
  return output_;
}

bool Process::running() { return pid_ > 0 && !wait_for(0ms); }

bool Process::wait_for(Millis timeout) {
  if (pid_ <= 0) return true;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      wait_status_ = status;
      pid_ = -1;
      return true;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

int Process::stop(Millis grace) {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!wait_for(grace)) kill9();
  }
  return wait_status_;
}

void Process::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_for(10s);  // SIGKILL cannot be ignored; this returns at once in practice
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

std::optional<double> Worker::metric(std::string_view name, const Labels& labels) const {
  const HttpResult r = http_get(http, "/metrics");
  if (r.status != 200) return std::nullopt;
  return e2e::metric(r.body, name, labels);
}

int Worker::used_kv_blocks() const {
  const HttpResult r = http_get(http, "/internal/state", 2s);
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object()) return -1;
  return j.value("total_kv_blocks", 0) - j.value("free_kv_blocks", 0);
}

Cluster::Cluster(std::filesystem::path model, ClusterOptions options)
    : model_(std::move(model)), options_(std::move(options)) {}

Cluster::~Cluster() {
  router_process_.reset();  // the router first, so it sees no worker die under it
  workers_.clear();
}

std::string Cluster::start_worker(const std::string& role, Millis timeout) {
  std::vector<std::string> argv = {
      SPLITWISE_WORKER_BIN, "--role", role, "-m", model_.string(), "--host",
      "127.0.0.1",          "--port", "0"};
  if (role == "token") argv.insert(argv.end(), {"--kv-port", "0"});
  argv.insert(argv.end(), options_.worker_args.begin(), options_.worker_args.end());
  std::string error;
  Worker w;
  w.role = role;
  w.process = Process::start(argv, "splitwise-worker ready", timeout, &error);
  if (!w.process) return error;
  const auto ep = parse_endpoint(field_of(w.process->ready_line(), "http"));
  if (!ep) return "no http= in: " + w.process->ready_line();
  w.http = *ep;
  w.kv_port = std::atoi(field_of(w.process->ready_line(), "kv").c_str());
  workers_.push_back(std::move(w));
  return "";
}

std::string Cluster::start(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (auto [role, n] :
       {std::pair{"prompt", options_.prompt}, {"token", options_.token}, {"mixed", options_.mixed}})
    for (int i = 0; i < n; ++i)
      if (std::string e = start_worker(role, Millis(remaining_ms(deadline))); !e.empty()) return e;

  std::vector<std::string> argv = {SPLITWISE_ROUTER_BIN, "-m", model_.string(), "--port", "0"};
  for (const Worker& w : workers_)
    argv.insert(argv.end(), {"--" + w.role + "-worker", w.http.str()});
  argv.insert(argv.end(), options_.router_args.begin(), options_.router_args.end());
  std::string error;
  router_process_ =
      Process::start(argv, "splitwise-router ready", Millis(remaining_ms(deadline)), &error);
  if (!router_process_) return error;
  const auto ep = parse_endpoint(field_of(router_process_->ready_line(), "http"));
  if (!ep) return "no http= in: " + router_process_->ready_line();
  router_ = *ep;

  // The router polls worker health every 250 ms: wait until it counts them all.
  std::string last;
  const bool healthy = poll_until(
      [&] {
        const HttpResult r = http_get(router_, "/health", 2s);
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        last = r.body + r.error;
        if (r.status != 200 || !j.is_object() || !j.contains("healthy_workers")) return false;
        const auto& h = j["healthy_workers"];
        return h.value("prompt", -1) == options_.prompt && h.value("token", -1) == options_.token &&
               h.value("mixed", -1) == options_.mixed;
      },
      Millis(remaining_ms(deadline)), 20ms);
  return healthy ? ""
                 : "router never saw every worker healthy; last /health: " + last + "\n" + logs();
}

std::vector<Worker*> Cluster::workers(const std::string& role) {
  std::vector<Worker*> out;
  for (Worker& w : workers_)
    if (w.role == role) out.push_back(&w);
  return out;
}

std::optional<double> Cluster::router_metric(std::string_view name, const Labels& labels) const {
  const HttpResult r = http_get(router_, "/metrics");
  if (r.status != 200) return std::nullopt;
  return e2e::metric(r.body, name, labels);
}

bool Cluster::wait_kv_released(Millis timeout) {
  return poll_until(
      [&] {
        for (Worker& w : workers_)
          if (w.process->running() &&
              w.metric("splitwise_worker_kv_blocks", {{"state", "used"}}) != 0.0)
            return false;
        return true;
      },
      timeout, 20ms);
}

std::string Cluster::logs() const {
  std::string out;
  for (const Worker& w : workers_)
    out += "--- " + w.role + " worker " + w.http.str() + ":\n" + w.process->output();
  if (router_process_) out += "--- router " + router_.str() + ":\n" + router_process_->output();
  return out;
}

}  // namespace splitwise::e2e
