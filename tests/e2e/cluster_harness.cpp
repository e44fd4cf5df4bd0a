#include "tests/e2e/cluster_harness.h"

#include <cstdlib>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

namespace splitwise::e2e {

namespace {
// The built program, unless the environment names another copy (a bundle shipped to a GPU
// machine, where the build tree's paths do not exist).
std::string program(const char* env, const char* built) {
  const char* v = std::getenv(env);
  return v && *v ? v : built;
}
}  // namespace

namespace {
using Clock = std::chrono::steady_clock;

int left_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}
}  // namespace

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
    ::setpgid(0, 0);  // its own group: a signal to the group reaches anything it started
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test binary dies -> so does the child
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copies
    ::dup2(fds[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (pid > 0) ::setpgid(pid, pid);  // as the child does: whichever runs first wins the race
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
    ::kill(-pid_, SIGTERM);
    if (!wait_for(grace)) kill9();
  }
  return wait_status_;
}

// Signals go to the process group (whatever the child started holds the pipe too), and
// only before the child is reaped: until then its id, and so the group's, cannot be reused.
void Process::kill9() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  wait_for(10s);  // SIGKILL cannot be ignored; this returns at once in practice
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
  std::vector<std::string> argv = {program("SPLITWISE_WORKER_BIN", SPLITWISE_WORKER_BIN),
                                   "--role",
                                   role,
                                   "-m",
                                   model_.string(),
                                   "--host",
                                   "127.0.0.1",
                                   "--port",
                                   "0"};
  if (role == "token") argv.insert(argv.end(), {"--kv-port", "0"});
  argv.insert(argv.end(), options_.worker_args.begin(), options_.worker_args.end());
  if (auto it = options_.role_args.find(role); it != options_.role_args.end())
    argv.insert(argv.end(), it->second.begin(), it->second.end());
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
      if (std::string e = start_worker(role, Millis(left_ms(deadline))); !e.empty()) return e;

  std::vector<std::string> argv = {program("SPLITWISE_ROUTER_BIN", SPLITWISE_ROUTER_BIN), "-m",
                                   model_.string(), "--port", "0"};
  for (const Worker& w : workers_)
    argv.insert(argv.end(), {"--" + w.role + "-worker", w.http.str()});
  argv.insert(argv.end(), options_.router_args.begin(), options_.router_args.end());
  std::string error;
  router_process_ =
      Process::start(argv, "splitwise-router ready", Millis(left_ms(deadline)), &error);
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
      Millis(left_ms(deadline)), 20ms);
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
