#pragma once

// chroom.admin.v1.AdminService: the operator API of a peer. Node methods ask the
// registry; WatchNodes gets an actor per call that subscribes to the registry's events.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace chroom::actors {

caf::actor spawn_admin_service(caf::actor_system& system, caf::actor registry);

} // namespace chroom::actors
