#pragma once

// TLS for the gRPC gateway, done in memory.
//
// CAF 0.17 brokers move raw bytes and cannot do TLS themselves, so each gateway broker keeps one
// tls_session: ciphertext read from the socket goes into receive(), the plaintext it returns goes
// to nghttp2; nghttp2's output goes into send(), and take_output() hands the ciphertext back for
// the socket. No sockets and no OpenSSL types appear here; only tls.cpp includes OpenSSL.
//
// Thread safety: a tls_server_context is immutable after load() and may be shared by sessions
// running on any threads. A tls_session must be used by one thread at a time (a broker is); it
// may move between threads between calls, because every call leaves OpenSSL's per-thread error
// queue empty.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// OpenSSL's own struct names, so the header needs no OpenSSL include.
struct ssl_ctx_st;
struct ssl_st;
struct bio_st;

namespace chroom::transport {

// Server-side TLS configuration shared by every connection of a listener.
//
// Policy: TLS 1.3 only (minimum and maximum), no 0-RTT early data, stateless session tickets for
// resumption (no shared server-side session cache, so no lock shared between connections).
//
// ALPN: the server selects "h2" and nothing else. A client that offers ALPN without "h2" fails
// the handshake with the no_application_protocol alert. A client that sends no ALPN extension at
// all is accepted and tls_session::alpn() is then empty: gRPC clients always offer "h2", but
// curl/h2load with prior knowledge may not, and the HTTP/2 connection preface that follows will
// tell soon enough whether the peer really speaks HTTP/2.
class tls_server_context {
public:
  // Loads a PEM certificate chain (leaf first, then intermediates) from `cert_file` and the PEM
  // private key of the leaf from `key_file`; both are file system paths.
  // Throws std::runtime_error naming the offending file and giving OpenSSL's reason when a file
  // is missing or unreadable, is not valid PEM, or the key does not match the certificate.
  static std::shared_ptr<tls_server_context> load(const std::string& cert_file,
                                                  const std::string& key_file);

  ~tls_server_context();
  tls_server_context(const tls_server_context&) = delete;
  tls_server_context& operator=(const tls_server_context&) = delete;

private:
  friend class tls_session;
  explicit tls_server_context(ssl_ctx_st* ctx) noexcept : ctx_(ctx) {}

  ssl_ctx_st* ctx_; // owned
};

// One connection's server-side TLS state, driven by bytes only.
//
// After a fatal error (receive() or send() returned false) the session is unusable: every later
// receive()/send() returns false, while take_output() may still hand out an alert for the peer.
// Neither copyable nor movable; hold it in a std::optional or std::unique_ptr.
class tls_session {
public:
  // Throws std::runtime_error only if OpenSSL cannot allocate the connection state.
  explicit tls_session(std::shared_ptr<tls_server_context> context);
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  // Feeds `ciphertext`, bytes just received from the network (any split, any length), and
  // appends the decrypted application bytes to `plaintext`. Handshake responses and alerts this
  // provokes become ready in take_output(). Returns false on a fatal TLS error (the handshake
  // failed, garbage input, a protocol violation): error() then says why and take_output() may
  // hold an alert to send before closing the socket. Receiving the peer's close_notify is not
  // an error: it returns true and sets peer_closed().
  bool receive(std::span<const std::byte> ciphertext, std::vector<std::byte>& plaintext);

  // Queues `plaintext` application bytes for sending; they are encrypted immediately, or, before
  // the handshake is done, buffered and encrypted as soon as it completes (in receive()).
  // Returns false after a fatal error or after close().
  bool send(std::span<const std::byte> plaintext);

  // Appends every byte ready for the network (handshake records, encrypted data, alerts,
  // close_notify) to `out`, the broker's write buffer, and forgets them.
  void take_output(std::vector<char>& out);

  // True if take_output() would append anything.
  bool has_output() const;

  // True once the handshake completed; stays true after a later error or close.
  bool handshake_done() const { return handshake_done_; }

  // The negotiated application protocol ("h2"), empty if the client sent no ALPN or the
  // handshake is not done. Valid as long as the session.
  std::string_view alpn() const;

  // Why the session failed; empty while it has not.
  const std::string& error() const { return error_; }

  // Queues close_notify (ready in take_output()); later send() calls return false, receive()
  // keeps working so the peer's answer can be read. Before the handshake completed TLS cannot
  // close cleanly: buffered plaintext is dropped, nothing is queued, and the caller should just
  // close the socket. Does nothing after a fatal error or a previous close().
  void close();

  // True once the peer sent close_notify. TLS 1.3 allows us to keep sending, but the caller
  // normally answers with close() and closes the socket after flushing take_output().
  bool peer_closed() const { return peer_closed_; }

private:
  // Runs the handshake if needed, then decrypts everything complete in the read BIO.
  bool process_input(std::vector<std::byte>& plaintext);
  bool write_all(std::span<const std::byte> plaintext);
  // Records the reason from OpenSSL's error queue (emptying it) and makes the session unusable.
  bool fail(std::string_view operation, int ssl_error);

  std::shared_ptr<tls_server_context> context_;
  ssl_st* ssl_;                            // owned; owns both BIOs
  bio_st* network_in_;                     // ciphertext from the peer, read by OpenSSL
  bio_st* network_out_;                    // ciphertext for the peer, written by OpenSSL
  std::vector<std::byte> early_plaintext_; // send() data waiting for the handshake
  std::string error_;
  bool handshake_done_ = false;
  bool failed_ = false;
  bool close_sent_ = false;
  bool peer_closed_ = false;
};

} // namespace chroom::transport
