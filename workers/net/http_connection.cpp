#include "workers/net/http_connection.h"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/write.hpp>

#include <chrono>
#include <cstdio>
#include <exception>

#include "workers/net/http_internal.h"

namespace splitwise::net::internal {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

constexpr size_t kReadSize = 16 * 1024;
// How long a closing connection keeps draining input: unread input at close() makes the
// kernel send RST, which can destroy a 413/400 the peer has not read yet.
constexpr int kLingerSeconds = 1;

bool is_parse_error(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, std::shared_ptr<ServerState> server)
    : socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      server_(std::move(server)),
      read_timer_(executor_),
      write_timer_(executor_) {}

Connection::~Connection() {
  std::lock_guard lock(server_->connections_mu);
  server_->connections.erase(this);
}

void Connection::start() {
  error_code ec;
  // Token streams are many small writes; Nagle would hold each one for an ACK.
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  enter_idle();
}

bool Connection::current(uint64_t seq) const { return seq == seq_ && phase_ == Phase::kHandling; }

void Connection::arm_read_timer(int seconds) {
  uint64_t epoch = ++read_epoch_;
  read_timer_.expires_after(std::chrono::seconds(seconds));
  read_timer_.async_wait([self = shared_from_this(), epoch](error_code ec) {
    if (!ec && epoch == self->read_epoch_) self->close();
  });
}

void Connection::cancel_read_timer() {
  ++read_epoch_;
  read_timer_.cancel();
}

void Connection::enter_idle() {
  phase_ = Phase::kIdle;
  parser_.emplace();
  parser_->body_limit(server_->options.max_body_bytes);
  if (buffer_.size() > 0) {  // a pipelined request already arrived
    read_header();
    return;
  }
  arm_read_timer(server_->options.idle_timeout_s);
  if (!reading_) read_raw();  // else the read that watched the last request goes on
}

// Raw reads (no parser) serve three phases: the idle wait for a request's first byte,
// the watch for EOF while a handler runs (so a streaming handler learns the client left
// even when it has nothing to write), and draining before close.
void Connection::read_raw() {
  reading_ = true;
  socket_.async_read_some(
      buffer_.prepare(kReadSize),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_raw_read(ec, n); });
}

void Connection::on_raw_read(error_code ec, std::size_t n) {
  reading_ = false;
  if (phase_ == Phase::kClosed) return;
  if (ec) {
    close();  // while handling, close() tells the writer the client is gone
    return;
  }
  buffer_.commit(n);
  switch (phase_) {
    case Phase::kIdle:
      read_header();
      break;
    case Phase::kClosing:
      buffer_.consume(buffer_.size());
      read_raw();
      break;
    default:
      // kHandling: a pipelined request; it waits in buffer_ until this response is done.
      // Not reading further bounds the buffer, at the cost of no EOF watch meanwhile.
      break;
  }
}

void Connection::read_header() {
  phase_ = Phase::kHeader;
  arm_read_timer(server_->options.header_timeout_s);
  http::async_read_header(
      socket_, buffer_, *parser_,
      [self = shared_from_this()](error_code ec, std::size_t) { self->on_header(ec); });
}

void Connection::on_header(error_code ec) {
  if (phase_ == Phase::kClosed) return;
  if (ec) {
    on_read_error(ec);
    return;
  }
  if (parser_->is_done()) {
    dispatch();
    return;
  }
  phase_ = Phase::kBody;
  arm_read_timer(server_->options.idle_timeout_s);
  auto& req = parser_->get();
  if (to_lower(view(req[http::field::expect])) == "100-continue") {
    out_.push_back("HTTP/1.1 100 Continue\r\n\r\n");
    flush();
  }
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](error_code ec, std::size_t) { self->on_body(ec); });
}

void Connection::on_body(error_code ec) {
  if (phase_ == Phase::kClosed) return;
  if (ec) {
    on_read_error(ec);
    return;
  }
  dispatch();
}

void Connection::on_read_error(error_code ec) {
  cancel_read_timer();
  keep_alive_ = false;
  if (ec == http::error::body_limit) {
    send_error(413, "request body is larger than the limit of " +
                        std::to_string(server_->options.max_body_bytes) + " bytes");
  } else if (ec == http::error::header_limit) {
    send_error(431, "request header fields are too large");
  } else if (is_parse_error(ec)) {
    send_error(400, "malformed HTTP request: " + ec.message());
  } else {
    close();  // EOF, reset or timeout: nobody to answer
  }
}

void Connection::dispatch() {
  cancel_read_timer();
  phase_ = Phase::kHandling;
  ++seq_;
  stream_started_ = false;
  response_complete_ = false;
  close_after_flush_ = false;
  auto& msg = parser_->get();
  keep_alive_ = msg.keep_alive() && !server_->stopped.load();
  chunked_ = msg.version() >= 11;

  HttpRequest req;
  req.method = std::string(view(msg.method_string()));
  req.target = std::string(view(msg.target()));
  for (const auto& field : msg) {
    std::string name = to_lower(view(field.name_string()));
    auto [it, inserted] = req.headers.emplace(name, std::string(view(field.value())));
    if (!inserted) it->second.append(", ").append(view(field.value()));  // RFC 9110 5.3
  }
  req.body = std::move(msg.body());

  std::string path = req.target.substr(0, req.target.find('?'));
  const Handler* handler = nullptr;
  auto route = server_->routes.find(path);
  if (route == server_->routes.end()) {
    if (!server_->fallback) {
      send_error(404, "no route for " + path);
      return;
    }
    handler = &server_->fallback;
  } else {
    auto found = route->second.find(req.method);
    if (found == route->second.end()) {
      std::string allowed;
      for (const auto& [method, unused] : route->second) {
        allowed += (allowed.empty() ? "" : ", ") + method;
      }
      send_error(405, "method " + req.method + " is not allowed for " + path, {{"Allow", allowed}});
      return;
    }
    handler = &found->second;
  }

  auto writer = std::make_shared<Writer>(shared_from_this(), seq_);
  writer_ = writer;
  if (buffer_.size() == 0 && !reading_) read_raw();  // watch for the client leaving
  try {
    (*handler)(std::move(req), std::move(writer));
  } catch (const std::exception& e) {
    // If the handler kept no reference, the writer's destructor answers 500.
    spdlog::error("http handler for {} threw: {}", path, e.what());
  } catch (...) {
    spdlog::error("http handler for {} threw a non-standard exception", path);
  }
}

void Connection::send_error(int status, const std::string& message, Headers extra) {
  phase_ = Phase::kHandling;
  stream_started_ = false;
  const char* type = status >= 500 ? "server_error" : "invalid_request_error";
  queue_response(status, "application/json", error_json(message, type), extra);
}

std::string Connection::head(int status, const std::string& content_type, const Headers& extra,
                             const std::string& framing) {
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  if (!content_type.empty()) out += "Content-Type: " + content_type + "\r\n";
  out += framing;
  if (!keep_alive_) out += "Connection: close\r\n";
  for (const auto& [name, value] : extra) {
    std::string lower = to_lower(name);
    // Framing is ours to decide; a handler overriding it would corrupt the stream.
    if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection" ||
        lower == "content-type" || !safe_header(name, value)) {
      continue;
    }
    out += name + ": " + value + "\r\n";
  }
  return out + "\r\n";
}

void Connection::queue_response(int status, const std::string& content_type, std::string body,
                                const Headers& extra) {
  // RFC 9110 8.6: these statuses carry neither a body nor a Content-Length.
  bool bodyless = status < 200 || status == 204 || status == 304;
  if (bodyless) body.clear();
  out_.push_back(head(status, content_type, extra,
                      bodyless ? "" : "Content-Length: " + std::to_string(body.size()) + "\r\n"));
  if (!body.empty()) out_.push_back(std::move(body));
  response_complete_ = true;
  flush();
}

void Connection::send_response(uint64_t seq, int status, const std::string& content_type,
                               std::string body, const Headers& extra) {
  if (!current(seq)) return;  // the connection closed meanwhile
  queue_response(status, content_type, std::move(body), extra);
}

void Connection::start_stream(uint64_t seq, int status, const std::string& content_type,
                              const Headers& extra) {
  if (!current(seq)) return;
  stream_started_ = true;
  if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when we close
  out_.push_back(
      head(status, content_type, extra, chunked_ ? "Transfer-Encoding: chunked\r\n" : ""));
  flush();
}

void Connection::send_chunk(uint64_t seq, std::string data) {
  // An empty chunk would read as the end of the body.
  if (!current(seq) || !stream_started_ || response_complete_ || data.empty()) return;
  if (chunked_) {
    char size[20];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    data.insert(0, size);
    data += "\r\n";
  }
  out_.push_back(std::move(data));
  flush();
}

void Connection::finish_stream(uint64_t seq) {
  if (!current(seq) || !stream_started_ || response_complete_) return;
  if (chunked_) out_.push_back("0\r\n\r\n");
  response_complete_ = true;
  flush();
}

void Connection::abandon(uint64_t seq, bool stream_started) {
  if (!current(seq) || response_complete_) return;
  if (!stream_started) {
    send_error(500, "the request handler returned no response");
  } else {
    // Too late for a status: what was written goes out, then the connection closes
    // without the last chunk, so the client sees a broken body, not a complete one.
    close_after_flush_ = true;
    if (!writing_ && out_.empty()) close();
  }
}

// Everything queued goes out in one gathered write, so chunks that pile up while a
// write is in flight cost one syscall and none waits for a timer.
void Connection::flush() {
  if (writing_ || out_.empty() || phase_ == Phase::kClosed) return;
  writing_ = true;
  in_flight_.assign(std::make_move_iterator(out_.begin()), std::make_move_iterator(out_.end()));
  out_.clear();
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(in_flight_.size());
  for (const auto& s : in_flight_) buffers.push_back(asio::buffer(s));
  // A client that stops reading would otherwise pin the connection and its queue.
  uint64_t epoch = ++write_epoch_;
  write_timer_.expires_after(std::chrono::seconds(server_->options.idle_timeout_s));
  write_timer_.async_wait([self = shared_from_this(), epoch](error_code ec) {
    if (!ec && epoch == self->write_epoch_) self->close();
  });
  asio::async_write(socket_, buffers, [self = shared_from_this()](error_code ec, std::size_t) {
    self->on_write(ec);
  });
}

void Connection::on_write(error_code ec) {
  writing_ = false;
  ++write_epoch_;
  write_timer_.cancel();
  in_flight_.clear();
  if (phase_ == Phase::kClosed) return;
  if (ec) {
    close();
    return;
  }
  if (!out_.empty()) {
    flush();
  } else if (close_after_flush_) {
    close();
  } else if (phase_ == Phase::kHandling && response_complete_) {
    on_response_done();
  }
}

void Connection::on_response_done() {
  writer_.reset();
  if (!keep_alive_ || server_->stopped.load()) {
    linger_close();
  } else {
    enter_idle();  // only now: the next request waits for this response (RFC 9112 9.3.2)
  }
}

void Connection::linger_close() {
  phase_ = Phase::kClosing;
  error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  arm_read_timer(kLingerSeconds);
  if (!reading_) {  // else the pending read drains; its buffer must stay put until then
    buffer_.consume(buffer_.size());
    read_raw();
  }
}

void Connection::close() {
  if (phase_ == Phase::kClosed) return;
  bool handling = phase_ == Phase::kHandling;
  phase_ = Phase::kClosed;
  cancel_read_timer();
  ++write_epoch_;
  write_timer_.cancel();
  error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  out_.clear();
  if (handling) {
    if (auto writer = writer_.lock()) writer->notify_gone();
  }
  writer_.reset();
}

}  // namespace splitwise::net::internal
