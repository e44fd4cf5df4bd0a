#include "sim/cluster_sim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "workers/engine/batch_policy.h"

namespace splitwise::sim {

const char* to_string(Role role) {
  switch (role) {
    case Role::kPrompt:
      return "prompt";
    case Role::kToken:
      return "token";
    case Role::kMixed:
      return "mixed";
  }
  return "unknown";
}

namespace {
enum EventKind { kArrival, kIterationEnd, kKvLanded, kMachineReady };
}  // namespace

// Per-request state while it is in the system.
struct ClusterSim::ReqState {
  int prefill_left = 0;  // prompt (or recompute) tokens not yet prefilled
  int prefill_len = 0;   // tokens this prefill covers (prompt, or prompt + generated)
  int tokens_left = 0;   // tokens still to produce
  double prefill_start = -1;
  // Decoding: joined at decode iteration `join_iter` with `ctx_join` tokens of KV, and
  // `left_at_join` tokens to go. epoch invalidates stale heap entries after preemption.
  int64_t join_iter = 0, ctx_join = 0;
  int left_at_join = 0;
  int epoch = 0;
  int64_t reserved = 0;  // token machine: KV tokens reserved at placement
};

struct ClusterSim::Machine {
  int pool = 0;
  Role role = Role::kMixed;
  const PerfModel* perf = nullptr;
  int layers = 1;
  double link = 1;  // bytes/s
  double handoff_overhead = 0;
  bool ready = false, draining = false, gone = false;
  int64_t kv_capacity = 0;  // tokens
  int64_t kv_used = 0;      // tokens held or reserved
  // Prefill queue (prompt, mixed): FCFS, a preempted sequence re-enters at the front.
  std::deque<int> waiting;
  int64_t waiting_tokens = 0;
  // The iteration in flight.
  bool busy = false;
  double iter_start = 0;
  std::vector<std::pair<int, int>> chunks;  // (request, tokens)
  bool decoding = false;                    // decodes ran in this iteration
  // Decode batch (token, mixed).
  int64_t batch = 0, ctx = 0, decode_iter = 0;
  double last_decode_end = 0;
  int64_t joined_this_iteration = 0;
  std::vector<int> joining;    // ready to join at the next iteration
  std::vector<int> joiners;    // joined at the start of the iteration in flight
  std::vector<int> admission;  // decoding requests, oldest first (preemption picks last)
  using Due = std::pair<int64_t, std::pair<int, int>>;  // (finish iter, (request, epoch))
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  int reserved_requests = 0;  // token machine: placed, not finished
  double egress_free = 0, ingress_free = 0;

  bool idle() const {
    return !busy && waiting.empty() && batch == 0 && joining.empty() && reserved_requests == 0;
  }
};

ClusterSim::ClusterSim(ClusterSpec spec) : spec_(std::move(spec)) {
  pool_target_.assign(spec_.pools.size(), 0);
  for (size_t p = 0; p < spec_.pools.size(); ++p)
    set_pool_size(static_cast<int>(p), spec_.pools[p].machines);
  // The initial machines serve from time 0: drop their start-up events.
  for (auto& m : machines_) m->ready = true;
  for (size_t m = 0; m < machines_.size(); ++m) refresh_view(static_cast<int>(m));
  while (!queue_.empty()) queue_.pop();
}

ClusterSim::~ClusterSim() = default;

void ClusterSim::push(double t, int kind, int a) { queue_.push({t, seq_++, kind, a}); }

void ClusterSim::add_requests(const std::vector<Request>& requests) {
  const bool was_empty = next_pending_ == pending_.size();
  pending_.insert(pending_.end(), requests.begin(), requests.end());
  if (was_empty && next_pending_ < pending_.size())
    push(std::max(pending_[next_pending_].arrival_s, now_), kArrival, 0);
}

int ClusterSim::pool_size(int pool) const { return pool_target_[pool]; }

int ClusterSim::pool_ready(int pool) const {
  int n = 0;
  for (const auto& m : machines_) n += m->pool == pool && m->ready && !m->draining && !m->gone;
  return n;
}

double ClusterSim::machine_seconds(int pool) const {
  double s = 0;
  for (const MachineStats& st : stats_)
    if (st.pool == pool) s += (st.stopped >= 0 ? st.stopped : now_) - st.started;
  return s;
}

void ClusterSim::set_pool_size(int pool, int n) {
  const PoolSpec& ps = spec_.pools[pool];
  int active = 0;
  for (const auto& m : machines_) active += m->pool == pool && !m->draining && !m->gone;
  for (; active < n; ++active) {
    auto mm = std::make_unique<Machine>();
    mm->pool = pool;
    mm->role = ps.role;
    mm->perf = ps.perf.get();
    mm->layers = std::max(spec_.model.layers, 1);
    mm->link = ps.machine.link_bandwidth;
    mm->handoff_overhead = ps.machine.kv_handoff_overhead_s;
    const double free_bytes =
        ps.machine.gpus * ps.machine.hbm_bytes_per_gpu - spec_.model.weight_bytes();
    mm->kv_capacity = static_cast<int64_t>(std::max(0.0, free_bytes) * spec_.kv_memory_fraction /
                                           spec_.model.kv_bytes_per_token());
    const int id = static_cast<int>(machines_.size());
    machines_.push_back(std::move(mm));
    stats_.push_back({pool, ps.role, now_, -1});
    router::WorkerView v;
    v.id = std::to_string(id);
    v.role = ps.role == Role::kPrompt  ? router::WorkerView::Role::kPrompt
             : ps.role == Role::kToken ? router::WorkerView::Role::kToken
                                       : router::WorkerView::Role::kMixed;
    v.block_size = spec_.block_size;
    views_.push_back(v);
    refresh_view(id);
    push(now_ + spec_.startup_s, kMachineReady, id);
  }
  // Scale down: the newest machines go first (those not yet ready cost nothing yet).
  for (int m = static_cast<int>(machines_.size()) - 1; m >= 0 && active > n; --m) {
    Machine& mm = *machines_[m];
    if (mm.pool != pool || mm.draining || mm.gone) continue;
    mm.draining = true;
    --active;
    refresh_view(m);
    maybe_retire(m);
  }
  pool_target_[pool] = n;
}

void ClusterSim::maybe_retire(int m) {
  Machine& mm = *machines_[m];
  if (!mm.draining || mm.gone || !mm.idle()) return;
  mm.gone = true;
  stats_[m].stopped = now_;
  refresh_view(m);
}

int64_t ClusterSim::free_kv(const Machine& mm) const { return mm.kv_capacity - mm.kv_used; }

void ClusterSim::refresh_view(int m) {
  const Machine& mm = *machines_[m];
  router::WorkerView& v = views_[m];
  v.healthy = mm.ready && !mm.draining && !mm.gone;
  v.pending_prefill_tokens = mm.waiting_tokens;
  v.queued_requests =
      static_cast<int64_t>(mm.waiting.size()) + mm.batch + static_cast<int64_t>(mm.joining.size());
  v.total_kv_blocks = static_cast<int>(
      std::min<int64_t>(mm.kv_capacity / spec_.block_size, std::numeric_limits<int>::max()));
  v.free_kv_blocks = static_cast<int>(std::min<int64_t>(
      std::max<int64_t>(free_kv(mm), 0) / spec_.block_size, std::numeric_limits<int>::max()));
}

void ClusterSim::run_until(double t) {
  while (!queue_.empty() && queue_.top().t <= t) {
    const Event e = queue_.top();
    queue_.pop();
    now_ = std::max(now_, e.t);
    ++events_;
    handle(e);
  }
  now_ = std::max(now_, t);
}

void ClusterSim::run_to_completion() {
  while (!queue_.empty()) {
    const Event e = queue_.top();
    queue_.pop();
    now_ = std::max(now_, e.t);
    ++events_;
    handle(e);
  }
}

void ClusterSim::handle(const Event& e) {
  switch (e.kind) {
    case kArrival: {
      const Request& q = pending_[next_pending_++];
      const int r = static_cast<int>(records_.size());
      RequestRecord rec;
      rec.arrival = q.arrival_s;
      rec.prompt_tokens = q.prompt_tokens;
      rec.output_tokens = std::max(q.output_tokens, 1);
      records_.push_back(rec);
      ReqState st;
      st.prefill_len = st.prefill_left = q.prompt_tokens;
      st.tokens_left = rec.output_tokens;
      state_.push_back(st);
      if (next_pending_ < pending_.size())
        push(std::max(pending_[next_pending_].arrival_s, now_), kArrival, 0);
      on_arrival(r);
      break;
    }
    case kIterationEnd:
      end_iteration(e.a);
      retry_held();
      break;
    case kKvLanded: {
      const int r = e.a;
      Machine& mm = *machines_[records_[r].token_machine];
      mm.joining.push_back(r);
      if (!mm.busy) start_iteration(records_[r].token_machine);
      break;
    }
    case kMachineReady: {
      Machine& mm = *machines_[e.a];
      // Billed from the request for it (a starting machine costs), so not reset here.
      if (mm.ready || mm.gone) break;
      mm.ready = true;
      refresh_view(e.a);
      if (mm.draining) maybe_retire(e.a);
      retry_held();
      break;
    }
  }
}

void ClusterSim::on_arrival(int r) {
  if (!held_.empty() || !try_place(r)) {
    if (!records_[r].rejected) held_.push_back(r);
  }
}

void ClusterSim::retry_held() {
  while (!held_.empty()) {
    const int r = held_.front();
    if (!try_place(r)) {
      if (records_[r].rejected) {
        held_.pop_front();
        continue;
      }
      return;
    }
    held_.pop_front();
  }
}

bool ClusterSim::try_place(int r) {
  RequestRecord& rec = records_[r];
  ReqState& st = state_[r];
  const auto p = router::place(views_, rec.prompt_tokens, rec.output_tokens, spec_.routing);
  if (p.kind == router::Placement::Kind::kReject) {
    if (p.retry_after_s == 0) rec.rejected = true;  // fits nowhere, ever
    return false;
  }
  const int m = p.kind == router::Placement::Kind::kSplit ? p.prompt : p.mixed;
  rec.prompt_machine = m;
  Machine& mm = *machines_[m];
  if (p.kind == router::Placement::Kind::kSplit) {
    rec.token_machine = p.token;
    Machine& tm = *machines_[p.token];
    // The token worker reserves the whole sequence before the prefill starts.
    st.reserved = int64_t{rec.prompt_tokens} + rec.output_tokens;
    tm.kv_used += st.reserved;
    ++tm.reserved_requests;
    refresh_view(p.token);
  }
  mm.waiting.push_back(r);
  mm.waiting_tokens += st.prefill_left;
  refresh_view(m);
  if (!mm.busy) start_iteration(m);
  return true;
}

void ClusterSim::join_decode(Machine& mm, int r) {
  ReqState& st = state_[r];
  ++mm.joined_this_iteration;
  mm.joiners.push_back(r);
  st.join_iter = mm.decode_iter;
  st.ctx_join = st.prefill_len + 1;
  st.left_at_join = st.tokens_left;
  ++mm.batch;
  mm.ctx += st.ctx_join;
  if (mm.role == Role::kMixed) {
    mm.kv_used += 1;  // the prefill already holds prefill_len tokens
    mm.admission.push_back(r);
  }
  mm.due.push({st.join_iter + st.tokens_left, {r, st.epoch}});
}

// Recompute-style preemption of the newest decode that may still be preempted: its KV
// goes back and it re-enters the prefill queue at the front with prompt + generated.
void ClusterSim::preempt_newest(Machine& mm, int m, bool force) {
  for (auto it = mm.admission.rbegin(); it != mm.admission.rend(); ++it) {
    const int r = *it;
    ReqState& st = state_[r];
    if (!force && !engine::may_preempt(records_[r].preemptions, spec_.batching.max_preemptions))
      continue;
    const int64_t done = mm.decode_iter - st.join_iter;  // tokens since it joined
    const int64_t held = st.ctx_join + done;
    mm.ctx -= held;
    mm.kv_used -= held;
    --mm.batch;
    ++st.epoch;
    // The cap bounds how often a sequence is evicted for others; yielding its own blocks
    // to a full cache is counted apart.
    if (engine::may_preempt(records_[r].preemptions, spec_.batching.max_preemptions))
      ++records_[r].preemptions;
    else
      ++records_[r].forced_evictions;
    st.tokens_left = st.left_at_join - static_cast<int>(done);
    st.prefill_len = st.prefill_left = static_cast<int>(held);
    mm.waiting.push_front(r);
    mm.waiting_tokens += st.prefill_left;
    mm.admission.erase(std::next(it).base());
    refresh_view(m);
    return;
  }
}

void ClusterSim::start_iteration(int m) {
  Machine& mm = *machines_[m];
  if (mm.busy || !mm.ready) return;
  const auto& cfg = spec_.batching;
  mm.chunks.clear();
  mm.decoding = false;
  int budget = cfg.max_batch_tokens;
  int64_t prefill_tokens = 0;

  // Decoders that joined since the last iteration (token: admission up to max_num_seqs).
  mm.joined_this_iteration = 0;
  mm.joiners.clear();
  if (mm.role != Role::kPrompt) {
    size_t take = 0;
    while (take < mm.joining.size() && mm.batch < cfg.max_num_seqs)
      join_decode(mm, mm.joining[take++]);
    mm.joining.erase(mm.joining.begin(), mm.joining.begin() + static_cast<std::ptrdiff_t>(take));
  }

  if (mm.role != Role::kToken) {
    // Prefill FCFS within the token budget (prompt machines hold the KV only until it has
    // streamed out, which the router already checked fits).
    for (size_t i = 0; i < mm.waiting.size() && budget > 0; ++i) {
      const int r = mm.waiting[i];
      ReqState& st = state_[r];
      const int count = engine::prefill_chunk(st.prefill_left, budget);
      if (mm.role == Role::kMixed) {
        // Prompts come first on a mixed machine and may evict decodes for room.
        while (free_kv(mm) < count && !mm.admission.empty()) {
          const int64_t before = mm.batch;
          preempt_newest(mm, m, false);
          if (mm.batch == before) break;
        }
        if (free_kv(mm) < count) break;
        mm.kv_used += count;
        // Evicted sequences went to the front: the loop index moves past them.
        i = static_cast<size_t>(std::find(mm.waiting.begin(), mm.waiting.end(), r) -
                                mm.waiting.begin());
      }
      if (st.prefill_start < 0) st.prefill_start = now_;
      mm.chunks.emplace_back(r, count);
      budget -= count;
      prefill_tokens += count;
    }
  }

  if (mm.batch > 0) {
    // Decodes run if the whole batch fits in what the prompts left of the budget (on a
    // mixed machine a prompt can stall them: that is the interference Splitwise avoids).
    // A batch larger than the whole budget runs when no prompt does: the engine would
    // run it over several steps, at about the same cost per token.
    bool run = mm.role == Role::kToken || mm.batch <= budget || mm.chunks.empty();
    if (run && mm.role == Role::kMixed) {
      // A decode that finds no KV room evicts a newer one that may still be preempted,
      // else the newest yields its own blocks even at the cap (as the engine does): a
      // full cache must never stop the machine.
      while (free_kv(mm) < mm.batch && !mm.admission.empty()) {
        const int64_t before = mm.batch;
        preempt_newest(mm, m, false);
        if (mm.batch == before) preempt_newest(mm, m, true);
      }
      run = mm.batch > 0 && free_kv(mm) >= mm.batch;
    }
    mm.decoding = run;
  }
  if (mm.chunks.empty() && !mm.decoding) {
    refresh_view(m);
    return;
  }
  const double ms =
      mm.role == Role::kPrompt ? mm.perf->prompt_ms(prefill_tokens)
      : mm.role == Role::kToken
          ? mm.perf->decode_ms(mm.batch, mm.ctx)
          : mm.perf->mixed_ms(prefill_tokens, mm.decoding ? mm.batch : 0, mm.decoding ? mm.ctx : 0);
  mm.busy = true;
  mm.iter_start = now_;
  MachineStats& s = stats_[m];
  s.iterations++;
  s.prefill_tokens += prefill_tokens;
  if (mm.decoding) {
    s.decode_tokens += mm.batch;
    s.max_batch = std::max(s.max_batch, mm.batch);
  }
  refresh_view(m);
  push(now_ + ms / 1e3, kIterationEnd, m);
}

void ClusterSim::end_iteration(int m) {
  Machine& mm = *machines_[m];
  mm.busy = false;
  stats_[m].busy_s += now_ - mm.iter_start;
  const double end = now_;

  if (mm.decoding) {
    // Sequences that were in the previous decode iteration waited since its end; those
    // that joined now waited since their first token (handoff included).
    token_gaps_.add(end - mm.last_decode_end, mm.batch - mm.joined_this_iteration);
    for (int r : mm.joiners) token_gaps_.add(end - records_[r].first_token);
    mm.last_decode_end = end;
    ++mm.decode_iter;
    mm.ctx += mm.batch;
    if (mm.role == Role::kMixed) mm.kv_used += mm.batch;
    while (!mm.due.empty() && mm.due.top().first <= mm.decode_iter) {
      const auto [r, epoch] = mm.due.top().second;
      mm.due.pop();
      ReqState& st = state_[r];
      if (epoch != st.epoch) continue;  // preempted since
      const int64_t held = st.ctx_join + st.left_at_join;
      mm.ctx -= held;
      --mm.batch;
      if (mm.role == Role::kMixed) {
        mm.kv_used -= held;
        std::erase(mm.admission, r);
      } else {
        mm.kv_used -= st.reserved;
        --mm.reserved_requests;
      }
      records_[r].finish = end;
      st.tokens_left = 0;
    }
  }
  // Prefill chunks, in plan order; finished prompts leave the queue's front part.
  for (const auto& [r, count] : mm.chunks) {
    ReqState& st = state_[r];
    st.prefill_left -= count;
    mm.waiting_tokens -= count;
    if (st.prefill_left == 0) {
      // FCFS: a finished prompt sits at or near the front.
      mm.waiting.erase(std::find(mm.waiting.begin(), mm.waiting.end(), r));
      prompt_done(m, r, end);
    }
  }
  mm.chunks.clear();
  refresh_view(m);
  start_iteration(m);
  maybe_retire(m);
}

void ClusterSim::prompt_done(int m, int r, double end) {
  Machine& mm = *machines_[m];
  RequestRecord& rec = records_[r];
  ReqState& st = state_[r];
  if (rec.first_token < 0) rec.first_token = end;
  --st.tokens_left;  // the prefill samples one token
  if (mm.role == Role::kMixed) {
    if (st.tokens_left == 0) {
      mm.kv_used -= st.prefill_len;
      rec.finish = end;
    } else {
      mm.joining.push_back(r);  // joins at the next iteration, which starts now
    }
    return;
  }
  // Prompt machine: the KV streams to the token machine layer by layer while the prefill
  // runs; only what is left when the last layer is computed delays the first decode.
  Machine& tm = *machines_[rec.token_machine];
  if (st.tokens_left == 0) {
    tm.kv_used -= st.reserved;
    --tm.reserved_requests;
    rec.finish = end;
    maybe_retire(rec.token_machine);
    refresh_view(rec.token_machine);
    return;
  }
  const double bytes = static_cast<double>(st.prefill_len) * spec_.model.kv_bytes_per_token();
  const double link = std::min(mm.link, tm.link);
  const double d = bytes / link;
  const double start = std::max({st.prefill_start, mm.egress_free, tm.ingress_free});
  const double sent = std::max(start + d, end + d / mm.layers);
  mm.egress_free = tm.ingress_free = sent;
  const double landed = sent + mm.handoff_overhead;
  rec.kv_tail_s = landed - end;
  push(landed, kKvLanded, r);
}

SimRun simulate(const ClusterSpec& spec, const std::vector<Request>& trace) {
  ClusterSim sim(spec);
  sim.add_requests(trace);
  sim.run_to_completion();
  return {sim.records(), sim.machines(), sim.now(), sim.events(), sim.token_gaps()};
}

}  // namespace splitwise::sim
