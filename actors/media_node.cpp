#include "actors/media_node.hpp"

#include "actors/atoms.hpp"
#include "actors/proto_messages.hpp"
#include "actors/registry.hpp"
#include "actors/send_later.hpp"
#include "allocation/node_messages.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <deque>
#include <unordered_map>

namespace chroom::actors {

namespace {

using namespace transport;
using chroom::medianode::v1::Command;
using chroom::medianode::v1::NodeMessage;
using chroom::medianode::v1::OrchestratorMessage;

/// Messages waiting for the node to read (flow-control credit). A node that lets this
/// many pile up does not read its stream; it is disconnected rather than buffered.
constexpr size_t max_outbox = 1024;

/// Commands in flight at once per node.
constexpr size_t max_pending_commands = 4096;

enum class phase { awaiting_register, registering, registered, ended };

struct pending_command {
  Command command;
  caf::response_promise promise;
  int attempts = 1;
  /// When the current attempt times out.
  std::chrono::steady_clock::time_point due;
};

struct media_node_state {
  call_stream stream;
  caf::actor registry;
  std::shared_ptr<const media_node_settings> settings;
  phase current = phase::awaiting_register;
  std::string node_id;
  uint64_t session = 0;
  uint64_t next_command_id = 1;
  std::unordered_map<uint64_t, pending_command> pending;
  /// One timer covers every pending command (a timer per command costs CAF's clock a
  /// lock and a tree insert each, at tens of thousands of commands a second).
  bool command_timer_armed = false;
  std::deque<OrchestratorMessage> outbox;
};

using media_node_actor = caf::stateful_actor<media_node_state>;

void fail_pending(media_node_actor* self, const grpc_status& status) {
  for (auto& [id, command] : self->state.pending)
    command.promise.deliver(command_outcome{false, status});
  self->state.pending.clear();
}

/// Ends the session: status to the node, registry told, pending commands failed.
void end(media_node_actor* self, grpc_status status, bool tell_registry = true) {
  auto& st = self->state;
  if (st.current == phase::ended)
    return;
  if (status.code != grpc_code::ok)
    spdlog::info("media node {}: session ends: {} {}",
                 st.node_id.empty() ? st.stream.context().peer : st.node_id, to_string(status.code),
                 status.message);
  if (tell_registry && st.current == phase::registered)
    self->send(st.registry, node_closed_atom::value, st.node_id, st.session);
  st.current = phase::ended;
  fail_pending(self, make_status(grpc_code::unavailable, "the node's stream ended"));
  st.stream.end(self, std::move(status));
  self->quit();
}

void send_to_node(media_node_actor* self, OrchestratorMessage message) {
  auto& st = self->state;
  if (st.outbox.empty() && st.stream.send(self, message))
    return;
  if (st.outbox.size() >= max_outbox) {
    end(self, make_status(grpc_code::resource_exhausted, "the node does not read its stream (" +
                                                           std::to_string(max_outbox) +
                                                           " messages waiting)"));
    return;
  }
  st.outbox.push_back(std::move(message));
}

void drain_outbox(media_node_actor* self) {
  auto& st = self->state;
  while (!st.outbox.empty() && st.stream.send(self, st.outbox.front()))
    st.outbox.pop_front();
}

void arm_command_timer(media_node_actor* self, std::chrono::steady_clock::duration delay) {
  auto& st = self->state;
  if (st.command_timer_armed)
    return;
  st.command_timer_armed = true;
  send_later(self,
             std::chrono::duration_cast<std::chrono::microseconds>(delay) +
               std::chrono::milliseconds{1},
             tick_atom::value);
}

/// Sends `command` (again); the timer is armed unless the caller arms it afterwards.
void send_command(media_node_actor* self, const Command& command, bool arm_timer = true) {
  auto& st = self->state;
  OrchestratorMessage message;
  *message.mutable_command() = command;
  send_to_node(self, std::move(message));
  st.pending[command.command_id()].due =
    std::chrono::steady_clock::now() + st.settings->command_timeout;
  if (arm_timer)
    arm_command_timer(self, st.settings->command_timeout);
}

/// Commands whose attempt timed out are sent once more, then given up.
void on_command_timer(media_node_actor* self) {
  auto& st = self->state;
  st.command_timer_armed = false;
  auto now = std::chrono::steady_clock::now();
  std::vector<uint64_t> late;
  for (const auto& [id, command] : st.pending)
    if (command.due <= now)
      late.push_back(id);
  for (auto id : late) {
    auto it = st.pending.find(id);
    if (it->second.attempts == 1) {
      ++it->second.attempts;
      send_command(self, it->second.command, false);
      continue;
    }
    it->second.promise.deliver(command_outcome{
      false, make_status(grpc_code::unavailable, "node " + st.node_id + " did not answer command " +
                                                   std::to_string(id) + " (sent twice)")});
    st.pending.erase(it);
  }
  if (st.pending.empty())
    return;
  auto next = std::chrono::steady_clock::time_point::max();
  for (const auto& [id, command] : st.pending)
    next = std::min(next, command.due);
  arm_command_timer(self, std::max(next - now, std::chrono::steady_clock::duration::zero()));
}

void on_register(media_node_actor* self, const chroom::medianode::v1::Register& registration) {
  auto& st = self->state;
  if (auto problem = allocation::validate_register(registration); !problem.empty()) {
    end(self, make_status(grpc_code::invalid_argument, "Register: " + problem));
    return;
  }
  auto version = allocation::parse_protocol_version(registration.protocol_version());
  if (!version) {
    end(self, make_status(grpc_code::invalid_argument, "Register: protocol_version '" +
                                                         registration.protocol_version() +
                                                         "' is not major.minor"));
    return;
  }
  if (version->major != allocation::protocol_major) {
    end(self, make_status(grpc_code::failed_precondition,
                          "Register: protocol version " + registration.protocol_version() +
                            " is not supported; this orchestrator speaks " +
                            std::string{allocation::protocol_version}));
    return;
  }
  if (!st.settings->credentials->verify(registration.node_id(), registration.credential())) {
    spdlog::warn("media node {} from {}: bad credential", registration.node_id(),
                 st.stream.context().peer);
    end(self, make_status(grpc_code::unauthenticated,
                          st.settings->credentials->knows(registration.node_id())
                            ? "wrong credential for node '" + registration.node_id() + "'"
                            : "unknown node '" + registration.node_id() + "'"));
    return;
  }
  st.node_id = registration.node_id();
  st.current = phase::registering;
  self
    ->request(st.registry, std::chrono::seconds{10}, node_register_atom::value, registration,
              caf::actor_cast<caf::actor>(self))
    .then(
      [self](node_admission& admission) {
        auto& st = self->state;
        if (st.current != phase::registering) {
          // The stream ended while the registry decided: undo the registration.
          if (admission.accepted)
            self->send(st.registry, node_closed_atom::value, st.node_id, admission.session);
          return;
        }
        if (!admission.accepted) {
          end(self, std::move(admission.refusal));
          return;
        }
        st.session = admission.session;
        st.current = phase::registered;
        OrchestratorMessage message;
        auto& registered = *message.mutable_registered();
        registered.set_protocol_version(std::string{allocation::protocol_version});
        registered.set_stats_interval_ms(
          static_cast<uint32_t>(st.settings->stats_interval.count()));
        registered.set_suspect_after_ms(static_cast<uint32_t>(st.settings->suspect_after.count()));
        registered.set_dead_after_ms(static_cast<uint32_t>(st.settings->dead_after.count()));
        registered.set_peer_id(st.settings->peer_id);
        for (auto& room : admission.close_rooms)
          registered.add_close_rooms(std::move(room));
        send_to_node(self, std::move(message));
        spdlog::debug("media node {} registered from {} (session {})", st.node_id,
                      st.stream.context().peer, st.session);
      },
      [self](caf::error& err) {
        end(self, make_status(grpc_code::unavailable,
                              "registry did not answer: " + self->system().render(err)));
      });
}

void on_reply(media_node_actor* self, uint64_t command_id, bool acked,
              chroom::medianode::v1::Nack::Reason reason, const std::string& why) {
  auto& st = self->state;
  auto it = st.pending.find(command_id);
  if (it == st.pending.end()) {
    // Late (after a retry was answered) or invented: harmless, but worth a trace.
    spdlog::warn("media node {}: {} for unknown command {}", st.node_id, acked ? "Ack" : "Nack",
                 command_id);
    return;
  }
  if (acked) {
    it->second.promise.deliver(command_outcome{true, grpc_status::ok()});
  } else {
    it->second.promise.deliver(command_outcome{
      false, make_status(grpc_code::failed_precondition,
                         "node " + st.node_id +
                           " refused: " + chroom::medianode::v1::Nack::Reason_Name(reason) +
                           (why.empty() ? "" : " (" + why + ")"))});
  }
  st.pending.erase(it);
}

void on_message(media_node_actor* self, const std::string& bytes) {
  auto& st = self->state;
  NodeMessage message;
  if (!message.ParseFromString(bytes)) {
    end(self, make_status(grpc_code::invalid_argument, "not a chroom.medianode.v1.NodeMessage"));
    return;
  }
  switch (st.current) {
    case phase::awaiting_register:
      if (!message.has_register_()) {
        end(self, make_status(grpc_code::invalid_argument,
                              "the first message of a stream must be Register"));
        return;
      }
      on_register(self, message.register_());
      return;
    case phase::registering:
      if (message.has_register_())
        end(self, make_status(grpc_code::invalid_argument, "Register sent twice"));
      // Stats sent before Registered arrived are dropped: the next ones count.
      return;
    case phase::ended:
      return;
    case phase::registered:
      break;
  }
  switch (message.message_case()) {
    case NodeMessage::kRegister:
      end(self, make_status(grpc_code::invalid_argument, "Register sent twice"));
      return;
    case NodeMessage::kStats:
      if (auto problem = allocation::validate_stats(message.stats()); !problem.empty()) {
        end(self, make_status(grpc_code::invalid_argument, "Stats: " + problem));
        return;
      }
      self->send(st.registry, node_stats_atom::value, st.node_id, st.session,
                 std::move(*message.mutable_stats()));
      return;
    case NodeMessage::kAck:
      on_reply(self, message.ack().command_id(), true, {}, {});
      return;
    case NodeMessage::kNack:
      on_reply(self, message.nack().command_id(), false, message.nack().reason(),
               message.nack().message());
      return;
    case NodeMessage::kEvent:
      self->send(st.registry, node_report_atom::value, st.node_id,
                 std::move(*message.mutable_event()));
      return;
    case NodeMessage::MESSAGE_NOT_SET:
      end(self, make_status(grpc_code::invalid_argument, "empty NodeMessage"));
      return;
  }
}

caf::behavior media_node(media_node_actor* self, call_context context, caf::actor registry,
                         std::shared_ptr<const media_node_settings> settings) {
  auto& st = self->state;
  st.stream = call_stream{std::move(context)};
  st.registry = std::move(registry);
  st.settings = std::move(settings);
  self->monitor(st.stream.context().gateway);
  self->set_down_handler(
    [self](caf::down_msg&) { end(self, make_status(grpc_code::unavailable, "connection lost")); });
  send_later(self, st.settings->register_timeout, timeout_atom::value);
  return {
    [self](call_data_atom, int32_t, const std::string& bytes) {
      self->state.stream.ack(self, bytes.size());
      on_message(self, bytes);
    },
    [self](call_close_atom, int32_t) {
      // The node half-closed: it is leaving. Finish the call; the registry sees the
      // stream close (suspect, then dead unless the node comes back).
      end(self, grpc_status::ok());
    },
    [self](call_credit_atom, int32_t, uint32_t credit) {
      self->state.stream.add_credit(credit);
      drain_outbox(self);
    },
    [self](call_cancel_atom, int32_t) {
      end(self, make_status(grpc_code::cancelled, "stream cancelled"));
    },
    [self](node_end_atom, grpc_status& status) {
      // The registry ended this session (replaced, or declared dead): it knows already.
      end(self, std::move(status), false);
    },
    [self](node_command_atom, Command& command) -> caf::result<command_outcome> {
      auto& st = self->state;
      if (st.current != phase::registered)
        return command_outcome{false, make_status(grpc_code::unavailable, "node not registered")};
      if (st.pending.size() >= max_pending_commands)
        return command_outcome{
          false, make_status(grpc_code::resource_exhausted, "too many commands in flight")};
      command.set_command_id(st.next_command_id++);
      command.set_deadline_ms(static_cast<uint32_t>(st.settings->command_timeout.count()));
      auto& pending = st.pending[command.command_id()];
      pending.command = command;
      pending.promise = self->make_response_promise();
      auto promise = pending.promise;
      send_command(self, command);
      return promise;
    },
    [self](timeout_atom) {
      auto& st = self->state;
      if (st.current == phase::awaiting_register)
        end(self, make_status(grpc_code::deadline_exceeded,
                              "no Register within " +
                                std::to_string(st.settings->register_timeout.count()) + " ms"));
    },
    [self](tick_atom) { on_command_timer(self); },
  };
}

// --- the service -------------------------------------------------------------------------

struct media_node_service_state {
  caf::actor registry;
  std::shared_ptr<const media_node_settings> settings;
};

using media_node_service_actor = caf::stateful_actor<media_node_service_state>;

caf::behavior media_node_service(media_node_service_actor* self, caf::actor registry,
                                 std::shared_ptr<const media_node_settings> settings) {
  self->state.registry = std::move(registry);
  self->state.settings = std::move(settings);
  return {
    [self](call_open_atom, const call_context& call) -> caf::actor {
      return self->spawn(media_node, call, self->state.registry, self->state.settings);
    },
    [self](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch)
        replies.fail(call.context, make_status(grpc_code::unimplemented, "not a unary method"));
    },
  };
}

} // namespace

caf::actor spawn_media_node_service(caf::actor_system& system, caf::actor registry,
                                    std::shared_ptr<const media_node_settings> settings) {
  return system.spawn(media_node_service, std::move(registry), std::move(settings));
}

} // namespace chroom::actors
