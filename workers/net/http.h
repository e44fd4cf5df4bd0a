// Small HTTP/1.1 server and client on Boost.Beast, shared by the router and the workers.
// The server runs on one io_context thread; handlers may answer from any thread (the
// writer posts to the connection's strand), and may stream (chunked bodies, SSE).
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "workers/engine/status.h"

namespace splitwise::net {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, e.g. "/v1/completions"
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Answers one request. Thread-safe. Either respond() once, or start_stream() then any
// number of write() and one finish(). Dropping the last reference without answering
// sends a 500; dropping it mid-stream sends what was written and then closes the
// connection without ending the chunked body, so the client sees a broken response.
// Writes are sent as soon as the socket takes them (no batching timer, TCP_NODELAY);
// the queue is unbounded, and a client that stops reading is cut off after
// idle_timeout_s. A client that half-closes its side counts as gone.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual void respond(int status, const std::string& content_type, std::string body,
                       std::map<std::string, std::string> extra_headers = {}) = 0;
  virtual void start_stream(int status, const std::string& content_type,
                            std::map<std::string, std::string> extra_headers = {}) = 0;
  // Returns false once the client is known to be gone (the data is dropped).
  virtual bool write(std::string chunk) = 0;
  virtual void finish() = 0;
  virtual bool client_gone() const = 0;
  // Runs once (on the server thread) if the client disconnects before finish().
  virtual void on_client_gone(std::function<void()> callback) = 0;
};

using Handler = std::function<void(HttpRequest, std::shared_ptr<ResponseWriter>)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                // 0: any free port (see HttpServer::port)
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  int idle_timeout_s = 60;          // keep-alive wait for the next request; stalled reads/writes
  int header_timeout_s = 10;        // from a request's first byte to the end of its headers
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, ServerOptions options);
  ~HttpServer();
  // Exact-path routes; unknown paths get 404 and a known path with another method 405,
  // both with a JSON error body.
  void route(const std::string& method, const std::string& path, Handler handler);
  // Answers every request whose path has no exact route (instead of the 404), for
  // servers that route by pattern. Set before start().
  void fallback(Handler handler);
  Status start();  // binds and listens; fails with a message naming host:port
  uint16_t port() const;
  // Stops accepting (the port is closed when this returns) and closes every connection
  // (asynchronously, on their strands); handlers still answering see client_gone().
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Asynchronous client. Callbacks run on the io_context's thread. Every call opens its
// own TCP connection and sends "Connection: close" (no pooling: simpler, and a call never
// inherits a connection the server is closing). Timeouts <= 0 mean no limit. Calls in
// flight outlive the client object.
class HttpClient {
 public:
  explicit HttpClient(boost::asio::io_context& io);
  ~HttpClient();

  // One request, whole response; errors (refused, timeout, bad response) as Status.
  void request(const std::string& host, uint16_t port, HttpRequest req, int timeout_ms,
               std::function<void(Result<HttpResponse>)> done);

  // A request whose response body is read as it arrives: `on_status` once with the
  // status code and headers, `on_line` for every complete '\n'-terminated line (without
  // the '\n'), `on_end` once (ok when the server finished the body; an error when the
  // connection broke, timed out or was cancelled). Returns a handle: calling it cancels.
  std::function<void()> stream(const std::string& host, uint16_t port, HttpRequest req,
                               int idle_timeout_ms,
                               std::function<void(const HttpResponse& head)> on_status,
                               std::function<void(std::string_view line)> on_line,
                               std::function<void(Status)> on_end);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitwise::net
