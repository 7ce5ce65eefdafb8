// tls_session driven back to back against an OpenSSL client over memory BIOs: no sockets.

#include "transport/tls.hpp"

#include <algorithm>
#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using chroom::transport::tls_server_context;
using chroom::transport::tls_session;
namespace fs = std::filesystem;

// Drains this thread's OpenSSL errors (the client's, in these tests) into one line.
std::string drain_errors() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char line[256];
    ERR_error_string_n(code, line, sizeof line);
    text += line;
    text += "; ";
  }
  return text;
}

std::vector<std::byte> to_bytes(std::string_view text) {
  const auto* data = reinterpret_cast<const std::byte*>(text.data());
  return {data, data + text.size()};
}

std::vector<std::byte> pattern(std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i)
    bytes[i] = static_cast<std::byte>((i * 31 + i / 251) % 256);
  return bytes;
}

std::span<const std::byte> as_bytes(const std::vector<char>& chars) {
  return std::as_bytes(std::span(chars));
}

struct evp_pkey_deleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct x509_deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
using key_ptr = std::unique_ptr<EVP_PKEY, evp_pkey_deleter>;
using cert_ptr = std::unique_ptr<X509, x509_deleter>;

key_ptr make_key() {
  key_ptr key(EVP_EC_gen("P-256"));
  REQUIRE(key != nullptr);
  return key;
}

// Self-signed certificate for "localhost", valid for a day.
cert_ptr make_certificate(EVP_PKEY* key) {
  cert_ptr cert(X509_new());
  REQUIRE(cert != nullptr);
  X509_set_version(cert.get(), 2); // v3
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 60 * 60);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key);
  REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
  return cert;
}

void write_certificate(const fs::path& path, X509* cert) {
  BIO* file = BIO_new_file(path.c_str(), "w");
  REQUIRE(file != nullptr);
  CHECK(PEM_write_bio_X509(file, cert) == 1);
  BIO_free(file);
}

void write_key(const fs::path& path, EVP_PKEY* key) {
  BIO* file = BIO_new_file(path.c_str(), "w");
  REQUIRE(file != nullptr);
  CHECK(PEM_write_bio_PrivateKey(file, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  BIO_free(file);
}

// A temporary directory holding cert.pem/key.pem (a matching pair) and other_key.pem (a key that
// matches nothing); removed with everything in it on destruction.
struct credentials {
  credentials() {
    std::string name = (fs::temp_directory_path() / "chroom-tls-test-XXXXXX").string();
    REQUIRE(mkdtemp(name.data()) != nullptr);
    dir = name;
    key_ptr key = make_key();
    cert_ptr cert = make_certificate(key.get());
    write_certificate(cert_file(), cert.get());
    write_key(key_file(), key.get());
    write_key(other_key_file(), make_key().get());
  }
  ~credentials() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  credentials(const credentials&) = delete;
  credentials& operator=(const credentials&) = delete;

  fs::path cert_file() const { return dir / "cert.pem"; }
  fs::path key_file() const { return dir / "key.pem"; }
  fs::path other_key_file() const { return dir / "other_key.pem"; }

  fs::path dir;
};

struct client_options {
  std::string alpn_wire = std::string("\x02h2", 3); // ALPN list in wire format; empty: none
  int max_version = TLS1_3_VERSION;
};

// The peer: a plain OpenSSL client over memory BIOs, as a gRPC client would behave.
class tls_client {
public:
  explicit tls_client(const client_options& options) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx_ != nullptr);
    SSL_CTX_set_max_proto_version(ctx_, options.max_version);
    if (!options.alpn_wire.empty()) {
      // Returns 0 on success, unlike nearly everything else in OpenSSL.
      REQUIRE(SSL_CTX_set_alpn_protos(
                ctx_, reinterpret_cast<const unsigned char*>(options.alpn_wire.data()),
                static_cast<unsigned int>(options.alpn_wire.size())) == 0);
    }
    ssl_ = SSL_new(ctx_);
    REQUIRE(ssl_ != nullptr);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_, -1);
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_connect_state(ssl_);
  }
  ~tls_client() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  tls_client(const tls_client&) = delete;
  tls_client& operator=(const tls_client&) = delete;

  // Data written right after the handshake completes, in the same flight as the client's
  // Finished message.
  void write_after_handshake(std::vector<std::byte> data) { early_ = std::move(data); }

  void write(std::span<const std::byte> data) {
    REQUIRE(SSL_is_init_finished(ssl_));
    std::size_t written = 0;
    REQUIRE(SSL_write_ex(ssl_, data.data(), data.size(), &written) == 1);
    REQUIRE(written == data.size());
  }

  void shutdown() { CHECK(SSL_shutdown(ssl_) >= 0); }

  void feed(std::span<const std::byte> ciphertext) {
    REQUIRE(BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size())) ==
            static_cast<int>(ciphertext.size()));
  }

  // Advances the handshake and reads everything decryptable.
  void drive() {
    if (!error.empty())
      return;
    if (!SSL_is_init_finished(ssl_)) {
      const int result = SSL_do_handshake(ssl_);
      if (result != 1) {
        if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_READ)
          error = drain_errors();
        return;
      }
      if (!early_.empty())
        write(early_);
    }
    for (;;) {
      char buffer[16384];
      std::size_t read = 0;
      if (SSL_read_ex(ssl_, buffer, sizeof buffer, &read) == 1) {
        const auto* data = reinterpret_cast<const std::byte*>(buffer);
        received.insert(received.end(), data, data + read);
        continue;
      }
      const int ssl_error = SSL_get_error(ssl_, 0);
      if (ssl_error == SSL_ERROR_ZERO_RETURN)
        saw_close_notify = true;
      else if (ssl_error != SSL_ERROR_WANT_READ)
        error = drain_errors();
      return;
    }
  }

  std::vector<char> take_output() {
    std::vector<char> bytes(BIO_ctrl_pending(out_));
    if (!bytes.empty())
      REQUIRE(BIO_read(out_, bytes.data(), static_cast<int>(bytes.size())) ==
              static_cast<int>(bytes.size()));
    return bytes;
  }

  bool idle() const { return BIO_ctrl_pending(out_) == 0 && BIO_ctrl_pending(in_) == 0; }
  bool handshake_done() const { return SSL_is_init_finished(ssl_) == 1; }

  std::vector<std::byte> received;
  std::string error; // OpenSSL's reason once the client failed
  bool saw_close_notify = false;

private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
  std::vector<std::byte> early_;
};

// A server session and a client connected back to back. At the end it checks that the exchange
// settled: no bytes left in either direction and no OpenSSL error left on this thread.
struct tls_fixture {
  tls_fixture() : context(tls_server_context::load(creds.cert_file(), creds.key_file())) {}
  ~tls_fixture() {
    if (server) {
      CHECK_FALSE(server->has_output());
    }
    if (client) {
      CHECK(client->idle());
    }
    CHECK(ERR_peek_error() == 0);
  }

  void connect(const client_options& options = {}) {
    server.emplace(context);
    client.emplace(options);
  }

  // Shuttles bytes both ways until neither side has anything to say. The server gets the
  // client's bytes in pieces of at most `piece_bytes`, as socket reads would deliver them.
  void pump(std::size_t piece_bytes = std::size_t{64} * 1024) {
    for (int round = 0; round < 100; ++round) {
      client->drive();
      const std::vector<char> to_server = client->take_output();
      for (std::size_t at = 0; at < to_server.size(); at += piece_bytes) {
        const auto piece =
          as_bytes(to_server).subspan(at, std::min(piece_bytes, to_server.size() - at));
        if (!server->receive(piece, server_received))
          server_failed = true;
        CHECK(ERR_peek_error() == 0); // the session never leaves errors behind for others
      }
      std::vector<char> to_client;
      server->take_output(to_client);
      if (!to_client.empty())
        client->feed(as_bytes(to_client));
      if (to_server.empty() && to_client.empty())
        return;
    }
    FAIL("the exchange did not settle");
  }

  credentials creds;
  std::shared_ptr<tls_server_context> context;
  std::optional<tls_session> server;
  std::optional<tls_client> client;
  std::vector<std::byte> server_received;
  bool server_failed = false;
};

std::string load_error(const fs::path& cert, const fs::path& key) {
  try {
    tls_server_context::load(cert, key);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

} // namespace

TEST_CASE_FIXTURE(tls_fixture, "tls: handshake negotiates TLS 1.3 with ALPN h2") {
  connect();
  CHECK_FALSE(server->handshake_done());
  CHECK(server->alpn().empty());
  pump();
  CHECK_FALSE(server_failed);
  CHECK(server->handshake_done());
  CHECK(client->handshake_done());
  CHECK(server->alpn() == "h2");
  CHECK(server->error().empty());
  CHECK(client->error.empty());
}

TEST_CASE_FIXTURE(tls_fixture, "tls: handshake survives one-byte reads") {
  connect();
  pump(1);
  CHECK(server->handshake_done());
  CHECK(server->alpn() == "h2");
}

TEST_CASE_FIXTURE(tls_fixture, "tls: h2 is picked from a list of several protocols") {
  connect({.alpn_wire = std::string("\x08http/1.1\x02h2", 12)});
  pump();
  CHECK(server->handshake_done());
  CHECK(server->alpn() == "h2");
}

TEST_CASE_FIXTURE(tls_fixture, "tls: data flows both ways") {
  connect();
  pump();
  REQUIRE(server->handshake_done());
  const auto request = to_bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  client->write(request);
  pump();
  CHECK(server_received == request);

  const auto response = to_bytes("settings frame");
  CHECK(server->send(response));
  CHECK(server->has_output());
  pump();
  CHECK(client->received == response);
}

TEST_CASE_FIXTURE(tls_fixture, "tls: 4 MiB in each direction") {
  connect();
  pump();
  REQUIRE(server->handshake_done());
  const auto payload = pattern(std::size_t{4} * 1024 * 1024);

  CHECK(server->send(payload));
  pump();
  CHECK(client->received == payload);

  client->write(payload);
  pump(); // 64 KiB pieces, like socket reads
  CHECK(server_received == payload);

  // take_output() swapped the 4 MiB output buffer for a fresh one; the session keeps working.
  client->received.clear();
  const auto ping = to_bytes("ping");
  CHECK(server->send(ping));
  pump();
  CHECK(client->received == ping);
}

TEST_CASE_FIXTURE(tls_fixture, "tls: 4 MiB handed to receive() in one call") {
  connect();
  pump();
  const auto payload = pattern(std::size_t{4} * 1024 * 1024);
  client->write(payload);
  pump(payload.size() * 2);
  CHECK(server_received == payload);
}

TEST_CASE_FIXTURE(tls_fixture, "tls: data sent before the handshake completes arrives after it") {
  connect();
  const auto greeting = to_bytes("server preface");
  CHECK(server->send(greeting));
  CHECK_FALSE(server->has_output()); // nothing to say before the ClientHello
  const auto request = to_bytes("client preface");
  client->write_after_handshake(request); // same flight as the client's Finished
  pump();
  CHECK(server->handshake_done());
  CHECK(client->received == greeting);
  CHECK(server_received == request);
}

TEST_CASE_FIXTURE(tls_fixture, "tls: a client without ALPN is accepted") {
  connect({.alpn_wire = ""});
  pump();
  CHECK_FALSE(server_failed);
  CHECK(server->handshake_done());
  CHECK(server->alpn().empty());
}

TEST_CASE_FIXTURE(tls_fixture, "tls: a client offering only http/1.1 fails the handshake") {
  connect({.alpn_wire = std::string("\x08http/1.1", 9)});
  pump();
  CHECK(server_failed);
  CHECK_FALSE(server->handshake_done());
  CHECK_FALSE(server->error().empty());
  CHECK(server->error().find("no application protocol") != std::string::npos);
  // The alert reached the client.
  CHECK(client->error.find("no application protocol") != std::string::npos);
  CHECK_FALSE(server->send(to_bytes("x")));
}

TEST_CASE_FIXTURE(tls_fixture, "tls: a TLS 1.2 client fails the handshake") {
  connect({.max_version = TLS1_2_VERSION});
  pump();
  CHECK(server_failed);
  CHECK_FALSE(server->handshake_done());
  CHECK(server->error().find("unsupported protocol") != std::string::npos);
  CHECK_FALSE(client->error.empty());
}

TEST_CASE_FIXTURE(tls_fixture, "tls: garbage input is fatal and leaves the session unusable") {
  server.emplace(context);
  std::vector<std::byte> plaintext;
  CHECK_FALSE(server->receive(to_bytes("GET / HTTP/1.1\r\n\r\n"), plaintext));
  CHECK(ERR_peek_error() == 0);
  CHECK_FALSE(server->error().empty());
  const std::string first_error = server->error();
  CHECK(plaintext.empty());
  CHECK_FALSE(server->handshake_done());
  CHECK(server->alpn().empty());

  CHECK_FALSE(server->receive(to_bytes("more garbage"), plaintext));
  CHECK_FALSE(server->send(to_bytes("x")));
  server->close();
  CHECK(server->error() == first_error);
  std::vector<char> alert;
  server->take_output(alert); // whatever alert there is, it is taken; nothing stays
  CHECK_FALSE(server->peer_closed());
}

TEST_CASE_FIXTURE(tls_fixture, "tls: close() sends close_notify the client sees") {
  connect();
  pump();
  REQUIRE(server->handshake_done());
  server->close();
  CHECK(server->has_output());
  CHECK_FALSE(server->send(to_bytes("too late")));
  pump();
  CHECK(client->saw_close_notify);
  CHECK(client->error.empty());
  CHECK(server->error().empty());
  server->close(); // idempotent
  CHECK_FALSE(server->has_output());
}

TEST_CASE_FIXTURE(tls_fixture, "tls: the peer's close_notify sets peer_closed") {
  connect();
  pump();
  REQUIRE(server->handshake_done());
  const auto last = to_bytes("last words");
  client->write(last);
  client->shutdown();
  pump();
  CHECK(server_received == last);
  CHECK(server->peer_closed());
  CHECK_FALSE(server_failed);
  // Bytes after close_notify are dropped, not an error.
  std::vector<std::byte> plaintext;
  CHECK(server->receive(to_bytes("after close"), plaintext));
  CHECK(plaintext.empty());
  server->close();
  pump();
  CHECK(client->saw_close_notify);
}

TEST_CASE_FIXTURE(tls_fixture, "tls: close() before the handshake queues nothing") {
  connect();
  CHECK(server->send(to_bytes("never sent")));
  server->close();
  CHECK_FALSE(server->has_output());
  CHECK_FALSE(server->send(to_bytes("x")));
  CHECK(server->error().empty());
}

TEST_CASE("tls: load() names the file and the reason") {
  credentials creds;

  SUBCASE("a matching pair loads") {
    CHECK(tls_server_context::load(creds.cert_file(), creds.key_file()) != nullptr);
  }
  SUBCASE("missing certificate file") {
    const fs::path missing = creds.dir / "missing.pem";
    const std::string error = load_error(missing, creds.key_file());
    CHECK(error.find(missing.string()) != std::string::npos);
    CHECK(error.find("No such file") != std::string::npos);
  }
  SUBCASE("missing key file") {
    const fs::path missing = creds.dir / "missing_key.pem";
    const std::string error = load_error(creds.cert_file(), missing);
    CHECK(error.find(missing.string()) != std::string::npos);
  }
  SUBCASE("certificate file that is not PEM") {
    const fs::path garbage = creds.dir / "garbage.pem";
    std::ofstream(garbage) << "not a certificate\n";
    const std::string error = load_error(garbage, creds.key_file());
    CHECK(error.find(garbage.string()) != std::string::npos);
    CHECK(error.find("PEM") != std::string::npos);
  }
  SUBCASE("key that does not match the certificate") {
    const std::string error = load_error(creds.cert_file(), creds.other_key_file());
    CHECK(error.find(creds.other_key_file().string()) != std::string::npos);
    CHECK(error.find("mismatch") != std::string::npos);
  }
  CHECK(ERR_peek_error() == 0);
}
