#pragma once

// chroom.admin.v1.AdminService: the operator API of a peer. Node methods ask the
// registry; WatchNodes gets an actor per call that subscribes to the registry's events;
// GetCluster asks the membership actor and the allocation service; room methods go to
// the allocation service (which asks every peer, or the room's owner).
//
// With admin tokens configured, every call must carry `authorization: Bearer <token>`
// (UNAUTHENTICATED otherwise).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <string>
#include <vector>

namespace chroom::actors {

/// The admin service answers node and cluster methods with the registry, the membership
/// actor and the allocation service, and passes app methods on to the app directory.
caf::actor spawn_admin_service(caf::actor_system& system, caf::actor registry,
                               caf::actor membership, caf::actor allocation_service,
                               caf::actor app_directory, std::vector<std::string> tokens);

/// Whether `authorization` (a request's metadata value) carries one of `tokens`: "Bearer
/// <token>", compared in constant time. No tokens: every call is allowed.
bool admin_authorized(const std::vector<std::string>& tokens, std::string_view authorization);

} // namespace chroom::actors
