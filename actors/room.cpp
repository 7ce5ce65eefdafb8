#include "actors/room.hpp"

#include "actors/allocation_messages.hpp"
#include "actors/allocation_metrics.hpp"
#include "actors/app_policy.hpp"
#include "actors/atoms.hpp"
#include "actors/client_session.hpp"
#include "actors/exception_log.hpp"
#include "actors/media_node.hpp"
#include "actors/send_later.hpp"
#include "allocation/cascade.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/apps/v1/usage.pb.h"
#include "cluster/room_state.hpp"
#include "common/unix_time.hpp"
#include "observability/metrics.hpp"
#include "transport/status_details.hpp"

#include <caf/all.hpp>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <map>
#include <optional>
#include <set>

namespace chroom::actors {

namespace {

using namespace transport;
namespace adm = chroom::admin::v1;
namespace av1 = chroom::allocation::v1;
namespace mn = chroom::medianode::v1;
namespace cv1 = chroom::cluster::v1;

// Requests to the registry and to node actors have no timeout of their own: the registry
// always answers, a node actor answers every command within two command timeouts, and an
// actor that dies fails the request at once. (A timer per request costs CAF's clock a lock
// and a tree insert, at tens of thousands of allocations a second.)
/// Joins sent to the registry in one batch.
constexpr size_t max_batch = 256;
/// A participant refused by this many nodes in a row loses its lease.
constexpr int max_refusals = 2;
/// GetRoom and RoomUpdate list at most this many members.
constexpr size_t max_listed_members = 1000;
/// How long an idle room waits for the service to let it go (it stays, and asks again
/// after idle_linger, when no answer comes).
constexpr auto idle_answer_timeout = std::chrono::seconds{5};

struct member {
  lease_holder holder;
  /// The client's request (replicated; a peer taking over builds `query` from it).
  av1::AllocateRequest request;
  place_query query;
  uint32_t expected_kbps = 0;
  std::string node_id;
  /// The node as the client was told (endpoints, RTT estimate).
  av1::NodeChoice choice;
  /// Its join token for that node (sent to the node in AdmitParticipant, to the client in
  /// the answer).
  signed_join_token token;
  uint64_t reservation_id = 0;
  bool admitted = false;
  int refusals = 0;
  caf::actor session;
};

struct part {
  std::string node_id;
  uint32_t participants = 0;
  bool ready = false;
  caf::actor node_actor;
  mn::Endpoint endpoint;
  std::string region;
  allocation::geo_point location;
  /// The node's secret: join tokens for it are signed with it.
  std::string secret;
};

/// Where the answer to a join goes: the allocation_request that asked (apps with a
/// before_allocation hook), or the client's gateway (the service handed the call over).
struct join_answer {
  caf::response_promise promise;
  std::optional<direct_allocation> direct;
};

/// One entry of a batch: a join (with the caller waiting) or a member to move.
struct batch_item {
  bool is_join = false;
  allocation_ask ask;
  join_answer answer;
  std::string client_id; // a move
  std::string reason;    // a move: why
  /// A move an operator asked for (MigrateRoom): only to this node when set, and a
  /// member that cannot move stays where it is.
  bool migration = false;
  std::string to_node_id;
};

/// A MigrateRoom in progress: answered once each of its moves was decided.
struct migration_state {
  caf::response_promise promise;
  size_t pending = 0;
  /// Nodes the movers leave (avoided by every batch of the migration).
  std::set<std::string> leaving;
  std::vector<av1::Move> moves;
  std::string failure;
};

struct room_state {
  std::string app_id;
  std::string room_id;
  std::string node_room_id;
  std::shared_ptr<const room_settings> settings;
  std::map<std::string, member> members;
  std::vector<part> parts;
  allocation::relay_tree relays;
  std::vector<caf::actor> watchers;
  std::vector<batch_item> queue;
  /// Nodes to avoid in the next batch (they refused or failed a command).
  std::set<std::string> avoid;
  bool in_flight = false;
  int64_t created_unix_ms = 0;
  uint64_t idle_generation = 0;

  // Replication (docs/cluster.md).
  /// The allocation services of the peers holding replicas.
  std::vector<caf::actor> replicas;
  /// This peer run's name in versions.
  std::string writer;
  /// The room's version (only its version entries are used).
  cv1::RoomState version;
  /// Changes made, and the last change every replica acknowledged.
  uint64_t changes = 0;
  uint64_t replicated = 0;
  bool replicating = false;
  /// Answers held until the replicas have the change they report.
  struct held_answer {
    uint64_t change;
    join_answer to;
    allocation_reply reply;
  };
  std::vector<held_answer> held;
  std::optional<migration_state> migration;
  /// Set when the room is to move to another peer (after the batch in flight).
  caf::actor handoff_to;
  bool handing_off = false;
  /// Calls the service handed over (direct_allocation): it lets an idle room go only once
  /// the room has seen every call it sent.
  uint64_t direct_asks = 0;
};

using room_actor = caf::stateful_actor<room_state>;

/// Answers a join: its allocation_request, or its client's gateway through `replies`.
void answer_join(room_actor* self, unary_replies& replies, join_answer& to,
                 allocation_reply reply) {
  if (reply.status.is_ok())
    reply.headers = owner_hint(self->state.settings->owner_address);
  if (!to.direct) {
    to.promise.deliver(std::move(reply));
    return;
  }
  const auto& direct = *to.direct;
  count_allocation(direct.call, self->state.app_id, reply.status.code, direct.started);
  if (reply.status.is_ok())
    replies.reply(direct.call, reply.response, std::move(reply.headers));
  else
    replies.fail(direct.call, std::move(reply.status));
}

std::string new_lease_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw std::runtime_error("RAND_bytes failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (auto byte : bytes) {
    out.push_back(hex[byte >> 4]);
    out.push_back(hex[byte & 0xF]);
  }
  return out;
}

part* find_part(room_state& st, std::string_view node_id) {
  for (auto& p : st.parts)
    if (p.node_id == node_id)
      return &p;
  return nullptr;
}

/// Node-to-node RTT for mending the relay tree: the distance model (the measured matrix
/// lives in the registry; a mend is rare and any tree works, shorter links are better).
allocation::relay_tree::rtt_function part_distance(room_state& st) {
  return [&st](const std::string& a, const std::string& b) {
    const auto* x = find_part(st, a);
    const auto* y = find_part(st, b);
    if (x == nullptr || y == nullptr)
      return std::numeric_limits<double>::infinity();
    return allocation::estimated_rtt_ms(x->location, y->location);
  };
}

// --- node commands ------------------------------------------------------------------

/// Sends `command` to the node of `node_id` (its actor when known, else via the registry)
/// and calls `done(outcome)` with the answer.
template <class Done>
void command_node(room_actor* self, const std::string& node_id, const caf::actor& node_actor,
                  mn::Command command, Done done) {
  auto on_error = [done, node_id, self](caf::error& err) mutable {
    done(command_outcome{false, make_status(grpc_code::unavailable, "node " + node_id + ": " +
                                                                      self->system().render(err))});
  };
  if (node_actor)
    self->request(node_actor, caf::infinite, node_command_atom::value, std::move(command))
      .then(done, on_error);
  else
    self
      ->request(self->state.settings->registry, caf::infinite, node_command_atom::value, node_id,
                std::move(command))
      .then(done, on_error);
}

/// A command whose outcome only matters for the logs.
void tell_node(room_actor* self, const std::string& node_id, mn::Command command) {
  auto* p = find_part(self->state, node_id);
  auto what = command.command_case();
  command_node(self, node_id, p ? p->node_actor : caf::actor{}, std::move(command),
               [self, node_id, what](const command_outcome& outcome) {
                 if (!outcome.acked)
                   spdlog::debug("room {}: command {} to node {} failed: {}",
                                 self->state.node_room_id, static_cast<int>(what), node_id,
                                 outcome.status.message);
               });
}

/// Counts use of the app (usage metering).
void meter(const room_state& st, uint64_t rooms, uint64_t relay_links) {
  if (!st.settings->app_directory || (rooms == 0 && relay_links == 0))
    return;
  chroom::apps::v1::UsageCounters counters;
  counters.set_rooms(rooms);
  counters.set_relay_links(relay_links);
  caf::anon_send(st.settings->app_directory, usage_atom::value, st.app_id,
                 counters.SerializeAsString());
}

void attach_relays(room_actor* self, const allocation::relay_changes& changes) {
  auto& st = self->state;
  meter(st, 0, changes.attach.size());
  for (const auto& link : changes.detach) {
    for (const auto* end : {&link.a, &link.b}) {
      if (find_part(st, *end) == nullptr)
        continue; // a dead or closed part
      mn::Command command;
      auto* detach = command.mutable_detach_relay();
      detach->set_room_id(st.node_room_id);
      detach->set_peer_node_id(link.other(*end));
      tell_node(self, *end, std::move(command));
    }
  }
  for (const auto& link : changes.attach) {
    for (const auto* end : {&link.a, &link.b}) {
      const auto* peer = find_part(st, link.other(*end));
      if (find_part(st, *end) == nullptr || peer == nullptr)
        continue;
      mn::Command command;
      auto* attach = command.mutable_attach_relay();
      attach->set_room_id(st.node_room_id);
      attach->set_peer_node_id(peer->node_id);
      *attach->mutable_peer_endpoint() = peer->endpoint;
      tell_node(self, *end, std::move(command));
    }
  }
}

void remove_part(room_actor* self, std::string node_id, bool node_alive) {
  auto& st = self->state;
  std::erase_if(st.parts, [&](const part& p) { return p.node_id == node_id; });
  auto changes = st.relays.remove(node_id, part_distance(st));
  if (node_alive) {
    mn::Command command;
    command.mutable_close_room()->set_room_id(st.node_room_id);
    command.mutable_close_room()->set_reason("no participant left on this node");
    tell_node(self, node_id, std::move(command));
  }
  self->send(st.settings->registry, room_closed_atom::value, node_id, st.node_room_id);
  attach_relays(self, changes);
}

// --- views ----------------------------------------------------------------------------

av1::Room room_message(room_actor* self) {
  auto& st = self->state;
  av1::Room room;
  room.set_app_id(st.app_id);
  room.set_room_id(st.room_id);
  for (const auto& p : st.parts) {
    auto* node = room.add_nodes();
    node->set_node_id(p.node_id);
    node->set_participants(p.participants);
    node->set_region(p.region);
    node->set_ready(p.ready);
    for (auto& peer : st.relays.neighbours(p.node_id))
      node->add_relay_node_ids(std::move(peer));
  }
  room.set_participants(static_cast<uint32_t>(st.members.size()));
  room.set_created_unix_ms(st.created_unix_ms);
  for (const auto& [client_id, m] : st.members) {
    if (static_cast<size_t>(room.members_size()) >= max_listed_members)
      break;
    auto* listed = room.add_members();
    listed->set_client_id(client_id);
    listed->set_role(m.holder.role);
    listed->set_node_id(m.node_id);
    listed->set_admitted(m.admitted);
  }
  return room;
}

void publish(room_actor* self, const std::string& reason, std::vector<av1::Move> moves = {}) {
  auto& st = self->state;
  if (st.watchers.empty())
    return;
  av1::RoomUpdate update;
  *update.mutable_room() = room_message(self);
  update.set_reason(reason);
  for (auto& move : moves)
    *update.add_moves() = std::move(move);
  auto bytes = update.SerializeAsString();
  for (const auto& watcher : st.watchers)
    self->send(watcher, room_update_atom::value, bytes);
}

void check_idle(room_actor* self) {
  auto& st = self->state;
  if (st.members.empty() && st.watchers.empty() && st.queue.empty() && !st.in_flight)
    send_later(self, st.settings->idle_linger, room_idle_atom::value, ++st.idle_generation);
}

// --- replication ----------------------------------------------------------------------

cv1::RoomState snapshot(room_actor* self) {
  auto& st = self->state;
  cv1::RoomState out;
  out.set_app_id(st.app_id);
  out.set_room_id(st.room_id);
  *out.mutable_version() = st.version.version();
  out.set_created_unix_ms(st.created_unix_ms);
  for (const auto& p : st.parts) {
    auto* part = out.add_parts();
    part->set_node_id(p.node_id);
    *part->mutable_endpoint() = p.endpoint;
    part->set_region(p.region);
    part->set_latitude(p.location.latitude_deg);
    part->set_longitude(p.location.longitude_deg);
    part->set_ready(p.ready);
  }
  for (const auto& link : st.relays.links()) {
    auto* out_link = out.add_links();
    out_link->set_a(link.a);
    out_link->set_b(link.b);
  }
  for (const auto& [client_id, m] : st.members) {
    auto* member = out.add_members();
    member->set_client_id(client_id);
    member->set_role(m.holder.role);
    member->set_lease_id(m.holder.lease_id);
    member->set_node_id(m.node_id);
    *member->mutable_node() = m.choice;
    *member->mutable_request() = m.request;
    member->set_admitted(m.admitted);
  }
  return out;
}

void deliver_replicated(room_actor* self) {
  auto& st = self->state;
  auto done = std::stable_partition(st.held.begin(), st.held.end(),
                                    [&](const auto& held) { return held.change > st.replicated; });
  unary_replies replies{self};
  for (auto it = done; it != st.held.end(); ++it)
    answer_join(self, replies, it->to, std::move(it->reply));
  st.held.erase(done, st.held.end());
}

void replicate(room_actor* self);

/// The replicas have (or failed to take) every change up to `change`.
void replicated_up_to(room_actor* self, uint64_t change) {
  auto& st = self->state;
  st.replicating = false;
  st.replicated = std::max(st.replicated, change);
  deliver_replicated(self);
  if (st.changes > st.replicated)
    replicate(self);
}

/// Sends the room's state to its replicas; one round at a time, coalescing the changes
/// made meanwhile into the next.
void replicate(room_actor* self) {
  auto& st = self->state;
  if (st.replicas.empty()) {
    st.replicated = st.changes;
    deliver_replicated(self);
    return;
  }
  if (st.replicating || st.changes == st.replicated)
    return;
  st.replicating = true;
  auto change = st.changes;
  auto bytes = snapshot(self).SerializeAsString();
  auto outstanding = std::make_shared<size_t>(st.replicas.size());
  auto sent_at = std::chrono::steady_clock::now();
  for (const auto& replica : st.replicas) {
    auto one_done = [self, outstanding, change, sent_at] {
      if (--*outstanding != 0)
        return;
      observability::metrics().replication_seconds.Observe(observability::seconds_since(sent_at));
      replicated_up_to(self, change);
    };
    self
      ->request(replica, st.settings->replication_timeout, replicate_atom::value, st.node_room_id,
                bytes)
      .then([one_done](bool) { one_done(); },
            [self, one_done](caf::error& err) {
              // A replica that is gone is the membership's news; the change stands.
              spdlog::warn("room {}: a replica did not take a change: {}", self->state.node_room_id,
                           self->system().render(err));
              one_done();
            });
  }
}

/// Counts a change of the room's state (in its version too, replicas or not: a room run
/// alone in a partition must look as changed as it is when the sides merge) and
/// replicates it.
void changed(room_actor* self) {
  auto& st = self->state;
  ++st.changes;
  if (st.writer.empty()) // before the service named this peer run: still one writer
    st.writer = "room/" + std::to_string(self->id());
  cluster::count_change(st.version, st.writer);
  replicate(self);
}

// --- placing ------------------------------------------------------------------------

void pump(room_actor* self);
void hand_off(room_actor* self);

void admit(room_actor* self, const std::string& client_id);

/// The member's part loses it; an emptied part closes (the room shrinks back).
void leave_part(room_actor* self, member& m, bool tell_node_remove, const std::string& reason) {
  auto& st = self->state;
  auto* p = find_part(st, m.node_id);
  if (m.reservation_id != 0)
    self->send(st.settings->registry, alloc_release_atom::value, m.node_id, m.reservation_id);
  m.reservation_id = 0;
  if (p == nullptr)
    return;
  if (tell_node_remove) {
    mn::Command command;
    auto* remove = command.mutable_remove_participant();
    remove->set_room_id(st.node_room_id);
    remove->set_participant_id(m.holder.client_id);
    remove->set_reason(reason);
    tell_node(self, m.node_id, std::move(command));
  }
  if (p->participants > 0)
    --p->participants;
  if (p->participants == 0)
    remove_part(self, p->node_id, true);
}

/// Adds the part a placement created: PrepareRoom, then relays to the nearest part.
void add_part(room_actor* self, const place_answer& answer) {
  auto& st = self->state;
  const auto& node_id = answer.chosen.node_id();
  part fresh;
  fresh.node_id = node_id;
  fresh.node_actor = answer.node_actor;
  if (answer.chosen.endpoints_size() > 0)
    fresh.endpoint = answer.chosen.endpoints(0);
  fresh.region = answer.chosen.region();
  fresh.location = answer.chosen_location;
  fresh.secret = st.settings->credentials->secret_of(node_id);
  st.parts.push_back(std::move(fresh));
  mn::Command command;
  auto* prepare = command.mutable_prepare_room();
  prepare->set_room_id(st.node_room_id);
  prepare->set_app_id(st.app_id);
  prepare->set_expected_participants(1);
  command_node(self, node_id, answer.node_actor, std::move(command),
               [self, node_id](const command_outcome& outcome) {
                 if (auto* p = find_part(self->state, node_id); p && outcome.acked)
                   p->ready = true;
               });
  // Placement ran while the room went on: the part it chose to relay to may be gone.
  auto link_to = answer.result.relay_to.value_or(std::string{});
  attach_relays(self, st.relays.add(node_id, link_to, part_distance(st)));
}

/// Puts `m` on the node of `answer` (a new part when needed) and admits it there.
void seat(room_actor* self, member& m, const place_answer& answer) {
  auto& st = self->state;
  if (find_part(st, answer.chosen.node_id()) == nullptr)
    add_part(self, answer);
  auto* p = find_part(st, answer.chosen.node_id());
  p->participants += 1;
  m.node_id = answer.chosen.node_id();
  m.token = join_token_for(*st.settings, m.holder, m.node_id, p->secret);
  m.choice = answer.chosen;
  m.reservation_id = answer.reservation_id;
  m.admitted = false;
  admit(self, m.holder.client_id);
}

void admit(room_actor* self, const std::string& client_id) {
  auto& st = self->state;
  auto& m = st.members.at(client_id);
  auto* p = find_part(st, m.node_id);
  mn::Command command;
  auto* admit = command.mutable_admit_participant();
  admit->set_room_id(st.node_room_id);
  admit->set_participant_id(client_id);
  admit->set_role(m.holder.role);
  admit->set_join_token(m.token.token);
  admit->set_expected_kbps(m.expected_kbps);
  auto node_id = m.node_id;
  auto reservation = m.reservation_id;
  command_node(
    self, node_id, p ? p->node_actor : caf::actor{}, std::move(command),
    [self, client_id, node_id, reservation](const command_outcome& outcome) {
      auto& st = self->state;
      auto it = st.members.find(client_id);
      bool current = it != st.members.end() && it->second.node_id == node_id &&
                     it->second.reservation_id == reservation;
      if (outcome.acked) {
        if (!current)
          return;
        self->send(st.settings->registry, alloc_confirm_atom::value, node_id, reservation);
        it->second.admitted = true;
        it->second.refusals = 0;
        return;
      }
      if (!current) {
        self->send(st.settings->registry, alloc_release_atom::value, node_id, reservation);
        return;
      }
      spdlog::info("room {}: node {} did not admit {}: {}", st.node_room_id, node_id, client_id,
                   outcome.status.message);
      auto& m = it->second;
      st.avoid.insert(node_id);
      if (++m.refusals > max_refusals) {
        leave_part(self, m, false, "refused");
        self->send(m.session, lease_end_atom::value, std::string{"no node admitted the client"});
        st.members.erase(it);
        publish(self, "refused");
        check_idle(self);
        return;
      }
      batch_item move;
      move.client_id = client_id;
      move.reason = "node refused";
      st.queue.push_back(std::move(move));
      pump(self);
    });
}

/// The answer telling `m` where it is placed, with `token` for its node.
allocation_reply lease_reply(room_actor* self, const member& m, const signed_join_token& token) {
  auto& st = self->state;
  allocation_reply reply;
  auto& response = reply.response;
  *response.mutable_node() = m.choice;
  response.set_join_token(token.token);
  response.set_join_token_expires_unix_ms(token.expires_unix_ms);
  response.set_lease_id(m.holder.lease_id);
  response.set_lease_ttl_ms(static_cast<uint32_t>(m.holder.ttl(*st.settings).count()));
  response.set_room_nodes(static_cast<uint32_t>(st.parts.size()));
  return reply;
}

/// The answer for a client that holds a lease already (a retried call): that lease, a
/// fresh token.
allocation_reply existing_lease(room_actor* self, const member& m) {
  auto& st = self->state;
  const auto* p = find_part(st, m.node_id);
  auto reply =
    lease_reply(self, m,
                join_token_for(*st.settings, m.holder, m.node_id,
                               p ? p->secret : st.settings->credentials->secret_of(m.node_id)));
  reply.response.add_warnings("client '" + m.holder.client_id +
                              "' already holds a lease in this room");
  return reply;
}

grpc_status failure_status(const allocation::placement_result& result) {
  return transport::with_error_info(
    make_status(grpc_code::resource_exhausted,
                "no media node can take the client: " + result.reason),
    "NO_NODE_AVAILABLE");
}

/// Tells the app's policy on this peer what happened (its hooks, webhook and audit log).
void emit(room_actor* self, std::string_view type, const std::string& client_id = {},
          const std::string& role = {}, const std::string& node_id = {},
          const std::string& reason = {}) {
  auto& st = self->state;
  auto policy = st.settings->policy_of ? st.settings->policy_of(st.app_id) : caf::actor{};
  if (!policy)
    return;
  static std::atomic<uint64_t> sequence{0};
  auto now = unix_ms_now();
  chroom::apps::v1::AppEvent event;
  event.set_event_id(st.settings->peer_id + "-" + std::to_string(now) + "-" +
                     std::to_string(sequence.fetch_add(1, std::memory_order_relaxed)));
  event.set_type(std::string{type});
  event.set_app_id(st.app_id);
  event.set_room_id(st.room_id);
  event.set_client_id(client_id);
  event.set_role(role);
  event.set_node_id(node_id);
  event.set_occurred_unix_ms(now);
  event.set_room_participants(static_cast<uint32_t>(st.members.size()));
  event.set_reason(reason);
  event.set_peer_id(st.settings->peer_id);
  self->send(policy, app_event_atom::value, std::move(event));
}

/// A participant's lease, with its app's rules for `role`: token claims and lease TTL.
lease_holder holder_of(const room_state& st, const std::string& client_id, const std::string& role,
                       std::string lease_id, uint32_t expected_kbps) {
  lease_holder holder;
  holder.app_id = st.app_id;
  holder.room_id = st.room_id;
  holder.client_id = client_id;
  holder.role = role;
  holder.lease_id = std::move(lease_id);
  auto app = st.settings->app_of ? st.settings->app_of(st.app_id) : nullptr;
  if (!app)
    return holder;
  if (const auto* rules = app->role(holder.role)) {
    std::string publish;
    for (const auto& kind : rules->publish)
      publish += (publish.empty() ? "" : " ") + kind;
    holder.publish = std::move(publish);
  }
  holder.recording = app->config.recording();
  const auto below = app->config.audio_only_below_kbps();
  if (below > 0 && expected_kbps > 0 && expected_kbps < below) {
    holder.tier = "audio_only";
    holder.publish =
      holder.publish && holder.publish->find("audio") != std::string::npos ? "audio" : "";
  }
  holder.lease_ttl = app->lease_ttl;
  return holder;
}

/// Why the room cannot take one more participant in `role` now (its app's max_room_size,
/// the role's max_per_room, host admission), or nothing.
std::optional<grpc_status> admission_refusal(const room_state& st, const std::string& role) {
  auto app = st.settings->app_of ? st.settings->app_of(st.app_id) : nullptr;
  if (!app)
    return std::nullopt;
  const auto& config = app->config;
  const std::string room = "room '" + st.room_id + "' of app '" + st.app_id + "'";
  // What a client program branches on: the reason, and the app's policy that refused.
  auto refused = [&](grpc_code code, std::string message, std::string reason, std::string policy) {
    return transport::with_error_info(
      make_status(code, std::move(message)), std::move(reason),
      {{"app_id", st.app_id}, {"room_id", st.room_id}, {"policy", std::move(policy)}});
  };
  if (config.max_room_size() > 0 && st.members.size() >= config.max_room_size())
    return refused(grpc_code::resource_exhausted,
                   room + " is full (max_room_size " + std::to_string(config.max_room_size()) + ")",
                   "ROOM_FULL", "max_room_size");
  size_t in_role = 0;
  bool host_present = false;
  for (const auto& [id, m] : st.members) {
    in_role += m.holder.role == role;
    host_present = host_present || m.holder.role == "host";
  }
  if (const auto* rules = app->role(role);
      rules != nullptr && rules->max_per_room > 0 && in_role >= rules->max_per_room)
    return refused(grpc_code::resource_exhausted,
                   room + " has " + std::to_string(in_role) + " " + role +
                     "(s) already, the most its app allows",
                   "ROLE_LIMIT_REACHED", "roles.max_per_room");
  if (config.admission() == "host" && role != "host" && !host_present)
    return refused(grpc_code::failed_precondition,
                   room + " admits participants only while a host is in it; try again "
                          "once the host has joined",
                   "HOST_NOT_PRESENT", "admission");
  return std::nullopt;
}

void join(room_actor* self, unary_replies& replies, batch_item& item, place_answer& answer) {
  auto& st = self->state;
  auto& ask = item.ask;
  if (auto it = st.members.find(ask.client_id); it != st.members.end()) {
    // The same client twice in one batch: the first placement stands.
    if (answer.result.ok())
      self->send(st.settings->registry, alloc_release_atom::value, answer.chosen.node_id(),
                 answer.reservation_id);
    answer_join(self, replies, item.answer, existing_lease(self, it->second));
    return;
  }
  if (!answer.result.ok()) {
    answer_join(self, replies, item.answer,
                allocation_reply::refused(failure_status(answer.result)));
    return;
  }
  // Again, exactly: the joins of one batch are seated in turn.
  if (auto refused = admission_refusal(st, ask.role)) {
    self->send(st.settings->registry, alloc_release_atom::value, answer.chosen.node_id(),
               answer.reservation_id);
    answer_join(self, replies, item.answer, allocation_reply::refused(std::move(*refused)));
    return;
  }
  member m;
  m.holder = holder_of(st, ask.client_id, ask.role, st.node_room_id + "/" + new_lease_id(),
                       ask.expected_kbps);
  m.request = std::move(ask.request);
  m.query = std::move(ask.query);
  m.expected_kbps = ask.expected_kbps;
  auto& seated = st.members.emplace(ask.client_id, std::move(m)).first->second;
  seat(self, seated, answer);
  seated.session = spawn_client_session(self, seated.holder, answer.chosen, st.settings);
  self->send(st.settings->service, lease_open_atom::value, seated.holder.lease_id, seated.session);
  if (st.members.size() == 1) {
    emit(self, "room.started");
    meter(st, 1, 0);
  }
  emit(self, "participant.joined", seated.holder.client_id, seated.holder.role, seated.node_id);

  auto reply = lease_reply(self, seated, seated.token);
  auto& response = reply.response;
  for (auto& alternate : answer.alternates)
    *response.add_alternates() = std::move(alternate);
  for (auto& warning : ask.warnings)
    response.add_warnings(std::move(warning));
  // The change is counted by the batch (on_batch): held until the replicas have it.
  self->state.held.push_back({st.changes + 1, std::move(item.answer), std::move(reply)});
}

void move(room_actor* self, batch_item& item, place_answer& answer, std::vector<av1::Move>& moves) {
  auto& st = self->state;
  auto it = st.members.find(item.client_id);
  if (it == st.members.end()) { // left while the batch was out
    if (answer.result.ok())
      self->send(st.settings->registry, alloc_release_atom::value, answer.chosen.node_id(),
                 answer.reservation_id);
    return;
  }
  auto& m = it->second;
  auto from = m.node_id;
  if (item.migration && !answer.result.ok()) {
    // An operator's move that cannot happen leaves the member where it is.
    st.migration->failure =
      "cannot move " + m.holder.client_id +
      (item.to_node_id.empty() ? std::string(": ") + answer.result.reason
                               : " to " + item.to_node_id +
                                   ": the node cannot take the participant (full, not active, "
                                   "or lacking what the app needs)");
    return;
  }
  if (!answer.result.ok()) {
    spdlog::warn("room {}: cannot move {} off {}: {}", st.node_room_id, m.holder.client_id, from,
                 answer.result.reason);
    leave_part(self, m, true, "no node left for the client");
    self->send(m.session, lease_end_atom::value, answer.result.reason);
    st.members.erase(it);
    return;
  }
  if (from != answer.chosen.node_id())
    leave_part(self, m, true, "moved");
  else if (m.reservation_id != 0) // placed again on the same node: keep one reservation
    self->send(st.settings->registry, alloc_release_atom::value, from, m.reservation_id);
  seat(self, m, answer);
  self->send(m.session, moved_atom::value, answer.chosen);
  av1::Move moved;
  moved.set_client_id(m.holder.client_id);
  moved.set_from_node_id(from);
  moved.set_to_node_id(m.node_id);
  observability::metrics().participant_moves(item.reason).Increment();
  if (item.migration)
    st.migration->moves.push_back(moved);
  moves.push_back(std::move(moved));
}

/// Members of parts that must empty (their node drains) are queued to move.
void queue_moves_off(room_actor* self, const std::vector<std::string>& nodes,
                     const std::string& reason) {
  auto& st = self->state;
  for (const auto& node_id : nodes) {
    st.avoid.insert(node_id);
    for (const auto& [client_id, m] : st.members) {
      if (m.node_id != node_id)
        continue;
      bool queued = std::any_of(st.queue.begin(), st.queue.end(), [&](const batch_item& item) {
        return !item.is_join && item.client_id == client_id;
      });
      if (!queued) {
        batch_item item;
        item.client_id = client_id;
        item.reason = reason;
        st.queue.push_back(std::move(item));
      }
    }
  }
}

/// Answers the MigrateRoom in progress once all its moves were decided: the room and the
/// moves, or FAILED_PRECONDITION when nobody could move.
void finish_migration(room_actor* self) {
  auto& st = self->state;
  if (!st.migration || st.migration->pending > 0)
    return;
  auto done = std::move(*st.migration);
  st.migration.reset();
  if (done.moves.empty()) {
    done.promise.deliver(
      make_status(grpc_code::failed_precondition,
                  done.failure.empty() ? std::string("nobody could move") : done.failure),
      std::string{});
    return;
  }
  adm::MigrateRoomResponse response;
  *response.mutable_room()->mutable_room() = room_message(self);
  for (auto& move : done.moves)
    *response.add_moves() = std::move(move);
  done.promise.deliver(grpc_status::ok(), response.SerializeAsString());
}

/// MigrateRoom: queues the moves of the members on `from_node_id` (all when empty) to
/// `to_node_id` (wherever placement puts them, off the nodes they leave, when empty).
caf::result<grpc_status, std::string>
start_migration(room_actor* self, const std::string& to_node_id, const std::string& from_node_id) {
  auto& st = self->state;
  auto refuse = [](grpc_code code, std::string message) {
    return caf::result<grpc_status, std::string>{make_status(code, std::move(message)),
                                                 std::string{}};
  };
  if (st.members.empty())
    return refuse(grpc_code::not_found,
                  "room '" + st.room_id + "' of app '" + st.app_id + "' has no participant");
  if (st.migration || st.handoff_to)
    return refuse(grpc_code::aborted, "the room is moving already; try again in a moment");
  if (!from_node_id.empty() && find_part(st, from_node_id) == nullptr)
    return refuse(grpc_code::not_found,
                  "room '" + st.room_id + "' has no participant on node '" + from_node_id + "'");
  if (!to_node_id.empty() && to_node_id == from_node_id)
    return refuse(grpc_code::invalid_argument, "to_node_id and from_node_id are the same node");
  migration_state migration;
  for (const auto& p : st.parts)
    if (p.node_id != to_node_id && (from_node_id.empty() || p.node_id == from_node_id))
      migration.leaving.insert(p.node_id);
  for (const auto& [client_id, m] : st.members) {
    if (migration.leaving.count(m.node_id) == 0)
      continue;
    std::erase_if(st.queue, [&](const batch_item& item) {
      return !item.is_join && item.client_id == client_id;
    });
    batch_item item;
    item.client_id = client_id;
    item.reason = "migrated";
    item.migration = true;
    item.to_node_id = to_node_id;
    st.queue.push_back(std::move(item));
    ++migration.pending;
  }
  if (migration.pending == 0)
    return refuse(grpc_code::failed_precondition,
                  "every participant is on node '" + to_node_id + "' already");
  spdlog::info("room {}: migrating {} participant(s){}{}", st.node_room_id, migration.pending,
               from_node_id.empty() ? std::string{} : " off " + from_node_id,
               to_node_id.empty() ? std::string{} : " to " + to_node_id);
  auto promise = self->make_response_promise<grpc_status, std::string>();
  migration.promise = promise;
  st.migration = std::move(migration);
  pump(self);
  return promise;
}

void on_batch(room_actor* self, std::vector<batch_item>& items, place_batch_answer& result) {
  auto& st = self->state;
  st.in_flight = false;
  auto members_before = st.members.size();
  std::vector<av1::Move> moves;
  bool joined = false;
  std::string move_reason;
  unary_replies replies{self};
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].is_join) {
      join(self, replies, items[i], result.answers[i]);
      joined = true;
    } else {
      move(self, items[i], result.answers[i], moves);
      move_reason = items[i].reason;
      if (items[i].migration && st.migration)
        --st.migration->pending;
    }
  }
  // Parts emptied by refusals or moves close once nobody is on them.
  std::vector<std::string> empty;
  for (const auto& p : st.parts)
    if (p.participants == 0)
      empty.push_back(p.node_id);
  for (const auto& node_id : empty)
    remove_part(self, node_id, true);
  if (!moves.empty() || (!joined && st.members.size() != members_before))
    publish(self, move_reason, std::move(moves)); // moved, or lost for want of a node
  else if (joined)
    publish(self, "joined");
  std::vector<std::string> draining;
  for (const auto& node_id : result.draining_parts)
    if (st.avoid.count(node_id) == 0)
      draining.push_back(node_id);
  queue_moves_off(self, draining, "node draining");
  changed(self);
  finish_migration(self);
  if (st.handoff_to) {
    hand_off(self);
    return;
  }
  pump(self);
  check_idle(self);
}

/// Relay hops of each part from the room's first part (breadth first over the links).
std::map<std::string, uint32_t> relay_depths(const room_state& st) {
  std::map<std::string, uint32_t> depth;
  if (st.parts.empty())
    return depth;
  std::vector<std::string> frontier{st.parts.front().node_id};
  depth[frontier.front()] = 0;
  while (!frontier.empty()) {
    std::vector<std::string> next;
    for (const auto& node : frontier)
      for (const auto& neighbour : st.relays.neighbours(node))
        if (depth.emplace(neighbour, depth[node] + 1).second)
          next.push_back(neighbour);
    frontier = std::move(next);
  }
  return depth;
}

void pump(room_actor* self) {
  auto& st = self->state;
  if (st.in_flight || st.queue.empty() || st.handoff_to)
    return;
  auto count = std::min(st.queue.size(), max_batch);
  std::vector<batch_item> items(std::make_move_iterator(st.queue.begin()),
                                std::make_move_iterator(st.queue.begin() + count));
  st.queue.erase(st.queue.begin(), st.queue.begin() + count);
  place_batch batch;
  batch.node_room_id = st.node_room_id;
  auto depths = relay_depths(st);
  for (const auto& p : st.parts)
    batch.room.parts.push_back({p.node_id, p.participants, depths[p.node_id]});
  if (st.migration)
    st.avoid.insert(st.migration->leaving.begin(), st.migration->leaving.end());
  batch.room.avoid.assign(st.avoid.begin(), st.avoid.end());
  st.avoid.clear();
  for (const auto& item : items) {
    if (item.is_join) {
      batch.queries.push_back(item.ask.query);
      continue;
    }
    // A move is a fresh placement of the member, without the room share it leaves.
    const auto& m = st.members.at(item.client_id);
    batch.queries.push_back(m.query);
    if (!item.to_node_id.empty())
      batch.queries.back().request.allowed_nodes = {item.to_node_id};
    for (auto& p : batch.room.parts)
      if (p.node_id == m.node_id && p.participants > 0)
        --p.participants;
  }
  st.in_flight = true;
  auto shared = std::make_shared<std::vector<batch_item>>(std::move(items));
  self->request(st.settings->registry, caf::infinite, alloc_place_atom::value, std::move(batch))
    .then([self, shared](place_batch_answer& result) { on_batch(self, *shared, result); },
          [self, shared](caf::error& err) {
            auto& st = self->state;
            st.in_flight = false;
            auto status =
              make_status(grpc_code::unavailable, "registry: " + self->system().render(err));
            unary_replies replies{self};
            for (auto& item : *shared)
              if (item.is_join)
                answer_join(self, replies, item.answer, allocation_reply::refused(status));
            spdlog::warn("room {}: placement failed: {}", st.node_room_id, status.message);
            pump(self);
            check_idle(self);
          });
}

/// A relay tree over `parts` with `links` (a tree, as merge_rooms leaves them).
allocation::relay_tree tree_of(const cv1::RoomState& state) {
  allocation::relay_tree tree;
  if (state.parts_size() == 0)
    return tree;
  std::vector<std::string> frontier{state.parts(0).node_id()};
  tree.add(frontier.front());
  while (!frontier.empty()) {
    auto node = std::move(frontier.back());
    frontier.pop_back();
    for (const auto& link : state.links()) {
      const std::string* other = link.a() == node   ? &link.b()
                                 : link.b() == node ? &link.a()
                                                    : nullptr;
      if (other == nullptr || tree.contains(*other))
        continue;
      tree.add(*other, node);
      frontier.push_back(*other);
    }
  }
  // Parts no link reaches (a state from before relays were kept) join the first part.
  for (const auto& p : state.parts())
    if (!tree.contains(p.node_id()))
      tree.add(p.node_id(), state.parts(0).node_id());
  return tree;
}

/// Makes the room what `state` says, adding the members and parts it lacks (merge_rooms
/// never drops any). `tell_nodes`: relays that changed are attached/detached on the nodes
/// (a merge); a takeover finds the nodes already running what the state says.
void apply_state(room_actor* self, const cv1::RoomState& state, bool tell_nodes) {
  auto& st = self->state;
  *st.version.mutable_version() = state.version();
  if (state.created_unix_ms() != 0)
    st.created_unix_ms = st.created_unix_ms == 0
                           ? state.created_unix_ms()
                           : std::min(st.created_unix_ms, state.created_unix_ms());
  for (const auto& p : state.parts()) {
    if (find_part(st, p.node_id()) != nullptr)
      continue;
    part fresh;
    fresh.node_id = p.node_id();
    fresh.endpoint = p.endpoint();
    fresh.region = p.region();
    fresh.location = {p.latitude(), p.longitude()};
    fresh.ready = p.ready();
    fresh.secret = st.settings->credentials->secret_of(p.node_id());
    st.parts.push_back(std::move(fresh));
    self->send(st.settings->registry, room_opened_atom::value, p.node_id(), st.node_room_id);
  }
  for (const auto& incoming : state.members()) {
    if (st.members.contains(incoming.client_id()))
      continue;
    member m;
    m.holder = holder_of(st, incoming.client_id(), incoming.role(), incoming.lease_id(),
                         incoming.request().expected_kbps());
    m.request = incoming.request();
    if (st.settings->query_of) {
      if (auto query = st.settings->query_of(m.request)) {
        m.query = std::move(*query);
        m.query.alternates = st.settings->alternates;
      }
    }
    m.expected_kbps = m.request.expected_kbps();
    m.node_id = incoming.node_id();
    m.choice = incoming.node();
    m.admitted = incoming.admitted();
    auto& seated = st.members.emplace(incoming.client_id(), std::move(m)).first->second;
    seated.session = spawn_client_session(self, seated.holder, seated.choice, st.settings);
    self->send(st.settings->service, lease_open_atom::value, seated.holder.lease_id,
               seated.session);
  }
  for (auto& p : st.parts)
    p.participants = 0;
  for (const auto& [client_id, m] : st.members)
    if (auto* p = find_part(st, m.node_id))
      ++p->participants;
  auto tree = tree_of(state);
  if (tell_nodes) {
    allocation::relay_changes changes;
    for (const auto& link : st.relays.links())
      if (std::find(tree.links().begin(), tree.links().end(), link) == tree.links().end())
        changes.detach.push_back(link);
    for (const auto& link : tree.links())
      if (std::find(st.relays.links().begin(), st.relays.links().end(), link) ==
          st.relays.links().end())
        changes.attach.push_back(link);
    st.relays = std::move(tree);
    attach_relays(self, changes);
  } else {
    st.relays = std::move(tree);
  }
  // Parts this room ran that the state does not list (a state that superseded this
  // room's) join the tree at their nearest part: no part is left without a relay.
  for (const auto& p : st.parts) {
    if (st.relays.contains(p.node_id))
      continue;
    auto changes = st.relays.add(p.node_id, {}, part_distance(st));
    if (tell_nodes)
      attach_relays(self, changes);
  }
  // Members whose node the state does not list are placed again.
  std::vector<std::string> orphans;
  for (const auto& [client_id, m] : st.members)
    if (find_part(st, m.node_id) == nullptr)
      orphans.push_back(m.node_id);
  queue_moves_off(self, orphans, "node unknown after takeover");
  std::vector<std::string> empty;
  for (const auto& p : st.parts)
    if (p.participants == 0)
      empty.push_back(p.node_id);
  for (const auto& node_id : empty)
    remove_part(self, node_id, true);
}

/// Merges state from elsewhere into the room.
void absorb(room_actor* self, const cv1::RoomState& other) {
  auto& st = self->state;
  auto mine = snapshot(self);
  auto order = cluster::compare_versions(mine, other);
  if (order == cluster::version_order::same || order == cluster::version_order::newer)
    return;
  auto merged = cluster::merge_rooms(mine, other);
  spdlog::info("room {}: merging state from another peer ({} members here, {} there, {} now)",
               st.node_room_id, mine.members_size(), other.members_size(), merged.members_size());
  apply_state(self, merged, true);
  publish(self, "merged");
  changed(self);
  pump(self);
}

/// Moves the room to the peer that owns it now: state first, then the joins that wait
/// are routed again; nodes keep running the room.
void hand_off(room_actor* self) {
  auto& st = self->state;
  if (st.handing_off)
    return;
  st.handing_off = true;
  auto state = snapshot(self);
  cluster::count_change(state, st.writer);
  self
    ->request(st.handoff_to, st.settings->replication_timeout, absorb_atom::value, st.node_room_id,
              state.SerializeAsString(), uint32_t{0})
    .then(
      [self](bool) {
        auto& st = self->state;
        spdlog::info("room {}: handed off ({} members)", st.node_room_id, st.members.size());
        // The joins answered already were replicated here; the new owner has them.
        st.replicated = st.changes;
        deliver_replicated(self);
        auto moved = make_status(grpc_code::unavailable, std::string{room_moved_message});
        std::vector<unary_call> reroute;
        for (auto& item : st.queue) {
          if (!item.is_join)
            continue;
          if (item.answer.direct)
            reroute.push_back(
              {std::move(item.answer.direct->call), item.ask.request.SerializeAsString()});
          else
            item.answer.promise.deliver(allocation_reply::refused(moved));
        }
        // Calls handed over whole go back to the service, which routes them to the owner.
        if (!reroute.empty())
          self->send(st.settings->service, call_unary_atom::value, std::move(reroute));
        st.queue.clear();
        if (st.migration)
          st.migration->promise.deliver(moved, std::string{});
        self->quit();
      },
      [self](caf::error& err) {
        auto& st = self->state;
        spdlog::warn("room {}: hand-off failed ({}); the room stays here", st.node_room_id,
                     self->system().render(err));
        st.handing_off = false;
        st.handoff_to = nullptr;
        pump(self);
      });
}

/// Ends a room the service forgot: replicas get a tombstone, the room quits.
void close_idle_room(room_actor* self) {
  auto& st = self->state;
  if (!st.replicas.empty()) {
    auto tombstone = snapshot(self);
    cluster::count_change(tombstone, st.writer);
    tombstone.set_closed(true);
    auto bytes = tombstone.SerializeAsString();
    for (const auto& replica : st.replicas) // answers reach nobody: the room is gone
      caf::anon_send(replica, replicate_atom::value, st.node_room_id, bytes);
  }
  self->quit();
}

void init_room(room_actor* self, std::string app_id, std::string room_id,
               std::shared_ptr<const room_settings> settings) {
  log_exceptions(self, "room " + node_room_id(app_id, room_id));
  auto& st = self->state;
  st.node_room_id = node_room_id(app_id, room_id);
  st.app_id = std::move(app_id);
  st.room_id = std::move(room_id);
  st.settings = std::move(settings);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& watchers = self->state.watchers;
    std::erase_if(watchers, [&](const caf::actor& w) { return w.address() == msg.source; });
    check_idle(self);
  });
}

caf::behavior room_behavior(room_actor* self);

caf::behavior restored_room(room_actor* self, cv1::RoomState state,
                            std::shared_ptr<const room_settings> settings) {
  init_room(self, state.app_id(), state.room_id(), std::move(settings));
  apply_state(self, state, false);
  spdlog::info("room {}: taken over with {} members on {} nodes", self->state.node_room_id,
               self->state.members.size(), self->state.parts.size());
  pump(self);
  check_idle(self);
  return room_behavior(self);
}

caf::behavior room(room_actor* self, std::string app_id, std::string room_id,
                   std::shared_ptr<const room_settings> settings) {
  init_room(self, std::move(app_id), std::move(room_id), std::move(settings));
  self->state.created_unix_ms = unix_ms_now();
  // No idle timer yet: the service spawns a room for a call that is about to reach it.
  return room_behavior(self);
}

/// A join arrives: answered at once (a lease held already, a refusal) or queued for the
/// next placement batch.
void queue_join(room_actor* self, allocation_ask& ask, join_answer to) {
  auto& st = self->state;
  ++st.idle_generation;
  unary_replies replies{self};
  if (auto it = st.members.find(ask.client_id); it != st.members.end())
    return answer_join(self, replies, to, existing_lease(self, it->second));
  if (auto refused = admission_refusal(st, ask.role))
    return answer_join(self, replies, to, allocation_reply::refused(std::move(*refused)));
  batch_item item;
  item.is_join = true;
  item.ask = std::move(ask);
  item.answer = std::move(to);
  st.queue.push_back(std::move(item));
  pump(self);
}

caf::behavior room_behavior(room_actor* self) {
  return {
    [self](allocate_atom, allocation_ask& ask) -> caf::result<allocation_reply> {
      join_answer to;
      to.promise = self->make_response_promise();
      queue_join(self, ask, std::move(to));
      return caf::result<allocation_reply>{caf::delegated<allocation_reply>{}};
    },
    [self](allocate_atom, allocation_ask& ask, direct_allocation& direct) {
      ++self->state.direct_asks;
      join_answer to;
      to.direct = std::move(direct);
      queue_join(self, ask, std::move(to));
    },
    [self](release_atom, const std::string& client_id, const std::string& lease_id,
           const std::string& reason) {
      auto& st = self->state;
      auto it = st.members.find(client_id);
      if (it == st.members.end() || it->second.holder.lease_id != lease_id)
        return;
      leave_part(self, it->second, true, reason);
      auto role = it->second.holder.role;
      auto node_id = it->second.node_id;
      st.members.erase(it);
      std::erase_if(st.queue, [&](const batch_item& item) {
        bool drop = !item.is_join && item.client_id == client_id;
        if (drop && item.migration && st.migration)
          --st.migration->pending;
        return drop;
      });
      emit(self, "participant.left", client_id, role, node_id, reason);
      if (st.members.empty())
        emit(self, "room.finished");
      publish(self, reason == "released" ? "left" : reason);
      changed(self);
      finish_migration(self);
      check_idle(self);
    },
    [self](node_lost_atom, const std::string& node_id) {
      auto& st = self->state;
      if (find_part(st, node_id) == nullptr)
        return;
      spdlog::info("room {}: node {} lost; moving its participants", st.node_room_id, node_id);
      emit(self, "node.lost", {}, {}, node_id);
      std::erase_if(st.parts, [&](const part& p) { return p.node_id == node_id; });
      auto changes = st.relays.remove(node_id, part_distance(st));
      attach_relays(self, changes);
      for (auto& [client_id, m] : st.members)
        if (m.node_id == node_id)
          m.reservation_id = 0; // the node's reservations died with it
      queue_moves_off(self, {node_id}, "node lost");
      changed(self);
      pump(self);
    },
    [self](migrate_atom, const std::string& to_node_id, const std::string& from_node_id) {
      return start_migration(self, to_node_id, from_node_id);
    },
    [self](get_room_atom) -> caf::result<grpc_status, av1::Room> {
      auto& st = self->state;
      if (st.members.empty())
        return {make_status(grpc_code::not_found, "room '" + st.room_id + "' of app '" + st.app_id +
                                                    "' has no participant"),
                av1::Room{}};
      return {grpc_status::ok(), room_message(self)};
    },
    [self](watch_room_atom, const caf::actor& watcher) {
      auto& st = self->state;
      ++st.idle_generation;
      st.watchers.push_back(watcher);
      self->monitor(watcher);
      av1::RoomUpdate update;
      *update.mutable_room() = room_message(self);
      update.set_reason("current state");
      self->send(watcher, room_update_atom::value, update.SerializeAsString());
    },
    [self](room_idle_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.idle_generation || !st.members.empty() || !st.watchers.empty() ||
          !st.queue.empty() || st.in_flight)
        return;
      // The service lets the room go once it has seen every call the service sent it;
      // otherwise a call is on its way and the room stays for it.
      self
        ->request(st.settings->service, idle_answer_timeout, room_idle_atom::value, st.app_id,
                  st.room_id, st.direct_asks)
        .then(
          [self](bool forgotten) {
            if (forgotten)
              close_idle_room(self);
            else
              check_idle(self); // the calls on their way arrived before this answer
          },
          [self](caf::error&) { check_idle(self); });
    },
    [self](cluster_view_atom, std::vector<caf::actor>& replicas, std::string& writer) {
      auto& st = self->state;
      bool new_replicas = replicas != st.replicas;
      st.replicas = std::move(replicas);
      // One writer per room actor, not per peer: a peer that hands a room off and later
      // runs the same room again (views differed for a moment) writes a new history, which
      // must merge with the old one, not look older than it.
      st.writer = std::move(writer) + "/" + std::to_string(self->id());
      if (new_replicas && !st.members.empty()) {
        // New replicas hold nothing yet: send them the whole state.
        st.replicating = false;
        changed(self);
      }
    },
    [self](handoff_atom, const caf::actor& new_owner) {
      auto& st = self->state;
      st.handoff_to = new_owner;
      if (!st.in_flight)
        hand_off(self);
    },
    [self](lease_open_atom, const std::string& lease_id) {
      // The session of a lease the service has not heard of yet (a room just taken over).
      for (const auto& [client_id, m] : self->state.members)
        if (m.holder.lease_id == lease_id)
          return m.session;
      return caf::actor{};
    },
    [self](absorb_atom, cv1::RoomState& other) {
      absorb(self, other);
      return true;
    },
  };
}

} // namespace

std::string node_room_id(const std::string& app_id, const std::string& room_id) {
  return app_id + "/" + room_id;
}

std::optional<std::pair<std::string_view, std::string_view>>
split_node_room_id(std::string_view key) {
  auto slash = key.find('/');
  if (slash == std::string_view::npos)
    return std::nullopt;
  return std::pair{key.substr(0, slash), key.substr(slash + 1)};
}

caf::actor spawn_room(caf::actor_system& system, std::string app_id, std::string room_id,
                      std::shared_ptr<const room_settings> settings) {
  return system.spawn(room, std::move(app_id), std::move(room_id), std::move(settings));
}

caf::actor spawn_restored_room(caf::actor_system& system, cv1::RoomState state,
                               std::shared_ptr<const room_settings> settings) {
  return system.spawn(restored_room, std::move(state), std::move(settings));
}

} // namespace chroom::actors
