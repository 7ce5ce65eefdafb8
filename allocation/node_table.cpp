#include "allocation/node_table.hpp"

#include "common/unix_time.hpp"

#include <algorithm>
#include <limits>
#include <utility>

// Conventions of the events this file emits:
//  - node_event::previous_state is the state the node left (the transition's source), so
//    a consumer sees "suspect -> dead"; node_record::previous_state is different: it is the
//    state a suspect or dead node will return to / had before it turned suspect.
//  - An event whose state equals its previous_state reports something other than a state
//    change (a replaced stream, rooms the node no longer has).
//  - Changing a suspect node's previous_state (drain, cordon, uncordon while suspect) emits
//    nothing: its state does not change, and the next event (stats again, reconnected,
//    gone) carries the outcome.

namespace chroom::allocation {

namespace {

namespace admin = chroom::admin::v1;

bool is_ended(node_state state) {
  return state == admin::NODE_STATE_DEAD || state == admin::NODE_STATE_GONE;
}

// States in which a node holds a live lifecycle and can turn suspect.
bool is_running(node_state state) {
  return state == admin::NODE_STATE_JOINING || state == admin::NODE_STATE_ACTIVE ||
         state == admin::NODE_STATE_DRAINING || state == admin::NODE_STATE_CORDONED;
}

// Draining, or suspect while draining: a suspect node keeps its drain (deadline and "gone
// when its last room ends"), since it is expected to come back to it.
bool is_draining(const node_record& record) {
  return record.state == admin::NODE_STATE_DRAINING ||
         (record.state == admin::NODE_STATE_SUSPECT &&
          record.previous_state == admin::NODE_STATE_DRAINING);
}

// The running state a node without an operator override is in: joining means "no Stats
// yet", so a node that has reported is active.
node_state serving_state(const node_record& record) {
  return record.has_stats ? admin::NODE_STATE_ACTIVE : admin::NODE_STATE_JOINING;
}

// The state a suspect node returns to when it shows life again.
node_state state_before_suspect(const node_record& record) {
  return is_running(record.previous_state) ? record.previous_state : serving_state(record);
}

std::vector<std::string> room_list(const std::set<std::string>& rooms) {
  return {rooms.begin(), rooms.end()};
}

std::string no_stats_reason(clock::duration silence) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(silence).count();
  return "no stats for " + std::to_string(ms) + " ms";
}

/// Keeps reserved_total in step after reservations changed.
void recount(node_record& node) {
  uint64_t total = 0;
  for (const auto& held : node.reservations)
    total += held.participants;
  node.reserved_total = total;
}

} // namespace

uint32_t node_record::reserved_participants() const {
  return static_cast<uint32_t>(
    std::min<uint64_t>(reserved_total, std::numeric_limits<uint32_t>::max()));
}

uint32_t node_record::available_participants() const {
  int64_t capacity = registration.capacity().max_participants();
  int64_t used = int64_t{last_stats.participants()} + reserved_participants();
  return static_cast<uint32_t>(std::max<int64_t>(0, capacity - used));
}

register_result node_table::on_register(const chroom::medianode::v1::Register& registration,
                                        session_id session, clock::time_point now) {
  register_result result;
  // The node's room list may repeat a room; a set also gives close_rooms a stable order.
  std::set<std::string> listed;
  for (const auto& room : registration.rooms())
    listed.insert(room.room_id());

  auto* record = find_mutable(registration.node_id());
  if (record == nullptr) {
    // Dead and gone records count: they are remembered (forget_after) precisely so that a
    // flapping node cannot make the table grow without bound.
    if (nodes_.size() >= rules_.max_nodes) {
      result.result = register_result::outcome::table_full;
      return result;
    }
    auto& fresh = nodes_[registration.node_id()];
    fresh.node_id = registration.node_id();
    by_id_[fresh.node_id] = &fresh;
    fresh.session = session;
    fresh.registration = registration;
    fresh.connected_at = now;
    fresh.connected_at_unix_ms = unix_ms_now();
    fresh.last_seen = now;
    fresh.registrations = 1;
    index(fresh);
    // The table placed nothing on a node it did not know: whatever it hosts is an orphan.
    result.close_rooms = room_list(listed);
    result.events.push_back({fresh.node_id,
                             admin::NODE_STATE_JOINING,
                             admin::NODE_STATE_UNSPECIFIED,
                             now,
                             {},
                             "registered"});
    return result;
  }

  auto& node = *record;
  if (node.connected && !is_ended(node.state) && node.session != session) {
    result.replaced_session = node.session;
    result.events.push_back(
      {node.node_id, node.state, node.state, now, {}, "replaced by a newer stream"});
  }
  node.session = session;
  node.registration = registration;
  node.connected = true;
  node.connected_at = now;
  node.connected_at_unix_ms = unix_ms_now();
  node.last_seen = now;
  ++node.registrations;
  index(node); // a node may register again from elsewhere

  if (is_ended(node.state)) {
    // Its rooms were reported lost when it ended and have been re-placed since: it starts
    // over with nothing, and closes whatever it still hosts.
    node.rooms.clear();
    node.reservations.clear();
    node.reserved_total = 0;
    node.drain_deadline.reset();
    node.last_stats.Clear();
    node.has_stats = false;
    change_state(node, admin::NODE_STATE_JOINING, now, "registered again", result.events);
    result.close_rooms = room_list(listed);
    return result;
  }

  if (node.state == admin::NODE_STATE_SUSPECT)
    change_state(node, state_before_suspect(node), now, "reconnected", result.events);

  for (const auto& room : listed)
    if (!node.rooms.contains(room))
      result.close_rooms.push_back(room);
  std::vector<std::string> lost;
  for (auto it = node.rooms.begin(); it != node.rooms.end();) {
    if (listed.contains(*it)) {
      ++it;
    } else {
      lost.push_back(*it);
      it = node.rooms.erase(it);
    }
  }
  if (!lost.empty()) {
    result.events.push_back({node.node_id, node.state, node.state, now, std::move(lost),
                             "node no longer hosts these rooms"});
    // Its last rooms ended while it was away: a draining node is done.
    if (is_draining(node) && node.rooms.empty())
      change_state(node, admin::NODE_STATE_GONE, now, "drained", result.events);
  }
  return result;
}

std::vector<node_event> node_table::on_stats(std::string_view node_id, session_id session,
                                             const chroom::medianode::v1::Stats& stats,
                                             clock::time_point now) {
  std::vector<node_event> events;
  auto* record = find_mutable(node_id);
  // A stale stream (replaced, or closed and racing its own close) says nothing about the
  // current one; an ended node must register again to come back.
  if (record == nullptr || record->session != session || !record->connected ||
      is_ended(record->state))
    return events;

  auto& node = *record;
  node.last_stats = stats;
  node.has_stats = true;
  node.last_seen = now;
  // Confirmed participants are now part of stats.participants(); keeping their reservation
  // would count them twice. Strictly a node could send Stats composed just before it
  // admitted them; the next Stats corrects any undercount, which only lasts one interval.
  if (std::erase_if(node.reservations, [now](const reservation& held) {
        return held.confirmed_at && *held.confirmed_at <= now;
      }) > 0)
    recount(node);

  if (node.state == admin::NODE_STATE_JOINING) {
    change_state(node, admin::NODE_STATE_ACTIVE, now, "first stats", events);
  } else if (node.state == admin::NODE_STATE_SUSPECT) {
    auto next = state_before_suspect(node);
    // A node that turned suspect while joining has now sent its first Stats.
    if (next == admin::NODE_STATE_JOINING)
      next = admin::NODE_STATE_ACTIVE;
    change_state(node, next, now, "stats again", events);
  }
  return events;
}

std::vector<node_event> node_table::on_stream_closed(std::string_view node_id, session_id session,
                                                     clock::time_point now) {
  std::vector<node_event> events;
  auto* record = find_mutable(node_id);
  if (record == nullptr || record->session != session || is_ended(record->state))
    return events;
  record->connected = false;
  if (is_running(record->state))
    change_state(*record, admin::NODE_STATE_SUSPECT, now, "stream closed", events);
  return events;
}

std::vector<node_event> node_table::sweep(clock::time_point now) {
  std::vector<node_event> events;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    auto& node = it->second;
    if (is_ended(node.state)) {
      if (now - node.ended_at >= rules_.forget_after) {
        index_.erase(&node);
        by_id_.erase(node.node_id);
        it = nodes_.erase(it);
      } else
        ++it;
      continue;
    }

    if (std::erase_if(node.reservations, [now](const reservation& held) {
          return !held.confirmed_at && held.expires_at <= now;
        }) > 0)
      recount(node);

    // The deadline is checked first: a draining node past it is gone as planned, whether
    // or not it is also late with its Stats.
    if (is_draining(node) && node.drain_deadline && now >= *node.drain_deadline) {
      change_state(node, admin::NODE_STATE_GONE, now, "drain deadline passed", events,
                   room_list(node.rooms));
      ++it;
      continue;
    }
    auto silence = now - node.last_seen;
    if (is_running(node.state) && silence >= rules_.suspect_after)
      change_state(node, admin::NODE_STATE_SUSPECT, now, no_stats_reason(silence), events);
    // No else: a node not swept for a long time goes through suspect to dead at once.
    if (node.state == admin::NODE_STATE_SUSPECT && silence >= rules_.dead_after)
      change_state(node, admin::NODE_STATE_DEAD, now, no_stats_reason(silence), events,
                   room_list(node.rooms));
    ++it;
  }
  return events;
}

table_error node_table::drain(std::string_view node_id, std::chrono::milliseconds deadline,
                              clock::time_point now, std::vector<node_event>& events) {
  table_error error = table_error::none;
  auto* record = find_live(node_id, error);
  if (record == nullptr)
    return error;

  auto& node = *record;
  // Draining again sets a new deadline: the operator's latest word counts.
  auto drain_for = deadline > std::chrono::milliseconds::zero() ? deadline : rules_.drain_deadline;
  node.drain_deadline = now + drain_for;
  node.drain_deadline_unix_ms = unix_ms_now() + drain_for.count();
  if (node.state == admin::NODE_STATE_SUSPECT)
    node.previous_state = admin::NODE_STATE_DRAINING;
  else if (node.state != admin::NODE_STATE_DRAINING)
    change_state(node, admin::NODE_STATE_DRAINING, now, "drain requested", events);
  if (node.rooms.empty())
    change_state(node, admin::NODE_STATE_GONE, now, "drained", events);
  return table_error::none;
}

table_error node_table::cordon(std::string_view node_id, clock::time_point now,
                               std::vector<node_event>& events) {
  table_error error = table_error::none;
  auto* record = find_live(node_id, error);
  if (record == nullptr)
    return error;

  auto& node = *record;
  auto cordonable = [](node_state state) {
    return state == admin::NODE_STATE_ACTIVE || state == admin::NODE_STATE_JOINING;
  };
  if (cordonable(node.state))
    change_state(node, admin::NODE_STATE_CORDONED, now, "cordoned by operator", events);
  else if (node.state == admin::NODE_STATE_SUSPECT && cordonable(node.previous_state))
    node.previous_state = admin::NODE_STATE_CORDONED;
  // Cordoned already, or draining (which takes nothing new either): nothing to do.
  return table_error::none;
}

table_error node_table::uncordon(std::string_view node_id, clock::time_point now,
                                 std::vector<node_event>& events) {
  table_error error = table_error::none;
  auto* record = find_live(node_id, error);
  if (record == nullptr)
    return error;

  auto& node = *record;
  if (node.state == admin::NODE_STATE_CORDONED)
    change_state(node, serving_state(node), now, "uncordoned by operator", events);
  else if (node.state == admin::NODE_STATE_SUSPECT &&
           node.previous_state == admin::NODE_STATE_CORDONED)
    node.previous_state = serving_state(node);
  return table_error::none;
}

table_error node_table::add_room(std::string_view node_id, std::string room_id) {
  table_error error = table_error::none;
  auto* record = find_live(node_id, error);
  if (record == nullptr)
    return error;
  // Any live state: the node acknowledged PrepareRoom, so it hosts the room whatever the
  // table thinks of its state now.
  record->rooms.insert(std::move(room_id));
  return table_error::none;
}

table_error node_table::remove_room(std::string_view node_id, std::string_view room_id,
                                    clock::time_point now, std::vector<node_event>& events) {
  table_error error = table_error::none;
  auto* record = find_live(node_id, error);
  if (record == nullptr)
    return error;

  auto& node = *record;
  // rooms is a std::set<std::string> without a transparent comparator: look up by string.
  auto room = node.rooms.find(std::string(room_id));
  if (room == node.rooms.end())
    return table_error::none; // CloseRoom is idempotent, so is its bookkeeping.
  node.rooms.erase(room);
  if (node.rooms.empty() && is_draining(node))
    change_state(node, admin::NODE_STATE_GONE, now, "drained", events);
  return table_error::none;
}

uint64_t node_table::reserve(std::string_view node_id, uint32_t participants,
                             std::chrono::milliseconds ttl, clock::time_point now,
                             table_error& error) {
  auto* record = find_mutable(node_id);
  if (record == nullptr) {
    error = table_error::unknown_node;
    return 0;
  }
  if (!record->accepts_work()) {
    error = table_error::not_running;
    return 0;
  }
  if (participants > record->available_participants()) {
    error = table_error::no_capacity;
    return 0;
  }
  auto id = next_reservation_id_++;
  record->reservations.push_back({id, participants, now + ttl, std::nullopt});
  record->reserved_total += participants;
  error = table_error::none;
  return id;
}

table_error node_table::confirm(std::string_view node_id, uint64_t reservation_id,
                                clock::time_point now) {
  auto* record = find_mutable(node_id);
  if (record == nullptr)
    return table_error::unknown_node;
  auto held =
    std::find_if(record->reservations.begin(), record->reservations.end(),
                 [reservation_id](const reservation& r) { return r.id == reservation_id; });
  if (held == record->reservations.end())
    return table_error::unknown_reservation;
  // A repeated confirm (a retried Ack) keeps the first time: Stats after it already count.
  if (!held->confirmed_at)
    held->confirmed_at = now;
  return table_error::none;
}

table_error node_table::release(std::string_view node_id, uint64_t reservation_id) {
  auto* record = find_mutable(node_id);
  if (record == nullptr)
    return table_error::unknown_node;
  auto erased = std::erase_if(record->reservations, [reservation_id](const reservation& r) {
    return r.id == reservation_id;
  });
  recount(*record);
  return erased == 0 ? table_error::unknown_reservation : table_error::none;
}

const node_record* node_table::find(std::string_view node_id) const {
  auto it = by_id_.find(node_id);
  return it == by_id_.end() ? nullptr : it->second;
}

node_table::node_table(const node_table& other)
    : rules_(other.rules_), nodes_(other.nodes_), next_reservation_id_(other.next_reservation_id_) {
  for (auto& [id, record] : nodes_) {
    index(record);
    by_id_[record.node_id] = &record;
  }
}

node_table& node_table::operator=(const node_table& other) {
  if (this != &other) {
    rules_ = other.rules_;
    nodes_ = other.nodes_;
    next_reservation_id_ = other.next_reservation_id_;
    index_.clear();
    by_id_.clear();
    for (auto& [id, record] : nodes_) {
      index(record);
      by_id_[record.node_id] = &record;
    }
  }
  return *this;
}

void node_table::index(const node_record& record) {
  const auto& location = record.registration.location();
  index_.upsert(&record, {location.latitude(), location.longitude()});
}

node_record* node_table::find_mutable(std::string_view node_id) {
  auto it = by_id_.find(node_id);
  return it == by_id_.end() ? nullptr : it->second;
}

node_record* node_table::find_live(std::string_view node_id, table_error& error) {
  auto* record = find_mutable(node_id);
  if (record == nullptr)
    error = table_error::unknown_node;
  else if (is_ended(record->state))
    error = table_error::not_running;
  return error == table_error::none ? record : nullptr;
}

chroom::admin::v1::NodeInfo node_table::to_info(const node_record& record, clock::time_point now) {
  admin::NodeInfo info;
  info.set_node_id(record.node_id);
  info.set_state(record.state);
  info.set_previous_state(record.previous_state);
  const auto& reg = record.registration;
  info.set_software_version(reg.software_version());
  info.set_protocol_version(reg.protocol_version());
  *info.mutable_endpoints() = reg.endpoints();
  *info.mutable_location() = reg.location();
  *info.mutable_capacity() = reg.capacity();
  *info.mutable_features() = reg.features();
  auto* load = info.mutable_load();
  if (record.has_stats)
    *load->mutable_last_stats() = record.last_stats;
  load->set_reserved_participants(record.reserved_participants());
  load->set_available_participants(record.available_participants());
  for (const auto& room : record.rooms) // std::set: already sorted
    info.add_room_ids(room);
  info.set_connected_at_unix_ms(record.connected_at_unix_ms);
  auto silence = std::chrono::duration_cast<std::chrono::milliseconds>(now - record.last_seen);
  info.set_last_seen_ms_ago(std::max<int64_t>(0, silence.count()));
  info.set_registrations(record.registrations);
  if (is_draining(record) && record.drain_deadline)
    info.set_drain_deadline_unix_ms(record.drain_deadline_unix_ms);
  return info;
}

void node_table::change_state(node_record& record, node_state next, clock::time_point now,
                              std::string reason, std::vector<node_event>& events,
                              std::vector<std::string> lost_rooms) {
  auto from = record.state;
  if (next == admin::NODE_STATE_SUSPECT)
    record.previous_state = from;
  else if (next != admin::NODE_STATE_DEAD) // dead keeps what the node was before suspect
    record.previous_state = admin::NODE_STATE_UNSPECIFIED;
  record.state = next;
  if (is_ended(next)) {
    // Its rooms and reservations were reported (lost_rooms) and are someone else's now.
    record.ended_at = now;
    record.rooms.clear();
    record.reservations.clear();
    record.reserved_total = 0;
    record.drain_deadline.reset();
  }
  events.push_back({record.node_id, next, from, now, std::move(lost_rooms), std::move(reason)});
}

} // namespace chroom::allocation
