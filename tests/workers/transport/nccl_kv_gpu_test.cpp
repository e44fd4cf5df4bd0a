// The NCCL KV transport end to end in one process: a prompt side on GPU 0 and a token
// side on GPU 1 (two threads each side: engine and transport), KV caches laid out like the
// CUDA runner's, blocks reserved in shuffled order. Every destination byte is checked, and
// so is everything that must not have been written. Also: the fallbacks (receiver refuses,
// NCCL unusable, same GPU on both ends) and device memory over TCP on one GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "kernels/cuda/check.cuh"
#include "tests/workers/transport/transport_test_util.h"
#include "workers/transport/nccl/nccl_kv_transport.h"

namespace splitwise::transport::nccl {
namespace {

using namespace std::chrono_literals;

// Llama-3-8B's per-layer block shape (8 kv heads x 128, block 16, bf16), fewer layers.
const KvLayout kLayout{6, 16, 1024, KvFormat::kGpuBf16};  // half block = 32 KiB
constexpr std::byte kUnwritten{0x5A};
constexpr size_t kCanary = 4096;

int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// A KV cache on one GPU: [layer][K pool | V pool], each pool `blocks` blocks of
// half_block_bytes, with canary bytes before and after.
class DeviceKv {
 public:
  DeviceKv(int device, uint32_t blocks) : device_(device), blocks_(blocks) {
    SW_CUDA_CHECK(cudaSetDevice(device));
    bytes_ = 2 * kCanary + size_t{kLayout.num_layers} * 2 * blocks * half();
    SW_CUDA_CHECK(cudaMalloc(&base_, bytes_));
    SW_CUDA_CHECK(cudaMemset(base_, static_cast<int>(kUnwritten), bytes_));
  }
  ~DeviceKv() {
    cudaSetDevice(device_);
    cudaFree(base_);
  }
  static size_t half() { return kLayout.half_block_bytes(); }
  // Offset of layer `l`'s K (v = false) or V pool in the whole allocation.
  size_t pool_offset(uint32_t l, bool v) const {
    return kCanary + (size_t{l} * 2 + (v ? 1 : 0)) * blocks_ * half();
  }
  std::byte* k(uint32_t l, uint32_t b) const { return base_ + pool_offset(l, false) + b * half(); }
  std::byte* v(uint32_t l, uint32_t b) const { return base_ + pool_offset(l, true) + b * half(); }
  std::byte* layer_base(uint32_t l) const { return base_ + pool_offset(l, false); }
  size_t layer_bytes() const { return 2 * size_t{blocks_} * half(); }
  std::vector<std::byte> read() const {
    std::vector<std::byte> out(bytes_);
    SW_CUDA_CHECK(cudaSetDevice(device_));
    SW_CUDA_CHECK(cudaMemcpy(out.data(), base_, bytes_, cudaMemcpyDeviceToHost));
    return out;
  }
  int device() const { return device_; }
  uint32_t blocks() const { return blocks_; }

 private:
  int device_;
  uint32_t blocks_;
  size_t bytes_ = 0;
  std::byte* base_ = nullptr;
};

// The token worker's KV reservations on a GPU, as a KvSink.
class DeviceSink final : public KvSink {
 public:
  struct Event {
    char kind;  // 'L' layer, 'D' done, 'A' abort, 'R' rejected
    RequestId request;
    uint32_t layer;
    std::string reason;
  };

  DeviceSink(int device, uint32_t blocks, uint64_t seed) : kv_(device, blocks), free_(blocks) {
    std::iota(free_.begin(), free_.end(), 0);
    std::shuffle(free_.begin(), free_.end(), std::mt19937_64(seed));
  }
  void reserve(RequestId r, uint32_t n) {
    std::lock_guard lock(mu_);
    for (uint32_t i = 0; i < n; ++i) {
      tables_[r].push_back(free_.back());
      free_.pop_back();
    }
  }
  MemoryKind memory() const override { return MemoryKind::kDevice; }
  int device() const override { return kv_.device(); }
  std::optional<Destination> destination(RequestId r, uint32_t layer, uint32_t index) override {
    std::lock_guard lock(mu_);
    auto it = tables_.find(r);
    if (it == tables_.end() || index >= it->second.size()) return std::nullopt;
    return Destination{kv_.k(layer, it->second[index]), kv_.v(layer, it->second[index])};
  }
  void on_layer(RequestId r, uint32_t layer, uint32_t, uint32_t, uint64_t) override {
    record({'L', r, layer, ""});
  }
  void on_done(RequestId r, int32_t) override { record({'D', r, 0, ""}); }
  void on_abort(RequestId r) override { record({'A', r, 0, ""}); }
  void on_rejected(RequestId r, const std::string& why) override { record({'R', r, 0, why}); }

  bool wait_for(char kind, size_t n, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_locked(kind) >= n; });
  }
  std::vector<Event> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<uint32_t> table(RequestId r) {
    std::lock_guard lock(mu_);
    return tables_[r];
  }
  std::vector<uint32_t> unreserved() {
    std::lock_guard lock(mu_);
    return free_;
  }
  const DeviceKv& kv() const { return kv_; }

 private:
  size_t count_locked(char kind) {
    return std::count_if(events_.begin(), events_.end(),
                         [&](const Event& e) { return e.kind == kind; });
  }
  void record(Event e) {
    {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  DeviceKv kv_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint32_t> free_;
  std::map<RequestId, std::vector<uint32_t>> tables_;
  std::vector<Event> events_;
};

// The prompt worker's side: a KV cache whose layers a "runner" stream writes (late, behind
// a host delay, so a sender that does not wait for ready_event reads stale bytes) and a
// block table per request.
class PromptSide {
 public:
  PromptSide(int device, uint32_t blocks, uint64_t seed) : kv_(device, blocks), rng_(seed) {
    SW_CUDA_CHECK(cudaSetDevice(device));
    SW_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SW_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    SW_CUDA_CHECK(cudaMallocHost(&host_, kv_.layer_bytes() * kLayout.num_layers));
    for (size_t i = 0; i < kv_.layer_bytes() * kLayout.num_layers; ++i) {
      host_[i] = static_cast<std::byte>(rng_());
    }
    free_.resize(blocks);
    std::iota(free_.begin(), free_.end(), 0);
    std::shuffle(free_.begin(), free_.end(), rng_);
  }
  ~PromptSide() {
    cudaSetDevice(kv_.device());
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
    cudaFreeHost(host_);
  }
  void add_request(RequestId r, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      tables_[r].push_back(free_.back());
      free_.pop_back();
    }
  }
  // "Computes" layer l: its bytes land after a delay, then ready_event is recorded. The
  // same event is recorded again for the next layer, as the runner does.
  void compute_layer(uint32_t l) {
    SW_CUDA_CHECK(cudaSetDevice(kv_.device()));
    SW_CUDA_CHECK(cudaLaunchHostFunc(
        stream_, [](void*) { std::this_thread::sleep_for(2ms); }, nullptr));
    SW_CUDA_CHECK(cudaMemcpyAsync(kv_.layer_base(l), host_ + l * kv_.layer_bytes(),
                                  kv_.layer_bytes(), cudaMemcpyHostToDevice, stream_));
    SW_CUDA_CHECK(cudaEventRecord(ready_, stream_));
  }
  LayerBlocks blocks(RequestId r, uint32_t l, uint32_t first, uint32_t count) const {
    LayerBlocks lb{r, l, first, {}, {}};
    for (uint32_t i = first; i < first + count; ++i) {
      lb.k_blocks.push_back(kv_.k(l, tables_.at(r)[i]));
      lb.v_blocks.push_back(kv_.v(l, tables_.at(r)[i]));
    }
    lb.memory = MemoryKind::kDevice;
    lb.device = kv_.device();
    lb.ready_event = ready_;
    return lb;
  }
  // What table slot `index` of `r` holds in layer l: K then V.
  std::vector<std::byte> expected(RequestId r, uint32_t l, uint32_t index) const {
    const uint32_t b = tables_.at(r)[index];
    const std::byte* layer = host_ + l * kv_.layer_bytes();
    const size_t half = DeviceKv::half();
    std::vector<std::byte> out(layer + b * half, layer + (b + 1) * half);
    const std::byte* v = layer + size_t{kv_.blocks()} * half + b * half;
    out.insert(out.end(), v, v + half);
    return out;
  }
  uint32_t table_size(RequestId r) const { return tables_.at(r).size(); }

 private:
  DeviceKv kv_;
  std::mt19937_64 rng_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  std::byte* host_ = nullptr;
  std::vector<uint32_t> free_;
  std::map<RequestId, std::vector<uint32_t>> tables_;
};

// Collects completions.
class Completions {
 public:
  Completion add() {
    auto p = std::make_shared<std::promise<Status>>();
    futures_.push_back(p->get_future());
    return [p](Status s) { p->set_value(std::move(s)); };
  }
  void expect_all_ok() {
    for (auto& f : futures_) {
      ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
      const Status s = f.get();
      EXPECT_TRUE(s.ok()) << s.message();
    }
    futures_.clear();
  }

 private:
  std::vector<std::future<Status>> futures_;
};

// Routes spdlog to a string for the test's lifetime.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%l|%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  // Warning lines containing `fragment`. Read once the transports have stopped.
  std::vector<std::string> warnings(const std::string& fragment) {
    std::vector<std::string> out;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("warning|", 0) == 0 && line.find(fragment) != std::string::npos) {
        out.push_back(line);
      }
    }
    return out;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

struct Request {
  RequestId id;
  uint32_t blocks;
  bool split;  // sent as two frames per layer (first_block != 0)
};
const Request kRequests[] = {{11, 1, false}, {12, 5, true}, {13, 9, false}, {14, 3, false}};

// Sends every layer of `requests` layer-major (as a batched prefill does), then DONE for
// each; `abort_id` gets its layers and then ABORT instead.
void run_prefill(KvSender& sender, const Endpoint& to, PromptSide& prompt,
                 std::span<const Request> requests, Completions& done, RequestId abort_id = 0) {
  for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
    prompt.compute_layer(l);
    for (const Request& r : requests) {
      if (r.split) {
        sender.send_layer(to, prompt.blocks(r.id, l, 0, 2), done.add());
        sender.send_layer(to, prompt.blocks(r.id, l, 2, r.blocks - 2), done.add());
      } else {
        sender.send_layer(to, prompt.blocks(r.id, l, 0, r.blocks), done.add());
      }
    }
  }
  for (const Request& r : requests) {
    if (r.id == abort_id) {
      sender.send_abort(to, r.id, done.add());
    } else {
      sender.send_done(to, r.id, static_cast<int32_t>(r.id), done.add());
    }
  }
}

size_t frames_per_prefill(std::span<const Request> requests) {
  size_t n = 0;
  for (const Request& r : requests) n += r.split ? 2 : 1;
  return n * kLayout.num_layers;
}

// Every reserved block holds what the prompt side computed; nothing else was touched.
void verify(DeviceSink& sink, const PromptSide& prompt, std::span<const Request> requests) {
  const std::vector<std::byte> got = sink.kv().read();
  const size_t half = DeviceKv::half();
  const auto at = [&](size_t offset) { return got.begin() + static_cast<ptrdiff_t>(offset); };
  for (const Request& r : requests) {
    const std::vector<uint32_t> table = sink.table(r.id);
    for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
      for (uint32_t i = 0; i < r.blocks; ++i) {
        const std::vector<std::byte> want = prompt.expected(r.id, l, i);
        const size_t k = sink.kv().pool_offset(l, false) + table[i] * half;
        const size_t v = sink.kv().pool_offset(l, true) + table[i] * half;
        ASSERT_TRUE(std::equal(at(k), at(k + half), want.begin()))
            << "K of request " << r.id << " layer " << l << " block " << i;
        ASSERT_TRUE(std::equal(at(v), at(v + half), want.begin() + half))
            << "V of request " << r.id << " layer " << l << " block " << i;
      }
    }
  }
  const auto untouched = [&](size_t offset, size_t n) {
    return std::all_of(at(offset), at(offset + n), [](std::byte b) { return b == kUnwritten; });
  };
  EXPECT_TRUE(untouched(0, kCanary));
  EXPECT_TRUE(untouched(got.size() - kCanary, kCanary));
  for (uint32_t b : sink.unreserved()) {
    for (uint32_t l = 0; l < kLayout.num_layers; ++l) {
      ASSERT_TRUE(untouched(sink.kv().pool_offset(l, false) + b * half, half)) << b;
      ASSERT_TRUE(untouched(sink.kv().pool_offset(l, true) + b * half, half)) << b;
    }
  }
}

void reserve_all(DeviceSink& sink, std::span<const Request> requests, PromptSide& prompt) {
  for (const Request& r : requests) {
    sink.reserve(r.id, r.blocks);
    prompt.add_request(r.id, r.blocks);
  }
}

TEST(NcclKvGpuTest, TwoGpusMoveLayersOverNccl) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 CUDA GPUs";
  DeviceSink sink(/*device=*/1, 64, 5);
  NcclKvReceiver receiver(kLayout, &sink, {"127.0.0.1", 0});
  ASSERT_TRUE(receiver.start().ok());
  NcclKvSender sender(kLayout, {.device = 0});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  sender.connect(to);
  const LinkInfo link = sender.wait_for_link(to, 30s);
  ASSERT_EQ(link.kind, LinkKind::kNccl) << link_kind_name(link.kind) << ": " << link.reason;

  PromptSide prompt(/*device=*/0, 64, 9);
  reserve_all(sink, kRequests, prompt);
  const Request aborted[] = {{15, 4, false}};
  reserve_all(sink, aborted, prompt);
  Completions done;
  // The engine thread is this one; the transport threads are the sender's and receiver's.
  run_prefill(sender, to, prompt, kRequests, done);
  run_prefill(sender, to, prompt, aborted, done, /*abort_id=*/15);
  done.expect_all_ok();
  ASSERT_TRUE(sink.wait_for('D', std::size(kRequests)));
  ASSERT_TRUE(sink.wait_for('A', 1));
  verify(sink, prompt, kRequests);
  verify(sink, prompt, aborted);

  // DONE and ABORT come after every layer of their request, though the layers came later
  // (over NCCL) than the DONE frame itself (over TCP).
  std::map<RequestId, size_t> layers;
  for (const DeviceSink::Event& e : sink.events()) {
    ASSERT_NE(e.kind, 'R') << e.reason;
    if (e.kind == 'L') ++layers[e.request];
    if (e.kind == 'D' || e.kind == 'A') {
      size_t want = kLayout.num_layers;
      for (const Request& r : kRequests) {
        if (r.id == e.request && r.split) want *= 2;
      }
      EXPECT_EQ(layers[e.request], want) << "request " << e.request;
    }
  }
  const size_t frames = frames_per_prefill(kRequests) + frames_per_prefill(aborted);
  const NcclSenderStats s = sender.stats();
  EXPECT_EQ(s.nccl_layers, frames);  // every layer took NCCL ...
  EXPECT_EQ(s.tcp_layers, 0u);       // ... none fell back
  EXPECT_EQ(s.links_up, 1u);
  EXPECT_EQ(s.tcp.out_of_band_frames, frames);
  const NcclReceiverStats r = receiver.stats();
  EXPECT_EQ(r.nccl_layers, frames);
  EXPECT_EQ(r.tcp.out_of_band_frames, frames);
  EXPECT_EQ(r.links_up, 1u);
  EXPECT_EQ(r.tcp.frames_rejected, 0u);

  // post() runs once nothing is still writing into the sink's blocks.
  std::promise<void> passed;
  receiver.post([&] { passed.set_value(); });
  EXPECT_EQ(passed.get_future().wait_for(10s), std::future_status::ready);
  sender.stop();
  receiver.stop();
}

TEST(NcclKvGpuTest, ReceiverThatRefusesGetsDeviceKvOverTcp) {
  const int gpus = gpu_count();
  if (gpus < 1) GTEST_SKIP() << "needs a CUDA GPU";
  LogCapture log;
  DeviceSink sink(gpus > 1 ? 1 : 0, 64, 6);
  NcclReceiverOptions ro{"127.0.0.1", 0};
  ro.accept_nccl = false;
  NcclKvReceiver receiver(kLayout, &sink, ro);
  ASSERT_TRUE(receiver.start().ok());
  NcclKvSender sender(kLayout, {.device = 0});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  sender.connect(to);
  const LinkInfo link = sender.wait_for_link(to, 30s);
  ASSERT_EQ(link.kind, LinkKind::kTcp);
  EXPECT_NE(link.reason.find("refused"), std::string::npos) << link.reason;

  PromptSide prompt(0, 64, 10);
  reserve_all(sink, kRequests, prompt);
  Completions done;
  run_prefill(sender, to, prompt, kRequests, done);
  done.expect_all_ok();
  ASSERT_TRUE(sink.wait_for('D', std::size(kRequests)));
  verify(sink, prompt, kRequests);
  const NcclSenderStats s = sender.stats();
  EXPECT_EQ(s.nccl_layers, 0u);
  EXPECT_EQ(s.tcp_layers, frames_per_prefill(kRequests));
  EXPECT_EQ(receiver.stats().tcp.links_refused, 1u);
  sender.stop();
  receiver.stop();
  EXPECT_EQ(log.warnings("not using NCCL").size(), 1u);  // one warning, however many layers
}

TEST(NcclKvGpuTest, DeviceKvOverTcpOnOneGpu) {
  if (gpu_count() < 1) GTEST_SKIP() << "needs a CUDA GPU";
  DeviceSink sink(0, 64, 7);
  NcclKvReceiver receiver(kLayout, &sink, {"127.0.0.1", 0});
  ASSERT_TRUE(receiver.start().ok());
  // No pinned staging to spare: every layer is copied off the GPU only when its turn to
  // be written comes (the path a slow peer takes once the staging is used up).
  NcclKvSender sender(kLayout, {.device = 0, .use_nccl = false, .pinned_staging_bytes = 0});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  PromptSide prompt(0, 64, 11);
  reserve_all(sink, kRequests, prompt);
  Completions done;
  run_prefill(sender, to, prompt, kRequests, done);
  done.expect_all_ok();
  ASSERT_TRUE(sink.wait_for('D', std::size(kRequests)));
  verify(sink, prompt, kRequests);
  EXPECT_EQ(sender.link(to).kind, LinkKind::kTcp);
  EXPECT_EQ(sender.stats().tcp_layers, frames_per_prefill(kRequests));
  EXPECT_EQ(receiver.stats().tcp.links_accepted + receiver.stats().tcp.links_refused, 0u);
}

// Two ranks of one communicator on one GPU: NCCL refuses, and the KV still arrives.
TEST(NcclKvGpuTest, FailedNcclSetUpFallsBackToTcp) {
  if (gpu_count() < 1) GTEST_SKIP() << "needs a CUDA GPU";
  DeviceSink sink(0, 64, 8);
  NcclReceiverOptions ro{"127.0.0.1", 0};
  ro.init_timeout = 10s;
  NcclKvReceiver receiver(kLayout, &sink, ro);
  ASSERT_TRUE(receiver.start().ok());
  NcclKvSender sender(kLayout, {.device = 0, .init_timeout = 10s});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  sender.connect(to);
  const LinkInfo link = sender.wait_for_link(to, 30s);
  std::printf("same-GPU link: %s (%s)\n", link_kind_name(link.kind), link.reason.c_str());
  EXPECT_TRUE(link.kind == LinkKind::kTcp || link.kind == LinkKind::kNccl);
  PromptSide prompt(0, 64, 12);
  reserve_all(sink, kRequests, prompt);
  Completions done;
  run_prefill(sender, to, prompt, kRequests, done);
  done.expect_all_ok();
  ASSERT_TRUE(sink.wait_for('D', std::size(kRequests)));
  verify(sink, prompt, kRequests);
}

// Runs everywhere, CI included: with no GPU, NCCL is unusable; with GPUs, an absent GPU
// index makes it so. Host KV then goes over TCP, with one warning saying why.
TEST(NcclKvFallbackTest, NcclUnusableFallsBackToTcpWithOneWarning) {
  const int gpus = gpu_count();
  LogCapture log;
  const KvLayout host_layout{4, 4, 8, KvFormat::kCpuF32};
  testing::FakeKvSink sink(host_layout, 16);
  NcclKvReceiver receiver(host_layout, &sink, {"127.0.0.1", 0});
  ASSERT_TRUE(receiver.start().ok());
  NcclKvSender sender(host_layout, {.device = gpus > 0 ? gpus + 7 : 0});
  sender.start();
  EXPECT_FALSE(sender.disabled_reason().empty());
  const Endpoint to{"127.0.0.1", receiver.port()};
  ASSERT_TRUE(sink.reserve(1, 2));
  std::mt19937_64 rng(4);
  std::vector<std::vector<std::byte>> k, v;
  Completions done;
  for (uint32_t l = 0; l < host_layout.num_layers; ++l) {
    LayerBlocks lb{1, l, 0, {}, {}};
    for (int b = 0; b < 2; ++b) {
      k.push_back(testing::random_bytes(rng, host_layout.half_block_bytes()));
      v.push_back(testing::random_bytes(rng, host_layout.half_block_bytes()));
    }
    for (int b = 0; b < 2; ++b) {
      lb.k_blocks.push_back(k[l * 2 + b].data());
      lb.v_blocks.push_back(v[l * 2 + b].data());
    }
    sender.send_layer(to, std::move(lb), done.add());
  }
  sender.send_done(to, 1, 3, done.add());
  done.expect_all_ok();
  ASSERT_TRUE(sink.wait_for(testing::FakeKvSink::Event::kDone, 1));
  for (uint32_t l = 0; l < host_layout.num_layers; ++l) {
    for (uint32_t b = 0; b < 2; ++b) {
      std::vector<std::byte> want = k[l * 2 + b];
      want.insert(want.end(), v[l * 2 + b].begin(), v[l * 2 + b].end());
      EXPECT_EQ(sink.block(1, l, b), want);
    }
  }
  const LinkInfo link = sender.link(to);
  EXPECT_EQ(link.kind, LinkKind::kTcp);
  EXPECT_EQ(link.reason, sender.disabled_reason());
  EXPECT_EQ(sender.stats().tcp_layers, host_layout.num_layers);
  EXPECT_EQ(sender.stats().nccl_layers, 0u);
  sender.stop();
  receiver.stop();
  const auto warnings = log.warnings("NCCL unavailable");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(sender.disabled_reason()), std::string::npos) << warnings[0];
}

}  // namespace
}  // namespace splitwise::transport::nccl
