#include "actors/registry.hpp"

#include "actors/allocation_messages.hpp"
#include "actors/atoms.hpp"
#include "actors/media_node.hpp"
#include "actors/proto_messages.hpp"
#include "actors/send_later.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <unordered_map>
#include <unordered_set>

namespace chroom::actors {

namespace {

using namespace transport;
using allocation::clock;
using allocation::node_event;
using allocation::table_error;
using chroom::admin::v1::NodeEvent;
using chroom::admin::v1::NodeInfo;

/// ListNodes pages: the default keeps a page far below the 4 MiB message limit.
constexpr uint32_t default_page_size = 1000;
constexpr uint32_t max_page_size = 5000;

/// Longest a command can take at a node actor: two attempts and some slack.
constexpr auto command_answer_timeout = std::chrono::seconds{30};

/// The one place table errors become gRPC statuses.
grpc_status status_of(table_error error, std::string_view node_id) {
  switch (error) {
    case table_error::none:
      return grpc_status::ok();
    case table_error::unknown_node:
      return make_status(grpc_code::not_found, "unknown node '" + std::string{node_id} + "'");
    case table_error::not_running:
      return make_status(grpc_code::failed_precondition,
                         "node '" + std::string{node_id} + "' is dead or gone");
    case table_error::unknown_reservation:
      return make_status(grpc_code::not_found, "unknown reservation");
    case table_error::no_capacity:
      return make_status(grpc_code::resource_exhausted,
                         "node '" + std::string{node_id} + "' has no room");
  }
  return make_status(grpc_code::internal, "unexpected registry error");
}

int64_t unix_ms(clock::time_point at, clock::time_point now) {
  auto system_now = std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           (system_now - (now - at)).time_since_epoch())
    .count();
}

NodeEvent to_proto(const node_event& event, clock::time_point now) {
  NodeEvent out;
  out.set_node_id(event.node_id);
  out.set_state(event.state);
  out.set_previous_state(event.previous_state);
  out.set_at_unix_ms(unix_ms(event.at, now));
  for (const auto& room : event.lost_rooms)
    out.add_lost_room_ids(room);
  out.set_reason(event.reason);
  return out;
}

struct registry_state {
  allocation::node_table table;
  registry_settings settings;
  /// The media node actor of each live session.
  std::unordered_map<uint64_t, caf::actor> sessions;
  /// Which session a media node actor serves (for down messages).
  std::unordered_map<caf::actor_addr, std::pair<std::string, uint64_t>> session_of;
  std::vector<caf::actor> subscribers;
  /// Nodes whose Drain command is unanswered: a gone node's stream waits for it.
  std::unordered_set<std::string> drain_in_flight;
  uint64_t next_session = 1;
  /// Where clients of unknown location go (region_centre is O(nodes): cached a while).
  std::optional<allocation::geo_point> fallback_point;
  clock::time_point fallback_computed_at;
};

using registry_actor = caf::stateful_actor<registry_state>;

void end_session(registry_actor* self, uint64_t session, grpc_status status) {
  auto it = self->state.sessions.find(session);
  if (it == self->state.sessions.end())
    return;
  self->send(it->second, node_end_atom::value, std::move(status));
  self->state.session_of.erase(it->second.address());
  self->state.sessions.erase(it);
}

void publish(registry_actor* self, std::vector<node_event>& events, clock::time_point now) {
  auto& st = self->state;
  for (auto& event : events) {
    spdlog::info("registry: node {} {} -> {} ({}){}", event.node_id,
                 chroom::admin::v1::NodeState_Name(event.previous_state),
                 chroom::admin::v1::NodeState_Name(event.state), event.reason,
                 event.lost_rooms.empty()
                   ? std::string{}
                   : ", rooms lost: " + std::to_string(event.lost_rooms.size()));
    if (const auto* record = st.table.find(event.node_id); record && record->connected) {
      // A frozen node may still hold its stream: end it, the node must re-register. A
      // drained node is done: its stream ends cleanly.
      if (event.state == chroom::admin::v1::NODE_STATE_DEAD)
        end_session(self, record->session,
                    make_status(grpc_code::unavailable, "declared dead: " + event.reason));
      else if (event.state == chroom::admin::v1::NODE_STATE_GONE &&
               st.drain_in_flight.count(event.node_id) == 0)
        end_session(self, record->session, make_status(grpc_code::ok, "gone: " + event.reason));
    }
    auto message = to_proto(event, now);
    for (const auto& subscriber : st.subscribers)
      self->send(subscriber, node_event_atom::value, message);
  }
  events.clear();
}

/// A Drain was answered (or given up on): a node that is gone meanwhile is let go.
void drain_answered(registry_actor* self, const std::string& node_id, uint64_t session) {
  auto& st = self->state;
  st.drain_in_flight.erase(node_id);
  const auto* record = st.table.find(node_id);
  if (record == nullptr || record->session != session || !record->connected)
    return;
  if (record->state == chroom::admin::v1::NODE_STATE_GONE)
    end_session(self, session, make_status(grpc_code::ok, "gone: drained"));
}

/// How long the fallback point (centre of the fallback region) is reused.
constexpr auto fallback_refresh = std::chrono::seconds{5};

std::optional<allocation::geo_point> fallback_point(registry_actor* self, clock::time_point now) {
  auto& st = self->state;
  if (!st.fallback_point || now - st.fallback_computed_at > fallback_refresh) {
    st.fallback_point = allocation::region_centre(st.table, st.settings.fallback_region);
    if (!st.fallback_point && !st.settings.fallback_region.empty()) // the region has no node
      st.fallback_point = allocation::region_centre(st.table, {});
    st.fallback_computed_at = now;
  }
  return st.fallback_point;
}

/// A client the allocation service could not locate is placed at the fallback point.
void locate_at_fallback(registry_actor* self, place_query& query, clock::time_point now) {
  if (!query.at_fallback)
    return;
  if (auto point = fallback_point(self, now))
    query.request.client = *point;
}

chroom::allocation::v1::RttSource to_proto(allocation::rtt_source source) {
  switch (source) {
    case allocation::rtt_source::probe:
      return chroom::allocation::v1::RTT_SOURCE_PROBE;
    case allocation::rtt_source::node_matrix:
      return chroom::allocation::v1::RTT_SOURCE_NODE_MATRIX;
    case allocation::rtt_source::distance:
      return chroom::allocation::v1::RTT_SOURCE_DISTANCE;
  }
  return chroom::allocation::v1::RTT_SOURCE_UNSPECIFIED;
}

chroom::allocation::v1::NodeChoice choice_of(const allocation::node_record& record,
                                             const allocation::scored_node& scored) {
  chroom::allocation::v1::NodeChoice choice;
  choice.set_node_id(record.node_id);
  *choice.mutable_endpoints() = record.registration.endpoints();
  choice.set_region(record.registration.location().region());
  choice.set_country(record.registration.location().country());
  choice.set_estimated_rtt_ms(scored.rtt_ms);
  choice.set_rtt_source(to_proto(scored.source));
  return choice;
}

caf::actor node_actor_of(registry_actor* self, const allocation::node_record& record) {
  if (!record.connected)
    return {};
  auto it = self->state.sessions.find(record.session);
  return it == self->state.sessions.end() ? caf::actor{} : it->second;
}

/// Places and reserves one query of a batch; updates `room` as the placement changes it.
place_answer place_one(registry_actor* self, place_query& query, allocation::room_view& room,
                       const std::string& node_room_id, clock::time_point now) {
  auto& st = self->state;
  place_answer answer;
  answer.result =
    allocation::place(st.table, query.request, room, st.settings.placement, query.alternates);
  if (!answer.result.ok())
    return answer;
  const auto& chosen_id = answer.result.chosen.node_id;
  table_error error = table_error::none;
  answer.reservation_id = st.table.reserve(chosen_id, query.request.participants,
                                           st.settings.reservation_ttl, now, error);
  if (error != table_error::none) { // place() checked the room: a bug if it happens
    answer.result.failure = allocation::placement_failure::capacity;
    answer.result.reason = status_of(error, chosen_id).message;
    return answer;
  }
  const auto* record = st.table.find(chosen_id);
  answer.chosen = choice_of(*record, answer.result.chosen);
  answer.node_actor = node_actor_of(self, *record);
  answer.chosen_location = {record->registration.location().latitude(),
                            record->registration.location().longitude()};
  for (const auto& alternate : answer.result.alternates)
    if (const auto* other = st.table.find(alternate.node_id))
      answer.alternates.push_back(choice_of(*other, alternate));
  auto part = std::find_if(room.parts.begin(), room.parts.end(),
                           [&](const auto& p) { return p.node_id == chosen_id; });
  if (part == room.parts.end()) {
    room.parts.push_back({chosen_id, query.request.participants});
    st.table.add_room(chosen_id, node_room_id);
  } else {
    part->participants += query.request.participants;
  }
  return answer;
}

caf::result<grpc_status, NodeInfo> node_answer(registry_actor* self, table_error error,
                                               const std::string& node_id) {
  if (error != table_error::none)
    return {status_of(error, node_id), NodeInfo{}};
  const auto* record = self->state.table.find(node_id);
  if (record == nullptr) // a drain without rooms made it gone and it may have been forgotten
    return {grpc_status::ok(), NodeInfo{}};
  return {grpc_status::ok(), allocation::node_table::to_info(*record, clock::now())};
}

caf::behavior registry(registry_actor* self, registry_settings settings) {
  auto& st = self->state;
  st.settings = settings;
  st.table = allocation::node_table{settings.rules};
  send_later(self, settings.sweep_interval, sweep_atom::value);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.subscribers.erase(
      std::remove_if(st.subscribers.begin(), st.subscribers.end(),
                     [&](const caf::actor& a) { return a.address() == msg.source; }),
      st.subscribers.end());
    auto it = st.session_of.find(msg.source);
    if (it == st.session_of.end())
      return;
    auto [node_id, session] = it->second;
    st.session_of.erase(it);
    st.sessions.erase(session);
    auto now = clock::now();
    auto events = st.table.on_stream_closed(node_id, session, now);
    publish(self, events, now);
  });
  return {
    [self](node_register_atom, const chroom::medianode::v1::Register& registration,
           const caf::actor& media_node) -> node_admission {
      auto& st = self->state;
      auto now = clock::now();
      auto session = st.next_session++;
      auto result = st.table.on_register(registration, session, now);
      node_admission answer;
      if (result.result == allocation::register_result::outcome::table_full) {
        answer.refusal =
          make_status(grpc_code::resource_exhausted, "this peer accepts at most " +
                                                       std::to_string(st.settings.rules.max_nodes) +
                                                       " nodes; connect to another peer");
        return answer;
      }
      if (result.replaced_session)
        end_session(self, *result.replaced_session,
                    make_status(grpc_code::aborted, "replaced by a newer stream of this node"));
      st.sessions[session] = media_node;
      st.session_of[media_node.address()] = {registration.node_id(), session};
      self->monitor(media_node);
      publish(self, result.events, now);
      answer.accepted = true;
      answer.session = session;
      answer.close_rooms = std::move(result.close_rooms);
      return answer;
    },
    [self](node_stats_atom, const std::string& node_id, uint64_t session,
           const chroom::medianode::v1::Stats& stats) {
      auto now = clock::now();
      auto events = self->state.table.on_stats(node_id, session, stats, now);
      publish(self, events, now);
    },
    [self](node_closed_atom, const std::string& node_id, uint64_t session) {
      auto& st = self->state;
      if (auto it = st.sessions.find(session); it != st.sessions.end()) {
        st.session_of.erase(it->second.address());
        st.sessions.erase(it);
      }
      auto now = clock::now();
      auto events = st.table.on_stream_closed(node_id, session, now);
      publish(self, events, now);
    },
    [self](node_report_atom, const std::string& node_id,
           const chroom::medianode::v1::Event& event) {
      // The allocation engine (issue 4) acts on these; until then they are logged.
      spdlog::debug("registry: node {} reports {}", node_id, event.ShortDebugString());
    },
    [self](sweep_atom) {
      auto& st = self->state;
      auto now = clock::now();
      auto events = st.table.sweep(now);
      publish(self, events, now);
      send_later(self, st.settings.sweep_interval, sweep_atom::value);
    },
    [self](list_nodes_atom, const chroom::admin::v1::ListNodesRequest& request) {
      // Pages are ranges of node ids: the token is the last id of the previous page, so a
      // page stays correct while nodes come and go between calls.
      chroom::admin::v1::ListNodesResponse response;
      auto now = clock::now();
      auto page_size =
        request.page_size() == 0 ? default_page_size : std::min(request.page_size(), max_page_size);
      const auto& nodes = self->state.table.nodes();
      uint32_t total = 0;
      for (const auto& [id, record] : nodes) {
        if (!request.region().empty() &&
            record.registration.location().region() != request.region())
          continue;
        if (request.states_size() > 0 && std::find(request.states().begin(), request.states().end(),
                                                   record.state) == request.states().end())
          continue;
        ++total;
        if (id <= request.page_token() && !request.page_token().empty())
          continue;
        if (static_cast<uint32_t>(response.nodes_size()) < page_size)
          *response.add_nodes() = allocation::node_table::to_info(record, now);
        else if (response.next_page_token().empty())
          response.set_next_page_token(response.nodes(response.nodes_size() - 1).node_id());
      }
      response.set_total_size(total);
      return response;
    },
    [self](get_node_atom, const std::string& node_id) -> caf::result<grpc_status, NodeInfo> {
      auto error = self->state.table.find(node_id) ? table_error::none : table_error::unknown_node;
      return node_answer(self, error, node_id);
    },
    [self](drain_atom, const std::string& node_id,
           uint32_t deadline_ms) -> caf::result<grpc_status, NodeInfo> {
      auto& st = self->state;
      auto now = clock::now();
      auto deadline = deadline_ms == 0 ? st.settings.rules.drain_deadline
                                       : std::chrono::milliseconds{deadline_ms};
      std::vector<node_event> events;
      auto error = st.table.drain(node_id, deadline, now, events);
      const auto* record = st.table.find(node_id);
      auto session =
        record && record->connected ? st.sessions.find(record->session) : st.sessions.end();
      if (error == table_error::none && session != st.sessions.end()) {
        // The node hears of the drain before its stream ends (a node without rooms is
        // gone at once): the stream ends when the node has answered, or given up on.
        chroom::medianode::v1::Command command;
        command.mutable_drain()->set_deadline_ms(static_cast<uint32_t>(deadline.count()));
        st.drain_in_flight.insert(node_id);
        auto node_session = record->session;
        self
          ->request(session->second, command_answer_timeout, node_command_atom::value,
                    std::move(command))
          .then(
            [self, node_id, node_session](const command_outcome& outcome) {
              if (!outcome.acked)
                spdlog::warn("registry: node {} did not take Drain: {}", node_id,
                             outcome.status.message);
              drain_answered(self, node_id, node_session);
            },
            [self, node_id, node_session](caf::error&) {
              spdlog::warn("registry: node {} did not answer Drain", node_id);
              drain_answered(self, node_id, node_session);
            });
      }
      publish(self, events, now);
      return node_answer(self, error, node_id);
    },
    [self](cordon_atom, const std::string& node_id) -> caf::result<grpc_status, NodeInfo> {
      auto now = clock::now();
      std::vector<node_event> events;
      auto error = self->state.table.cordon(node_id, now, events);
      publish(self, events, now);
      return node_answer(self, error, node_id);
    },
    [self](uncordon_atom, const std::string& node_id) -> caf::result<grpc_status, NodeInfo> {
      auto now = clock::now();
      std::vector<node_event> events;
      auto error = self->state.table.uncordon(node_id, now, events);
      publish(self, events, now);
      return node_answer(self, error, node_id);
    },
    [self](alloc_place_atom, place_batch& batch) {
      auto& st = self->state;
      auto now = clock::now();
      place_batch_answer out;
      for (const auto& part : batch.room.parts)
        if (const auto* record = st.table.find(part.node_id);
            record && record->state == chroom::admin::v1::NODE_STATE_DRAINING)
          out.draining_parts.push_back(part.node_id);
      out.answers.reserve(batch.queries.size());
      for (auto& query : batch.queries) {
        locate_at_fallback(self, query, now);
        out.answers.push_back(place_one(self, query, batch.room, batch.node_room_id, now));
      }
      return out;
    },
    [self](alloc_confirm_atom, const std::string& node_id, uint64_t reservation_id) {
      self->state.table.confirm(node_id, reservation_id, clock::now());
    },
    [self](alloc_release_atom, const std::string& node_id, uint64_t reservation_id) {
      self->state.table.release(node_id, reservation_id);
    },
    [self](room_closed_atom, const std::string& node_id, const std::string& node_room_id) {
      auto now = clock::now();
      std::vector<node_event> events;
      self->state.table.remove_room(node_id, node_room_id, now, events);
      publish(self, events, now);
    },
    [self](candidates_atom, candidates_query& query) {
      auto& st = self->state;
      auto now = clock::now();
      candidates_answer answer;
      locate_at_fallback(self, query.query, now);
      for (const auto& scored : allocation::nearest_candidates(st.table, query.query.request,
                                                               st.settings.placement, query.count))
        answer.candidates.push_back(choice_of(*st.table.find(scored.node_id), scored));
      return answer;
    },
    [self](subscribe_atom, const caf::actor& subscriber) {
      auto& st = self->state;
      st.subscribers.push_back(subscriber);
      self->monitor(subscriber);
      auto now = clock::now();
      for (const auto& [id, record] : st.table.nodes()) {
        node_event current{id, record.state, record.previous_state, now, {}, "current state"};
        self->send(subscriber, node_event_atom::value, to_proto(current, now));
      }
    },
    [self](node_command_atom, const std::string& node_id,
           chroom::medianode::v1::Command& command) -> caf::result<caf::message> {
      // Answered by the node's actor (command_outcome), or here when it has none.
      const auto* record = self->state.table.find(node_id);
      auto it = record && record->connected ? self->state.sessions.find(record->session)
                                            : self->state.sessions.end();
      if (it == self->state.sessions.end())
        return caf::make_message(command_outcome{
          false, make_status(grpc_code::unavailable, "node '" + node_id + "' is not connected")});
      return self->delegate(it->second, node_command_atom::value, std::move(command));
    },
  };
}

} // namespace

caf::actor spawn_registry(caf::actor_system& system, registry_settings settings) {
  return system.spawn(registry, std::move(settings));
}

} // namespace chroom::actors
