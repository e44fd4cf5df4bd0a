// HttpClient's TLS path against a real Beast TLS server in the test, with a PKI made at
// run time: CA trust, hostname (IP and DNS) verification, SNI, client certificates,
// insecure_skip_tls_verify, streaming, and a kubeconfig with embedded credentials.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controller/kube/cluster_config.h"
#include "controller/kube/http_client.h"
#include "tests/controller/kube/tls_test_certs.h"
#include "tests/test_util.h"

namespace splitwise::kube {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using tls_test::Issued;
using tls_test::test_pki;

// Bounds every server step, so a client bug shows up as a failure, not a hung test.
constexpr auto kServerIoTimeout = 3s;

struct SeenRequest {
  std::string method;
  std::string target;
  std::string authorization;
  std::string client_cn;  // subject CN of the client certificate, "" without one
  std::string sni;        // server name the client sent, "" without one
};

struct Reply {
  int status = 200;
  std::string body = R"({"kind":"APIVersions"})";
  // Non-empty: a chunked body, one TLS write per entry, like a watch.
  std::vector<std::string> chunks;
  // With chunks: no last chunk; the server waits for the client to hang up, as an
  // apiserver does while a watch has nothing new.
  bool hold_open = false;
};

std::string peer_common_name(SSL* ssl) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  tls_test::CertPtr cert(SSL_get1_peer_certificate(ssl));
#else
  tls_test::CertPtr cert(SSL_get_peer_certificate(ssl));
#endif
  if (!cert) return "";
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn) <
      0) {
    return "";
  }
  return cn;
}

// One connection at a time on its own thread. Every step is an async op run to
// completion on the server's io_context, so the destructor can stop it by posting.
class TlsServer {
 public:
  TlsServer(const Issued& identity, bool require_client_cert, Reply reply = {})
      : reply_(std::move(reply)) {
    ssl_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3);
    ssl_.use_certificate_chain(asio::buffer(identity.cert_pem));
    ssl_.use_private_key(asio::buffer(identity.key_pem), asio::ssl::context::pem);
    if (require_client_cert) {
      ssl_.add_certificate_authority(asio::buffer(test_pki().ca.cert_pem));
      ssl_.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }

  ~TlsServer() {
    asio::post(ioc_, [this] {
      stopping_ = true;
      beast::error_code ignored;
      acceptor_.close(ignored);
      if (current_ != nullptr) current_->socket().close(ignored);
    });
    thread_.join();
  }

  std::string url(const std::string& host = "127.0.0.1") const {
    return "https://" + host + ":" + std::to_string(port_);
  }

  std::vector<SeenRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  // The server side's messages for failed handshakes, once there are `n` of them (the
  // client may return before the server has noticed).
  std::vector<std::string> wait_handshake_failures(std::size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kServerIoTimeout, [&] { return handshake_failures_.size() >= n; });
    return handshake_failures_;
  }

 private:
  template <typename Start>
  beast::error_code run_op(Start&& start) {
    beast::error_code result = asio::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  void serve() {
    while (!stopping_) {
      tcp::socket socket(ioc_);
      const beast::error_code ec =
          run_op([&](auto handler) { acceptor_.async_accept(socket, handler); });
      if (ec || stopping_) return;
      serve_one(std::move(socket));
    }
  }

  void serve_one(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), ssl_);
    beast::tcp_stream& lowest = beast::get_lowest_layer(stream);
    current_ = &lowest;
    struct Forget {
      beast::tcp_stream*& current;
      ~Forget() { current = nullptr; }
    } forget{current_};

    lowest.expires_after(kServerIoTimeout);
    beast::error_code ec = run_op(
        [&](auto handler) { stream.async_handshake(asio::ssl::stream_base::server, handler); });
    if (ec) {
      std::lock_guard<std::mutex> lock(mu_);
      handshake_failures_.push_back(ec.message());
      cv_.notify_all();
      return;
    }
    SeenRequest seen;
    seen.client_cn = peer_common_name(stream.native_handle());
    if (const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
      seen.sni = sni;
    }

    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    lowest.expires_after(kServerIoTimeout);
    ec = run_op([&](auto handler) { http::async_read(stream, buffer, req, handler); });
    if (ec) return;
    seen.method = std::string(req.method_string());
    seen.target = std::string(req.target());
    seen.authorization = std::string(req[http::field::authorization]);
    {
      // Recorded before answering, so a client that got its response sees it here.
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(std::move(seen));
    }

    lowest.expires_after(kServerIoTimeout);
    if (reply_.chunks.empty()) {
      http::response<http::string_body> res(static_cast<http::status>(reply_.status), 11);
      res.set(http::field::content_type, "application/json");
      res.body() = reply_.body;
      res.keep_alive(false);
      res.prepare_payload();
      ec = run_op([&](auto handler) { http::async_write(stream, res, handler); });
    } else {
      http::response<http::empty_body> res(static_cast<http::status>(reply_.status), 11);
      res.set(http::field::content_type, "application/json");
      res.chunked(true);
      res.keep_alive(false);
      http::response_serializer<http::empty_body> serializer(res);
      ec = run_op([&](auto handler) { http::async_write_header(stream, serializer, handler); });
      for (const std::string& chunk : reply_.chunks) {
        if (ec) break;
        // Each write is its own TLS record; the pause keeps the client from reading
        // several of them in one go.
        std::this_thread::sleep_for(2ms);
        ec = run_op([&](auto handler) {
          asio::async_write(stream, http::make_chunk(asio::buffer(chunk)), handler);
        });
      }
      if (!ec && reply_.hold_open) {
        char byte;
        lowest.expires_after(kServerIoTimeout);
        run_op([&](auto handler) { stream.async_read_some(asio::buffer(&byte, 1), handler); });
      } else if (!ec) {
        ec = run_op(
            [&](auto handler) { asio::async_write(stream, http::make_chunk_last(), handler); });
      }
    }
    // No close_notify: the client closes TCP without answering one, and the HTTP
    // framing already tells it where the body ends.
    beast::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::io_context ioc_;
  asio::ssl::context ssl_{asio::ssl::context::tls_server};
  tcp::acceptor acceptor_{ioc_};
  unsigned short port_ = 0;
  Reply reply_;
  bool stopping_ = false;                 // server thread only
  beast::tcp_stream* current_ = nullptr;  // server thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SeenRequest> requests_;            // guarded by mu_
  std::vector<std::string> handshake_failures_;  // guarded by mu_
  std::thread thread_;
};

ClusterConfig config_for(const TlsServer& server, const std::string& host = "127.0.0.1") {
  ClusterConfig config;
  config.server = server.url(host);
  config.ca_pem = test_pki().ca.cert_pem;
  config.token = TokenSource::fixed("tls-token");
  config.request_timeout = 3s;
  return config;
}

Result<HttpResponse> get(const ClusterConfig& config, const std::string& target = "/api") {
  Result<std::unique_ptr<HttpClient>> client = HttpClient::create(config);
  if (!client.ok()) return client.status();
  HttpRequest request;
  request.target = target;
  return (*client)->request(request);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Whether "localhost" reaches the server's 127.0.0.1 listener on this machine.
bool localhost_is_loopback_v4() {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  const auto results = resolver.resolve("localhost", "0", ec);
  if (ec) return false;
  for (const auto& entry : results) {
    if (entry.endpoint().address() == asio::ip::make_address("127.0.0.1")) return true;
  }
  return false;
}

std::string base64(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

TEST(KubeTlsTest, TrustedCaAndIpSanSucceedWithBearerToken) {
  TlsServer server(test_pki().server, /*require_client_cert=*/false);
  Result<HttpResponse> response = get(config_for(server), "/api/v1/namespaces?limit=1");
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"({"kind":"APIVersions"})");
  const std::vector<SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/api/v1/namespaces?limit=1");
  EXPECT_EQ(seen[0].authorization, "Bearer tls-token");
  EXPECT_EQ(seen[0].client_cn, "");
  EXPECT_EQ(seen[0].sni, "") << "SNI must not carry an IP literal (RFC 6066)";
}

TEST(KubeTlsTest, LocalhostNameIsVerifiedAndSentAsSni) {
  if (!localhost_is_loopback_v4()) GTEST_SKIP() << "localhost does not resolve to 127.0.0.1";
  TlsServer server(test_pki().server, /*require_client_cert=*/false);
  Result<HttpResponse> response = get(config_for(server, "localhost"));
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  const std::vector<SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].sni, "localhost");
  EXPECT_EQ(seen[0].authorization, "Bearer tls-token");
}

TEST(KubeTlsTest, CaBundleWithSeveralCertificatesTrustsEach) {
  // A rotating cluster CA ships old and new certificates in one ca.crt.
  TlsServer server(test_pki().server, /*require_client_cert=*/false);
  ClusterConfig config = config_for(server);
  config.ca_pem = test_pki().untrusted_ca.cert_pem + test_pki().ca.cert_pem;
  Result<HttpResponse> response = get(config);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
}

TEST(KubeTlsTest, UntrustedCaIsATransportErrorBeforeAnyRequest) {
  TlsServer server(test_pki().untrusted_server, /*require_client_cert=*/false);
  Result<HttpResponse> response = get(config_for(server));
  ASSERT_FALSE(response.ok()) << "got HTTP " << response->status;
  const std::string& message = response.status().message();
  EXPECT_TRUE(contains(message, "TLS")) << message;
  EXPECT_TRUE(contains(message, "verify")) << message;
  EXPECT_TRUE(contains(message, "issuer")) << message;
  EXPECT_TRUE(server.requests().empty()) << "the token must not reach an unverified server";
}

TEST(KubeTlsTest, HostnameMismatchIsRejected) {
  // Signed by the trusted CA, so only the name check can refuse it.
  TlsServer server(test_pki().mismatch_server, /*require_client_cert=*/false);
  Result<HttpResponse> by_ip = get(config_for(server));
  ASSERT_FALSE(by_ip.ok()) << "got HTTP " << by_ip->status;
  EXPECT_TRUE(contains(by_ip.status().message(), "TLS")) << by_ip.status().message();
  EXPECT_TRUE(contains(by_ip.status().message(), "IP address mismatch"))
      << by_ip.status().message();
  if (localhost_is_loopback_v4()) {
    Result<HttpResponse> by_name = get(config_for(server, "localhost"));
    ASSERT_FALSE(by_name.ok()) << "got HTTP " << by_name->status;
    EXPECT_TRUE(contains(by_name.status().message(), "hostname mismatch"))
        << by_name.status().message();
  }
  EXPECT_TRUE(server.requests().empty());
}

TEST(KubeTlsTest, InsecureSkipTlsVerifyAcceptsUntrustedAndMismatchedCerts) {
  for (const Issued* identity : {&test_pki().untrusted_server, &test_pki().mismatch_server}) {
    TlsServer server(*identity, /*require_client_cert=*/false);
    ClusterConfig config = config_for(server);
    config.insecure_skip_tls_verify = true;
    Result<HttpResponse> response = get(config);
    ASSERT_TRUE(response.ok()) << response.status().message();
    EXPECT_EQ(response->status, 200);
    ASSERT_EQ(server.requests().size(), 1u);
    EXPECT_EQ(server.requests()[0].authorization, "Bearer tls-token");
  }
}

TEST(KubeTlsTest, ClientCertificateIsPresentedWhenRequired) {
  TlsServer server(test_pki().server, /*require_client_cert=*/true);
  ClusterConfig config = config_for(server);
  config.token = nullptr;  // the certificate alone authenticates
  config.client_cert_pem = test_pki().client.cert_pem;
  config.client_key_pem = test_pki().client.key_pem;
  Result<HttpResponse> response = get(config);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  const std::vector<SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].client_cn, tls_test::kClientCommonName);
  EXPECT_EQ(seen[0].authorization, "");
}

TEST(KubeTlsTest, MissingClientCertificateIsRejected) {
  TlsServer server(test_pki().server, /*require_client_cert=*/true);
  // Under TLS 1.3 the client finishes its handshake before the server refuses, so the
  // error may surface on the write or the read; any transport error will do.
  Result<HttpResponse> response = get(config_for(server));
  ASSERT_FALSE(response.ok()) << "got HTTP " << response->status;
  EXPECT_TRUE(server.requests().empty());
  const std::vector<std::string> failures = server.wait_handshake_failures(1);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_TRUE(contains(failures[0], "certificate")) << failures[0];
}

TEST(KubeTlsTest, StreamLinesDeliversEveryLineAcrossTlsRecords) {
  // Larger than one 16 KiB TLS record, so one line spans several reads.
  const std::string big =
      R"({"type":"ADDED","object":{"data":")" + std::string(40000, 'x') + R"("}})";
  Reply reply;
  reply.chunks = {
      "{\"type\":\"ADDED\",\"n\":1}\n{\"type\":\"MODI",
      "FIED\",\"n\":2}\n",
      big + "\n",
      "{\"type\":\"DELETED\",\"n\":3}\n",
      "{\"type\":\"BOOKMARK\",\"n\":4}\n",
  };
  TlsServer server(test_pki().server, /*require_client_cert=*/false, reply);
  Result<std::unique_ptr<HttpClient>> client = HttpClient::create(config_for(server));
  ASSERT_TRUE(client.ok()) << client.status().message();
  HttpRequest request;
  request.target = "/api/v1/pods?watch=true";
  std::vector<std::string> lines;
  Result<HttpResponse> response = (*client)->stream_lines(
      request,
      [&](std::string_view line) {
        lines.emplace_back(line);
        return true;
      },
      nullptr, 2s);
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], R"({"type":"ADDED","n":1})");
  EXPECT_EQ(lines[1], R"({"type":"MODIFIED","n":2})");
  EXPECT_EQ(lines[2], big);
  EXPECT_EQ(lines[3], R"({"type":"DELETED","n":3})");
  EXPECT_EQ(lines[4], R"({"type":"BOOKMARK","n":4})");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].target, "/api/v1/pods?watch=true");
}

TEST(KubeTlsTest, CancelEndsAnIdleTlsStreamFromAnotherThread) {
  Reply reply;
  reply.chunks = {"{\"type\":\"ADDED\",\"n\":1}\n"};
  reply.hold_open = true;
  TlsServer server(test_pki().server, /*require_client_cert=*/false, reply);
  Result<std::unique_ptr<HttpClient>> client = HttpClient::create(config_for(server));
  ASSERT_TRUE(client.ok()) << client.status().message();
  CancelToken cancel;
  std::promise<void> first_line;
  std::thread canceller([&] {
    first_line.get_future().wait();
    cancel.cancel();
  });
  HttpRequest request;
  request.target = "/api/v1/pods?watch=true";
  std::vector<std::string> lines;
  const auto start = std::chrono::steady_clock::now();
  Result<HttpResponse> response = (*client)->stream_lines(
      request,
      [&](std::string_view line) {
        if (lines.empty()) first_line.set_value();
        lines.emplace_back(line);
        return true;
      },
      &cancel, 10s);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (lines.empty()) first_line.set_value();  // never leave the canceller waiting
  canceller.join();
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(lines, std::vector<std::string>{R"({"type":"ADDED","n":1})"});
  // Well under the server's hold and the idle timeout: the cancel ended it.
  EXPECT_LT(elapsed, 2s);
}

TEST(KubeTlsTest, KubeconfigWithEmbeddedCredentialsWorksEndToEnd) {
  TlsServer server(test_pki().server, /*require_client_cert=*/true);
  const std::filesystem::path dir = testing::fresh_temp_dir();
  {
    std::ofstream out(dir / "config", std::ios::binary | std::ios::trunc);
    // The traditional "EC PRIVATE KEY" form is what kubeadm-era kubeconfigs carry.
    out << "apiVersion: v1\n"
        << "kind: Config\n"
        << "current-context: tls\n"
        << "clusters:\n"
        << "- name: tls-cluster\n"
        << "  cluster:\n"
        << "    server: " << server.url() << "\n"
        << "    certificate-authority-data: " << base64(test_pki().ca.cert_pem) << "\n"
        << "users:\n"
        << "- name: tls-user\n"
        << "  user:\n"
        << "    token: kubeconfig-token\n"
        << "    client-certificate-data: " << base64(test_pki().client.cert_pem) << "\n"
        << "    client-key-data: " << base64(test_pki().client.key_pem_traditional) << "\n"
        << "contexts:\n"
        << "- name: tls\n"
        << "  context:\n"
        << "    cluster: tls-cluster\n"
        << "    user: tls-user\n"
        << "    namespace: tls-ns\n";
  }
  Result<ClusterConfig> config = load_kubeconfig(dir / "config");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->default_namespace, "tls-ns");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
  config->request_timeout = 3s;
  Result<HttpResponse> response = get(*config, "/apis");
  ASSERT_TRUE(response.ok()) << response.status().message();
  EXPECT_EQ(response->status, 200);
  const std::vector<SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/apis");
  EXPECT_EQ(seen[0].authorization, "Bearer kubeconfig-token");
  EXPECT_EQ(seen[0].client_cn, tls_test::kClientCommonName);
}

}  // namespace
}  // namespace splitwise::kube
