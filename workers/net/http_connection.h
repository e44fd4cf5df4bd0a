// Server internals: one Connection per accepted socket and the ResponseWriter handed to
// handlers. Included only by the server .cpp files (it pulls in Beast).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "workers/net/http.h"

namespace splitwise::net::internal {

class Connection;
using Headers = std::map<std::string, std::string>;

// What every connection of one server shares. Routes are written before start() and
// only read afterwards, so reading them needs no lock.
struct ServerState {
  explicit ServerState(boost::asio::io_context& io, ServerOptions opts)
      : io(io), options(std::move(opts)), acceptor(io) {}

  boost::asio::io_context& io;
  const ServerOptions options;
  std::map<std::string, std::map<std::string, Handler>> routes;  // path -> method -> handler
  Handler fallback;  // for paths without a route; empty: 404
  std::atomic<bool> stopped{false};

  std::mutex acceptor_mu;                   // guards acceptor: stop() may run on any thread
  boost::asio::ip::tcp::acceptor acceptor;  // guarded by acceptor_mu

  std::mutex connections_mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;  // guarded
};

// The handler's side of one response. Its methods only validate the call sequence and
// post the work to the connection's strand, so they are safe from any thread and keep
// their order when called from one thread.
class Writer : public ResponseWriter {
 public:
  Writer(std::shared_ptr<Connection> conn, uint64_t request_seq);
  ~Writer() override;

  void respond(int status, const std::string& content_type, std::string body,
               Headers extra_headers) override;
  void start_stream(int status, const std::string& content_type, Headers extra_headers) override;
  bool write(std::string chunk) override;
  void finish() override;
  bool client_gone() const override { return gone_.load(); }
  void on_client_gone(std::function<void()> callback) override;

  // Connection strand only: the peer left or the connection was closed.
  void notify_gone();

 private:
  enum class State { kNew, kStreaming, kDone };
  const std::shared_ptr<Connection> conn_;
  const uint64_t seq_;  // which request on the connection this writer answers
  std::atomic<bool> gone_{false};
  mutable std::mutex mu_;
  State state_ = State::kNew;                     // guarded by mu_
  bool callbacks_ran_ = false;                    // guarded by mu_
  std::vector<std::function<void()>> callbacks_;  // guarded by mu_
};

// One accepted socket. Every member is touched only on the connection's strand (the
// socket's executor); Writer reaches it by posting.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, std::shared_ptr<ServerState> server);
  ~Connection();

  const boost::asio::any_io_executor& executor() { return executor_; }
  void start();
  void close();

  // Called (on the strand) on behalf of the Writer of request `seq`.
  void send_response(uint64_t seq, int status, const std::string& content_type, std::string body,
                     const Headers& extra);
  void start_stream(uint64_t seq, int status, const std::string& content_type,
                    const Headers& extra);
  void send_chunk(uint64_t seq, std::string data);
  void finish_stream(uint64_t seq);
  void abandon(uint64_t seq, bool stream_started);

 private:
  // kIdle: waiting for the first byte of a request; kHeader/kBody: Beast is parsing;
  // kHandling: a handler owns the request until its response is fully written;
  // kClosing: final response sent, draining input so that close() does not reset it.
  enum class Phase { kIdle, kHeader, kBody, kHandling, kClosing, kClosed };

  void enter_idle();
  void read_raw();
  void on_raw_read(boost::system::error_code ec, std::size_t n);
  void read_header();
  void on_header(boost::system::error_code ec);
  void on_body(boost::system::error_code ec);
  void on_read_error(boost::system::error_code ec);
  void dispatch();
  void send_error(int status, const std::string& message, Headers extra = {});
  void queue_response(int status, const std::string& content_type, std::string body,
                      const Headers& extra);
  std::string head(int status, const std::string& content_type, const Headers& extra,
                   const std::string& framing);
  void flush();
  void on_write(boost::system::error_code ec);
  void on_response_done();
  void linger_close();
  void arm_read_timer(int seconds);
  void cancel_read_timer();
  bool current(uint64_t seq) const;

  boost::asio::ip::tcp::socket socket_;
  const boost::asio::any_io_executor executor_;  // the strand
  const std::shared_ptr<ServerState> server_;
  boost::asio::steady_timer read_timer_;
  boost::asio::steady_timer write_timer_;
  uint64_t read_epoch_ = 0;  // a timer firing for an older epoch was superseded
  uint64_t write_epoch_ = 0;

  Phase phase_ = Phase::kIdle;
  boost::beast::flat_buffer buffer_;  // read but not parsed yet (e.g. a pipelined request)
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  bool reading_ = false;  // a raw read (idle wait, gone watch, drain) is pending

  uint64_t seq_ = 0;  // number of the request being handled
  std::weak_ptr<Writer> writer_;
  bool keep_alive_ = true;
  bool chunked_ = true;  // HTTP/1.0 peers get a close-delimited stream instead
  bool stream_started_ = false;
  bool response_complete_ = false;  // the last byte of the response is queued
  bool close_after_flush_ = false;  // the writer left mid-stream

  std::deque<std::string> out_;         // queued, not yet handed to the socket
  std::vector<std::string> in_flight_;  // owned until the write completes
  bool writing_ = false;
};

}  // namespace splitwise::net::internal
