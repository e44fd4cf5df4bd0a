// Discrete-event simulation of a Splitwise cluster: requests are placed by the router's
// own policy (router::place), machines batch with the workers' own rules
// (engine::SchedulerConfig, engine/batch_policy.h), and iteration times come from a
// PerfModel. Decode iterations cost O(1) however large the batch: sequences in a batch
// advance together, so a batch is kept as counts (size, total context) and a heap of
// finishing iterations, not as per-token state.
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "sim/hardware.h"
#include "sim/histogram.h"
#include "sim/perf_model.h"
#include "sim/trace.h"
#include "workers/engine/scheduler.h"
#include "workers/router/cluster_policy.h"

namespace splitwise::sim {

enum class Role { kPrompt, kToken, kMixed };
const char* to_string(Role role);

struct PoolSpec {
  std::string name;  // "prompt", "token", "mixed"
  Role role = Role::kMixed;
  MachineSpec machine;
  std::shared_ptr<const PerfModel> perf;
  int machines = 0;
};

struct ClusterSpec {
  std::vector<PoolSpec> pools;
  ModelSpec model;
  // The workers' batching limits. Token machines batch as large as KV memory allows
  // (the paper's policy), so the simulator's default raises max_num_seqs.
  engine::SchedulerConfig batching{.max_batch_tokens = 2048, .max_num_seqs = 4096};
  router::PolicyConfig routing{.max_queued_per_worker = 1'000'000};
  double kv_memory_fraction = 0.9;  // of the HBM that the weights leave free
  int block_size = 16;
  double startup_s = 60;  // a machine added by the autoscaler serves after this
};

struct RequestRecord {
  double arrival = 0;
  double first_token = -1;  // -1: never (rejected, or still running when the run ended)
  double finish = -1;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int prompt_machine = -1;   // the machine that ran the prefill (mixed: the only one)
  int token_machine = -1;    // split requests only
  double kv_tail_s = 0;      // KV handoff time not hidden behind the prefill
  int preemptions = 0;       // evicted for a prompt or another decode, up to the cap
  int forced_evictions = 0;  // at the cap, yielded its blocks to a full cache
  bool rejected = false;     // no machine could ever hold it
  bool completed() const { return finish >= 0; }
  double ttft() const { return first_token - arrival; }
  double e2e() const { return finish - arrival; }
  // Mean time between tokens after the first (0 for one-token requests).
  double tbt() const {
    return output_tokens > 1 ? (finish - first_token) / (output_tokens - 1) : 0;
  }
};

struct MachineStats {
  int pool = 0;
  Role role = Role::kMixed;
  double started = 0, stopped = -1;  // -1: still up at the end
  double busy_s = 0;
  int64_t iterations = 0, prefill_tokens = 0, decode_tokens = 0;
  int64_t max_batch = 0;
};

class ClusterSim {
 public:
  explicit ClusterSim(ClusterSpec spec);
  ~ClusterSim();
  ClusterSim(const ClusterSim&) = delete;
  ClusterSim& operator=(const ClusterSim&) = delete;

  // Arrivals are taken in order; their arrival times must not be before now().
  void add_requests(const std::vector<Request>& requests);
  // Runs every event up to and including time t (seconds).
  void run_until(double t);
  // Runs until no work is left.
  void run_to_completion();
  double now() const { return now_; }

  // Autoscaling: the pool's target size. New machines serve after startup_s; removed
  // ones stop taking requests at once and leave when their last request is done.
  void set_pool_size(int pool, int machines);
  int pool_size(int pool) const;   // target
  int pool_ready(int pool) const;  // serving now

  const std::vector<RequestRecord>& records() const { return records_; }
  const std::vector<MachineStats>& machines() const { return stats_; }
  const ClusterSpec& spec() const { return spec_; }
  int64_t events() const { return events_; }
  // The gap before every token after the first, over all requests (inter-token latency):
  // unlike a request's mean TBT, it shows each stall a prefill causes on a mixed machine.
  const LogHistogram& token_gaps() const { return token_gaps_; }
  // Machine-seconds by pool, from each machine's start to its stop (or now).
  double machine_seconds(int pool) const;

 private:
  struct Machine;
  struct Event {
    double t;
    uint64_t seq;
    int kind;
    int a;
    bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  void push(double t, int kind, int a);
  void handle(const Event& e);
  void on_arrival(int r);
  bool try_place(int r);
  void retry_held();
  void start_iteration(int m);
  void end_iteration(int m);
  void prompt_done(int m, int r, double end);
  void join_decode(Machine& mm, int r);
  // force: even a sequence at the preemption cap (it yields its own blocks).
  void preempt_newest(Machine& mm, int m, bool force);
  void maybe_retire(int m);
  void refresh_view(int m);
  int64_t free_kv(const Machine& mm) const;

  ClusterSpec spec_;
  double now_ = 0;
  uint64_t seq_ = 0;
  int64_t events_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::vector<Request> pending_;  // arrivals not yet scheduled, in order
  size_t next_pending_ = 0;
  std::vector<RequestRecord> records_;
  struct ReqState;
  std::vector<ReqState> state_;
  std::vector<std::unique_ptr<Machine>> machines_;
  std::vector<MachineStats> stats_;
  std::vector<router::WorkerView> views_;
  std::vector<int> pool_target_;
  std::deque<int> held_;  // placements refused for now, FCFS
  LogHistogram token_gaps_;
};

// Runs `trace` to completion on `spec`.
struct SimRun {
  std::vector<RequestRecord> records;
  std::vector<MachineStats> machines;
  double end_s = 0;
  int64_t events = 0;
  LogHistogram token_gaps;
};
SimRun simulate(const ClusterSpec& spec, const std::vector<Request>& trace);

}  // namespace splitwise::sim
