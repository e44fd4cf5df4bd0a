// A throwaway PKI for the TLS tests, made at run time with OpenSSL's C API: nothing on
// disk can expire, and no openssl binary is needed. P-256 keys keep the set cheap
// (a few milliseconds), so it is built once per process.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace splitwise::kube::tls_test {

struct OpenSslFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, OpenSslFree>;
using CertPtr = std::unique_ptr<X509, OpenSslFree>;

// A broken test PKI is a broken test: throw, and gtest reports the OpenSSL reason.
inline void check(bool ok, const std::string& what) {
  if (ok) return;
  char reason[256] = {};
  ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
  throw std::runtime_error("test PKI: " + what + ": " + reason);
}

struct Issued {
  CertPtr cert;
  KeyPtr key;
  std::string cert_pem;
  std::string key_pem;              // PKCS#8 "BEGIN PRIVATE KEY"
  std::string key_pem_traditional;  // "BEGIN EC PRIVATE KEY", as kubeadm-made kubeconfigs carry
};

enum class Role { kCa, kServer, kClient };

inline KeyPtr make_p256_key() {
  std::unique_ptr<EVP_PKEY_CTX, OpenSslFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
  check(ctx && EVP_PKEY_keygen_init(ctx.get()) == 1 &&
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1) == 1,
        "P-256 key setup");
  EVP_PKEY* raw = nullptr;
  check(EVP_PKEY_keygen(ctx.get(), &raw) == 1, "P-256 key generation");
  return KeyPtr(raw);
}

template <typename Write>
std::string write_pem(Write&& write) {
  std::unique_ptr<BIO, OpenSslFree> bio(BIO_new(BIO_s_mem()));
  check(bio && write(bio.get()) == 1, "PEM encoding");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

inline void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, OpenSslFree> ext(
      X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  check(ext && X509_add_ext(cert, ext.get(), -1) == 1, "extension " + value);
}

// `issuer` null: self-signed. `san` is an OpenSSL subjectAltName value such as
// "IP:127.0.0.1,DNS:localhost"; servers need one because verification ignores the CN.
inline Issued issue(const std::string& common_name, Role role, const std::string& san,
                    const Issued* issuer) {
  Issued out;
  out.key = make_p256_key();
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  check(cert != nullptr && X509_set_version(cert, 2) == 1, "X509_new");

  // Random serials: two certificates of one issuer must never share one.
  std::uint64_t serial = 0;
  check(RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) == 1, "serial");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial >> 1) == 1, "serial");
  // Backdated an hour so clock skew between "now" here and in OpenSSL cannot bite.
  check(X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600) != nullptr,
        "validity");

  X509_NAME* name = X509_get_subject_name(cert);
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("splitwise-test"), -1, -1,
                                   0) == 1 &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                       -1, -1, 0) == 1,
        "subject");
  X509* signer = issuer ? issuer->cert.get() : cert;
  check(X509_set_issuer_name(cert, X509_get_subject_name(signer)) == 1, "issuer");
  check(X509_set_pubkey(cert, out.key.get()) == 1, "public key");

  add_extension(cert, signer, NID_subject_key_identifier, "hash");
  if (role == Role::kCa) {
    add_extension(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(cert, signer, NID_authority_key_identifier, "keyid:always");
    add_extension(cert, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert, signer, NID_key_usage, "critical,digitalSignature");
    add_extension(cert, signer, NID_ext_key_usage,
                  role == Role::kServer ? "serverAuth" : "clientAuth");
  }
  if (!san.empty()) add_extension(cert, signer, NID_subject_alt_name, san);

  EVP_PKEY* signing_key = issuer ? issuer->key.get() : out.key.get();
  check(X509_sign(cert, signing_key, EVP_sha256()) > 0, "signing " + common_name);

  out.cert_pem = write_pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
  out.key_pem = write_pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, out.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  out.key_pem_traditional = write_pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey_traditional(bio, out.key.get(), nullptr, nullptr, 0, nullptr,
                                                nullptr);
  });
  return out;
}

struct TestPki {
  Issued ca;               // what the client trusts
  Issued server;           // by ca, for IP:127.0.0.1 and DNS:localhost
  Issued mismatch_server;  // by ca, but only for DNS:other.example
  Issued client;           // by ca, CN=splitwise-test-client
  Issued untrusted_ca;
  Issued untrusted_server;  // by untrusted_ca, for the same names as `server`
};

inline constexpr const char* kClientCommonName = "splitwise-test-client";

inline const TestPki& test_pki() {
  static const TestPki pki = [] {
    TestPki p;
    p.ca = issue("splitwise-test-ca", Role::kCa, "", nullptr);
    p.server = issue("splitwise-test-server", Role::kServer, "IP:127.0.0.1,DNS:localhost", &p.ca);
    p.mismatch_server = issue("other.example", Role::kServer, "DNS:other.example", &p.ca);
    p.client = issue(kClientCommonName, Role::kClient, "", &p.ca);
    p.untrusted_ca = issue("splitwise-untrusted-ca", Role::kCa, "", nullptr);
    p.untrusted_server = issue("splitwise-untrusted-server", Role::kServer,
                               "IP:127.0.0.1,DNS:localhost", &p.untrusted_ca);
    return p;
  }();
  return pki;
}

}  // namespace splitwise::kube::tls_test
