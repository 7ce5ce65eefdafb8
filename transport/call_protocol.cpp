#include "transport/call_protocol.hpp"

#include <caf/actor_cast.hpp>
#include <caf/local_actor.hpp>
#include <caf/send.hpp>
#include <google/protobuf/message.h>

namespace chroom::transport {

bool serialize_response(const google::protobuf::Message& message, std::string& out) {
  return message.SerializeToString(&out);
}

bool parse_request(caf::local_actor* self, const call_context& call, const std::string& bytes,
                   google::protobuf::Message& request) {
  if (request.ParseFromString(bytes))
    return true;
  end_call(self, call,
           make_status(grpc_code::invalid_argument,
                       "request is not a valid " + request.GetTypeName() + " message"));
  return false;
}

void reply_unary(caf::local_actor* self, const call_context& call,
                 const google::protobuf::Message& response) {
  std::string bytes;
  if (!serialize_response(response, bytes)) {
    end_call(self, call, make_status(grpc_code::internal, "response could not be serialized"));
    return;
  }
  caf::send_as(caf::actor_cast<caf::actor>(self), call.gateway, call_reply_atom::value, call.stream_id, std::move(bytes),
             grpc_status::ok());
}

void end_call(caf::local_actor* self, const call_context& call, grpc_status status) {
  caf::send_as(caf::actor_cast<caf::actor>(self), call.gateway, call_end_atom::value, call.stream_id, std::move(status));
}

bool call_stream::send(caf::local_actor* self, const google::protobuf::Message& response) {
  if (!can_send())
    return false;
  std::string bytes;
  if (!serialize_response(response, bytes)) {
    end(self, make_status(grpc_code::internal, "response could not be serialized"));
    return false;
  }
  --credit_;
  caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_data_atom::value, context_.stream_id, std::move(bytes));
  return true;
}

void call_stream::send_headers(caf::local_actor* self, metadata headers) {
  if (!ended_)
    caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_head_atom::value, context_.stream_id, std::move(headers));
}

void call_stream::ack(caf::local_actor* self, uint32_t n) {
  if (!ended_)
    caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_ack_atom::value, context_.stream_id, n);
}

void call_stream::end(caf::local_actor* self, grpc_status status) {
  if (ended_)
    return;
  ended_ = true;
  end_call(self, context_, std::move(status));
}

} // namespace chroom::transport
