// HttpServer (acceptor, routes, stop) and the Writer handed to handlers. The per-socket
// protocol lives in http_connection.cpp.
#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "workers/net/http.h"
#include "workers/net/http_connection.h"
#include "workers/net/http_internal.h"

namespace splitwise::net {

namespace asio = boost::asio;
using boost::system::error_code;
using internal::Connection;
using internal::ServerState;

namespace internal {

Writer::Writer(std::shared_ptr<Connection> conn, uint64_t request_seq)
    : conn_(std::move(conn)), seq_(request_seq) {}

Writer::~Writer() {
  State state;
  {
    std::lock_guard lock(mu_);
    state = state_;
  }
  if (state == State::kDone) return;
  asio::post(conn_->executor(), [conn = conn_, seq = seq_, streaming = state == State::kStreaming] {
    conn->abandon(seq, streaming);
  });
}

void Writer::respond(int status, const std::string& content_type, std::string body,
                     Headers extra_headers) {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::kNew) {
      spdlog::warn("http: respond() on a request that was already answered; ignored");
      return;
    }
    state_ = State::kDone;
  }
  asio::post(conn_->executor(),
             [conn = conn_, seq = seq_, status, content_type, body = std::move(body),
              extra = std::move(extra_headers)]() mutable {
               conn->send_response(seq, status, content_type, std::move(body), extra);
             });
}

void Writer::start_stream(int status, const std::string& content_type, Headers extra_headers) {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::kNew) {
      spdlog::warn("http: start_stream() on a request that was already answered; ignored");
      return;
    }
    state_ = State::kStreaming;
  }
  asio::post(conn_->executor(),
             [conn = conn_, seq = seq_, status, content_type, extra = std::move(extra_headers)] {
               conn->start_stream(seq, status, content_type, extra);
             });
}

bool Writer::write(std::string chunk) {
  if (gone_.load()) return false;
  {
    std::lock_guard lock(mu_);
    if (state_ != State::kStreaming) {
      spdlog::warn("http: write() outside start_stream()/finish(); dropped");
      return false;
    }
  }
  asio::post(conn_->executor(), [conn = conn_, seq = seq_, chunk = std::move(chunk)]() mutable {
    conn->send_chunk(seq, std::move(chunk));
  });
  return true;
}

void Writer::finish() {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::kStreaming) {
      spdlog::warn("http: finish() without start_stream(); ignored");
      return;
    }
    state_ = State::kDone;
  }
  asio::post(conn_->executor(), [conn = conn_, seq = seq_] { conn->finish_stream(seq); });
}

void Writer::on_client_gone(std::function<void()> callback) {
  {
    std::lock_guard lock(mu_);
    if (!callbacks_ran_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  // Already gone: still honour "runs once, on the server thread".
  asio::post(conn_->executor(), std::move(callback));
}

void Writer::notify_gone() {
  gone_.store(true);
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(mu_);
    // A client leaving after the handler answered in full is not news to the handler.
    if (callbacks_ran_ || state_ == State::kDone) return;
    callbacks_ran_ = true;
    callbacks.swap(callbacks_);
  }
  for (auto& callback : callbacks) callback();
}

}  // namespace internal

namespace {

void do_accept(const std::shared_ptr<ServerState>& state);

void on_accept(const std::shared_ptr<ServerState>& state, error_code ec,
               asio::ip::tcp::socket socket) {
  if (state->stopped.load() || ec == asio::error::operation_aborted) return;
  if (ec) {
    // E.g. out of file descriptors: keep serving the connections we have.
    spdlog::warn("http: accept failed: {}", ec.message());
  } else {
    auto conn = std::make_shared<Connection>(std::move(socket), state);
    {
      std::lock_guard lock(state->connections_mu);
      state->connections.emplace(conn.get(), conn);
    }
    asio::dispatch(conn->executor(), [conn] { conn->start(); });
  }
  do_accept(state);
}

void do_accept(const std::shared_ptr<ServerState>& state) {
  std::lock_guard lock(state->acceptor_mu);
  if (state->stopped.load() || !state->acceptor.is_open()) return;
  // Each connection gets its own strand, so handlers posting from other threads and the
  // connection's own completions never run at once even with several io threads.
  state->acceptor.async_accept(asio::make_strand(state->io),
                               [state](error_code ec, asio::ip::tcp::socket socket) {
                                 on_accept(state, ec, std::move(socket));
                               });
}

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<ServerState> state;
  uint16_t port = 0;
};

HttpServer::HttpServer(asio::io_context& io, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->state = std::make_shared<ServerState>(io, std::move(options));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(const std::string& method, const std::string& path, Handler handler) {
  impl_->state->routes[path][method] = std::move(handler);
}

void HttpServer::fallback(Handler handler) { impl_->state->fallback = std::move(handler); }

Status HttpServer::start() {
  auto& state = *impl_->state;
  const auto& opts = state.options;
  std::string where = internal::host_port(opts.host, opts.port);
  error_code ec;
  asio::ip::tcp::resolver resolver(state.io);
  auto endpoints =
      resolver.resolve(opts.host, std::to_string(opts.port), asio::ip::tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    return Status::error("resolving " + where + ": " + (ec ? ec.message() : "no address"));
  }
  auto endpoint = endpoints.begin()->endpoint();
  {
    std::lock_guard lock(state.acceptor_mu);
    auto& acceptor = state.acceptor;
    if (acceptor.is_open()) return Status::error("server on " + where + " already started");
    acceptor.open(endpoint.protocol(), ec);
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error_code ignored;
      acceptor.close(ignored);
      return Status::error("listening on " + where + ": " + ec.message());
    }
    impl_->port = acceptor.local_endpoint(ec).port();
  }
  do_accept(impl_->state);
  return Status();
}

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::stop() {
  auto& state = *impl_->state;
  state.stopped.store(true);
  {
    std::lock_guard lock(state.acceptor_mu);
    error_code ignored;
    state.acceptor.close(ignored);
  }
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard lock(state.connections_mu);
    for (auto& [ptr, weak] : state.connections) {
      if (auto conn = weak.lock()) conns.push_back(std::move(conn));
    }
  }
  for (auto& conn : conns) asio::post(conn->executor(), [conn] { conn->close(); });
}

}  // namespace splitwise::net
