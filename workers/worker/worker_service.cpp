#include "workers/worker/worker_service.h"

#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

namespace splitwise::worker {

namespace {

engine::GenerationRequest to_generation(const WorkRequest& w) {
  engine::GenerationRequest g;
  g.id = static_cast<engine::SeqId>(w.id);
  g.prompt = w.prompt;
  g.sampling = {.temperature = w.temperature,
                .top_k = w.top_k,
                .top_p = w.top_p,
                .seed = w.seed,
                .first_index = w.sample_index};
  g.max_new_tokens = w.max_new_tokens;
  g.stop_ids = w.stop_ids;
  return g;
}

std::string error_body(const std::string& message) {
  return nlohmann::json{{"error", {{"message", message}}}}.dump();
}

transport::KvLayout layout_of(const engine::ModelConfig& c, int block_size,
                              const engine::KvMemoryInfo& mem) {
  return {static_cast<uint32_t>(c.num_layers), static_cast<uint32_t>(block_size),
          static_cast<uint32_t>(c.kv_dim()), static_cast<transport::KvFormat>(mem.format)};
}

}  // namespace

WorkerService::WorkerService(const engine::ModelWeights* weights,
                             std::unique_ptr<engine::Engine> engine, WorkerOptions options)
    : weights_(weights),
      options_(std::move(options)),
      engine_(std::move(engine)),
      metrics_(to_string(options_.role)) {
  net::ServerOptions http_opts;
  http_opts.host = options_.host;
  http_opts.port = options_.port;
  http_opts.max_body_bytes = 64 << 20;  // token arrays of long prompts
  http_ = std::make_unique<net::HttpServer>(io_, http_opts);
  loop_ = std::make_unique<EngineLoop>(
      engine_.get(), [this](engine::Engine& e, const std::vector<engine::StepResult>& r,
                            const StepInfo& info) { on_step(e, r, info); });
  const transport::KvLayout layout =
      layout_of(weights_->config, options_.engine.block_size, engine_->runner().kv_memory());
  if (options_.role == Role::kPrompt) {
    if (options_.kv_factory.sender)
      sender_ = options_.kv_factory.sender(layout);
    else
      sender_ = std::make_unique<SenderAdapter<transport::TcpKvSender>>(layout);
    engine_->set_handoff_listener([this](int layer, std::span<const engine::HandoffChunk> chunks) {
      on_handoff_layer(layer, chunks);
    });
  }
  if (options_.role == Role::kToken) {
    KvReservations::Events ev;
    ev.complete = [this](uint64_t id, int32_t first) {
      loop_->post([this, id, first](engine::Engine& e) {
        auto r = e.activate_prefilled(static_cast<engine::SeqId>(id), first);
        if (!r.ok()) return fail_stream(id, r.status().message());
        emit(id, *r);
      });
    };
    ev.failed = [this](uint64_t id, const std::string& reason) {
      metrics_.handoff_failed();
      loop_->post([this, id, reason](engine::Engine& e) {
        e.abort(static_cast<engine::SeqId>(id));
        fail_stream(id, reason);
      });
    };
    ev.received = [this](uint64_t bytes) { metrics_.handoff_received(bytes); };
    reservations_ = std::make_unique<KvReservations>(&engine_->runner(), std::move(ev));
    if (options_.kv_factory.receiver)
      receiver_ = options_.kv_factory.receiver(layout, reservations_.get(), options_.host,
                                               options_.kv_port);
    else
      receiver_ = std::make_unique<ReceiverAdapter<transport::TcpKvReceiver>>(
          layout, reservations_.get(), options_.host, options_.kv_port);
  }
  if (options_.gpu >= 0) {
    gpu_metrics_ =
        std::make_unique<GpuMetrics>(metrics_.registry(), std::vector<int>{options_.gpu});
    if (!gpu_metrics_->available())
      spdlog::warn("GPU metrics unavailable: {}", gpu_metrics_->unavailable_reason());
  }
  install_routes();
}

WorkerService::~WorkerService() { stop(); }

Status WorkerService::start() {
  if (receiver_) SW_RETURN_IF_ERROR(receiver_->start());
  if (sender_) sender_->start();
  SW_RETURN_IF_ERROR(http_->start());
  loop_->start();
  io_thread_ = std::thread([this] { io_.run(); });
  return {};
}

void WorkerService::stop() {
  if (!io_thread_.joinable()) return;
  http_->stop();
  io_.stop();
  io_thread_.join();
  loop_->stop();
  if (sender_) sender_->stop();
  if (receiver_) receiver_->stop();
}

void WorkerService::install_routes() {
  http_->route("GET", "/health", [](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
    w->respond(200, "application/json", "{\"status\":\"ok\"}");
  });
  http_->route("GET", "/metrics", [this](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
    metrics_.set_snapshot(loop_->snapshot());
    if (gpu_metrics_) gpu_metrics_->update(generated_tokens_.load());
    w->respond(200, "text/plain; version=0.0.4", metrics_.render());
  });
  http_->route(
      "GET", "/internal/state",
      [this](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) { handle_state(w); });
  const char* path = options_.role == Role::kPrompt  ? "/internal/prefill"
                     : options_.role == Role::kToken ? "/internal/decode"
                                                     : "/internal/generate";
  http_->route("POST", path, [this](net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
    switch (options_.role) {
      case Role::kPrompt:
        return handle_prefill(std::move(req), std::move(w));
      case Role::kToken:
        return handle_decode(std::move(req), std::move(w));
      case Role::kMixed:
        return handle_generate(std::move(req), std::move(w));
    }
  });
}

void WorkerService::handle_state(std::shared_ptr<net::ResponseWriter> w) {
  const EngineSnapshot s = loop_->snapshot();
  WorkerState st;
  st.role = options_.role;
  st.pending_prefill_tokens = s.pending_prefill_tokens;
  st.queued_requests = s.waiting + s.reserved;
  st.free_kv_blocks = s.free_kv_blocks;
  st.total_kv_blocks = s.total_kv_blocks;
  st.block_size = options_.engine.block_size;
  st.kv_port = kv_port();
  st.max_context = weights_->config.max_position;
  w->respond(200, "application/json", to_json(st).dump());
}

void WorkerService::handle_prefill(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
  auto work = parse_work_request(req.body);
  if (!work.ok()) return w->respond(400, "application/json", error_body(work.status().message()));
  if (work->kv_host.empty() || work->kv_port <= 0 || work->kv_port > 65535)
    return w->respond(400, "application/json", error_body("prefill needs kv_host and kv_port"));
  const uint64_t id = work->id;
  loop_->post([this, w, work = std::move(work.value())](engine::Engine& e) {
    engine::GenerationRequest g = to_generation(work);
    g.handoff = true;
    if (Status st = e.add_request(std::move(g)); !st.ok()) {
      metrics_.request_finished("rejected");
      return w->respond(400, "application/json", error_body(st.message()));
    }
    Prefill p;
    p.writer = w;
    p.target = {work.kv_host, static_cast<uint16_t>(work.kv_port)};
    p.start = std::chrono::steady_clock::now();
    prefills_.emplace(work.id, std::move(p));
  });
  w->on_client_gone([this, id] { loop_->post([this, id](engine::Engine&) { cancel(id); }); });
}

void WorkerService::handle_decode(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
  auto work = parse_work_request(req.body);
  if (!work.ok()) return w->respond(400, "application/json", error_body(work.status().message()));
  const uint64_t id = work->id;
  loop_->post([this, w, work = std::move(work.value())](engine::Engine& e) {
    auto table = e.reserve_prefilled(to_generation(work));
    if (!table.ok()) {
      const std::string& m = table.status().message();
      // No room is the cluster's problem (try another worker); anything else is the request's.
      const int code = m.find("no free KV blocks") != std::string::npos ? 503 : 400;
      metrics_.request_finished(code == 503 ? "no_room" : "rejected");
      return w->respond(code, "application/json", error_body(m));
    }
    reservations_->add(work.id, *table);
    streams_[work.id] = w;
    w->start_stream(200, "application/x-ndjson");
    w->write("{\"reserved\":true}\n");
    // A prompt worker that dies before its DONE would strand these blocks forever.
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, options_.reservation_timeout);
    timer->async_wait([this, timer, id = work.id](const boost::system::error_code& ec) {
      if (ec) return;
      loop_->post([this, id](engine::Engine&) {
        withdraw_reservation(id, "KV handoff timed out after " +
                                     std::to_string(options_.reservation_timeout.count()) + " s");
      });
    });
  });
  w->on_client_gone([this, id] { loop_->post([this, id](engine::Engine&) { cancel(id); }); });
}

void WorkerService::handle_generate(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
  auto work = parse_work_request(req.body);
  if (!work.ok()) return w->respond(400, "application/json", error_body(work.status().message()));
  const uint64_t id = work->id;
  loop_->post([this, w, work = std::move(work.value())](engine::Engine& e) {
    if (Status st = e.add_request(to_generation(work)); !st.ok()) {
      metrics_.request_finished("rejected");
      return w->respond(400, "application/json", error_body(st.message()));
    }
    streams_[work.id] = w;
    w->start_stream(200, "application/x-ndjson");
  });
  w->on_client_gone([this, id] { loop_->post([this, id](engine::Engine&) { cancel(id); }); });
}

void WorkerService::on_step(engine::Engine& e, const std::vector<engine::StepResult>& results,
                            const StepInfo& info) {
  metrics_.observe_step(info, static_cast<int>(info.prompt_tokens + info.decode_tokens));
  generated_tokens_ += static_cast<int64_t>(results.size());
  for (const engine::StepResult& r : results) {
    const uint64_t id = static_cast<uint64_t>(r.id);
    if (r.finish != engine::FinishReason::kHandoff) {
      emit(id, r);
      continue;
    }
    auto it = prefills_.find(id);
    if (it == prefills_.end()) {
      e.release(r.id);  // nobody waits for it any more
      continue;
    }
    Prefill& p = it->second;
    p.first_token = r.token;
    p.computed = std::chrono::steady_clock::now();
    if (!p.failed) {
      p.done_queued = true;
      ++p.outstanding;
      sender_->send_done(p.target, id, r.token, [this, id](Status st) {
        loop_->post([this, id, st](engine::Engine&) { send_frame_completed(id, st, true); });
      });
    }
    maybe_finish_prefill(id);
  }
}

void WorkerService::on_handoff_layer(int layer, std::span<const engine::HandoffChunk> chunks) {
  engine::Runner& runner = engine_->runner();
  const engine::KvMemoryInfo mem = runner.kv_memory();
  for (const engine::HandoffChunk& c : chunks) {
    const uint64_t id = static_cast<uint64_t>(c.id);
    auto it = prefills_.find(id);
    if (it == prefills_.end() || it->second.failed) continue;
    transport::LayerBlocks lb;
    lb.request = id;
    lb.layer = static_cast<uint32_t>(layer);
    lb.first_block = static_cast<uint32_t>(c.first_block);
    for (int b = c.first_block; b < c.first_block + c.num_blocks; ++b) {
      lb.k_blocks.push_back(runner.key_block(layer, c.blocks[b]));
      lb.v_blocks.push_back(runner.value_block(layer, c.blocks[b]));
    }
    if (mem.on_device) {
      lb.memory = transport::MemoryKind::kDevice;
      lb.device = mem.device;
      lb.ready_event = runner.layer_ready_event(layer);
    }
    Prefill& p = it->second;
    p.bytes += 2 * mem.half_block_bytes * static_cast<size_t>(c.num_blocks);
    ++p.outstanding;
    sender_->send_layer(p.target, std::move(lb), [this, id](Status st) {
      loop_->post([this, id, st](engine::Engine&) { send_frame_completed(id, st, false); });
    });
  }
}

void WorkerService::send_frame_completed(uint64_t id, const Status& st, bool is_done) {
  auto it = prefills_.find(id);
  if (it == prefills_.end()) return;
  Prefill& p = it->second;
  --p.outstanding;
  if (!st.ok() && !p.failed) {
    p.failed = true;
    p.error = "KV handoff to " + p.target.str() + " failed: " + st.message();
    metrics_.handoff_failed();
  }
  if (is_done) p.done_completed = true;
  maybe_finish_prefill(id);
}

// A prefill ends when no frame still reads its blocks: then the blocks can go, and the
// router gets the first token (or the error).
void WorkerService::maybe_finish_prefill(uint64_t id) {
  auto it = prefills_.find(id);
  if (it == prefills_.end()) return;
  Prefill& p = it->second;
  if (p.outstanding > 0) return;
  const bool handed_off = p.first_token >= 0;
  if (p.failed) {
    if (handed_off)
      engine_->release(static_cast<engine::SeqId>(id));
    else
      engine_->abort(static_cast<engine::SeqId>(id));
    // Best effort: the token worker frees its reservation on ABORT.
    sender_->send_abort(p.target, id, [](Status) {});
    metrics_.request_finished("failed");
    if (!p.writer->client_gone()) p.writer->respond(502, "application/json", error_body(p.error));
    prefills_.erase(it);
    return;
  }
  if (!handed_off || !p.done_completed) return;
  engine_->release(static_cast<engine::SeqId>(id));
  const auto now = std::chrono::steady_clock::now();
  metrics_.handoff_sent(p.bytes, std::chrono::duration<double>(now - p.start).count(),
                        std::chrono::duration<double>(now - p.computed).count());
  metrics_.request_finished("handoff");
  p.writer->respond(200, "application/json",
                    nlohmann::json{{"first_token", p.first_token}, {"kv_bytes", p.bytes}}.dump());
  prefills_.erase(it);
}

void WorkerService::emit(uint64_t id, const engine::StepResult& r) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  auto& w = it->second;
  w->write(token_line(r.token));
  if (r.finish == engine::FinishReason::kNone) return;
  w->write(finish_line(engine::to_string(r.finish)));
  w->finish();
  metrics_.request_finished(engine::to_string(r.finish));
  streams_.erase(it);
}

void WorkerService::fail_stream(uint64_t id, const std::string& reason) {
  spdlog::warn("request {}: {}", id, reason);
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second->write(error_line(reason));
  it->second->finish();
  metrics_.request_finished("failed");
  streams_.erase(it);
}

bool WorkerService::withdraw_reservation(uint64_t id, const std::string& reason) {
  if (!reservations_ || !reservations_->remove(id)) return false;
  // Frames for `id` are rejected from now on, but one may be copying into its blocks at
  // this moment: free them only after the receiver's thread has passed this point.
  receiver_->post([this, id, reason] {
    loop_->post([this, id, reason](engine::Engine& e) {
      e.abort(static_cast<engine::SeqId>(id));
      if (!reason.empty()) fail_stream(id, reason);
    });
  });
  return true;
}

void WorkerService::cancel(uint64_t id) {
  if (auto it = prefills_.find(id); it != prefills_.end()) {
    if (!it->second.failed) {
      it->second.failed = true;
      it->second.error = "cancelled by the router";
    }
    return maybe_finish_prefill(id);
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  streams_.erase(it);
  metrics_.request_finished("cancelled");
  if (withdraw_reservation(id, "")) return;
  engine_->abort(static_cast<engine::SeqId>(id));
}

}  // namespace splitwise::worker
