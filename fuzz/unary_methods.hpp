#pragma once

// The unary methods of the services that accept JSON calls, in a fixed order: the JSON
// mapping target picks one by index, and make_seeds writes seeds for each index.

#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/allocation/v1/allocation_service.pb.h"
#include "chroom/diag/v1/diagnostics.pb.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace chroom::fuzz {

struct unary_method {
  std::string name;
  const google::protobuf::Message* request;
  const google::protobuf::Message* response;
};

inline const std::vector<unary_method>& unary_methods() {
  static const std::vector<unary_method> methods = [] {
    namespace pb = google::protobuf;
    // One message of each file is named so that the file is linked and registered.
    const pb::ServiceDescriptor* services[] = {
      chroom::allocation::v1::AllocateRequest::descriptor()->file()->FindServiceByName(
        "AllocationService"),
      chroom::admin::v1::ListNodesRequest::descriptor()->file()->FindServiceByName("AdminService"),
      chroom::diag::v1::EchoRequest::descriptor()->file()->FindServiceByName("Diagnostics"),
    };
    auto* factory = pb::MessageFactory::generated_factory();
    std::vector<unary_method> found;
    for (const auto* service : services) {
      if (service == nullptr) {
        std::fprintf(stderr, "unary_methods: a service is missing from its .proto\n");
        std::abort();
      }
      for (int i = 0; i < service->method_count(); ++i) {
        const auto* method = service->method(i);
        if (method->client_streaming() || method->server_streaming())
          continue;
        found.push_back({method->full_name(), factory->GetPrototype(method->input_type()),
                         factory->GetPrototype(method->output_type())});
      }
    }
    return found;
  }();
  return methods;
}

} // namespace chroom::fuzz
