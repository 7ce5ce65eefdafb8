#pragma once

// The gRPC gateway: a listener broker that accepts TCP connections and forks one
// `gateway` broker per connection. Each gateway owns one grpc_connection (and, with TLS,
// one tls_session), turns calls into messages to the actors the router names, and their
// answers back into HTTP/2 frames.
//
//   gateway states:  serving --shutdown--> draining --(no streams | grace over)--> closed
//                        \--(peer closed, protocol error, idle, keepalive lost)--> closed

#include "transport/grpc_connection.hpp"
#include "transport/grpc_router.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace chroom::transport {

class tls_server_context;

struct gateway_settings {
  /// Address and port to bind; port 0 picks a free one.
  std::string host = "127.0.0.1";
  uint16_t port = 7443;
  connection_limits limits;
  /// Connections beyond this are refused with GOAWAY at once.
  size_t max_connections = 10000;
  /// A connection without open streams for this long is closed with GOAWAY.
  std::chrono::milliseconds idle_timeout{300'000};
  /// PING interval; a PING unanswered for keepalive_timeout closes the connection.
  std::chrono::milliseconds keepalive_interval{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  /// What all connections together may hold (limits.max_connection_memory_bytes bounds
  /// each); null: no peer-wide bound.
  std::shared_ptr<peer_memory_budget> memory;
  /// TLS context; null serves h2c.
  std::shared_ptr<tls_server_context> tls;
  std::shared_ptr<const grpc_router> router;
};

/// A running listener.
struct gateway_listener {
  caf::actor actor;
  uint16_t port = 0;
};

/// Binds and starts accepting. Throws std::runtime_error when the address cannot be bound.
gateway_listener start_gateway(caf::actor_system& system,
                               std::shared_ptr<const gateway_settings> settings);

/// Asks the listener to stop: stop accepting, GOAWAY every connection, let calls finish
/// for `grace`, then cancel what remains (UNAVAILABLE). The listener actor terminates
/// when every connection is closed.
void stop_gateway(const gateway_listener& listener, std::chrono::milliseconds grace);

} // namespace chroom::transport
