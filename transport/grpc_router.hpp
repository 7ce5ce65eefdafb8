#pragma once

// Which actor serves which gRPC method. Built once at start-up, then shared read-only
// by every gateway.

#include <caf/actor.hpp>

#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace google::protobuf {
class Message;
class ServiceDescriptor;
} // namespace google::protobuf

namespace chroom::transport {

enum class call_kind { unary, client_streaming, server_streaming, bidi_streaming };

struct grpc_method {
  call_kind kind = call_kind::unary;
  /// Unary: receives call_unary. Streaming: receives a call_open request and answers
  /// with the actor that handles the call (see call_protocol.hpp).
  caf::actor target;
  /// Default instances of the request and response types, for the JSON mapping.
  const google::protobuf::Message* request_prototype = nullptr;
  const google::protobuf::Message* response_prototype = nullptr;
};

class grpc_router {
public:
  /// Routes every method of `service` (from its generated descriptor) to `target`.
  void add_service(const google::protobuf::ServiceDescriptor* service, caf::actor target);

  /// The method for "/package.Service/Method", or nullptr.
  const grpc_method* find(std::string_view path) const;

  /// True when a service of that fully qualified name is served.
  bool has_service(std::string_view full_name) const;

  const std::unordered_set<std::string>& services() const { return services_; }

private:
  std::unordered_map<std::string, grpc_method> methods_;
  std::unordered_set<std::string> services_;
};

} // namespace chroom::transport
