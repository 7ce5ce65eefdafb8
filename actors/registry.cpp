#include "actors/registry.hpp"

#include "chroom/apps/v1/usage.pb.h"
#include "common/unix_time.hpp"

#include "actors/allocation_messages.hpp"
#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/exception_log.hpp"
#include "actors/fleet_summary.hpp"
#include "actors/media_node.hpp"
#include "actors/proto_messages.hpp"
#include "actors/room.hpp"
#include "actors/send_later.hpp"
#include "chroom/cluster/v1/cluster.pb.h"
#include "observability/metrics.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <set>
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
namespace cv1 = chroom::cluster::v1;

/// ListNodes pages: the default keeps a page far below the 4 MiB message limit.
constexpr uint32_t default_page_size = 1000;
constexpr uint32_t max_page_size = 5000;

/// How often a peer asks another for all its nodes when it hears of streams it never saw
/// register.
constexpr auto snapshot_ask_interval = std::chrono::seconds{1};

/// How long placements wait for the nodes of a peer that just joined the view.
constexpr auto snapshot_wait = std::chrono::seconds{2};

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

/// A node stream at another peer, as this registry's table sees it (a session of its own).
struct remote_stream {
  std::string home_peer_id;
  /// The stream's session id at its home.
  uint64_t home_session = 0;
  caf::actor home_registry;
};

struct registry_state {
  allocation::node_table table;
  registry_settings settings;
  /// Streams of nodes homed at other peers, by the local session id standing for them.
  std::unordered_map<uint64_t, remote_stream> remote;
  /// (home peer, home session) -> local session id.
  std::map<std::pair<std::string, uint64_t>, uint64_t> remote_session_of;
  /// When each node's current stream registered, Unix milliseconds (local or remote).
  std::unordered_map<std::string, int64_t> registered_at;
  /// The other peers' registries.
  std::vector<std::pair<std::string, caf::actor>> peers;
  /// What the other peers have not been told yet; a node's Stats appear once (the latest).
  cv1::NodeUpdates pending;
  std::unordered_map<std::string, int> pending_stats;
  /// Peers that joined the view and whose nodes have not arrived yet: placements wait for
  /// them (until sync_until), a peer that just started must not find its table empty.
  std::set<std::string> awaiting_snapshot;
  clock::time_point sync_until;
  /// A peer with seeds waits for the cluster's nodes once, at start (startup_sync).
  bool synced_once = true;
  clock::time_point startup_sync_until;
  std::vector<std::pair<caf::response_promise, place_batch>> deferred_places;
  std::vector<std::pair<caf::response_promise, candidates_query>> deferred_candidates;
  /// When this peer last asked each home peer for all its nodes.
  std::unordered_map<std::string, clock::time_point> snapshot_asked;
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
  /// A fleet summary is scheduled (the table changed since the last one).
  bool fleet_summary_due = false;
  /// The summary last logged: an unchanged one (a node suspect and back) is not repeated.
  std::string last_fleet_summary;
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

/// NODE_STATE_DEAD -> "dead", the metrics' label (as /metrics' chroom_nodes writes states).
std::string node_state_label(chroom::admin::v1::NodeState state) {
  constexpr std::string_view prefix = "NODE_STATE_";
  auto label = chroom::admin::v1::NodeState_Name(state);
  if (label.starts_with(prefix))
    label.erase(0, prefix.size());
  std::transform(label.begin(), label.end(), label.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return label;
}

void publish(registry_actor* self, std::vector<node_event>& events, clock::time_point now) {
  auto& st = self->state;
  for (auto& event : events) {
    // A line per node and change is for debugging: at info, 300 nodes starting would bury
    // everything else (the fleet summary says what a person needs). A death stays a
    // warning of its own.
    spdlog::log(event.state == chroom::admin::v1::NODE_STATE_DEAD ? spdlog::level::warn
                                                                  : spdlog::level::debug,
                "registry: node {} {} -> {} ({}){}", event.node_id,
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
    observability::metrics().node_state_changes(node_state_label(event.state)).Increment();
    auto message = to_proto(event, now);
    for (const auto& subscriber : st.subscribers)
      self->send(subscriber, node_event_atom::value, message);
  }
  if (!events.empty() && !st.fleet_summary_due) {
    st.fleet_summary_due = true;
    send_later(self, fleet_summary_interval, fleet_summary_atom::value);
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

bool clustered(const registry_state& st) {
  return !st.peers.empty();
}

void flush_updates(registry_actor* self);

/// Registrations, stream ends, room changes and operator actions go to the other peers at
/// once (with the Stats queued so far, to keep the order); Stats wait for the interval.
void queue_registration(registry_actor* self, const chroom::medianode::v1::Register& registration,
                        uint64_t session, int64_t registered_unix_ms) {
  auto& st = self->state;
  if (!clustered(st))
    return;
  auto* update = st.pending.add_updates();
  update->set_node_id(registration.node_id());
  update->set_session(session);
  *update->mutable_registration() = registration;
  update->set_registered_unix_ms(registered_unix_ms);
  flush_updates(self);
}

void queue_stats(registry_actor* self, const std::string& node_id, uint64_t session,
                 const chroom::medianode::v1::Stats& stats) {
  auto& st = self->state;
  if (!clustered(st))
    return;
  if (auto it = st.pending_stats.find(node_id); it != st.pending_stats.end()) {
    auto* update = st.pending.mutable_updates(it->second);
    if (update->session() == session) {
      *update->mutable_stats() = stats;
      return;
    }
  }
  st.pending_stats[node_id] = st.pending.updates_size();
  auto* update = st.pending.add_updates();
  update->set_node_id(node_id);
  update->set_session(session);
  *update->mutable_stats() = stats;
}

void queue_closed(registry_actor* self, const std::string& node_id, uint64_t session) {
  auto& st = self->state;
  if (!clustered(st))
    return;
  auto* update = st.pending.add_updates();
  update->set_node_id(node_id);
  update->set_session(session);
  update->set_stream_closed(true);
  flush_updates(self);
}

void queue_operator_action(registry_actor* self, const std::string& node_id,
                           cv1::OperatorAction::Kind kind, uint32_t drain_deadline_ms = 0) {
  auto& st = self->state;
  const auto* record = st.table.find(node_id);
  if (!clustered(st) || record == nullptr)
    return;
  auto* update = st.pending.add_updates();
  update->set_node_id(node_id);
  update->set_session(record->session);
  update->mutable_operator_action()->set_kind(kind);
  update->mutable_operator_action()->set_drain_deadline_ms(drain_deadline_ms);
  flush_updates(self);
}

/// The home registry of a node connected to another peer; null for a node connected here
/// (or unknown).
caf::actor remote_home_of(const registry_state& st, const std::string& node_id) {
  const auto* record = st.table.find(node_id);
  if (record == nullptr || !record->connected)
    return {};
  auto it = st.remote.find(record->session);
  return it == st.remote.end() ? caf::actor{} : it->second.home_registry;
}

void queue_room_change(registry_actor* self, const std::string& node_id,
                       const std::string& node_room_id, bool added) {
  auto& st = self->state;
  if (!clustered(st))
    return;
  auto* change = st.pending.add_room_changes();
  change->set_node_id(node_id);
  change->set_node_room_id(node_room_id);
  change->set_added(added);
  flush_updates(self);
}

void flush_updates(registry_actor* self) {
  auto& st = self->state;
  if (st.pending.updates_size() == 0 && st.pending.room_changes_size() == 0)
    return;
  st.pending.set_home_peer_id(st.settings.peer_id);
  std::string bytes;
  st.pending.SerializeToString(&bytes);
  for (const auto& [peer_id, registry] : st.peers)
    self->send(registry, node_updates_atom::value, bytes);
  st.pending.Clear();
  st.pending_stats.clear();
}

/// Everything this peer knows that a peer that just joined does not: its own nodes
/// (registration and latest Stats) and the rooms on every node.
std::string snapshot_for_newcomer(registry_actor* self) {
  auto& st = self->state;
  cv1::NodeUpdates all;
  all.set_home_peer_id(st.settings.peer_id);
  for (const auto& [id, record] : st.table.nodes()) {
    for (const auto& room : record.rooms) {
      auto* change = all.add_room_changes();
      change->set_node_id(id);
      change->set_node_room_id(room);
      change->set_added(true);
    }
    if (!record.connected || st.remote.contains(record.session) ||
        record.state == chroom::admin::v1::NODE_STATE_DEAD ||
        record.state == chroom::admin::v1::NODE_STATE_GONE)
      continue;
    auto* update = all.add_updates();
    update->set_node_id(id);
    update->set_session(record.session);
    // With the rooms it hosts now, not those it registered with: the receiver reconciles
    // the node's rooms against this list.
    auto& registration = *update->mutable_registration();
    registration = record.registration;
    registration.clear_rooms();
    for (const auto& room : record.rooms)
      registration.add_rooms()->set_room_id(room);
    auto at = st.registered_at.find(id);
    update->set_registered_unix_ms(at == st.registered_at.end() ? 0 : at->second);
    if (record.has_stats) {
      auto* stats = all.add_updates();
      stats->set_node_id(id);
      stats->set_session(record.session);
      *stats->mutable_stats() = record.last_stats;
    }
  }
  std::string bytes;
  all.SerializeToString(&bytes);
  return bytes;
}

void forget_remote_session(registry_state& st, uint64_t session) {
  auto it = st.remote.find(session);
  if (it == st.remote.end())
    return;
  st.remote_session_of.erase({it->second.home_peer_id, it->second.home_session});
  st.remote.erase(it);
}

/// Cordons, uncordons or drains (any other kind) `node_id` in `table`.
table_error act_on_table(allocation::node_table& table, cv1::OperatorAction::Kind kind,
                         const std::string& node_id, std::chrono::milliseconds drain_deadline,
                         clock::time_point now, std::vector<node_event>& events) {
  switch (kind) {
    case cv1::OperatorAction::KIND_CORDON:
      return table.cordon(node_id, now, events);
    case cv1::OperatorAction::KIND_UNCORDON:
      return table.uncordon(node_id, now, events);
    default:
      return table.drain(node_id, drain_deadline, now, events);
  }
}

/// An operator's drain deadline: 0 means the configured one.
std::chrono::milliseconds drain_deadline_of(const registry_state& st, uint32_t deadline_ms) {
  return deadline_ms == 0 ? st.settings.rules.drain_deadline
                          : std::chrono::milliseconds{deadline_ms};
}

/// Applies what another peer's registry says about its nodes.
void apply_updates(registry_actor* self, const cv1::NodeUpdates& updates) {
  auto& st = self->state;
  const auto& home = updates.home_peer_id();
  caf::actor home_registry;
  for (const auto& [peer_id, registry] : st.peers)
    if (peer_id == home)
      home_registry = registry;
  auto now = clock::now();
  std::vector<node_event> events;
  bool missing_registration = false;
  for (const auto& update : updates.updates()) {
    const auto& node_id = update.node_id();
    auto known = st.remote_session_of.find({home, update.session()});
    if (update.has_registration()) {
      if (update.registration().node_id() != node_id)
        continue;
      auto at = st.registered_at.find(node_id);
      if (at != st.registered_at.end() && at->second > update.registered_unix_ms())
        continue; // the node registered somewhere since: this news is old
      uint64_t session = 0;
      if (known != st.remote_session_of.end()) {
        session = known->second;
      } else {
        session = st.next_session++;
        st.remote_session_of[{home, update.session()}] = session;
        st.remote[session] = {home, update.session(), home_registry};
      }
      auto result = st.table.on_register(update.registration(), session, now);
      if (result.result == allocation::register_result::outcome::table_full) {
        forget_remote_session(st, session);
        continue;
      }
      st.registered_at[node_id] = update.registered_unix_ms();
      if (result.replaced_session) {
        if (st.remote.contains(*result.replaced_session))
          forget_remote_session(st, *result.replaced_session);
        else // the node was connected here and has moved to `home`
          end_session(self, *result.replaced_session,
                      make_status(grpc_code::aborted, "the node connected to peer " + home));
      }
      // close_rooms are the home's to send; lost rooms are published like local ones.
      for (auto& event : result.events)
        events.push_back(std::move(event));
      continue;
    }
    if (known == st.remote_session_of.end()) {
      // A stream this peer never heard register (its registration was lost to a
      // partition, or dropped with its home's last view change): ask the home for all.
      missing_registration = true;
      continue;
    }
    if (update.has_stats()) {
      for (auto& event : st.table.on_stats(node_id, known->second, update.stats(), now))
        events.push_back(std::move(event));
    } else if (update.has_operator_action()) {
      const auto& action = update.operator_action();
      if (action.kind() != cv1::OperatorAction::KIND_UNSPECIFIED)
        act_on_table(st.table, action.kind(), node_id,
                     std::chrono::milliseconds{action.drain_deadline_ms()}, now, events);
    } else if (update.stream_closed()) {
      for (auto& event : st.table.on_stream_closed(node_id, known->second, now))
        events.push_back(std::move(event));
      forget_remote_session(st, known->second);
    }
  }
  if (missing_registration && home_registry) {
    auto& asked = st.snapshot_asked[home];
    if (now - asked > snapshot_ask_interval) {
      asked = now;
      self->send(home_registry, snapshot_atom::value);
    }
  }
  for (const auto& change : updates.room_changes()) {
    if (change.added())
      st.table.add_room(change.node_id(), change.node_room_id());
    else
      st.table.remove_room(change.node_id(), change.node_room_id(), now, events);
  }
  publish(self, events, now);
}

/// The peer a node's stream is connected to.
std::string home_of(const registry_state& st, const allocation::node_record& record) {
  if (auto it = st.remote.find(record.session); it != st.remote.end())
    return it->second.home_peer_id;
  return st.settings.peer_id;
}

NodeInfo info_of(const registry_state& st, const allocation::node_record& record,
                 clock::time_point now) {
  auto info = allocation::node_table::to_info(record, now);
  info.set_home_peer_id(home_of(st, record));
  return info;
}

caf::actor node_actor_of(registry_actor* self, const allocation::node_record& record) {
  if (!record.connected)
    return {};
  auto it = self->state.sessions.find(record.session);
  return it == self->state.sessions.end() ? caf::actor{} : it->second;
}

/// Places and reserves one query of a batch; updates `room` as the placement changes it.
/// The media bytes a node of this peer reported per room, added up per app (room ids on
/// nodes are "app/room") and counted as the apps' usage.
void meter_traffic(registry_actor* self, const chroom::medianode::v1::Stats& stats) {
  const auto& directory = self->state.settings.app_directory;
  if (stats.room_traffic().empty() || !directory)
    return;
  std::map<std::string_view, chroom::apps::v1::UsageCounters> by_app;
  for (const auto& traffic : stats.room_traffic()) {
    auto key = split_node_room_id(traffic.room_id());
    if (!key || key->first.empty())
      continue; // not a room the orchestrator made
    auto& counters = by_app[key->first];
    counters.set_bytes_in(counters.bytes_in() + traffic.bytes_in());
    counters.set_bytes_out(counters.bytes_out() + traffic.bytes_out());
  }
  for (const auto& [app_id, counters] : by_app)
    self->send(directory, usage_atom::value, std::string{app_id}, counters.SerializeAsString());
}

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
    uint32_t depth = 0;
    if (answer.result.relay_to)
      for (const auto& p : room.parts)
        if (p.node_id == *answer.result.relay_to)
          depth = p.depth + 1;
    room.parts.push_back({chosen_id, query.request.participants, depth});
    st.table.add_room(chosen_id, node_room_id);
    queue_room_change(self, chosen_id, node_room_id, true);
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
  return {grpc_status::ok(), info_of(self->state, *record, clock::now())};
}

/// Cordon, uncordon or drain at the node's home (this peer): the table changes, a drain
/// is sent to the node, the other peers hear of it.
table_error apply_operator(registry_actor* self, cv1::OperatorAction::Kind kind,
                           const std::string& node_id, uint32_t deadline_ms) {
  auto& st = self->state;
  auto now = clock::now();
  std::vector<node_event> events;
  auto deadline = drain_deadline_of(st, deadline_ms);
  auto error = act_on_table(st.table, kind, node_id, deadline, now, events);
  const auto* record = st.table.find(node_id);
  auto session =
    record && record->connected ? st.sessions.find(record->session) : st.sessions.end();
  if (kind == cv1::OperatorAction::KIND_DRAIN && error == table_error::none &&
      session != st.sessions.end()) {
    // The node hears of the drain before its stream ends (a node without rooms is gone at
    // once): the stream ends when the node has answered, or given up on.
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
  if (error == table_error::none)
    queue_operator_action(self, node_id, kind, static_cast<uint32_t>(deadline.count()));
  publish(self, events, now);
  return error;
}

/// An operator's cordon, uncordon or drain: done here for a node connected here, at its
/// home peer otherwise (which tells every peer); answers the node as this peer sees it.
caf::result<grpc_status, NodeInfo> operator_call(registry_actor* self,
                                                 cv1::OperatorAction::Kind kind,
                                                 const std::string& node_id, uint32_t deadline_ms) {
  auto home = remote_home_of(self->state, node_id);
  if (!home)
    return node_answer(self, apply_operator(self, kind, node_id, deadline_ms), node_id);
  auto promise = self->make_response_promise<grpc_status, NodeInfo>();
  self
    ->request(home, command_answer_timeout, cordon_atom::value, static_cast<int32_t>(kind), node_id,
              deadline_ms)
    .then(
      [self, promise, kind, node_id, deadline_ms](grpc_status& status) mutable {
        if (!status.is_ok()) {
          promise.deliver(std::move(status), NodeInfo{});
          return;
        }
        // The home's update follows; the answer shows the change already.
        auto now = clock::now();
        std::vector<node_event> events;
        auto& table = self->state.table;
        act_on_table(table, kind, node_id, drain_deadline_of(self->state, deadline_ms), now,
                     events);
        publish(self, events, now);
        const auto* record = table.find(node_id);
        promise.deliver(grpc_status::ok(),
                        record ? info_of(self->state, *record, now) : NodeInfo{});
      },
      [promise, node_id](caf::error&) mutable {
        promise.deliver(make_status(grpc_code::unavailable, "the peer node '" + node_id +
                                                              "' is connected to did not answer"),
                        NodeInfo{});
      });
  return promise;
}

place_batch_answer place_now(registry_actor* self, place_batch& batch) {
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
}

candidates_answer candidates_now(registry_actor* self, candidates_query& query) {
  auto& st = self->state;
  candidates_answer answer;
  locate_at_fallback(self, query.query, clock::now());
  for (const auto& scored : allocation::nearest_candidates(st.table, query.query.request,
                                                           st.settings.placement, query.count)) {
    answer.candidates.push_back(choice_of(*st.table.find(scored.node_id), scored));
    answer.load_after.push_back(scored.load_after);
  }
  return answer;
}

/// True while placements wait for the nodes of peers that just joined.
bool syncing(registry_state& st) {
  auto now = clock::now();
  if (!st.synced_once) {
    if (now >= st.startup_sync_until)
      st.synced_once = true; // nobody answered: this peer places on what it has
    else if (st.peers.empty() || !st.awaiting_snapshot.empty())
      return true; // not met the cluster yet, or its nodes are on their way
    else if (std::none_of(st.table.nodes().begin(), st.table.nodes().end(),
                          [](const auto& entry) { return entry.second.accepts_work(); }))
      return true; // the peers met so far have no node (they moved to a peer not met yet)
    else
      st.synced_once = true;
  }
  return !st.awaiting_snapshot.empty() && now < st.sync_until;
}

void place_deferred(registry_actor* self) {
  auto& st = self->state;
  if (syncing(st))
    return;
  st.awaiting_snapshot.clear();
  auto places = std::move(st.deferred_places);
  auto candidates = std::move(st.deferred_candidates);
  for (auto& [promise, batch] : places)
    promise.deliver(place_now(self, batch));
  for (auto& [promise, query] : candidates)
    promise.deliver(candidates_now(self, query));
}

caf::behavior registry(registry_actor* self, registry_settings settings) {
  log_exceptions(self, "registry");
  auto& st = self->state;
  st.settings = settings;
  if (settings.startup_sync.count() > 0) {
    st.synced_once = false;
    st.startup_sync_until = clock::now() + settings.startup_sync;
  }
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
    queue_closed(self, node_id, session);
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
      if (result.replaced_session) {
        if (st.remote.contains(*result.replaced_session))
          forget_remote_session(st, *result.replaced_session); // it moved here
        else
          end_session(self, *result.replaced_session,
                      make_status(grpc_code::aborted, "replaced by a newer stream of this node"));
      }
      auto registered = unix_ms_now();
      st.registered_at[registration.node_id()] = registered;
      queue_registration(self, registration, session, registered);
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
      meter_traffic(self, stats);
      queue_stats(self, node_id, session, stats);
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
      queue_closed(self, node_id, session);
      publish(self, events, now);
    },
    [self](node_report_atom, const std::string& node_id,
           const chroom::medianode::v1::Event& event) {
      // The allocation engine (issue 4) acts on these; until then they are logged.
      spdlog::debug("registry: node {} reports {}", node_id, event.ShortDebugString());
    },
    [self](fleet_summary_atom) {
      auto& st = self->state;
      st.fleet_summary_due = false;
      auto summary = fleet_summary(st.table);
      if (summary != st.last_fleet_summary)
        spdlog::info("fleet: {}", summary);
      st.last_fleet_summary = std::move(summary);
    },
    [self](sweep_atom) {
      auto& st = self->state;
      auto now = clock::now();
      auto events = st.table.sweep(now);
      publish(self, events, now);
      if (!st.deferred_places.empty() || !st.deferred_candidates.empty())
        place_deferred(self);
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
          *response.add_nodes() = info_of(self->state, record, now);
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
    [self](drain_atom, const std::string& node_id, uint32_t deadline_ms) {
      return operator_call(self, cv1::OperatorAction::KIND_DRAIN, node_id, deadline_ms);
    },
    [self](cordon_atom, const std::string& node_id) {
      return operator_call(self, cv1::OperatorAction::KIND_CORDON, node_id, 0);
    },
    [self](uncordon_atom, const std::string& node_id) {
      return operator_call(self, cv1::OperatorAction::KIND_UNCORDON, node_id, 0);
    },
    [self](cordon_atom, int32_t kind, const std::string& node_id, uint32_t deadline_ms) {
      // From a peer whose operator acted on a node connected here.
      return status_of(
        apply_operator(self, static_cast<cv1::OperatorAction::Kind>(kind), node_id, deadline_ms),
        node_id);
    },
    [self](alloc_place_atom, place_batch& batch) -> caf::result<place_batch_answer> {
      auto& st = self->state;
      if (syncing(st)) {
        st.deferred_places.emplace_back(self->make_response_promise(), std::move(batch));
        return st.deferred_places.back().first;
      }
      return place_now(self, batch);
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
      queue_room_change(self, node_id, node_room_id, false);
      publish(self, events, now);
    },
    [self](room_opened_atom, const std::string& node_id, const std::string& node_room_id) {
      self->state.table.add_room(node_id, node_room_id);
      queue_room_change(self, node_id, node_room_id, true);
    },
    [self](node_updates_atom, const std::string& bytes) {
      cv1::NodeUpdates updates;
      if (!updates.ParseFromString(bytes)) {
        spdlog::warn("registry: malformed node updates from {}",
                     caf::to_string(self->current_sender()));
        return;
      }
      apply_updates(self, updates);
      if (self->state.awaiting_snapshot.erase(updates.home_peer_id()) > 0)
        place_deferred(self);
    },
    [self](snapshot_atom) {
      // Another peer missed registrations of nodes connected here.
      self->send(caf::actor_cast<caf::actor>(self->current_sender()), node_updates_atom::value,
                 snapshot_for_newcomer(self));
    },
    [self](flush_updates_atom) {
      flush_updates(self);
      if (clustered(self->state))
        send_later(self, self->state.settings.update_interval, flush_updates_atom::value);
    },
    [self](cluster_view_atom, const cluster_view& view) {
      auto& st = self->state;
      bool was_clustered = clustered(st);
      std::vector<std::pair<std::string, caf::actor>> peers;
      std::string snapshot;
      for (const auto& peer : view.live) {
        if (peer.peer_id == view.self_id || !peer.registry)
          continue;
        peers.emplace_back(peer.peer_id, peer.registry);
        bool known = std::any_of(st.peers.begin(), st.peers.end(),
                                 [&](const auto& p) { return p.second == peer.registry; });
        if (!known) {
          if (snapshot.empty())
            snapshot = snapshot_for_newcomer(self);
          self->send(peer.registry, node_updates_atom::value, snapshot);
          st.awaiting_snapshot.insert(peer.peer_id);
          st.sync_until = clock::now() + snapshot_wait;
        }
      }
      st.peers = std::move(peers);
      // Nodes homed at a peer that is gone (dead, left, across a partition) cannot be
      // commanded from here: their streams count as lost at once, so nothing is placed on
      // them; they come back when they register elsewhere or their home is back.
      auto now = clock::now();
      std::vector<node_event> lost;
      std::vector<uint64_t> orphaned;
      for (const auto& [session, stream] : st.remote)
        if (std::none_of(st.peers.begin(), st.peers.end(),
                         [&](const auto& p) { return p.first == stream.home_peer_id; }))
          orphaned.push_back(session);
      for (auto session : orphaned) {
        for (const auto& [id, record] : st.table.nodes())
          if (record.session == session && record.connected) {
            for (auto& event : st.table.on_stream_closed(id, session, now))
              lost.push_back(std::move(event));
            break;
          }
        forget_remote_session(st, session);
      }
      publish(self, lost, now);
      std::erase_if(st.awaiting_snapshot, [&](const std::string& peer_id) {
        return std::none_of(st.peers.begin(), st.peers.end(),
                            [&](const auto& p) { return p.first == peer_id; });
      });
      place_deferred(self);
      for (auto& [session, stream] : st.remote)
        for (const auto& [peer_id, registry] : st.peers)
          if (peer_id == stream.home_peer_id)
            stream.home_registry = registry;
      if (!was_clustered && clustered(st))
        send_later(self, st.settings.update_interval, flush_updates_atom::value);
    },
    [self](candidates_atom, candidates_query& query) -> caf::result<candidates_answer> {
      auto& st = self->state;
      if (syncing(st)) {
        st.deferred_candidates.emplace_back(self->make_response_promise(), std::move(query));
        return st.deferred_candidates.back().first;
      }
      return candidates_now(self, query);
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
      auto& st = self->state;
      const auto* record = st.table.find(node_id);
      if (record && record->connected) {
        if (auto remote = st.remote.find(record->session); remote != st.remote.end()) {
          if (!remote->second.home_registry)
            return caf::make_message(command_outcome{
              false, make_status(grpc_code::unavailable,
                                 "node '" + node_id + "' is homed at peer " +
                                   remote->second.home_peer_id + ", which is unreachable")});
          return self->delegate(remote->second.home_registry, node_command_atom::value, node_id,
                                command.SerializeAsString());
        }
      }
      auto it = record && record->connected ? self->state.sessions.find(record->session)
                                            : self->state.sessions.end();
      if (it == self->state.sessions.end())
        return caf::make_message(command_outcome{
          false, make_status(grpc_code::unavailable, "node '" + node_id + "' is not connected")});
      return self->delegate(it->second, node_command_atom::value, std::move(command));
    },
    [self](node_command_atom, const std::string& node_id,
           const std::string& bytes) -> caf::result<caf::message> {
      // A command from a room on another peer to a node connected here.
      chroom::medianode::v1::Command command;
      if (!command.ParseFromString(bytes))
        return caf::make_message(
          command_outcome{false, make_status(grpc_code::invalid_argument, "malformed Command")});
      const auto* record = self->state.table.find(node_id);
      auto it = record && record->connected ? self->state.sessions.find(record->session)
                                            : self->state.sessions.end();
      if (it == self->state.sessions.end())
        return caf::make_message(
          command_outcome{false, make_status(grpc_code::unavailable,
                                             "node '" + node_id + "' is not connected to peer " +
                                               self->state.settings.peer_id)});
      return self->delegate(it->second, node_command_atom::value, std::move(command));
    },
  };
}

} // namespace

caf::actor spawn_registry(caf::actor_system& system, registry_settings settings) {
  return system.spawn(registry, std::move(settings));
}

} // namespace chroom::actors
