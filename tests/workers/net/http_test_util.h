// Shared fixture for the HTTP tests: a server and a client on 127.0.0.1 with an io
// thread, plus a blocking raw socket for byte-level checks.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "workers/net/http.h"

namespace splitwise::net::testing {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class HttpFixture : public ::testing::Test {
 protected:
  // Routes go in before start(); tests that need other options change options_ first.
  void start() {
    server_ = std::make_unique<HttpServer>(io_, options_);
    for (auto& [method, path, handler] : routes_) server_->route(method, path, handler);
    Status st = server_->start();
    ASSERT_TRUE(st.ok()) << st.message();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void route(std::string method, std::string path, Handler handler) {
    routes_.push_back({std::move(method), std::move(path), std::move(handler)});
  }

  void TearDown() override {
    if (server_) server_->stop();
    for (;;) {  // helpers may spawn helpers
      std::vector<std::thread> threads;
      {
        std::lock_guard lock(helpers_mu_);
        threads.swap(helpers_);
      }
      if (threads.empty()) break;
      for (auto& t : threads) t.join();
    }
    work_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
  }

  // Runs `fn` on a thread that TearDown joins: handlers answer from other threads.
  template <typename Fn>
  void spawn(Fn fn) {
    std::lock_guard lock(helpers_mu_);
    helpers_.emplace_back(std::move(fn));
  }

  Result<HttpResponse> fetch(const std::string& method, const std::string& target,
                             std::string body = "", int timeout_ms = 5000) {
    HttpRequest req;
    req.method = method;
    req.target = target;
    req.body = std::move(body);
    if (!req.body.empty()) req.headers["content-type"] = "application/json";
    std::promise<Result<HttpResponse>> done;
    auto future = done.get_future();
    client_.request("127.0.0.1", port_, std::move(req), timeout_ms,
                    [&done](Result<HttpResponse> r) { done.set_value(std::move(r)); });
    return future.get();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  ServerOptions options_;
  std::vector<std::tuple<std::string, std::string, Handler>> routes_;
  std::unique_ptr<HttpServer> server_;
  HttpClient client_{io_};
  uint16_t port_ = 0;
  std::thread io_thread_;
  std::mutex helpers_mu_;
  std::vector<std::thread> helpers_;  // guarded by helpers_mu_
};

// A blocking socket with a receive timeout, so a server bug fails a test instead of
// hanging it.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    timeval tv{5, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

  // Reads one response with a Content-Length body ("" when the connection ends first).
  std::string read_response() {
    size_t end;
    while ((end = data_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return "";
    }
    size_t length = 0;
    std::string lower_head = data_.substr(0, end);
    for (auto& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (size_t at = lower_head.find("content-length:"); at != std::string::npos) {
      length = std::stoul(lower_head.substr(at + 15));
    }
    while (data_.size() < end + 4 + length) {
      if (!fill()) return "";
    }
    std::string response = data_.substr(0, end + 4 + length);
    data_.erase(0, end + 4 + length);
    return response;
  }

  // Reads until the peer closes; returns false if it did not within the timeout.
  bool wait_closed() {
    while (fill()) {
    }
    return closed_;
  }

  void close() { socket_.close(); }

 private:
  bool fill() {
    char buf[4096];
    boost::system::error_code ec;
    size_t n = socket_.read_some(asio::buffer(buf), ec);
    if (ec) {
      closed_ = ec == asio::error::eof || ec == asio::error::connection_reset;
      return false;
    }
    data_.append(buf, n);
    return true;
  }

  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::string data_;
  bool closed_ = false;
};

inline int status_of(const std::string& raw_response) {
  return raw_response.size() > 12 ? std::stoi(raw_response.substr(9, 3)) : 0;
}

}  // namespace splitwise::net::testing
