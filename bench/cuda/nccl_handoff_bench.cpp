// KV handoff GPU 0 -> GPU 1 for Llama-3-8B prompts (32 layers, 8 kv heads x 128, bf16,
// block 16; 2048 tokens = 128 blocks, 8 MiB per layer), three ways:
//   (a) ncclSend/ncclRecv of each layer's bytes from one contiguous buffer: the ceiling
//   (b) NcclKvSender -> NcclKvReceiver, layer by layer from blocks scattered over one KV
//       cache into blocks scattered over another (gather, send, receive, scatter, sink)
//   (c) the same through the TCP fallback (the receiver refuses NCCL), device KV both ends
// (b) is validated byte for byte in a warm-up round before it is timed. Prints GB/s of
// each and (b) as a percent of (a); the target is >= 80%.
#include <cuda_runtime.h>
#include <nccl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "workers/transport/nccl/nccl_kv_transport.h"

namespace {

using namespace splitwise;
using namespace splitwise::transport;
using Clock = std::chrono::steady_clock;

struct Shape {
  KvLayout layout;
  uint32_t blocks_per_request = 0;
  uint32_t requests = 0;  // prompts handed off together, layer-major
  uint64_t layer_bytes() const {
    return uint64_t{blocks_per_request} * 2 * layout.half_block_bytes();
  }
  uint64_t request_bytes() const { return layer_bytes() * layout.num_layers; }
};

// [layer][K pool | V pool] of `blocks` blocks on one GPU, as the CUDA runner lays it out.
struct DeviceCache {
  DeviceCache(int dev, const KvLayout& l, uint32_t n) : device(dev), layout(l), blocks(n) {
    SW_CUDA_CHECK(cudaSetDevice(device));
    SW_CUDA_CHECK(cudaMalloc(&base, bytes()));
  }
  ~DeviceCache() {
    cudaSetDevice(device);
    cudaFree(base);
  }
  size_t half() const { return layout.half_block_bytes(); }
  size_t pool_bytes() const { return size_t{blocks} * half(); }
  size_t bytes() const { return size_t{layout.num_layers} * 2 * pool_bytes(); }
  std::byte* k(uint32_t l, uint32_t b) const {
    return base + (2 * size_t{l}) * pool_bytes() + b * half();
  }
  std::byte* v(uint32_t l, uint32_t b) const {
    return base + (2 * size_t{l} + 1) * pool_bytes() + b * half();
  }
  int device;
  KvLayout layout;
  uint32_t blocks;
  std::byte* base = nullptr;
};

std::vector<uint32_t> shuffled(uint32_t n, uint64_t seed) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return v;
}

// Token side: request id r uses table (r - 1) % requests; counts DONEs.
class BenchSink final : public KvSink {
 public:
  BenchSink(DeviceCache* cache, std::vector<std::vector<uint32_t>> tables)
      : cache_(cache), tables_(std::move(tables)) {}
  MemoryKind memory() const override { return MemoryKind::kDevice; }
  int device() const override { return cache_->device; }
  std::optional<Destination> destination(RequestId r, uint32_t layer, uint32_t index) override {
    const auto& t = tables_[(r - 1) % tables_.size()];
    if (index >= t.size()) return std::nullopt;
    return Destination{cache_->k(layer, t[index]), cache_->v(layer, t[index])};
  }
  void on_layer(RequestId, uint32_t, uint32_t, uint32_t, uint64_t) override {}
  void on_done(RequestId, int32_t) override {
    {
      std::lock_guard lock(mu_);
      ++done_;
    }
    cv_.notify_all();
  }
  void on_abort(RequestId) override {}
  void on_rejected(RequestId r, const std::string& why) override {
    std::fprintf(stderr, "rejected request %llu: %s\n", static_cast<unsigned long long>(r),
                 why.c_str());
    std::exit(1);
  }
  bool wait_done(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(120), [&] { return done_ >= n; });
  }

 private:
  DeviceCache* cache_;
  std::vector<std::vector<uint32_t>> tables_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t done_ = 0;
};

double gbps(uint64_t bytes, double seconds) { return bytes / seconds / 1e9; }

// (a): the same bytes per layer, contiguous, one ncclSend/ncclRecv each.
double raw_nccl(const Shape& s, int rounds) {
  ncclUniqueId id;
  SW_NCCL_CHECK(ncclGetUniqueId(&id));
  ncclComm_t comm[2];
  cudaStream_t stream[2];
  void* buf[2];
  const uint64_t bytes = s.layer_bytes() * s.layout.num_layers;
  std::thread init[2];
  for (int r = 0; r < 2; ++r) {
    init[r] = std::thread([&, r] {
      SW_CUDA_CHECK(cudaSetDevice(r));
      SW_CUDA_CHECK(cudaStreamCreateWithFlags(&stream[r], cudaStreamNonBlocking));
      SW_CUDA_CHECK(cudaMalloc(&buf[r], bytes));
      SW_NCCL_CHECK(ncclCommInitRank(&comm[r], 2, id, r));
    });
  }
  for (auto& t : init) t.join();
  const auto round_trip = [&](int n) {
    std::thread t[2];
    for (int r = 0; r < 2; ++r) {
      t[r] = std::thread([&, r] {
        SW_CUDA_CHECK(cudaSetDevice(r));
        for (int i = 0; i < n; ++i) {
          for (uint32_t q = 0; q < s.requests; ++q) {
            for (uint32_t l = 0; l < s.layout.num_layers; ++l) {
              std::byte* p = static_cast<std::byte*>(buf[r]) + l * s.layer_bytes();
              if (r == 0) {
                SW_NCCL_CHECK(ncclSend(p, s.layer_bytes(), ncclUint8, 1, comm[0], stream[0]));
              } else {
                SW_NCCL_CHECK(ncclRecv(p, s.layer_bytes(), ncclUint8, 0, comm[1], stream[1]));
              }
            }
          }
        }
        SW_CUDA_CHECK(cudaStreamSynchronize(stream[r]));
      });
    }
    for (auto& th : t) th.join();
  };
  round_trip(1);  // connections, clocks
  const auto t0 = Clock::now();
  round_trip(rounds);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int r = 0; r < 2; ++r) {
    SW_CUDA_CHECK(cudaSetDevice(r));
    SW_NCCL_CHECK(ncclCommDestroy(comm[r]));
    SW_CUDA_CHECK(cudaFree(buf[r]));
    SW_CUDA_CHECK(cudaStreamDestroy(stream[r]));
  }
  return gbps(s.request_bytes() * s.requests * rounds, secs);
}

struct TransportResult {
  double gbps = 0;
  double enqueue_us = 0;  // engine-thread time per send_layer
  std::string link;
};

// (b) and (c): the transport, from `src` (GPU 0) into `dst` (GPU 1).
TransportResult run_transport(const Shape& s, DeviceCache& src, DeviceCache& dst, bool nccl,
                              int rounds, bool validate) {
  std::vector<std::vector<uint32_t>> src_tables, dst_tables;
  const auto src_order = shuffled(src.blocks, 1), dst_order = shuffled(dst.blocks, 2);
  for (uint32_t q = 0; q < s.requests; ++q) {
    src_tables.emplace_back(src_order.begin() + q * s.blocks_per_request,
                            src_order.begin() + (q + 1) * s.blocks_per_request);
    dst_tables.emplace_back(dst_order.begin() + q * s.blocks_per_request,
                            dst_order.begin() + (q + 1) * s.blocks_per_request);
  }
  BenchSink sink(&dst, dst_tables);
  nccl::NcclReceiverOptions ro{"127.0.0.1", 0};
  ro.accept_nccl = nccl;
  nccl::NcclKvReceiver receiver(s.layout, &sink, ro);
  if (!receiver.start().ok()) std::exit(1);
  nccl::NcclKvSender sender(s.layout, {.device = 0});
  sender.start();
  const Endpoint to{"127.0.0.1", receiver.port()};
  sender.connect(to);
  const nccl::LinkInfo link = sender.wait_for_link(to, std::chrono::seconds(30));

  SW_CUDA_CHECK(cudaSetDevice(0));
  cudaEvent_t ready;  // the runner's: recorded once, the KV is already written
  SW_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  SW_CUDA_CHECK(cudaEventRecord(ready, 0));

  std::atomic<uint64_t> pending{0}, failed{0};
  RequestId next_id = 1;
  double enqueue_seconds = 0;
  uint64_t layers_sent = 0;
  const auto round = [&] {
    const RequestId first = next_id;
    next_id += s.requests;
    for (uint32_t l = 0; l < s.layout.num_layers; ++l) {
      for (uint32_t q = 0; q < s.requests; ++q) {
        LayerBlocks lb{first + q, l, 0, {}, {}};
        for (uint32_t b : src_tables[q]) {
          lb.k_blocks.push_back(src.k(l, b));
          lb.v_blocks.push_back(src.v(l, b));
        }
        lb.memory = MemoryKind::kDevice;
        lb.device = 0;
        lb.ready_event = ready;
        pending.fetch_add(1);
        const auto t0 = Clock::now();
        sender.send_layer(to, std::move(lb), [&](Status st) {
          if (!st.ok()) {
            std::fprintf(stderr, "send failed: %s\n", st.message().c_str());
            failed.fetch_add(1);
          }
          pending.fetch_sub(1);
        });
        enqueue_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
        ++layers_sent;
      }
    }
    for (uint32_t q = 0; q < s.requests; ++q) sender.send_done(to, first + q, 0, [](Status) {});
  };

  // Warm-up round: staging grows to size; then every destination byte is checked.
  std::vector<std::byte> src_host, dst_host;
  if (validate) {
    src_host.resize(src.bytes());
    dst_host.resize(dst.bytes());
    std::mt19937_64 rng(7);
    for (size_t i = 0; i + 8 <= src_host.size(); i += 8) {
      const uint64_t x = rng();
      std::memcpy(&src_host[i], &x, 8);
    }
    SW_CUDA_CHECK(cudaMemcpy(src.base, src_host.data(), src.bytes(), cudaMemcpyHostToDevice));
  }
  round();
  if (!sink.wait_done(next_id - 1)) std::exit(1);
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  if (validate) {
    SW_CUDA_CHECK(cudaSetDevice(1));
    SW_CUDA_CHECK(cudaMemcpy(dst_host.data(), dst.base, dst.bytes(), cudaMemcpyDeviceToHost));
    const size_t half = s.layout.half_block_bytes();
    for (uint32_t q = 0; q < s.requests; ++q) {
      for (uint32_t l = 0; l < s.layout.num_layers; ++l) {
        for (uint32_t i = 0; i < s.blocks_per_request; ++i) {
          for (bool v : {false, true}) {
            const std::byte* a = (v ? src.v(l, src_tables[q][i]) : src.k(l, src_tables[q][i]));
            const std::byte* b = (v ? dst.v(l, dst_tables[q][i]) : dst.k(l, dst_tables[q][i]));
            if (std::memcmp(src_host.data() + (a - src.base), dst_host.data() + (b - dst.base),
                            half) != 0) {
              std::fprintf(stderr, "MISMATCH request %u layer %u block %u %s\n", q, l, i,
                           v ? "V" : "K");
              std::exit(1);
            }
          }
        }
      }
    }
  }

  enqueue_seconds = 0;
  layers_sent = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) round();
  if (!sink.wait_done(next_id - 1)) std::exit(1);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  if (failed.load() > 0) std::exit(1);
  sender.stop();
  receiver.stop();
  SW_CUDA_CHECK(cudaSetDevice(0));
  SW_CUDA_CHECK(cudaEventDestroy(ready));
  TransportResult out;
  out.gbps = gbps(s.request_bytes() * s.requests * rounds, secs);
  out.enqueue_us = enqueue_seconds / layers_sent * 1e6;
  out.link = std::string(nccl::link_kind_name(link.kind)) +
             (link.reason.empty() ? "" : " (" + link.reason + ")");
  const nccl::NcclSenderStats st = sender.stats();
  std::printf("    sender: %llu layers over NCCL, %llu over TCP\n",
              static_cast<unsigned long long>(st.nccl_layers),
              static_cast<unsigned long long>(st.tcp_layers));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"KV handoff GPU 0 -> GPU 1: raw NCCL vs the NCCL KV transport vs TCP"};
  uint32_t layers = 32, kv_heads = 8, head_dim = 128, block_size = 16, tokens = 2048;
  uint32_t requests = 4;
  int rounds = 20, tcp_rounds = 1;
  app.add_option("--layers", layers)->check(CLI::Range(1, 256));
  app.add_option("--kv-heads", kv_heads)->check(CLI::Range(1, 256));
  app.add_option("--head-dim", head_dim)->check(CLI::Range(8, 1024));
  app.add_option("--block-size", block_size)->check(CLI::Range(1, 1024));
  app.add_option("--tokens", tokens, "prompt tokens")->check(CLI::Range(1, 1 << 20));
  app.add_option("--requests", requests, "prompts handed off together")->check(CLI::Range(1, 64));
  app.add_option("--rounds", rounds, "timed rounds")->check(CLI::Range(1, 10000));
  app.add_option("--tcp-rounds", tcp_rounds, "timed rounds over TCP")->check(CLI::Range(0, 100));
  CLI11_PARSE(app, argc, argv);

  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 2) {
    std::printf("needs 2 CUDA GPUs (found %d); nothing measured\n", gpus);
    return 0;
  }
  setenv("NCCL_NVLS_ENABLE", "0", 0);  // the lent hosts need NVLink multicast off
  Shape s;
  s.layout = {layers, block_size, kv_heads * head_dim, KvFormat::kGpuBf16};
  s.blocks_per_request = (tokens + block_size - 1) / block_size;
  s.requests = requests;
  std::printf(
      "KV of one %u-token prompt: %u layers x %u blocks x 2 x %u B = %.2f MiB per layer, "
      "%.1f MiB per prompt; %u prompts per round\n",
      tokens, layers, s.blocks_per_request, s.layout.half_block_bytes(),
      s.layer_bytes() / 1048576.0, s.request_bytes() / 1048576.0, requests);

  const double a = raw_nccl(s, rounds);
  std::printf("(a) ncclSend/ncclRecv, contiguous layers:   %8.1f GB/s\n", a);

  const uint32_t blocks = s.blocks_per_request * requests + 7;  // spare: tables are scattered
  DeviceCache src(0, s.layout, blocks), dst(1, s.layout, blocks);
  const TransportResult b = run_transport(s, src, dst, /*nccl=*/true, rounds, /*validate=*/true);
  std::printf(
      "(b) NcclKvSender -> NcclKvReceiver [%s]: %8.1f GB/s = %.1f%% of (a) "
      "(target >= 80%%); engine thread %.1f us per send_layer\n",
      b.link.c_str(), b.gbps, 100.0 * b.gbps / a, b.enqueue_us);
  if (tcp_rounds > 0) {
    const TransportResult c = run_transport(s, src, dst, /*nccl=*/false, tcp_rounds, false);
    std::printf(
        "(c) TCP fallback, device KV both ends [%s]: %8.2f GB/s = %.1f%% of (a); "
        "engine thread %.1f us per send_layer\n",
        c.link.c_str(), c.gbps, 100.0 * c.gbps / a, c.enqueue_us);
  }
  return 0;
}
