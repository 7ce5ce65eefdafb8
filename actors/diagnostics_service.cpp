#include "actors/diagnostics_service.hpp"

#include "actors/atoms.hpp"
#include "actors/send_later.hpp"
#include "chroom/diag/v1/diagnostics.pb.h"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>

#include <deque>
#include <optional>
#include <unordered_map>

namespace chroom::actors {

namespace {

using namespace transport;
using diag_request = chroom::diag::v1::EchoRequest;
using diag_response = chroom::diag::v1::EchoResponse;

using diag_event_atom = caf::atom_constant<caf::atom("diag_evt")>;
using repeat_atom = caf::atom_constant<caf::atom("repeat")>;
using delayed_atom = caf::atom_constant<caf::atom("delayed")>;

/// What a call actor reports to the service, which keeps the counters.
enum class diag_event : int { received, sent, finished, cancelled };

constexpr std::string_view echo_prefix = "x-echo-";

/// Longest delay_ms / interval_ms a request may ask for: Diagnostics is reachable by any
/// client, and each delayed call holds a little memory until it is answered.
constexpr uint32_t default_max_delay_ms = 60'000;

metadata echoed_metadata(const call_context& call) {
  metadata out;
  for (const auto& [key, value] : call.request_metadata)
    if (key.starts_with(echo_prefix))
      out.emplace_back(key, value);
  return out;
}

grpc_status status_with_echo(const call_context& call, grpc_status status) {
  status.trailers = echoed_metadata(call);
  return status;
}

diag_response echo_of(const diag_request& request, uint64_t sequence) {
  diag_response response;
  response.set_payload(request.payload());
  response.set_text(request.text());
  response.set_sequence(sequence);
  return response;
}

// --- one streaming call -------------------------------------------------------------
//
//  EchoStream:  data -> echo (needs credit; without, requests wait unacknowledged)
//  EchoRepeat:  first data -> timer -> echo every interval (each needs credit)
//  EchoCollect: data -> accumulate; close -> one response
//  any: cancel -> quit

enum class stream_method { echo_stream, echo_repeat, echo_collect };

struct diag_call_state {
  call_stream stream;
  stream_method method = stream_method::echo_stream;
  caf::actor service;
  uint32_t max_delay_ms = 0;
  std::deque<diag_request> backlog; // EchoStream requests waiting for credit
  bool client_closed = false;
  // EchoRepeat
  std::optional<diag_request> repeat_request;
  uint64_t sent = 0;
  bool timer_due = false;
  // EchoCollect
  chroom::diag::v1::EchoCollectResponse collected;
};

using diag_call_actor = caf::stateful_actor<diag_call_state>;

void report(diag_call_actor* self, diag_event event, uint64_t count = 1) {
  self->send(self->state.service, diag_event_atom::value, static_cast<int>(event), count);
}

bool send_echo(diag_call_actor* self, const diag_request& request) {
  auto& st = self->state;
  if (!st.stream.send(self, echo_of(request, st.sent)))
    return false;
  ++st.sent;
  report(self, diag_event::sent);
  return true;
}

void end(diag_call_actor* self, grpc_status status) {
  auto& st = self->state;
  st.stream.end(self, status_with_echo(st.stream.context(), std::move(status)));
  report(self, diag_event::finished);
  self->quit();
}

void pump(diag_call_actor* self) {
  auto& st = self->state;
  if (st.method == stream_method::echo_stream) {
    while (!st.backlog.empty() && st.stream.can_send()) {
      send_echo(self, st.backlog.front());
      auto request_bytes = st.backlog.front().ByteSizeLong();
      st.backlog.pop_front();
      st.stream.ack(self, request_bytes);
    }
    if (st.client_closed && st.backlog.empty())
      end(self, grpc_status::ok());
    return;
  }
  if (st.method == stream_method::echo_repeat && st.timer_due && st.repeat_request &&
      st.stream.can_send()) {
    st.timer_due = false;
    send_echo(self, *st.repeat_request);
    if (st.repeat_request->repeat() != 0 && st.sent >= st.repeat_request->repeat()) {
      end(self, grpc_status::ok());
      return;
    }
    send_later(self, std::chrono::milliseconds{st.repeat_request->interval_ms()},
               repeat_atom::value);
  }
}

caf::behavior diag_call(diag_call_actor* self, call_context context, stream_method method,
                        caf::actor service, uint32_t max_delay_ms) {
  auto& st = self->state;
  st.max_delay_ms = max_delay_ms;
  st.stream = call_stream{std::move(context)};
  st.method = method;
  st.service = std::move(service);
  if (auto headers = echoed_metadata(st.stream.context()); !headers.empty())
    st.stream.send_headers(self, std::move(headers));
  // A gateway that goes away before it learns of this actor cannot cancel it.
  self->monitor(st.stream.context().gateway);
  self->set_down_handler([self](caf::down_msg&) {
    report(self, diag_event::cancelled);
    self->quit();
  });
  return {
    [self](call_data_atom, int32_t, const std::string& bytes) {
      auto& st = self->state;
      report(self, diag_event::received);
      diag_request request;
      if (!request.ParseFromString(bytes)) {
        end(self, make_status(grpc_code::invalid_argument,
                              "request is not a valid chroom.diag.v1.EchoRequest message"));
        return;
      }
      switch (st.method) {
        case stream_method::echo_stream:
          st.backlog.push_back(std::move(request));
          break;
        case stream_method::echo_collect:
          st.collected.set_message_count(st.collected.message_count() + 1);
          st.collected.set_payload_bytes(st.collected.payload_bytes() + request.payload().size());
          st.collected.mutable_text()->append(request.text());
          st.stream.ack(self, bytes.size());
          break;
        case stream_method::echo_repeat:
          st.stream.ack(self, bytes.size());
          if (st.repeat_request)
            return; // server streaming takes one request; later ones are ignored
          if (request.interval_ms() > st.max_delay_ms) {
            end(self, make_status(grpc_code::invalid_argument,
                                  "interval_ms is at most " + std::to_string(st.max_delay_ms)));
            return;
          }
          st.repeat_request = std::move(request);
          st.timer_due = true;
          break;
      }
      pump(self);
    },
    [self](call_close_atom, int32_t) {
      auto& st = self->state;
      st.client_closed = true;
      if (st.method == stream_method::echo_collect) {
        if (st.stream.send(self, st.collected))
          report(self, diag_event::sent);
        end(self, grpc_status::ok());
        return;
      }
      if (st.method == stream_method::echo_repeat && !st.repeat_request) {
        end(self, make_status(grpc_code::internal, "EchoRepeat ended without a request"));
        return;
      }
      pump(self);
    },
    [self](call_credit_atom, int32_t, uint32_t credit) {
      self->state.stream.add_credit(credit);
      pump(self);
    },
    [self](repeat_atom) {
      self->state.timer_due = true;
      pump(self);
    },
    [self](call_cancel_atom, int32_t) {
      report(self, diag_event::cancelled);
      self->quit();
    },
  };
}

// --- the service ---------------------------------------------------------------------

struct diag_service_state {
  chroom::diag::v1::GetCountersResponse counters;
  /// Unary Echo calls waiting for their delay_ms.
  std::unordered_map<call_key, std::pair<call_context, diag_request>, call_key_hash> delayed;
};

using diag_service_actor = caf::stateful_actor<diag_service_state>;

void finish_counted(diag_service_actor* self, bool sent_response) {
  auto& c = self->state.counters;
  c.set_calls_finished(c.calls_finished() + 1);
  if (sent_response)
    c.set_messages_sent(c.messages_sent() + 1);
}

void answer_echo(diag_service_actor* self, unary_replies& replies, const call_context& call,
                 const diag_request& request) {
  auto echoed = echoed_metadata(call);
  if (request.fail_code() != 0) {
    auto status = make_status(grpc_code_from_int(request.fail_code()), request.fail_message());
    status.trailers = echoed;
    replies.fail(call, std::move(status), std::move(echoed));
    finish_counted(self, false);
    return;
  }
  auto trailers = echoed;
  replies.reply(call, echo_of(request, 0), std::move(echoed), std::move(trailers));
  finish_counted(self, true);
}

void handle_unary(diag_service_actor* self, unary_replies& replies, unary_call& call,
                  uint32_t max_delay_ms) {
  auto& c = self->state.counters;
  c.set_calls_started(c.calls_started() + 1);
  c.set_messages_received(c.messages_received() + 1);
  if (call.context.path == "/chroom.diag.v1.Diagnostics/GetCounters") {
    // Counted as finished before the snapshot, so calls_active counts other calls only.
    finish_counted(self, true);
    auto snapshot = c;
    snapshot.set_calls_active(c.calls_started() - c.calls_finished() - c.calls_cancelled());
    replies.reply(call.context, snapshot);
    return;
  }
  diag_request request;
  if (!replies.parse(call, request)) {
    finish_counted(self, false);
    return;
  }
  if (request.delay_ms() > max_delay_ms) {
    replies.fail(call.context, make_status(grpc_code::invalid_argument,
                                           "delay_ms is at most " + std::to_string(max_delay_ms)));
    finish_counted(self, false);
    return;
  }
  if (request.delay_ms() == 0 || request.fail_code() != 0) {
    answer_echo(self, replies, call.context, request);
    return;
  }
  send_later(self, std::chrono::milliseconds{request.delay_ms()}, delayed_atom::value,
             call.context.gateway.address(), call.context.stream_id);
  auto key = key_of(call.context);
  self->state.delayed.emplace(std::move(key),
                              std::make_pair(std::move(call.context), std::move(request)));
}

/// @param max_delay_ms bound on delay_ms and interval_ms.
caf::behavior diagnostics_service(diag_service_actor* self, uint32_t max_delay_ms) {
  return {
    [self, max_delay_ms](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch)
        handle_unary(self, replies, call, max_delay_ms);
    },
    [self](delayed_atom, const caf::actor_addr& gateway, int32_t stream_id) {
      auto& delayed = self->state.delayed;
      auto it = delayed.find(call_key{gateway, stream_id});
      if (it == delayed.end())
        return; // cancelled meanwhile
      unary_replies replies{self};
      answer_echo(self, replies, it->second.first, it->second.second);
      delayed.erase(it);
    },
    [self](call_cancel_atom, int32_t stream_id) {
      // A unary call being delayed was cancelled (deadline, client reset, shutdown).
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      if (self->state.delayed.erase(call_key{sender, stream_id}) > 0) {
        auto& c = self->state.counters;
        c.set_calls_cancelled(c.calls_cancelled() + 1);
      }
    },
    [self, max_delay_ms](call_open_atom, const call_context& call) -> caf::actor {
      auto& c = self->state.counters;
      c.set_calls_started(c.calls_started() + 1);
      auto method = stream_method::echo_stream;
      if (call.path.ends_with("/EchoRepeat"))
        method = stream_method::echo_repeat;
      else if (call.path.ends_with("/EchoCollect"))
        method = stream_method::echo_collect;
      return self->spawn(diag_call, call, method, caf::actor_cast<caf::actor>(self), max_delay_ms);
    },
    [self](diag_event_atom, int event, uint64_t count) {
      auto& c = self->state.counters;
      switch (static_cast<diag_event>(event)) {
        case diag_event::received:
          c.set_messages_received(c.messages_received() + count);
          break;
        case diag_event::sent:
          c.set_messages_sent(c.messages_sent() + count);
          break;
        case diag_event::finished:
          c.set_calls_finished(c.calls_finished() + count);
          break;
        case diag_event::cancelled:
          c.set_calls_cancelled(c.calls_cancelled() + count);
          break;
      }
    },
  };
}

} // namespace

caf::actor spawn_diagnostics_service(caf::actor_system& system) {
  // Note for zero-argument spawns: CAF 0.17 binds a reference to a null argument tuple
  // then (UBSan reports it); every actor here takes at least one argument.
  return system.spawn(diagnostics_service, default_max_delay_ms);
}

} // namespace chroom::actors
