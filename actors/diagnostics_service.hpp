#pragma once

// chroom.diag.v1.Diagnostics: echo calls of the four gRPC kinds, for tests, benchmarks
// and operators. Unary calls are answered by the service actor; each streaming call
// gets an actor of its own (the shape later services with long-lived streams follow).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace chroom::actors {

caf::actor spawn_diagnostics_service(caf::actor_system& system);

} // namespace chroom::actors
