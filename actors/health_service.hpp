#pragma once

// grpc.health.v1.Health: Check and Watch, so stock probes work against a peer.
// Every service the peer routes starts SERVING; on shutdown the peer sets everything
// NOT_SERVING so load balancers stop sending before connections close.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <string>
#include <vector>

namespace chroom::actors {

/// @param services fully qualified names of the services this peer serves.
caf::actor spawn_health_service(caf::actor_system& system, std::vector<std::string> services);

/// Tells the health service the whole peer is (not) serving; Watch streams hear of it.
void set_serving(const caf::actor& health, bool serving);

} // namespace chroom::actors
