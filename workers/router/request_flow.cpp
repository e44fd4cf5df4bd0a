#include "workers/router/request_flow.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "workers/worker/protocol.h"

namespace splitwise::router {

namespace {
// Worker-level ids are unique per router process; an attempt never reuses one, so a
// stale stream of an earlier attempt can never be mistaken for the current one.
std::atomic<uint64_t> next_attempt_id{1};
}  // namespace

RequestFlow::RequestFlow(WorkerPool& pool, net::HttpClient& client, const PolicyConfig& policy,
                         FlowOptions options, FlowRequest request, FlowCallbacks callbacks)
    : pool_(pool),
      client_(client),
      policy_(policy),
      options_(options),
      request_(std::move(request)),
      cb_(std::move(callbacks)) {}

void RequestFlow::start() { attempt(); }

void RequestFlow::cancel() {
  if (done_) return;
  done_ = true;
  stop_streams();
}

void RequestFlow::stop_streams() {
  if (cancel_stream_) std::exchange(cancel_stream_, nullptr)();
}

net::HttpRequest RequestFlow::work_request(const std::string& path, const std::string& kv_host,
                                           int kv_port) const {
  worker::WorkRequest w;
  w.id = attempt_id_;
  w.prompt = request_.prompt;
  w.prompt.insert(w.prompt.end(), generated_.begin(), generated_.end());
  w.temperature = request_.temperature;
  w.top_p = request_.top_p;
  w.seed = request_.seed;
  w.sample_index = static_cast<int64_t>(generated_.size());
  w.max_new_tokens = request_.max_new_tokens - static_cast<int>(generated_.size());
  w.stop_ids = request_.stop_ids;
  w.kv_host = kv_host;
  w.kv_port = kv_port;
  net::HttpRequest req;
  req.method = "POST";
  req.target = path;
  req.headers["content-type"] = "application/json";
  req.body = worker::to_json(w).dump();
  return req;
}

void RequestFlow::attempt() {
  if (done_) return;
  if (++attempts_ > options_.max_attempts)
    return fail(503, "request failed on " + std::to_string(options_.max_attempts) +
                         " placements; last error: " + last_error_);
  attempt_id_ = next_attempt_id++;
  stream_status_ = 0;
  last_error_.clear();
  const int prompt_len = static_cast<int>(request_.prompt.size() + generated_.size());
  const int remaining = request_.max_new_tokens - static_cast<int>(generated_.size());
  const std::vector<WorkerView> views = pool_.views();
  const Placement p = place(views, prompt_len, remaining, policy_);
  switch (p.kind) {
    case Placement::Kind::kSplit:
      pool_.placed(p.prompt, prompt_len, 0);
      pool_.placed(
          p.token, 0,
          static_cast<int>(blocks_needed(prompt_len + remaining, views[p.token].block_size)));
      return start_split(p.prompt, p.token);
    case Placement::Kind::kMixed:
      pool_.placed(
          p.mixed, prompt_len,
          static_cast<int>(blocks_needed(prompt_len + remaining, views[p.mixed].block_size)));
      return start_mixed(p.mixed);
    case Placement::Kind::kReject:
      if (generated_.empty() && attempts_ == 1)
        return fail(p.retry_after_s > 0 ? 429 : 400, p.reason, p.retry_after_s);
      // Mid-stream: wait a little for a worker to come back rather than fail at once.
      return fail(503, "no worker can continue the request: " + p.reason);
  }
}

void RequestFlow::start_split(int prompt, int token) {
  prompt_worker_ = prompt;
  const uint64_t id = attempt_id_;
  const WorkerAddress& t = pool_.address(token);
  kv_host_ = t.host;
  kv_port_ = pool_.state(token).kv_port;
  auto self = shared_from_this();
  cancel_stream_ = client_.stream(
      t.host, t.port, work_request("/internal/decode", "", 0), options_.stream_idle_timeout_ms,
      [self, id](const net::HttpResponse& head) {
        if (id == self->attempt_id_) self->stream_status_ = head.status;
      },
      [self, id](std::string_view line) { self->on_line(id, line); },
      [self, id, token](Status st) { self->on_stream_end(id, token, st); });
}

void RequestFlow::start_mixed(int mixed) {
  prompt_worker_ = -1;
  const uint64_t id = attempt_id_;
  const WorkerAddress& m = pool_.address(mixed);
  auto self = shared_from_this();
  cancel_stream_ = client_.stream(
      m.host, m.port, work_request("/internal/generate", "", 0), options_.stream_idle_timeout_ms,
      [self, id](const net::HttpResponse& head) {
        if (id == self->attempt_id_) self->stream_status_ = head.status;
      },
      [self, id](std::string_view line) { self->on_line(id, line); },
      [self, id, mixed](Status st) { self->on_stream_end(id, mixed, st); });
}

void RequestFlow::on_line(uint64_t attempt, std::string_view line) {
  if (done_ || attempt != attempt_id_) return;
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  if (j.contains("reserved")) {
    // KV blocks wait on the token worker: now the prompt worker may prefill into them.
    const int prompt = prompt_worker_;
    const WorkerAddress& p = pool_.address(prompt);
    auto self = shared_from_this();
    client_.request(
        p.host, p.port, work_request("/internal/prefill", kv_host_, kv_port_),
        options_.prefill_timeout_ms, [self, attempt, prompt](Result<net::HttpResponse> r) {
          if (self->done_ || attempt != self->attempt_id_) return;
          if (r.ok() && r->status == 200) return;  // tokens come on the stream
          self->last_error_ =
              "prefill on " + self->pool_.address(prompt).id() + " failed: " +
              (r.ok() ? std::to_string(r->status) + " " + r->body : r.status().message());
          if (!r.ok()) self->pool_.mark_failed(prompt);
          if (r.ok() && r->status == 400) return self->fail(400, r->body);
          self->retry(self->last_error_);
        });
    return;
  }
  if (j.contains("token")) {
    const int32_t t = j["token"].get<int32_t>();
    generated_.push_back(t);
    cb_.on_token(t);
    return;
  }
  if (j.contains("finish")) {
    done_ = true;
    cancel_stream_ = nullptr;
    cb_.on_finish(j["finish"].get<std::string>());
    return;
  }
  if (j.contains("error")) {
    // NDJSON error lines carry a string; a worker's non-200 JSON body an object.
    const auto& e = j["error"];
    last_error_ = e.is_string() ? e.get<std::string>() : e.value("message", e.dump());
  }
}

void RequestFlow::on_stream_end(uint64_t attempt, int worker, const Status& st) {
  if (done_ || attempt != attempt_id_) return;
  // The worker refused the request itself (bad input): no other worker will accept it.
  if (stream_status_ == 400) return fail(400, last_error_);
  // The stream ended without a finish line: the worker failed or was lost.
  if (!st.ok()) {
    last_error_ = "stream from " + pool_.address(worker).id() + " broke: " + st.message();
    pool_.mark_failed(worker);
  } else if (last_error_.empty()) {
    last_error_ = "stream from " + pool_.address(worker).id() + " ended without a finish";
  }
  if (!generated_.empty() && cb_.on_failover) cb_.on_failover();
  retry(last_error_);
}

void RequestFlow::retry(const std::string& why) {
  if (done_) return;
  spdlog::warn("request attempt {} failed ({}); re-placing with {} tokens generated", attempt_id_,
               why, generated_.size());
  stop_streams();
  if (static_cast<int>(generated_.size()) >= request_.max_new_tokens) {
    done_ = true;
    return cb_.on_finish("length");
  }
  attempt();
}

void RequestFlow::fail(int status, const std::string& message, int retry_after_s) {
  if (done_) return;
  done_ = true;
  stop_streams();
  cb_.on_error(status, message, retry_after_s);
}

}  // namespace splitwise::router
