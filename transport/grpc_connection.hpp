#pragma once

// One server-side HTTP/2 connection carrying gRPC calls, driven by bytes only (no
// sockets, no actors): the gateway broker feeds it what the socket read and writes what
// it produces. It validates requests, reassembles messages, applies the limits and flow
// control, and frames responses. Only this file and its .cpp know nghttp2.

#include "transport/grpc_status.hpp"
#include "transport/memory_budget.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace chroom::transport {

/// What a connection enforces. Defaults match chroom.config.v1.GatewayLimits.
struct connection_limits {
  /// Largest message in either direction, in bytes (gRPC's customary 4 MiB).
  size_t max_message_bytes = 4u << 20;
  /// SETTINGS_MAX_CONCURRENT_STREAMS: bounds per-connection call state.
  uint32_t max_concurrent_streams = 100;
  /// Largest request header list (RFC 9113 accounting: name + value + 32 per field).
  uint32_t max_header_list_bytes = 16u << 10;
  /// Output that may wait for a slow reader before the owner stops reading and
  /// producing.
  size_t max_pending_output_bytes = 1u << 20;
  /// Everything a client can make one connection hold (transport/memory_budget.hpp): over
  /// it, the calls holding the most are stopped (RESOURCE_EXHAUSTED, or RST_STREAM when a
  /// response is half sent), then the connection (GOAWAY ENHANCE_YOUR_CALM).
  size_t max_connection_memory_bytes = 32u << 20;
};

/// HTTP/2 error codes the owner may send (RFC 9113 §7).
enum class h2_error : uint32_t {
  no_error = 0x0,
  protocol_error = 0x1,
  internal_error = 0x2,
  refused_stream = 0x7,
  cancel = 0x8,
  enhance_your_calm = 0xb,
};

/// How a call's messages are encoded on the wire.
enum class call_encoding {
  grpc, ///< application/grpc: length-prefixed binary protobuf
  json, ///< application/json: one unary request body in protobuf's JSON mapping
};

/// A validated request head, as the owner routes it.
struct call_head {
  /// "/package.Service/Method".
  std::string path;
  call_encoding encoding = call_encoding::grpc;
  /// Custom request metadata (binary values already decoded).
  metadata request_metadata;
  /// From grpc-timeout, when the client set a deadline.
  std::optional<std::chrono::nanoseconds> timeout;
};

/// What the connection tells its owner, synchronously from receive(). The owner may
/// call back into the connection from these functions.
class grpc_connection_listener {
public:
  virtual ~grpc_connection_listener() = default;
  /// A request with valid headers. The owner routes it, or refuses it with finish().
  virtual void on_call_start(int32_t stream_id, call_head&& head) = 0;
  /// One complete request message (for JSON calls, the whole body, once).
  virtual void on_call_message(int32_t stream_id, std::string&& message) = 0;
  /// The client half-closed; every message has been delivered.
  virtual void on_call_half_close(int32_t stream_id) = 0;
  /// The stream is gone (finished, reset by the client, failed by the connection or
  /// the connection closed). No further call for this stream id follows.
  virtual void on_call_closed(int32_t stream_id) = 0;
};

/// Server side of one HTTP/2 connection.
class grpc_connection {
public:
  /// @param peer_memory the peer-wide budget this connection draws from; null: none.
  grpc_connection(grpc_connection_listener& listener, const connection_limits& limits,
                  peer_memory_budget* peer_memory = nullptr);
  ~grpc_connection();
  grpc_connection(const grpc_connection&) = delete;
  grpc_connection& operator=(const grpc_connection&) = delete;

  /// Feeds bytes read from the peer. Returns false once the connection is broken (not
  /// HTTP/2, or a protocol error): produce() then yields the last bytes to send (GOAWAY,
  /// or an HTTP/1.1 error response) and the owner closes after writing them. Connection
  /// errors that nghttp2 answers on its own are known once produce() has emitted their
  /// GOAWAY; until then alive() stays true.
  bool receive(std::span<const uint8_t> bytes);

  /// Appends bytes ready to send to `out`, at most about `budget` bytes.
  void produce(std::vector<char>& out, size_t budget);

  /// True while the connection may still read or write; false: close it.
  bool alive() const;
  /// True when produce() has something to emit.
  bool wants_write() const;

  /// Response side, for calls that on_call_start announced.
  /// Initial metadata; sent before the first message, implicitly if not called.
  void send_headers(int32_t stream_id, const metadata& headers);
  /// Queues one response message (binary protobuf; for JSON calls, JSON text).
  /// Returns false if the stream is gone or the message is over the limit (the call is
  /// then failed with RESOURCE_EXHAUSTED).
  bool send_message(int32_t stream_id, std::string&& message);
  /// Ends the call with a status (trailers, or a trailers-only response).
  void finish(int32_t stream_id, const grpc_status& status);
  /// Resets the stream (CANCEL), e.g. when its handler died.
  void cancel(int32_t stream_id);
  /// The handler consumed `count` request messages: reopen that much flow-control window.
  void consume(int32_t stream_id, size_t count);
  /// Response messages of `stream_id` handed to HTTP/2 since the last call; the owner
  /// grants that many new credits to the handler. Resets the count.
  size_t take_sent_messages(int32_t stream_id);
  /// The same for every stream that sent something: appends (stream id, count) pairs.
  void take_sent_counts(std::vector<std::pair<int32_t, size_t>>& counts);

  /// Sends a PING; ping_outstanding() stays true until its ACK arrives.
  void ping();
  bool ping_outstanding() const { return ping_outstanding_; }
  /// Graceful GOAWAY (NO_ERROR): no new streams; the open ones may finish.
  void go_away();
  /// GOAWAY with `code` and the connection ends once it is written.
  void terminate(h2_error code, std::string_view debug = {});
  /// Bytes the owner holds for this connection outside it (written to the socket, not yet
  /// sent): counted in the connection's memory budget.
  void set_socket_backlog(size_t bytes);
  /// Bytes the connection accounts now (its calls, nghttp2's allocations, the backlog).
  size_t memory_held() const;
  /// The part of memory_held() that its streams account (0 once every stream closed).
  size_t stream_memory_held() const;
  /// Set once the connection was closed for abuse (GOAWAY ENHANCE_YOUR_CALM): why.
  const std::string& calm_reason() const;

  /// Open streams (calls in progress or being refused).
  size_t open_streams() const;
  /// Streams that on_call_start announced and that have not closed yet.
  std::vector<int32_t> open_calls() const;

  /// Implementation hooks for the nghttp2 callbacks (file-local in the .cpp).
  struct impl;

private:
  std::unique_ptr<impl> impl_;
  bool ping_outstanding_ = false;
};

} // namespace chroom::transport
