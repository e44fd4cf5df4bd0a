// HttpClient: one new TCP connection per request. Pooling would save a handshake per
// call, but the callers (router -> workers on a cluster network) make few, long calls,
// and a fresh connection never inherits a half-read body or a server-side close race.
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <limits>
#include <optional>

#include "workers/net/http.h"
#include "workers/net/http_internal.h"

namespace splitwise::net {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// request() collects the body in memory; beyond this it is a caller bug or a hostile peer.
constexpr size_t kMaxCollectedBody = 64u << 20;

// One exchange: resolve, connect, send, then the response head and its body piece by
// piece. request() and stream() differ only in their callbacks and in how the timer is
// used (one deadline for the whole call, or an idle limit re-armed on every read).
class Call : public std::enable_shared_from_this<Call> {
 public:
  struct Callbacks {
    std::function<void(HttpResponse)> head;
    std::function<Status(std::string_view)> body;  // an error ends the call with it
    std::function<void(Status)> end;               // exactly once
  };

  Call(asio::io_context& io, std::string host, uint16_t port, HttpRequest req, int timeout_ms,
       bool idle_timeout, Callbacks callbacks)
      : strand_(asio::make_strand(io)),
        resolver_(strand_),
        socket_(strand_),
        timer_(strand_),
        host_(std::move(host)),
        port_(port),
        where_(internal::host_port(host_, port)),
        timeout_ms_(timeout_ms),
        idle_timeout_(idle_timeout),
        cb_(std::move(callbacks)) {
    build_request(std::move(req));
  }

  void start() {
    asio::dispatch(strand_, [self = shared_from_this()] { self->resolve(); });
  }

  // Any thread. The flag stops line delivery at once; the strand does the closing.
  void cancel() {
    cancelled_.store(true);
    asio::post(strand_, [self = shared_from_this()] { self->finish(Status::error("cancelled")); });
  }

 private:
  void build_request(HttpRequest req) {
    req_.version(11);
    req_.method_string(req.method.empty() ? "GET" : req.method);
    req_.target(req.target.empty() ? "/" : req.target);
    req_.set(http::field::host, where_);
    for (auto& [name, value] : req.headers) {
      if (internal::safe_header(name, value)) req_.set(name, value);
    }
    // Per-call connections: tell the server not to hold this one open for reuse.
    req_.keep_alive(false);
    req_.body() = std::move(req.body);
    if (!req_.body().empty() || req_.method() == http::verb::post ||
        req_.method() == http::verb::put) {
      req_.prepare_payload();
    }
    if (req_.method() == http::verb::head) head_only_ = true;
  }

  void arm_timer() {
    if (timeout_ms_ <= 0) return;  // no limit
    uint64_t epoch = ++timer_epoch_;
    timer_.expires_after(std::chrono::milliseconds(timeout_ms_));
    timer_.async_wait([self = shared_from_this(), epoch](error_code ec) {
      if (ec || epoch != self->timer_epoch_) return;
      self->finish(Status::error("timed out after " + std::to_string(self->timeout_ms_) + " ms " +
                                 self->phase_ + " " + self->where_));
    });
  }

  bool stopped() {
    if (done_) return true;
    if (cancelled_.load()) {
      finish(Status::error("cancelled"));
      return true;
    }
    return false;
  }

  Status failure(const error_code& ec) {
    return Status::error(phase_ + " " + where_ + ": " + ec.message());
  }

  void resolve() {
    if (stopped()) return;
    arm_timer();
    phase_ = "resolving";
    resolver_.async_resolve(
        host_, std::to_string(port_),
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type r) {
          if (self->stopped()) return;
          if (ec) return self->finish(self->failure(ec));
          self->connect(r);
        });
  }

  void connect(const tcp::resolver::results_type& endpoints) {
    phase_ = "connecting to";
    asio::async_connect(socket_, endpoints,
                        [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
                          if (self->stopped()) return;
                          if (ec) return self->finish(self->failure(ec));
                          error_code ignored;
                          self->socket_.set_option(tcp::no_delay(true), ignored);
                          self->send();
                        });
  }

  void send() {
    phase_ = "sending to";
    if (idle_timeout_) arm_timer();
    http::async_write(socket_, req_, [self = shared_from_this()](error_code ec, std::size_t) {
      if (self->stopped()) return;
      if (ec) return self->finish(self->failure(ec));
      self->read_head();
    });
  }

  void read_head() {
    phase_ = "waiting for";
    if (idle_timeout_) arm_timer();
    parser_.emplace();
    // request() applies its own limit; streams have none. Not boost::none: Beast 1.74
    // compares Content-Length against the optional itself, and anything > none.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (head_only_) parser_->skip(true);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              if (self->stopped()) return;
                              if (ec) return self->finish(self->failure(ec));
                              self->on_head();
                            });
  }

  void on_head() {
    const auto& msg = parser_->get();
    HttpResponse head;
    head.status = static_cast<int>(msg.result_int());
    for (const auto& field : msg) {
      std::string name = internal::to_lower(internal::view(field.name_string()));
      auto [it, inserted] = head.headers.emplace(name, std::string(internal::view(field.value())));
      if (!inserted) it->second.append(", ").append(internal::view(field.value()));
    }
    cb_.head(std::move(head));
    phase_ = "reading the body from";
    read_body();
  }

  void read_body() {
    if (stopped()) return;
    if (parser_->is_done()) return finish(Status());
    if (idle_timeout_) arm_timer();
    auto& body = parser_->get().body();
    body.data = chunk_.data();
    body.size = chunk_.size();
    body.more = true;
    // Returns as soon as the parser has consumed some input, so each TCP segment's
    // bytes reach the caller without waiting for the chunk buffer to fill.
    http::async_read_some(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, std::size_t) { self->on_body(ec); });
  }

  void on_body(error_code ec) {
    if (stopped()) return;
    if (ec == http::error::need_buffer) ec = {};  // chunk_ is full: deliver and go on
    if (ec) return finish(failure(ec));
    size_t got = chunk_.size() - parser_->get().body().size;
    if (got > 0) {
      Status st = cb_.body(std::string_view(chunk_.data(), got));
      if (!st.ok()) return finish(st);
    }
    read_body();
  }

  void finish(Status status) {
    if (done_) return;
    done_ = true;
    ++timer_epoch_;
    timer_.cancel();
    resolver_.cancel();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    auto callbacks = std::move(cb_);  // released after the call: no cycles through captures
    callbacks.end(std::move(status));
  }

  asio::strand<asio::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  const std::string host_;
  const uint16_t port_;
  const std::string where_;
  const int timeout_ms_;
  const bool idle_timeout_;
  Callbacks cb_;

  http::request<http::string_body> req_;
  bool head_only_ = false;
  boost::beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::array<char, 16 * 1024> chunk_;
  std::string phase_ = "resolving";
  uint64_t timer_epoch_ = 0;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

struct HttpClient::Impl {
  asio::io_context& io;
};

HttpClient::HttpClient(asio::io_context& io) : impl_(std::make_unique<Impl>(Impl{io})) {}

HttpClient::~HttpClient() = default;

void HttpClient::request(const std::string& host, uint16_t port, HttpRequest req, int timeout_ms,
                         std::function<void(Result<HttpResponse>)> done) {
  auto response = std::make_shared<HttpResponse>();
  Call::Callbacks cb;
  cb.head = [response](HttpResponse head) { *response = std::move(head); };
  cb.body = [response](std::string_view data) {
    if (response->body.size() + data.size() > kMaxCollectedBody) {
      return Status::error("response body is larger than " + std::to_string(kMaxCollectedBody) +
                           " bytes");
    }
    response->body.append(data);
    return Status();
  };
  cb.end = [response, done = std::move(done)](Status status) {
    if (status.ok()) {
      done(std::move(*response));
    } else {
      done(std::move(status));
    }
  };
  std::make_shared<Call>(impl_->io, host, port, std::move(req), timeout_ms, false, std::move(cb))
      ->start();
}

std::function<void()> HttpClient::stream(const std::string& host, uint16_t port, HttpRequest req,
                                         int idle_timeout_ms,
                                         std::function<void(const HttpResponse& head)> on_status,
                                         std::function<void(std::string_view line)> on_line,
                                         std::function<void(Status)> on_end) {
  // Bytes of a line that has not seen its '\n' yet; only the call's strand touches it.
  auto partial = std::make_shared<std::string>();
  // Set by the cancel handle before it posts, so that lines already in hand stop at once.
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  Call::Callbacks cb;
  cb.head = [on_status = std::move(on_status)](HttpResponse head) { on_status(head); };
  cb.body = [partial, cancelled, on_line](std::string_view data) {
    size_t start = 0;
    for (size_t nl = data.find('\n'); nl != std::string_view::npos && !cancelled->load();
         nl = data.find('\n', start)) {
      if (partial->empty()) {
        on_line(data.substr(start, nl - start));
      } else {
        partial->append(data.substr(start, nl - start));
        on_line(*partial);
        partial->clear();
      }
      start = nl + 1;
    }
    partial->append(data.substr(start));
    return Status();
  };
  cb.end = [partial, on_line, on_end = std::move(on_end)](Status status) {
    // A last line without '\n' is still data the server sent.
    if (status.ok() && !partial->empty()) on_line(*partial);
    on_end(std::move(status));
  };
  auto call = std::make_shared<Call>(impl_->io, host, port, std::move(req), idle_timeout_ms, true,
                                     std::move(cb));
  call->start();
  return [weak = std::weak_ptr<Call>(call), cancelled] {
    cancelled->store(true);
    if (auto call = weak.lock()) call->cancel();
  };
}

}  // namespace splitwise::net
