// A closed-loop gRPC load client over HTTP/2 cleartext (h2c, prior knowledge): C TCP
// connections, each keeping up to M unary calls in flight; a call that ends frees its slot
// and the driver starts the next one at once (or when its rate limit allows). One thread, one
// poll() loop, one write() per connection per pass, nothing allocated per call once the buffers
// have grown: the peer under test runs on the same two cores, so the client must cost little.
//
// Only allocate_client.cpp includes nghttp2; the driver (allocate_load.cpp) sees calls as
// a path, a request message and a result.
#pragma once

#include "transport/grpc_wire.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::bench {

using load_clock = std::chrono::steady_clock;

using transport::grpc_prefix_bytes;

// How one call ended.
struct call_result {
  // grpc-status of the trailers (or of a trailers-only answer); -1 when the call got none,
  // and then `failure` says why.
  int grpc_status = -1;
  // grpc-message as on the wire (percent-encoded); empty when absent.
  std::string_view grpc_message;
  // Without a grpc-status: "HTTP 503", "stream reset", "connection lost", ... (a short
  // category for counting) and `failure_detail` (for the first of each category).
  std::string_view failure;
  std::string_view failure_detail;
  // The response message without its 5-byte gRPC prefix; empty unless grpc_status is 0.
  std::string_view response;
  // From the request's last byte written to the socket to the read that brought the
  // trailers, nanoseconds; 0 when the request was never written.
  std::uint64_t latency_ns = 0;
};

// The call a free slot makes next.
struct call_request {
  // Index into h2_client_settings::paths.
  std::size_t path = 0;
  // Holds the 5-byte gRPC prefix already: append the serialized request message (the
  // client fills in the prefix). Its capacity is kept from call to call.
  std::string* framed = nullptr;
};

// What a free slot does now.
enum class call_decision {
  start, // `call` is filled in: send it
  wait,  // not yet (a rate limit): ask again at wake_at()
  stop,  // the slot makes no further call
};

// Decides what the client calls and consumes what it gets. All on the client's thread.
class call_driver {
public:
  virtual ~call_driver() = default;
  // Slot `slot` (0 .. connections × streams − 1) is free: fill `call` and start it, or
  // wait, or stop.
  virtual call_decision next_call(std::size_t slot, call_request& call) = 0;
  // When a slot told to wait may start; asked while any slot waits.
  virtual load_clock::time_point wake_at() const = 0;
  // The call of `slot` ended (answered, failed, or cut off with its connection).
  virtual void call_done(std::size_t slot, const call_result& result) = 0;
  // Asked at least every 100 ms: true ends the run at once, with the calls still in flight
  // reported through call_done as "unfinished at exit".
  virtual bool give_up(load_clock::time_point now) = 0;
};

// One server to connect to.
struct h2_target {
  // A host name or address, and a port.
  std::string host;
  std::string port;
  // :authority of its requests ("host:port").
  std::string authority;
};

struct h2_client_settings {
  // Where to connect: connection i goes to targets[i % targets.size()] (several peers of a
  // cluster share the load that way). At least one.
  std::vector<h2_target> targets;
  // The :path of each method the driver may call, e.g. "/pkg.Service/Method".
  std::vector<std::string> paths;
  std::uint32_t connections = 1;
  // Calls in flight per connection (each in its own stream).
  std::uint32_t streams_per_connection = 16;
};

// Connects, runs until every slot has stopped (the driver returned false or the
// connection ended) or the driver gives up, then closes. Returns an empty string after a
// run, else why it could not start (resolve or connect failure).
std::string run_h2_client(const h2_client_settings& settings, call_driver& driver);

} // namespace chroom::bench
