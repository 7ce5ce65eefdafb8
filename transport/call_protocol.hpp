#pragma once

// The messages between a gateway and the actors that handle its gRPC calls.
//
//  unary calls:     gateway --(call_unary, vector<unary_call>)--> service actor
//                   handler --(call_reply, vector<unary_reply>)--> gateway
//                   Batched both ways: every call a gateway reads in one pass goes to its
//                   service in one message, and the answers a service gives while handling
//                   a batch go back in one message per gateway (see unary_replies). One
//                   actor hop per batch, not per call, is what keeps the gateway near
//                   nghttp2's own speed.
//  streaming call:  gateway --request(call_open, call_context)--> service actor
//                   service --> actor that handles this call (itself or one it spawned)
//                   gateway --(call_data, stream, message)-->  handler   (request messages)
//                   handler --(call_ack, stream, n)--> gateway   (n request messages consumed;
//                             until then their bytes hold the client's flow-control window)
//                   gateway --(call_close, stream)--> handler    (client half-closed)
//                   handler --(call_head, stream, metadata)--> gateway   (optional)
//                   handler --(call_data, stream, message)--> gateway    (needs a credit)
//                   gateway --(call_credit, stream, n)--> handler  (n more responses may be sent)
//                   handler --(call_end, stream, status)--> gateway
//  either kind:     gateway --(call_cancel, stream)--> handler  (client reset, deadline passed,
//                             connection lost, peer shutting down): stop working on it.
// Messages are serialized protobuf; the gateway converts JSON calls at the edge.
// A handler starts with `initial_stream_credit` credits.

#include "actors/atoms.hpp"
#include "transport/grpc_status.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace google::protobuf {
class Message;
}
namespace caf {
class local_actor;
}

namespace chroom::transport {

/// Batching of request acknowledgements (call_stream::ack): at most this many messages or
/// bytes stay unacknowledged per stream. The connection sizes stream windows with
/// ack_batch_bytes in mind (grpc_connection.cpp), so a batch never stalls a client.
inline constexpr uint32_t ack_batch_messages = 32;
inline constexpr size_t ack_batch_bytes = 64u << 10;

/// Responses a streaming handler may send before its first credit arrives.
inline constexpr uint32_t initial_stream_credit = 8;

/// What a handler knows about the call it serves.
struct call_context {
  /// The gateway (connection) the call arrived on; responses go there.
  caf::actor gateway;
  /// The call's HTTP/2 stream id, unique within its gateway.
  int32_t stream_id = 0;
  /// "/package.Service/Method".
  std::string path;
  /// Custom request metadata (binary values decoded).
  metadata request_metadata;
  /// The client's address, "ip:port".
  std::string peer;
  /// Absolute deadline in steady-clock nanoseconds; 0 when the client set none. The
  /// gateway enforces it; handlers may use it to give up early.
  int64_t deadline_ns = 0;

  /// Value of a request metadata key, or empty.
  std::string_view metadata_value(std::string_view key) const {
    for (const auto& [k, v] : request_metadata)
      if (k == key)
        return v;
    return {};
  }
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, call_context& x) {
  return f(caf::meta::type_name("call_context"), x.gateway, x.stream_id, x.path, x.request_metadata,
           x.peer, x.deadline_ns);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, grpc_status& x) {
  // The details too: a room's owner peer answers a forwarded call's gateway itself.
  return f(caf::meta::type_name("grpc_status"), x.code, x.message, x.trailers, x.details);
}

/// Identifies a call among all gateways: the gateway's address and the stream id.
struct call_key {
  caf::actor_addr gateway;
  int32_t stream_id = 0;
  friend bool operator==(const call_key&, const call_key&) = default;
};

struct call_key_hash {
  size_t operator()(const call_key& key) const noexcept {
    return std::hash<caf::actor_addr>{}(key.gateway) ^ (static_cast<size_t>(key.stream_id) << 1);
  }
};

inline call_key key_of(const call_context& call) {
  return {call.gateway.address(), call.stream_id};
}

/// One unary call as its service receives it.
struct unary_call {
  call_context context;
  /// The request message, serialized protobuf.
  std::string request;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, unary_call& x) {
  return f(caf::meta::type_name("unary_call"), x.context, x.request);
}

/// The answer to one unary call.
struct unary_reply {
  int32_t stream_id = 0;
  /// Initial metadata (may be empty).
  metadata headers;
  /// The response message, serialized; absent when the call failed.
  bool has_response = false;
  std::string response;
  grpc_status status;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, unary_reply& x) {
  return f(caf::meta::type_name("unary_reply"), x.stream_id, x.headers, x.has_response, x.response,
           x.status);
}

/// Messages collected per destination actor before being sent as one batch. A batch has
/// few destinations (services of a read pass, gateways of a reply batch): a flat list
/// beats a map.
template <class T> using batches_by_actor = std::vector<std::pair<caf::actor, std::vector<T>>>;

/// The batch for `destination`, appended when there is none yet.
template <class T>
std::vector<T>& batch_for(batches_by_actor<T>& batches, const caf::actor& destination) {
  for (auto& [actor, batch] : batches)
    if (actor == destination)
      return batch;
  return batches.emplace_back(destination, std::vector<T>{}).second;
}

/// Steady-clock nanoseconds now, the clock of call_context::deadline_ns.
inline int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// Collects answers to unary calls and sends them to their gateways, one message per
/// gateway, on flush() or destruction. A service answers a batch of calls through one.
class unary_replies {
public:
  explicit unary_replies(caf::local_actor* self) : self_(self) {}
  ~unary_replies() { flush(); }
  unary_replies(const unary_replies&) = delete;
  unary_replies& operator=(const unary_replies&) = delete;

  /// Answers `call` with `response`; `headers` become initial metadata, `trailers`
  /// trailing metadata.
  void reply(const call_context& call, const google::protobuf::Message& response,
             metadata headers = {}, metadata trailers = {});
  /// Ends `call` with an error status (no response).
  void fail(const call_context& call, grpc_status status, metadata headers = {});
  /// Parses `call`'s request into `request`; on failure fails the call with
  /// INVALID_ARGUMENT and returns false.
  bool parse(const unary_call& call, google::protobuf::Message& request);
  /// Sends what was collected.
  void flush();

private:
  caf::local_actor* self_;
  batches_by_actor<unary_reply> by_gateway_;
};

/// Ends a streaming call with a status.
void end_call(caf::local_actor* self, const call_context& call, grpc_status status);

/// The handler's side of a streaming call: sends responses within the credit the
/// gateway grants, acknowledges request messages, ends the call.
class call_stream {
public:
  call_stream() = default;
  explicit call_stream(call_context context) : context_(std::move(context)) {}

  const call_context& context() const { return context_; }
  /// True while the handler may send another response without waiting.
  bool can_send() const { return credit_ > 0 && !ended_; }
  /// Sends one response; returns false (and sends nothing) without credit.
  bool send(caf::local_actor* self, const google::protobuf::Message& response);
  /// Sends initial metadata (before the first response).
  void send_headers(caf::local_actor* self, metadata headers);
  /// The gateway granted `n` more responses.
  void add_credit(uint32_t n) { credit_ += n; }
  /// One request message of `message_bytes` was consumed. Acknowledgements are sent to
  /// the gateway in batches (every ack_batch_messages messages or ack_batch_bytes bytes):
  /// a node's Stats every second need not cost a message back each time, and what stays
  /// unacknowledged is far below the stream's flow-control window.
  void ack(caf::local_actor* self, size_t message_bytes);
  /// Ends the call; further sends are ignored.
  void end(caf::local_actor* self, grpc_status status);
  bool ended() const { return ended_; }

private:
  call_context context_;
  uint32_t credit_ = initial_stream_credit;
  uint32_t unacked_messages_ = 0;
  size_t unacked_bytes_ = 0;
  bool ended_ = false;
};

} // namespace chroom::transport
