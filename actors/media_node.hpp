#pragma once

// chroom.medianode.v1.MediaNodeService: one `media_node` actor per Connect stream (per
// connected node). It checks the node's messages, authenticates it, registers it with the
// registry, forwards its Stats and events, and sends it commands with ids, deadlines and
// one retry.
//
//   awaiting_register --Register ok--> registering --admitted--> registered
//        |  (anything else, bad credential,   |                      |
//        |   bad version, register timeout)   |--refused-->          |--replaced/dead/
//        v                                    v                      v  cancel/half-close
//      ended (status sent, registry told)  <-----------------------------

#include "transport/call_protocol.hpp"
#include "transport/node_credentials.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace chroom::actors {

struct media_node_settings {
  std::shared_ptr<const transport::node_credentials> credentials;
  /// Sent to nodes in Registered.
  std::chrono::milliseconds stats_interval{1000};
  std::chrono::milliseconds suspect_after{1500};
  std::chrono::milliseconds dead_after{3000};
  /// How long a node has to answer a command (then it is sent once more).
  std::chrono::milliseconds command_timeout{2000};
  /// A stream that sends no Register this long is ended.
  std::chrono::milliseconds register_timeout{10'000};
  std::string peer_id;
};

/// The result of a command sent to a node.
struct command_outcome {
  bool acked = false;
  /// Why not: FAILED_PRECONDITION with the node's Nack reason, UNAVAILABLE when the node
  /// did not answer twice or is gone.
  transport::grpc_status status;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, command_outcome& x) {
  return f(caf::meta::type_name("command_outcome"), x.acked, x.status);
}

/// The MediaNodeService actor: answers call_open with a new media_node actor.
caf::actor spawn_media_node_service(caf::actor_system& system, caf::actor registry,
                                    std::shared_ptr<const media_node_settings> settings);

} // namespace chroom::actors
