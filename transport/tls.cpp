#include "transport/tls.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <climits>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdexcept>
#include <utility>

namespace chroom::transport {
namespace {

// Ciphertext is handed to OpenSSL in pieces of at most this many bytes, each decrypted before
// the next is written, so the input BIO never holds more than one piece plus the start of one
// incomplete record (< 17 KiB), however large a span the caller passes. 32 KiB: two full
// records per piece keeps the number of OpenSSL calls low.
constexpr std::size_t input_piece_bytes = std::size_t{32} * 1024;

// After take_output(), an output BIO whose buffer grew beyond this (e.g. by a 4 MiB response) is
// replaced by a fresh one, because a memory BIO never gives memory back and idle connections
// should stay small. 64 KiB: normal traffic (HTTP/2 frames of at most 16 KiB, flushed every
// round) stays below it, so the replacement is rare.
constexpr std::size_t retained_output_buffer_bytes = std::size_t{64} * 1024;

// Largest TLS record payload: SSL_read never returns more than this at once.
constexpr std::size_t max_record_plaintext_bytes = std::size_t{16} * 1024;

constexpr std::array<unsigned char, 2> h2_protocol = {'h', '2'};

// Empties this thread's OpenSSL error queue into one readable line. The queue is per thread and
// CAF runs brokers on a thread pool, so anything left here would be blamed on whichever
// connection next uses this thread.
std::string drain_error_queue() {
  std::string text;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    std::array<char, 256> line{};
    ERR_error_string_n(code, line.data(), line.size());
    if (!text.empty())
      text += "; ";
    text += line.data();
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      text += " (";
      text += data;
      text += ')';
    }
  }
  return text;
}

std::string_view ssl_error_name(int ssl_error) {
  switch (ssl_error) {
    case SSL_ERROR_SSL:
      return "SSL_ERROR_SSL";
    case SSL_ERROR_SYSCALL:
      return "SSL_ERROR_SYSCALL";
    case SSL_ERROR_WANT_WRITE:
      return "SSL_ERROR_WANT_WRITE";
    case SSL_ERROR_ZERO_RETURN:
      return "SSL_ERROR_ZERO_RETURN";
    default:
      return "unexpected SSL error";
  }
}

[[noreturn]] void throw_load_error(std::string_view what, const std::string& file) {
  std::string message = "tls: cannot load ";
  message += what;
  message += " from '";
  message += file;
  message += "': ";
  std::string reason = drain_error_queue();
  message += reason.empty() ? "unknown OpenSSL error" : reason;
  throw std::runtime_error(message);
}

// ALPN selection: "h2" or a fatal no_application_protocol alert. Called by OpenSSL (C), so it
// must not throw; it only scans the client's length-prefixed protocol list. OpenSSL calls it
// only when the client sent the ALPN extension, so clients without ALPN are still accepted.
int select_h2(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
              const unsigned char* in, unsigned int in_length, void* /*arg*/) noexcept {
  unsigned int i = 0;
  while (i < in_length) {
    const unsigned int length = in[i];
    const unsigned int begin = i + 1;
    if (length == 0 || begin + length > in_length)
      break; // malformed list: OpenSSL rejects these earlier, but do not read past the end
    if (std::equal(in + begin, in + begin + length, h2_protocol.begin(), h2_protocol.end())) {
      *out = in + begin;
      *out_length = static_cast<unsigned char>(length);
      return SSL_TLSEXT_ERR_OK;
    }
    i = begin + length;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL; // OpenSSL sends no_application_protocol
}

BIO* new_memory_bio() {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr) {
    // An empty BIO means "wait for more bytes" (WANT_READ), never end of stream: the end of the
    // TCP stream is the broker's business.
    BIO_set_mem_eof_return(bio, -1);
  }
  return bio;
}

} // namespace

// --- tls_server_context ---------------------------------------------------------------------

std::shared_ptr<tls_server_context> tls_server_context::load(const std::string& cert_file,
                                                             const std::string& key_file) {
  ERR_clear_error(); // stale errors from other code on this thread must not end up in ours
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (raw == nullptr)
    throw std::runtime_error("tls: SSL_CTX_new failed: " + drain_error_queue());
  // Owned from here on, so a throw below frees the context.
  std::shared_ptr<tls_server_context> context(new tls_server_context(raw));

  if (SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(raw, TLS1_3_VERSION) != 1)
    throw std::runtime_error("tls: cannot restrict to TLS 1.3: " + drain_error_queue());
  // RELEASE_BUFFERS frees the ~34 KiB of record buffers while a connection is idle.
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  // Resumption uses stateless tickets; a server-side cache would be one more lock shared by all
  // connections and memory held for clients that never come back.
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(raw, &select_h2, nullptr);

  if (SSL_CTX_use_certificate_chain_file(raw, cert_file.c_str()) != 1)
    throw_load_error("certificate chain", cert_file);
  // Also fails if the key does not match the certificate loaded above.
  if (SSL_CTX_use_PrivateKey_file(raw, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw_load_error("private key", key_file);
  if (SSL_CTX_check_private_key(raw) != 1)
    throw_load_error("private key matching the certificate", key_file);
  return context;
}

tls_server_context::~tls_server_context() {
  SSL_CTX_free(ctx_);
}

// --- tls_session ----------------------------------------------------------------------------

tls_session::tls_session(std::shared_ptr<tls_server_context> context)
    : context_(std::move(context)), ssl_(nullptr), network_in_(nullptr), network_out_(nullptr) {
  assert(context_ != nullptr);
  ERR_clear_error();
  ssl_ = SSL_new(context_->ctx_);
  network_in_ = new_memory_bio();
  network_out_ = new_memory_bio();
  if (ssl_ == nullptr || network_in_ == nullptr || network_out_ == nullptr) {
    std::string reason = drain_error_queue();
    BIO_free(network_in_);
    BIO_free(network_out_);
    SSL_free(ssl_);
    throw std::runtime_error("tls: cannot create a session: " + reason);
  }
  SSL_set_bio(ssl_, network_in_, network_out_); // ssl_ owns both BIOs from here on
  SSL_set_accept_state(ssl_);
}

tls_session::~tls_session() {
  SSL_free(ssl_);
}

bool tls_session::receive(std::span<const std::byte> ciphertext,
                          std::vector<std::byte>& plaintext) {
  if (failed_)
    return false;
  // Nothing may follow close_notify, and OpenSSL would never consume it: drop it rather than let
  // a peer grow the input BIO without bound.
  if (peer_closed_)
    return true;
  ERR_clear_error();
  // Even an empty span gets one pass: it lets a caller retry processing cheaply.
  do {
    const std::size_t piece = std::min(ciphertext.size(), input_piece_bytes);
    if (piece > 0 && BIO_write(network_in_, ciphertext.data(), static_cast<int>(piece)) !=
                       static_cast<int>(piece))
      return fail("BIO_write", SSL_ERROR_SYSCALL); // only on allocation failure
    ciphertext = ciphertext.subspan(piece);
    if (!process_input(plaintext))
      return false;
  } while (!ciphertext.empty());
  return true;
}

bool tls_session::process_input(std::vector<std::byte>& plaintext) {
  if (!handshake_done_) {
    const int result = SSL_do_handshake(ssl_);
    if (result != 1) {
      const int ssl_error = SSL_get_error(ssl_, result);
      return ssl_error == SSL_ERROR_WANT_READ || fail("handshake", ssl_error);
    }
    handshake_done_ = true;
    if (!early_plaintext_.empty()) {
      if (!write_all(early_plaintext_))
        return false;
    }
    // Give the buffer's memory back; it is never needed again.
    std::vector<std::byte>().swap(early_plaintext_);
  }
  if (peer_closed_)
    return true; // close_notify arrived in an earlier piece of this receive()
  // One thread-local record buffer instead of growing `plaintext` by a full record per SSL_read
  // (which would zero 16 KiB even for a 9-byte PING); only this call uses it.
  thread_local std::array<std::byte, max_record_plaintext_bytes> record;
  for (;;) {
    std::size_t read = 0;
    if (SSL_read_ex(ssl_, record.data(), record.size(), &read) == 1) {
      plaintext.insert(plaintext.end(), record.begin(), record.begin() + read);
      continue;
    }
    const int ssl_error = SSL_get_error(ssl_, 0);
    if (ssl_error == SSL_ERROR_WANT_READ)
      return true;
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return true;
    }
    return fail("read", ssl_error);
  }
}

bool tls_session::send(std::span<const std::byte> plaintext) {
  if (failed_ || close_sent_)
    return false;
  if (!handshake_done_) {
    early_plaintext_.insert(early_plaintext_.end(), plaintext.begin(), plaintext.end());
    return true;
  }
  ERR_clear_error();
  return write_all(plaintext);
}

bool tls_session::write_all(std::span<const std::byte> plaintext) {
  // Without SSL_MODE_ENABLE_PARTIAL_WRITE SSL_write_ex succeeds only once everything is written,
  // and a memory BIO always accepts everything; the loop only guards against either changing.
  while (!plaintext.empty()) {
    std::size_t written = 0;
    if (SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written) != 1)
      return fail("write", SSL_get_error(ssl_, 0));
    plaintext = plaintext.subspan(written);
  }
  return true;
}

void tls_session::take_output(std::vector<char>& out) {
  for (;;) {
    const std::size_t pending = BIO_ctrl_pending(network_out_);
    if (pending == 0)
      break;
    const int chunk = static_cast<int>(std::min<std::size_t>(pending, INT_MAX));
    const std::size_t old_size = out.size();
    out.resize(old_size + static_cast<std::size_t>(chunk));
    const int read = BIO_read(network_out_, out.data() + old_size, chunk);
    out.resize(old_size + static_cast<std::size_t>(std::max(read, 0)));
    if (read <= 0)
      break; // cannot happen with bytes pending; do not spin if it does
  }
  BUF_MEM* buffer = nullptr;
  BIO_get_mem_ptr(network_out_, &buffer);
  if (buffer != nullptr && buffer->max > retained_output_buffer_bytes) {
    if (BIO* fresh = new_memory_bio()) {
      SSL_set0_wbio(ssl_, fresh); // frees the old, now empty, BIO
      network_out_ = fresh;
    } else {
      ERR_clear_error(); // keeping the big buffer is harmless; just do not leak the error
    }
  }
}

bool tls_session::has_output() const {
  return BIO_ctrl_pending(network_out_) > 0;
}

std::string_view tls_session::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl_, &data, &length);
  if (data == nullptr)
    return {};
  return {reinterpret_cast<const char*>(data), length};
}

void tls_session::close() {
  if (failed_ || close_sent_)
    return;
  close_sent_ = true;
  std::vector<std::byte>().swap(early_plaintext_);
  if (!handshake_done_)
    return; // OpenSSL refuses SSL_shutdown during the handshake
  ERR_clear_error();
  // 0: close_notify queued, the peer's not yet seen; 1: both seen. Either is fine: we never
  // wait for the peer's close_notify (the caller may, via peer_closed()).
  const int result = SSL_shutdown(ssl_);
  if (result < 0)
    fail("shutdown", SSL_get_error(ssl_, result));
}

bool tls_session::fail(std::string_view operation, int ssl_error) {
  failed_ = true;
  std::vector<std::byte>().swap(early_plaintext_);
  std::string reason = drain_error_queue();
  error_ = "tls ";
  error_ += operation;
  error_ += " failed: ";
  if (reason.empty())
    error_ += ssl_error_name(ssl_error);
  else
    error_ += reason;
  return false;
}

} // namespace chroom::transport
