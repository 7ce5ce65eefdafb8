#pragma once

// chroom.admin.v1.AdminService: the operator API of a peer. Node methods ask the
// registry; WatchNodes gets an actor per call that subscribes to the registry's events;
// GetCluster asks the membership actor and the allocation service.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace chroom::actors {

/// The admin service answers node and cluster methods with the registry, the membership
/// actor and the allocation service, and passes app methods on to the app directory.
caf::actor spawn_admin_service(caf::actor_system& system, caf::actor registry,
                               caf::actor membership, caf::actor allocation_service,
                               caf::actor app_directory);

} // namespace chroom::actors
