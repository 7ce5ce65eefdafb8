#include "actors/reflection_service.hpp"

#include "actors/admin_service.hpp"
#include "actors/atoms.hpp"
#include "grpc/reflection/v1/reflection.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>
#include <google/protobuf/descriptor.h>

#include <deque>

namespace chroom::actors {

namespace {

using namespace transport;
// v1alpha's messages are v1's with another package name: the same fields and numbers, so
// the same bytes on the wire. Both services are answered with v1's types.
using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;

grpc_status unauthorized() {
  return make_status(grpc_code::unauthenticated,
                     "server reflection needs an admin token: metadata 'authorization: Bearer "
                     "<token>' with one of the peer's admin.tokens");
}

void set_files(ServerReflectionResponse& response, std::vector<std::string> files) {
  auto& out = *response.mutable_file_descriptor_response()->mutable_file_descriptor_proto();
  for (auto& file : files)
    out.Add(std::move(file));
}

void set_error(ServerReflectionResponse& response, grpc_code code, std::string message) {
  auto& error = *response.mutable_error_response();
  error.set_error_code(static_cast<int32_t>(code));
  error.set_error_message(std::move(message));
}

/// The answer to one request; lookups that find nothing are error responses on a stream
/// that goes on, as the standard has them.
ServerReflectionResponse answer(const reflection_catalog& catalog,
                                const ServerReflectionRequest& request) {
  ServerReflectionResponse response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  auto files_or_not_found = [&](std::optional<std::vector<std::string>> files,
                                const std::string& what) {
    if (files)
      set_files(response, std::move(*files));
    else
      set_error(response, grpc_code::not_found, what + " not found");
  };
  switch (request.message_request_case()) {
    case ServerReflectionRequest::kListServices:
      for (const auto& name : catalog.services())
        response.mutable_list_services_response()->add_service()->set_name(name);
      break;
    case ServerReflectionRequest::kFileByFilename:
      files_or_not_found(catalog.file_by_name(request.file_by_filename()),
                         "file '" + request.file_by_filename() + "'");
      break;
    case ServerReflectionRequest::kFileContainingSymbol:
      files_or_not_found(catalog.file_containing_symbol(request.file_containing_symbol()),
                         "symbol '" + request.file_containing_symbol() + "'");
      break;
    case ServerReflectionRequest::kFileContainingExtension: {
      const auto& extension = request.file_containing_extension();
      files_or_not_found(catalog.file_containing_extension(extension.containing_type(),
                                                           extension.extension_number()),
                         "extension " + std::to_string(extension.extension_number()) + " of '" +
                           extension.containing_type() + "'");
      break;
    }
    case ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const auto& type = request.all_extension_numbers_of_type();
      if (auto numbers = catalog.extension_numbers(type)) {
        auto& out = *response.mutable_all_extension_numbers_response();
        out.set_base_type_name(type);
        for (auto number : *numbers)
          out.add_extension_number(number);
      } else {
        set_error(response, grpc_code::not_found, "message type '" + type + "' not found");
      }
      break;
    }
    case ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      set_error(response, grpc_code::invalid_argument,
                "the request asks for nothing: set one of list_services, file_by_filename, "
                "file_containing_symbol, file_containing_extension, "
                "all_extension_numbers_of_type");
      break;
  }
  return response;
}

// --- one ServerReflectionInfo call ------------------------------------------------------
//
//  data -> queued -> (with credit) answered, acknowledged
//  close -> end OK once every queued request is answered
//  cancel, or the gateway gone -> quit
//
// A request is acknowledged only once it is answered: a client that sends without reading
// is held by its flow-control window, the peer queues no answers for it.

struct reflection_call_state {
  call_stream stream;
  std::shared_ptr<const reflection_catalog> catalog;
  std::deque<std::string> requests;
  bool client_closed = false;
};

using reflection_call_actor = caf::stateful_actor<reflection_call_state>;

void end(reflection_call_actor* self, grpc_status status) {
  self->state.stream.end(self, std::move(status));
  self->quit();
}

void pump(reflection_call_actor* self) {
  auto& st = self->state;
  while (!st.requests.empty() && st.stream.can_send()) {
    ServerReflectionRequest request;
    if (!request.ParseFromString(st.requests.front())) {
      end(self, make_status(grpc_code::invalid_argument,
                            "request is not a valid ServerReflectionRequest message"));
      return;
    }
    st.stream.send(self, answer(*st.catalog, request));
    st.stream.ack(self, st.requests.front().size());
    st.requests.pop_front();
  }
  if (st.client_closed && st.requests.empty())
    end(self, grpc_status::ok());
}

/// Without a catalog (the caller has no admin token) the call ends UNAUTHENTICATED.
caf::behavior reflection_call(reflection_call_actor* self, call_context context,
                              std::shared_ptr<const reflection_catalog> catalog) {
  auto& st = self->state;
  st.stream = call_stream{std::move(context)};
  if (!catalog) {
    end(self, unauthorized());
    return {};
  }
  st.catalog = std::move(catalog);
  // A gateway that goes away before it learns of this actor cannot cancel it.
  self->monitor(st.stream.context().gateway);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  return {
    [self](call_data_atom, int32_t, std::string& bytes) {
      self->state.requests.push_back(std::move(bytes));
      pump(self);
    },
    [self](call_close_atom, int32_t) {
      self->state.client_closed = true;
      pump(self);
    },
    [self](call_credit_atom, int32_t, uint32_t credit) {
      self->state.stream.add_credit(credit);
      pump(self);
    },
    [self](call_cancel_atom, int32_t) { self->quit(); },
  };
}

// --- the service -------------------------------------------------------------------------

struct reflection_settings {
  std::shared_ptr<const reflection_catalog> catalog;
  std::vector<std::string> tokens;
};

caf::behavior reflection_service(caf::event_based_actor* self, reflection_settings settings) {
  return {
    [self, settings](call_open_atom, const call_context& call) -> caf::actor {
      bool authorized = admin_authorized(settings.tokens, call.metadata_value("authorization"));
      return self->spawn(reflection_call, call,
                         authorized ? settings.catalog
                                    : std::shared_ptr<const reflection_catalog>{});
    },
    [](call_cancel_atom, int32_t) {
      // The call was cancelled before its actor was known to the gateway; that actor
      // watches the gateway.
    },
  };
}

} // namespace

std::vector<const google::protobuf::ServiceDescriptor*> reflection_services() {
  return {
    grpc::reflection::v1::ServerReflectionRequest::descriptor()->file()->FindServiceByName(
      "ServerReflection"),
    grpc::reflection::v1alpha::ServerReflectionRequest::descriptor()->file()->FindServiceByName(
      "ServerReflection"),
  };
}

caf::actor spawn_reflection_service(caf::actor_system& system,
                                    std::shared_ptr<const reflection_catalog> catalog,
                                    std::vector<std::string> tokens) {
  return system.spawn(reflection_service,
                      reflection_settings{std::move(catalog), std::move(tokens)});
}

} // namespace chroom::actors
