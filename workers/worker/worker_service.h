// The worker daemon's service: HTTP endpoints for the router, the engine loop, the KV
// transport of its role, and metrics. Roles:
//   prompt  POST /internal/prefill: prefill, hand each layer's KV to the token worker,
//           answer with the first token once the KV is delivered.
//   token   POST /internal/decode: reserve KV blocks ({"reserved":true}), receive the
//           prompt worker's KV, then stream tokens as NDJSON.
//   mixed   POST /internal/generate: both phases here, streaming tokens.
// All roles: GET /health, GET /metrics, GET /internal/state.
#pragma once

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "workers/engine/engine.h"
#include "workers/net/http.h"
#include "workers/transport/tcp_kv_transport.h"
#include "workers/worker/engine_loop.h"
#include "workers/worker/gpu_metrics.h"
#include "workers/worker/kv_endpoints.h"
#include "workers/worker/kv_reservations.h"
#include "workers/worker/protocol.h"
#include "workers/worker/worker_metrics.h"

namespace splitwise::worker {

struct WorkerOptions {
  Role role = Role::kMixed;
  std::string host = "127.0.0.1";
  uint16_t port = 0;     // HTTP; 0 = any free port
  uint16_t kv_port = 0;  // token role: KV receiver; 0 = any free port
  engine::EngineConfig engine;
  std::chrono::seconds reservation_timeout{30};  // token role: KV that never comes
  int gpu = -1;                      // the CUDA device the engine runs on; -1: CPU (no GPU metrics)
  std::string kv_transport = "tcp";  // tcp | nccl (NCCL needs the CUDA backend on both ends)
  KvTransportFactory kv_factory;     // empty: TCP (a GPU worker's main passes NCCL ends)
};

class WorkerService {
 public:
  // `weights` must outlive the service.
  // `engine` runs on `weights` (CPU or CUDA backend, built by the caller).
  WorkerService(const engine::ModelWeights* weights, std::unique_ptr<engine::Engine> engine,
                WorkerOptions options);
  ~WorkerService();

  Status start();  // binds HTTP (and the KV receiver), starts threads
  void stop();
  uint16_t port() const { return http_->port(); }
  uint16_t kv_port() const { return receiver_ ? receiver_->port() : 0; }

 private:
  // Per-request state, owned by the engine thread.
  struct Prefill {
    std::shared_ptr<net::ResponseWriter> writer;
    transport::Endpoint target;
    std::chrono::steady_clock::time_point start;
    std::chrono::steady_clock::time_point computed;  // the prompt's last layer ran
    uint64_t bytes = 0;
    int outstanding = 0;  // frames queued and not completed
    bool failed = false;
    bool done_queued = false;
    bool done_completed = false;
    int32_t first_token = -1;
    std::string error;
  };

  void install_routes();
  void handle_prefill(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w);
  void handle_decode(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w);
  void handle_generate(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w);
  void handle_state(std::shared_ptr<net::ResponseWriter> w);

  // Engine thread.
  void on_step(engine::Engine& e, const std::vector<engine::StepResult>& results,
               const StepInfo& info);
  void on_handoff_layer(int layer, std::span<const engine::HandoffChunk> chunks);
  void send_frame_completed(uint64_t id, const Status& st, bool is_done);
  void maybe_finish_prefill(uint64_t id);
  void emit(uint64_t id, const engine::StepResult& r);
  void fail_stream(uint64_t id, const std::string& reason);
  // Cancels `id` when its stream's client (the router) has gone.
  void cancel(uint64_t id);
  // Token role: takes back a reservation still waiting for its KV and frees its blocks
  // once no frame can be writing into them; `reason` non-empty also fails the stream.
  // False when `id` holds no reservation.
  bool withdraw_reservation(uint64_t id, const std::string& reason);

  const engine::ModelWeights* weights_;
  WorkerOptions options_;
  boost::asio::io_context io_;
  std::unique_ptr<net::HttpServer> http_;
  std::thread io_thread_;
  std::unique_ptr<engine::Engine> engine_;
  WorkerMetrics metrics_;
  std::unique_ptr<GpuMetrics> gpu_metrics_;   // with a GPU engine only
  std::atomic<int64_t> generated_tokens_{0};  // sampled tokens, for energy per token
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<KvSenderEndpoint> sender_;      // prompt role
  std::unique_ptr<KvReservations> reservations_;  // token role
  std::unique_ptr<KvReceiverEndpoint> receiver_;  // token role

  // Engine-thread state.
  std::unordered_map<uint64_t, Prefill> prefills_;
  std::unordered_map<uint64_t, std::shared_ptr<net::ResponseWriter>> streams_;
};

}  // namespace splitwise::worker
