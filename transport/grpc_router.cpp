#include "transport/grpc_router.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

namespace chroom::transport {

void grpc_router::add_service(const google::protobuf::ServiceDescriptor* service,
                              caf::actor target) {
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    grpc_method entry;
    if (method->client_streaming())
      entry.kind =
        method->server_streaming() ? call_kind::bidi_streaming : call_kind::client_streaming;
    else
      entry.kind = method->server_streaming() ? call_kind::server_streaming : call_kind::unary;
    entry.target = target;
    entry.request_prototype = factory->GetPrototype(method->input_type());
    entry.response_prototype = factory->GetPrototype(method->output_type());
    methods_["/" + service->full_name() + "/" + method->name()] = std::move(entry);
  }
  services_.insert(service->full_name());
}

const grpc_method* grpc_router::find(std::string_view path) const {
  auto it = methods_.find(std::string{path});
  return it == methods_.end() ? nullptr : &it->second;
}

bool grpc_router::has_service(std::string_view full_name) const {
  return services_.count(std::string{full_name}) > 0;
}

} // namespace chroom::transport
