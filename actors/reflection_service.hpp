#pragma once

// grpc.reflection.v1.ServerReflection and the older grpc.reflection.v1alpha one (what
// many tools still ask first): the way grpcurl, grpcui, Postman, Evans and Kreya discover
// a server's services and build requests without its .proto files. The answers come from
// transport/grpc_reflection (the descriptors compiled into the binary).
//
// With admin tokens configured, a call must carry `authorization: Bearer <token>`, as
// AdminService's do (UNAUTHENTICATED otherwise): the descriptors describe the operator API.

#include "transport/grpc_reflection.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <memory>
#include <string>
#include <vector>

namespace google::protobuf {
class ServiceDescriptor;
}

namespace chroom::actors {

/// The two reflection services (v1, then v1alpha), to route to the actor.
std::vector<const google::protobuf::ServiceDescriptor*> reflection_services();

/// @param catalog what to answer; it lists the reflection services themselves too.
/// @param tokens  admin tokens; empty: every call is answered.
caf::actor spawn_reflection_service(caf::actor_system& system,
                                    std::shared_ptr<const transport::reflection_catalog> catalog,
                                    std::vector<std::string> tokens);

} // namespace chroom::actors
