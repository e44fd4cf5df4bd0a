// The worker's two ends of the KV handoff, whichever transport implements them: TCP for
// CPU workers, NCCL (with TCP fallback) for GPU workers. The worker library stays free of
// CUDA: a GPU worker's main() passes factories for the NCCL ends (see worker_main.cpp).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "workers/transport/kv_transport.h"

namespace splitwise::worker {

class KvSenderEndpoint : public transport::KvSender {
 public:
  virtual void start() = 0;
  virtual void stop() = 0;
};

class KvReceiverEndpoint {
 public:
  virtual ~KvReceiverEndpoint() = default;
  virtual Status start() = 0;
  virtual void stop() = 0;
  virtual uint16_t port() const = 0;
  // Runs `fn` once no write into the sink's memory that began before the post is going on.
  virtual void post(std::function<void()> fn) = 0;
};

// Wraps a concrete sender (TcpKvSender, NcclKvSender) built in place.
template <class S>
class SenderAdapter final : public KvSenderEndpoint {
 public:
  template <class... Args>
  explicit SenderAdapter(Args&&... args) : impl_(std::forward<Args>(args)...) {}
  void start() override { impl_.start(); }
  void stop() override { impl_.stop(); }
  void send_layer(const transport::Endpoint& to, transport::LayerBlocks blocks,
                  transport::Completion done) override {
    impl_.send_layer(to, std::move(blocks), std::move(done));
  }
  void send_done(const transport::Endpoint& to, transport::RequestId request, int32_t first_token,
                 transport::Completion done) override {
    impl_.send_done(to, request, first_token, std::move(done));
  }
  void send_abort(const transport::Endpoint& to, transport::RequestId request,
                  transport::Completion done) override {
    impl_.send_abort(to, request, std::move(done));
  }
  S& impl() { return impl_; }

 private:
  S impl_;
};

template <class R>
class ReceiverAdapter final : public KvReceiverEndpoint {
 public:
  template <class... Args>
  explicit ReceiverAdapter(Args&&... args) : impl_(std::forward<Args>(args)...) {}
  Status start() override { return impl_.start(); }
  void stop() override { impl_.stop(); }
  uint16_t port() const override { return impl_.port(); }
  void post(std::function<void()> fn) override { impl_.post(std::move(fn)); }

 private:
  R impl_;
};

// Builds the ends; an empty factory means TCP.
struct KvTransportFactory {
  std::function<std::unique_ptr<KvSenderEndpoint>(const transport::KvLayout&)> sender;
  std::function<std::unique_ptr<KvReceiverEndpoint>(const transport::KvLayout&, transport::KvSink*,
                                                    const std::string& host, uint16_t port)>
      receiver;
};

}  // namespace splitwise::worker
