// End-to-end harness: runs splitwise-worker and splitwise-router as real processes on
// port 0 and waits until the router sees its workers. Every process it starts dies with
// the object that owns it (and, through PR_SET_PDEATHSIG, with the test binary if that
// crashes), so no test leaves one behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/e2e/cluster_http.h"

namespace splitwise::e2e {

// The value of `key=` in a line of space-separated key=value words; "" when absent.
std::string field_of(std::string_view line, std::string_view key);

// Polls `done` every `interval` until it holds or `timeout` passes; returns its last value.
bool poll_until(const std::function<bool()>& done, Millis timeout, Millis interval = 10ms);

// One child process with stdout and stderr piped into a buffer (drained by a thread, so
// a chatty child never blocks on a full pipe).
class Process {
 public:
  // Runs argv (argv[0] is a path) and waits up to `timeout` for an output line that
  // starts with `ready_prefix`. On failure returns nullptr and says why in *error.
  static std::unique_ptr<Process> start(const std::vector<std::string>& argv,
                                        const std::string& ready_prefix, Millis timeout,
                                        std::string* error);
  ~Process();  // SIGKILL if still running, then reaps it
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& ready_line() const { return ready_line_; }
  std::string output() const;  // everything it printed so far
  bool running();              // false once it has exited (and was reaped)
  // SIGTERM, up to `grace` to exit, then SIGKILL. Returns the wait status.
  int stop(Millis grace = 5s);
  void kill9();  // SIGKILL and reap
  int wait_status() const { return wait_status_; }

 private:
  Process() = default;
  void drain();
  bool wait_for(Millis timeout);  // reaps; true when it exited within timeout

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int wait_status_ = -1;
  std::string ready_line_;
  std::thread drainer_;
  mutable std::mutex mu_;  // guards output_, eof_
  std::condition_variable cv_;
  std::string output_;
  bool eof_ = false;
};

struct ClusterOptions {
  int prompt = 1, token = 1, mixed = 0;
  std::vector<std::string> worker_args = {"--kv-cache-mb", "64"};
  // Extra arguments for one role's workers (e.g. which GPU), after worker_args.
  std::map<std::string, std::vector<std::string>> role_args;
  std::vector<std::string> router_args;
};

struct Worker {
  std::string role;
  Endpoint http;
  int kv_port = 0;
  std::unique_ptr<Process> process;

  // A metric of this worker (see metric()); nullopt when absent or /metrics fails.
  std::optional<double> metric(std::string_view name, const Labels& labels = {}) const;
  int used_kv_blocks() const;  // from /internal/state; -1 when it does not answer
};

class Cluster {
 public:
  explicit Cluster(std::filesystem::path model, ClusterOptions options = {});
  ~Cluster();  // every process dies here

  // Starts the workers, then the router, and waits until the router sees every worker
  // healthy. "" on success, else what went wrong (with everything the processes printed).
  std::string start(Millis timeout = 20s);

  const Endpoint& router() const { return router_; }
  Process& router_process() { return *router_process_; }
  std::vector<Worker>& workers() { return workers_; }
  std::vector<Worker*> workers(const std::string& role);
  // A metric of the router (see metric()); nullopt when absent or /metrics fails.
  std::optional<double> router_metric(std::string_view name, const Labels& labels = {}) const;
  // True once every live worker reports 0 used KV blocks (polled up to `timeout`).
  bool wait_kv_released(Millis timeout = 5s);
  std::string logs() const;  // everything every process printed, for failure messages

 private:
  std::string start_worker(const std::string& role, Millis timeout);

  std::filesystem::path model_;
  ClusterOptions options_;
  std::vector<Worker> workers_;
  Endpoint router_;
  std::unique_ptr<Process> router_process_;
};

}  // namespace splitwise::e2e
