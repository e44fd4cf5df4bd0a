// Test helpers for the KV transport: a KvSink fake backed by a guarded block pool, frame
// builders, and a raw TCP client for feeding a receiver bytes no real sender would write.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "workers/transport/kv_frame.h"
#include "workers/transport/kv_transport.h"

namespace splitwise::transport::testing {

inline constexpr std::byte kCanary{0xC3};
inline constexpr std::byte kUnwritten{0x5A};
inline constexpr size_t kCanaryBytes = 4096;

// A KV pool of `pool_blocks` physical blocks laid out [layer][block][K | V], with canary
// bytes on both sides. Requests reserve physical blocks in shuffled order, so a block that
// lands at the wrong table index is caught. Every callback is recorded.
class FakeKvSink final : public KvSink {
 public:
  struct Event {
    enum Kind { kLayer, kDone, kAbort, kRejected } kind = kLayer;
    RequestId request = 0;
    uint32_t layer = 0, first_block = 0, num_blocks = 0;
    uint64_t bytes = 0;
    int32_t first_token = 0;
    std::string reason;
  };

  // `memory` kDevice only claims device memory (for the DeviceCopier paths): the pool is
  // host memory either way, so a fake copier can memcpy into it and tests can read it.
  FakeKvSink(KvLayout layout, uint32_t pool_blocks, uint32_t seed = 7,
             MemoryKind memory = MemoryKind::kHost, int device = -1)
      : memory_kind_(memory),
        device_(device),
        layout_(layout),
        half_(layout.half_block_bytes()),
        pool_blocks_(pool_blocks),
        memory_(2 * kCanaryBytes + pool_bytes(), kUnwritten),
        free_(pool_blocks) {
    std::fill_n(memory_.begin(), kCanaryBytes, kCanary);
    std::fill_n(memory_.end() - kCanaryBytes, kCanaryBytes, kCanary);
    for (uint32_t i = 0; i < pool_blocks; ++i) free_[i] = i;
    std::shuffle(free_.begin(), free_.end(), std::mt19937(seed));
  }

  bool reserve(RequestId request, uint32_t num_blocks) {
    std::lock_guard lock(mu_);
    if (free_.size() < num_blocks) return false;
    auto& table = tables_[request];
    for (uint32_t i = 0; i < num_blocks; ++i) {
      table.push_back(free_.back());
      free_.pop_back();
    }
    return true;
  }

  MemoryKind memory() const override { return memory_kind_; }
  int device() const override { return device_; }

  std::optional<Destination> destination(RequestId request, uint32_t layer,
                                         uint32_t index) override {
    std::lock_guard lock(mu_);
    auto it = tables_.find(request);
    if (it == tables_.end() || index >= it->second.size() || layer >= layout_.num_layers) {
      return std::nullopt;
    }
    std::byte* k = block_ptr(layer, it->second[index]);
    return Destination{k, k + half_};
  }
  void on_layer(RequestId request, uint32_t layer, uint32_t first_block, uint32_t num_blocks,
                uint64_t bytes) override {
    Event e = event(Event::kLayer, request);
    e.layer = layer;
    e.first_block = first_block;
    e.num_blocks = num_blocks;
    e.bytes = bytes;
    record(std::move(e));
  }
  void on_done(RequestId request, int32_t first_token) override {
    Event e = event(Event::kDone, request);
    e.first_token = first_token;
    record(std::move(e));
  }
  void on_abort(RequestId request) override { record(event(Event::kAbort, request)); }
  void on_rejected(RequestId request, const std::string& reason) override {
    Event e = event(Event::kRejected, request);
    e.reason = reason;
    record(std::move(e));
  }

  // What landed in table slot `index` of `request` for `layer`: K then V.
  std::vector<std::byte> block(RequestId request, uint32_t layer, uint32_t index) {
    std::lock_guard lock(mu_);
    const std::byte* p = block_ptr(layer, tables_.at(request).at(index));
    return std::vector<std::byte>(p, p + 2 * half_);
  }

  // Canaries intact and every block no request reserved still unwritten.
  bool untouched_outside_reservations() {
    std::lock_guard lock(mu_);
    auto all = [](const std::byte* p, size_t n, std::byte v) {
      return std::all_of(p, p + n, [v](std::byte b) { return b == v; });
    };
    if (!all(memory_.data(), kCanaryBytes, kCanary)) return false;
    if (!all(memory_.data() + kCanaryBytes + pool_bytes(), kCanaryBytes, kCanary)) return false;
    for (uint32_t b : free_) {
      for (uint32_t l = 0; l < layout_.num_layers; ++l) {
        if (!all(block_ptr(l, b), 2 * half_, kUnwritten)) return false;
      }
    }
    return true;
  }

  // A copy of the whole pool, to show that a rejected frame wrote nothing.
  std::vector<std::byte> snapshot() {
    std::lock_guard lock(mu_);
    return memory_;
  }

  std::vector<Event> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  size_t count(Event::Kind kind) {
    std::lock_guard lock(mu_);
    return counts_[kind];
  }
  // Waits until `n` events of `kind` have arrived; false on timeout.
  bool wait_for(Event::Kind kind, size_t n,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return counts_[kind] >= n; });
  }

 private:
  size_t pool_bytes() const { return size_t{layout_.num_layers} * pool_blocks_ * 2 * half_; }
  std::byte* block_ptr(uint32_t layer, uint32_t physical) {
    return memory_.data() + kCanaryBytes + (size_t{layer} * pool_blocks_ + physical) * 2 * half_;
  }
  static Event event(Event::Kind kind, RequestId request) {
    Event e;
    e.kind = kind;
    e.request = request;
    return e;
  }
  void record(Event e) {
    {
      std::lock_guard lock(mu_);
      ++counts_[e.kind];
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  const MemoryKind memory_kind_;
  const int device_;
  const KvLayout layout_;
  const size_t half_;
  const uint32_t pool_blocks_;
  std::mutex mu_;  // guards everything below; pool bytes are written only by the receiver
  std::condition_variable cv_;
  std::vector<std::byte> memory_;
  std::vector<uint32_t> free_;
  std::map<RequestId, std::vector<uint32_t>> tables_;
  std::vector<Event> events_;
  size_t counts_[4] = {};  // by Event::Kind
};

inline std::vector<std::byte> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

// A whole frame (header + payload) as a real sender would write it.
inline std::vector<std::byte> make_frame(FrameHeader h, std::span<const std::byte> payload) {
  h.payload_bytes = payload.size();
  h.payload_crc = crc32c(payload);
  const EncodedHeader header = encode_header(h);
  // memcpy rather than vector::insert, which trips a GCC 12 -Warray-bounds false positive.
  std::vector<std::byte> out(kFrameHeaderBytes + payload.size());
  std::memcpy(out.data(), header.data(), kFrameHeaderBytes);
  if (!payload.empty()) std::memcpy(out.data() + kFrameHeaderBytes, payload.data(), payload.size());
  return out;
}

inline FrameHeader layer_header(const KvLayout& layout, RequestId request, uint32_t layer,
                                uint32_t first_block, uint32_t num_blocks) {
  FrameHeader h;
  h.kind = FrameKind::kLayer;
  h.request = request;
  h.layer = layer;
  h.first_block = first_block;
  h.num_blocks = num_blocks;
  h.half_block_bytes = layout.half_block_bytes();
  h.layout = layout;
  return h;
}

// Connects to 127.0.0.1:port, writes `bytes`, half-closes, and waits (up to `timeout`)
// for the receiver to close its side. Once that happens the receiver has finished with
// every byte sent. Returns false on a connect failure or timeout.
inline bool raw_exchange(uint16_t port, std::span<const std::byte> bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  size_t sent = 0;
  // The receiver may close early (bad header) before taking everything: EPIPE / ECONNRESET
  // then ends the write, which is fine.
  while (ok && sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (ok) ::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ok) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ok = false;
      break;
    }
    char buf[256];
    if (::recv(fd, buf, sizeof(buf), 0) <= 0) break;  // EOF or reset: the receiver is done
  }
  ::close(fd);
  return ok;
}

}  // namespace splitwise::transport::testing
