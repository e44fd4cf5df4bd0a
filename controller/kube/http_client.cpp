#include "controller/kube/http_client.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <limits>
#include <type_traits>

namespace splitwise::kube {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Runs one async operation to completion on this call's own io_context.
template <typename Start>
beast::error_code run_op(asio::io_context& ioc, Start&& start) {
  beast::error_code result = asio::error::would_block;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

bool is_ip(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  const std::string key = lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return "";
}

void CancelToken::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (canceller_) canceller_();
}

bool CancelToken::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool CancelToken::attach(std::function<void()> canceller) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  canceller_ = std::move(canceller);
  return true;
}

void CancelToken::detach() {
  std::lock_guard<std::mutex> lock(mu_);
  canceller_ = nullptr;
}

Result<ParsedUrl> parse_server_url(const std::string& server) {
  ParsedUrl url;
  std::string rest;
  if (server.rfind("https://", 0) == 0) {
    rest = server.substr(8);
  } else if (server.rfind("http://", 0) == 0) {
    url.tls = false;
    rest = server.substr(7);
  } else {
    return Status::error("server URL '" + server + "' must start with http:// or https://");
  }
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) url.base_path = rest.substr(slash);
  while (!url.base_path.empty() && url.base_path.back() == '/') url.base_path.pop_back();
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return Status::error("bad IPv6 address in '" + server + "'");
    url.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      url.port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.rfind(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) url.port = authority.substr(colon + 1);
  }
  if (url.host.empty()) return Status::error("no host in server URL '" + server + "'");
  if (url.port.empty()) url.port = url.tls ? "443" : "80";
  if (!std::all_of(url.port.begin(), url.port.end(),
                   [](unsigned char c) { return std::isdigit(c); })) {
    return Status::error("bad port in server URL '" + server + "'");
  }
  return url;
}

bool feed_lines(std::string& pending, std::string_view data,
                const std::function<bool(std::string_view)>& on_line) {
  pending.append(data.data(), data.size());
  std::size_t start = 0;
  while (true) {
    const auto nl = pending.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(pending.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = nl + 1;
    if (!line.empty() && !on_line(line)) {
      pending.erase(0, start);
      return false;
    }
  }
  pending.erase(0, start);
  return true;
}

struct HttpClient::Tls {
  asio::ssl::context ctx{asio::ssl::context::tls_client};
};

Result<std::unique_ptr<HttpClient>> HttpClient::create(const ClusterConfig& config) {
  Result<ParsedUrl> url = parse_server_url(config.server);
  if (!url.ok()) return url.status();
  std::unique_ptr<Tls> tls;
  if (url->tls) {
    tls = std::make_unique<Tls>();
    boost::system::error_code ec;
    tls->ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1);
    if (config.insecure_skip_tls_verify) {
      tls->ctx.set_verify_mode(asio::ssl::verify_none);
    } else {
      tls->ctx.set_verify_mode(asio::ssl::verify_peer);
      if (!config.ca_pem.empty()) {
        tls->ctx.add_certificate_authority(asio::buffer(config.ca_pem), ec);
        if (ec) return Status::error("loading the cluster CA certificate: " + ec.message());
      } else {
        tls->ctx.set_default_verify_paths(ec);
        if (ec) return Status::error("loading the system CA certificates: " + ec.message());
      }
    }
    if (!config.client_cert_pem.empty()) {
      tls->ctx.use_certificate_chain(asio::buffer(config.client_cert_pem), ec);
      if (ec) return Status::error("loading the client certificate: " + ec.message());
      tls->ctx.use_private_key(asio::buffer(config.client_key_pem), asio::ssl::context::pem, ec);
      if (ec) return Status::error("loading the client key: " + ec.message());
    }
  }
  return std::unique_ptr<HttpClient>(new HttpClient(config, std::move(*url), std::move(tls)));
}

HttpClient::HttpClient(ClusterConfig config, ParsedUrl url, std::unique_ptr<Tls> tls)
    : config_(std::move(config)), url_(std::move(url)), tls_(std::move(tls)) {}

HttpClient::~HttpClient() = default;

namespace {

// One exchange on an open-able stream (tcp_stream or ssl_stream<tcp_stream>).
template <typename Stream>
Result<HttpResponse> do_exchange(asio::io_context& ioc, Stream& stream, const ParsedUrl& url,
                                 http::request<http::string_body>& req, Clock::time_point deadline,
                                 std::chrono::milliseconds idle_timeout, CancelToken* cancel,
                                 const std::function<bool(int, std::string_view)>& on_data) {
  auto& lowest = beast::get_lowest_layer(stream);
  const bool cancellable = cancel != nullptr;
  if (cancellable) {
    const bool attached = cancel->attach([&ioc, &lowest] {
      asio::post(ioc, [&lowest] {
        beast::error_code ignored;
        lowest.socket().cancel(ignored);
        lowest.socket().close(ignored);
      });
    });
    if (!attached) return Status::error("cancelled");
  }
  struct Detach {
    CancelToken* token;
    ~Detach() {
      if (token) token->detach();
    }
  } detach{cancel};
  auto failed = [&](const char* step, const beast::error_code& ec) -> Status {
    if (cancel && cancel->cancelled()) return Status::error("cancelled");
    if (ec == beast::error::timeout) {
      return Status::error(std::string(step) + " " + url.host + ":" + url.port + ": timed out");
    }
    return Status::error(std::string(step) + " " + url.host + ":" + url.port + ": " + ec.message());
  };

  tcp::resolver resolver(ioc);
  tcp::resolver::results_type endpoints;
  beast::error_code ec = run_op(ioc, [&](auto handler) {
    resolver.async_resolve(
        url.host, url.port,
        [&endpoints, handler](beast::error_code e, tcp::resolver::results_type r) {
          endpoints = std::move(r);
          handler(e);
        });
  });
  if (ec) return failed("resolving", ec);
  if (cancel && cancel->cancelled()) return Status::error("cancelled");
  lowest.expires_at(deadline);
  ec = run_op(ioc, [&](auto handler) { lowest.async_connect(endpoints, handler); });
  if (ec) return failed("connecting to", ec);

  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    // SNI only for names (RFC 6066 forbids IP literals); verification covers both.
    SSL* ssl = stream.native_handle();
    const bool ip = is_ip(url.host);
    if (!ip && !SSL_set_tlsext_host_name(ssl, url.host.c_str())) {
      return Status::error("setting TLS SNI for " + url.host);
    }
    // OpenSSL's own name check rather than a verify callback: a mismatch then gets its
    // own verify result ("hostname mismatch") instead of an unspecified failure.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (!(ip ? X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str())
             : X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), 0))) {
      return Status::error("setting the TLS peer name " + url.host);
    }
    lowest.expires_at(deadline);
    ec = run_op(ioc, [&](auto handler) {
      stream.async_handshake(asio::ssl::stream_base::client, handler);
    });
    if (ec) {
      Status status = failed("TLS handshake with", ec);
      // "certificate verify failed" alone cannot tell an unknown CA from a wrong name.
      const long verify = SSL_get_verify_result(ssl);
      if (verify == X509_V_OK || SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE ||
          (cancel && cancel->cancelled())) {
        return status;
      }
      return Status::error(status.message() + " (" + X509_verify_cert_error_string(verify) + ")");
    }
  }

  lowest.expires_at(deadline);
  ec = run_op(ioc, [&](auto handler) { http::async_write(stream, req, handler); });
  if (ec) return failed("sending to", ec);

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // watches never end
  lowest.expires_at(deadline);
  ec = run_op(ioc, [&](auto handler) { http::async_read_header(stream, buffer, parser, handler); });
  if (ec) return failed("reading the response header from", ec);

  HttpResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) {
    response.headers.emplace_back(
        lower(std::string_view(field.name_string().data(), field.name_string().size())),
        std::string(field.value()));
  }
  std::vector<char> chunk(64 * 1024);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    if (idle_timeout.count() > 0) {
      lowest.expires_after(idle_timeout);
    } else {
      lowest.expires_at(deadline);
    }
    ec = run_op(ioc, [&](auto handler) { http::async_read_some(stream, buffer, parser, handler); });
    if (ec == http::error::need_buffer) ec = {};
    const std::size_t n = chunk.size() - parser.get().body().size;
    if (n > 0 && !on_data(response.status, std::string_view(chunk.data(), n))) return response;
    if (ec) {
      if (cancel && cancel->cancelled()) return response;  // cancelled mid-body: not an error
      return failed("reading the response body from", ec);
    }
  }
  if (cancel == nullptr || !cancel->cancelled()) {
    beast::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
  return response;
}

}  // namespace

Result<HttpResponse> HttpClient::exchange(const HttpRequest& request, const OnData& on_data,
                                          CancelToken* cancel,
                                          std::chrono::milliseconds idle_timeout) {
  const http::verb verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) return Status::error("unknown HTTP method " + request.method);
  const std::string target = request.target.empty() ? "/" : request.target;
  http::request<http::string_body> req(verb, url_.base_path + target, 11);
  const bool default_port = (url_.tls && url_.port == "443") || (!url_.tls && url_.port == "80");
  const std::string host =
      url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
  req.set(http::field::host, default_port ? host : host + ":" + url_.port);
  req.set(http::field::user_agent, config_.user_agent);
  req.set(http::field::accept, "application/json");
  if (config_.token) {
    Result<std::string> token = config_.token->token();
    if (!token.ok()) return token.status();
    if (!token->empty()) req.set(http::field::authorization, "Bearer " + *token);
  }
  for (const auto& [name, value] : request.headers) req.set(name, value);
  if (!request.body.empty() || !request.content_type.empty()) {
    req.set(http::field::content_type,
            request.content_type.empty() ? "application/json" : request.content_type);
    req.body() = request.body;
  }
  req.keep_alive(false);
  req.prepare_payload();

  const auto timeout = request.timeout.count() > 0 ? request.timeout : config_.request_timeout;
  // Streams have no overall deadline once the header is in; the idle timeout guards them.
  const Clock::time_point deadline = Clock::now() + timeout;
  asio::io_context ioc;
  if (tls_) {
    beast::ssl_stream<beast::tcp_stream> stream(ioc, tls_->ctx);
    return do_exchange(ioc, stream, url_, req, deadline, idle_timeout, cancel, on_data);
  }
  beast::tcp_stream stream(ioc);
  return do_exchange(ioc, stream, url_, req, deadline, idle_timeout, cancel, on_data);
}

Result<HttpResponse> HttpClient::request(const HttpRequest& request, CancelToken* cancel) {
  std::string body;
  Result<HttpResponse> response = exchange(
      request,
      [&body](int, std::string_view chunk) {
        body.append(chunk.data(), chunk.size());
        return true;
      },
      cancel, std::chrono::milliseconds(0));
  if (!response.ok()) return response.status();
  response->body = std::move(body);
  return response;
}

Result<HttpResponse> HttpClient::stream_lines(const HttpRequest& request,
                                              const std::function<bool(std::string_view)>& on_line,
                                              CancelToken* cancel,
                                              std::chrono::milliseconds idle_timeout) {
  std::string error_body;
  std::string pending;
  Result<HttpResponse> response = exchange(
      request,
      [&](int status, std::string_view chunk) {
        if (status < 200 || status >= 300) {
          error_body.append(chunk.data(), chunk.size());
          return true;
        }
        return feed_lines(pending, chunk, on_line);
      },
      cancel, idle_timeout);
  if (!response.ok()) return response.status();
  if (response->status >= 200 && response->status < 300 && !pending.empty() &&
      (cancel == nullptr || !cancel->cancelled())) {
    on_line(pending);  // a last line without a newline
  }
  response->body = std::move(error_body);
  return response;
}

}  // namespace splitwise::kube
