#include "transport/call_protocol.hpp"

#include <caf/actor_cast.hpp>
#include <caf/local_actor.hpp>
#include <caf/send.hpp>
#include <google/protobuf/message.h>

namespace chroom::transport {

namespace {

bool serialize_response(const google::protobuf::Message& message, std::string& out) {
  return message.SerializeToString(&out);
}

} // namespace

void unary_replies::reply(const call_context& call, const google::protobuf::Message& response,
                          metadata headers, metadata trailers) {
  unary_reply answer;
  answer.stream_id = call.stream_id;
  answer.headers = std::move(headers);
  if (serialize_response(response, answer.response)) {
    answer.has_response = true;
    answer.status.trailers = std::move(trailers);
  } else {
    answer.status = make_status(grpc_code::internal, "response could not be serialized");
  }
  batch_for(by_gateway_, call.gateway).push_back(std::move(answer));
}

void unary_replies::fail(const call_context& call, grpc_status status, metadata headers) {
  unary_reply answer;
  answer.stream_id = call.stream_id;
  answer.headers = std::move(headers);
  answer.status = std::move(status);
  batch_for(by_gateway_, call.gateway).push_back(std::move(answer));
}

bool unary_replies::parse(const unary_call& call, google::protobuf::Message& request) {
  if (request.ParseFromString(call.request))
    return true;
  fail(call.context, make_status(grpc_code::invalid_argument,
                                 "request is not a valid " + request.GetTypeName() + " message"));
  return false;
}

void unary_replies::flush() {
  for (auto& [gateway, replies] : by_gateway_)
    caf::send_as(caf::actor_cast<caf::actor>(self_), gateway, call_reply_atom::value,
                 std::move(replies));
  by_gateway_.clear();
}

void end_call(caf::local_actor* self, const call_context& call, grpc_status status) {
  caf::send_as(caf::actor_cast<caf::actor>(self), call.gateway, call_end_atom::value,
               call.stream_id, std::move(status));
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
  caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_data_atom::value,
               context_.stream_id, std::move(bytes));
  return true;
}

void call_stream::send_headers(caf::local_actor* self, metadata headers) {
  if (!ended_)
    caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_head_atom::value,
                 context_.stream_id, std::move(headers));
}

void call_stream::ack(caf::local_actor* self, size_t message_bytes) {
  if (ended_)
    return;
  ++unacked_messages_;
  unacked_bytes_ += message_bytes;
  if (unacked_messages_ < ack_batch_messages && unacked_bytes_ < ack_batch_bytes)
    return;
  caf::send_as(caf::actor_cast<caf::actor>(self), context_.gateway, call_ack_atom::value,
               context_.stream_id, unacked_messages_);
  unacked_messages_ = 0;
  unacked_bytes_ = 0;
}

void call_stream::end(caf::local_actor* self, grpc_status status) {
  if (ended_)
    return;
  ended_ = true;
  end_call(self, context_, std::move(status));
}

} // namespace chroom::transport
