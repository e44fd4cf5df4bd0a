#include "bench/load/load_runner.h"

#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>

#include "workers/net/http.h"

namespace splitwise::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Everything lives on one io_context thread, so no field needs a lock.
struct Run {
  const RunOptions& options;
  boost::asio::io_context io;
  net::HttpClient client{io};
  boost::asio::steady_timer timer{io};
  Clock::time_point start;
  std::vector<std::string> bodies;
  std::vector<RequestRecord> records;
  std::vector<bool> done;  // saw "data: [DONE]"
  std::vector<std::string> error_body;

  explicit Run(const RunOptions& o) : options(o) {}
  double now_s() const { return std::chrono::duration<double>(Clock::now() - start).count(); }
  void send(size_t i);
  void schedule(size_t i);
  void on_line(size_t i, std::string_view line);
  void on_end(size_t i, const Status& status);
};

void Run::schedule(size_t i) {
  if (i >= records.size()) return;
  timer.expires_at(start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(records[i].scheduled_s)));
  timer.async_wait([this, i](const boost::system::error_code& ec) {
    if (ec) return;
    // Send this one and every later one already due: after a stall (the client's own
    // thread starved on a busy machine) late requests leave together, and the schedule
    // does not drift.
    size_t j = i;
    do send(j++);
    while (j < records.size() && records[j].scheduled_s <= now_s());
    schedule(j);
  });
}

void Run::send(size_t i) {
  RequestRecord& r = records[i];
  r.sent_s = now_s();
  net::HttpRequest req;
  req.method = "POST";
  req.target = "/v1/completions";
  req.headers["content-type"] = "application/json";
  req.headers["accept"] = "text/event-stream";
  req.body = bodies[i];
  client.stream(
      options.host, options.port, std::move(req), options.idle_timeout_ms,
      [this, i](const net::HttpResponse& head) { records[i].http_status = head.status; },
      [this, i](std::string_view line) { on_line(i, line); },
      [this, i](Status st) { on_end(i, st); });
}

void Run::on_line(size_t i, std::string_view line) {
  RequestRecord& r = records[i];
  if (r.http_status != 200) {
    error_body[i] += line;  // an error answer is one JSON body, not an event stream
    return;
  }
  if (line.rfind("data: ", 0) != 0) return;  // blank separators between events
  const std::string_view payload = line.substr(6);
  if (payload == "[DONE]") {
    done[i] = true;
    return;
  }
  const double t = now_s();
  const auto j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  if (j.contains("error")) {
    r.failure = "stream_error";  // a worker failed after the stream had started
    r.message = j["error"].value("message", "");
    return;
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    r.prompt_tokens = j["usage"].value("prompt_tokens", 0);
    r.completion_tokens = j["usage"].value("completion_tokens", 0);
  }
  // The router sends one chunk per token, except for tokens whose text it holds back
  // (half a UTF-8 character, a possible stop string): those arrive merged with the next.
  // A request whose very first token is end-of-text has no text at all; its closing
  // chunk (finish_reason set) then marks the first token, or TTFT would be undefined.
  const auto& choices = j.value("choices", nlohmann::json::array());
  if (choices.empty() || !choices[0].is_object()) return;
  const auto& c = choices[0];
  const bool text = c.contains("text") && c["text"].is_string() &&
                    !c["text"].get_ref<const std::string&>().empty();
  const bool finish = c.contains("finish_reason") && !c["finish_reason"].is_null();
  if (text || (finish && r.token_s.empty())) r.token_s.push_back(t);
}

void Run::on_end(size_t i, const Status& status) {
  RequestRecord& r = records[i];
  r.end_s = now_s();
  if (r.http_status == 429) {
    r.failure = "http_429";
  } else if (r.http_status != 0 && r.http_status != 200) {
    r.failure = "http_" + std::to_string(r.http_status);
  } else if (!r.failure.empty()) {
    // stream_error already set
  } else if (!status.ok()) {
    r.failure = r.http_status == 0 ? "connect" : "broken_stream";
    r.message = status.message();
  } else if (!done[i]) {
    r.failure = "no_done";  // the body ended cleanly but without "data: [DONE]"
  } else if (r.token_s.empty()) {
    r.failure = "no_tokens";  // no first token: TTFT is undefined, so it cannot count as ok
  }
  if (r.failure.rfind("http_", 0) == 0) r.message = error_body[i];
  if (options.serial && i + 1 < records.size()) {
    records[i + 1].scheduled_s = now_s();
    send(i + 1);
  }
}

}  // namespace

std::vector<RequestRecord> run_workload(const RunOptions& options,
                                        const std::vector<Arrival>& arrivals,
                                        PromptBuilder& prompts) {
  auto run = std::make_unique<Run>(options);
  run->records.resize(arrivals.size());
  run->done.assign(arrivals.size(), false);
  run->error_body.resize(arrivals.size());
  for (size_t i = 0; i < arrivals.size(); ++i) {
    const Prompt& p = prompts.get(arrivals[i].prompt_tokens);
    nlohmann::json body = {{"prompt", p.text},
                           {"max_tokens", arrivals[i].output_tokens},
                           {"temperature", options.temperature},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
    run->bodies.push_back(body.dump());
    RequestRecord& r = run->records[i];
    r.target_prompt_tokens = arrivals[i].prompt_tokens;
    r.max_tokens = arrivals[i].output_tokens;
    r.scheduled_s = arrivals[i].at_s;
  }
  if (arrivals.empty()) return {};
  // A short lead so the first send is not charged for setting up the loop.
  run->start = Clock::now() + std::chrono::milliseconds(20);
  if (options.serial) {
    run->timer.expires_at(run->start);
    run->timer.async_wait([r = run.get()](const boost::system::error_code& ec) {
      if (!ec) r->send(0);
    });
  } else {
    run->schedule(0);
  }
  run->io.run();  // returns once every stream has ended: idle timeouts bound the wait
  return std::move(run->records);
}

}  // namespace splitwise::bench
