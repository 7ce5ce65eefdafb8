#pragma once

// The node table: every media node a peer knows, its lifecycle and its resource
// accounting, as plain data and pure functions of (events, time). No actors, no I/O: the
// registry actor feeds it and executes what it returns; tests and the placement
// simulator drive it directly.
//
//   joining --first Stats--> active --drain--> draining --last room ends | deadline--> gone
//                            active <--uncordon-- cordoned <--cordon-- active
//   joining/active/draining/cordoned --no Stats for suspect_after, or stream lost--> suspect
//   suspect --Stats again, or re-register--> the state before (previous_state)
//   suspect --no Stats for dead_after--> dead (rooms reported lost)
//   dead/gone --forget_after--> removed from the table; a dead node that registers again
//   starts over as joining

#include "allocation/geo_index.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/medianode/v1/media_node.pb.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace chroom::allocation {

using clock = std::chrono::steady_clock;
using node_state = chroom::admin::v1::NodeState;

/// Timing rules of the lifecycle (chroom.config.v1.MediaNodesConfig).
struct liveness_rules {
  std::chrono::milliseconds suspect_after{1500};
  std::chrono::milliseconds dead_after{3000};
  std::chrono::milliseconds drain_deadline{600'000};
  std::chrono::milliseconds forget_after{600'000};
  /// Nodes the table accepts (dead and gone ones included until forgotten).
  size_t max_nodes = 20'000;
};

/// Identifies one Connect stream of a node: a new stream of the same node gets a new one.
using session_id = uint64_t;

/// Participants set aside on a node by an allocation, until the node's Stats show them
/// or the reservation is released or expires.
struct reservation {
  uint64_t id = 0;
  uint32_t participants = 0;
  clock::time_point expires_at;
  /// Set by confirm(): the first Stats after this time include the participants.
  std::optional<clock::time_point> confirmed_at;
};

/// One node.
struct node_record {
  std::string node_id;
  session_id session = 0;
  /// The Register message of the current session.
  chroom::medianode::v1::Register registration;
  node_state state = chroom::admin::v1::NODE_STATE_JOINING;
  /// While suspect or dead: the state the node had before.
  node_state previous_state = chroom::admin::v1::NODE_STATE_UNSPECIFIED;
  chroom::medianode::v1::Stats last_stats;
  bool has_stats = false;
  clock::time_point connected_at;
  /// connected_at as wall time, read once when the node connected: turning the steady time
  /// into wall time at every read moved it by a millisecond from one read to the next.
  int64_t connected_at_unix_ms = 0;
  clock::time_point last_seen;
  /// When the node became dead or gone (for forget_after).
  clock::time_point ended_at;
  std::optional<clock::time_point> drain_deadline;
  /// drain_deadline as wall time, fixed when the drain started (as connected_at_unix_ms).
  int64_t drain_deadline_unix_ms = 0;
  /// A stream is attached (false after on_stream_closed until the node registers again).
  bool connected = true;
  std::set<std::string> rooms;
  /// Change it only through the table (which keeps reserved_total in step).
  std::vector<reservation> reservations;
  /// Sum of reservations[].participants: read for every node a placement looks at.
  uint64_t reserved_total = 0;
  uint32_t registrations = 0;

  /// Participants reserved and not yet visible in Stats.
  uint32_t reserved_participants() const;
  /// max_participants - (reported + reserved), at least 0.
  uint32_t available_participants() const;
  /// True when new rooms and participants may be placed on the node.
  bool accepts_work() const { return state == chroom::admin::v1::NODE_STATE_ACTIVE; }
};

/// A state change to publish (WatchNodes, the allocation engine, logs).
struct node_event {
  std::string node_id;
  node_state state = chroom::admin::v1::NODE_STATE_UNSPECIFIED;
  node_state previous_state = chroom::admin::v1::NODE_STATE_UNSPECIFIED;
  clock::time_point at;
  /// With dead: the rooms the node took down (and, on re-register, rooms the node no
  /// longer has).
  std::vector<std::string> lost_rooms;
  std::string reason;
};

/// The answer to a registration.
struct register_result {
  enum class outcome { accepted, table_full };
  outcome result = outcome::accepted;
  /// The node's previous stream, still attached: the caller closes it (ABORTED).
  std::optional<session_id> replaced_session;
  /// Rooms the node listed that the table does not know: the node must close them.
  std::vector<std::string> close_rooms;
  std::vector<node_event> events;
};

/// Why an operator or allocation request failed.
enum class table_error { none, unknown_node, not_running, unknown_reservation, no_capacity };

class node_table {
public:
  explicit node_table(liveness_rules rules = {}) : rules_(rules) {}
  // The geo index points into nodes_: a copy rebuilds it, a move keeps it valid.
  node_table(const node_table& other);
  node_table& operator=(const node_table& other);
  node_table(node_table&&) = default;
  node_table& operator=(node_table&&) = default;

  /// A node registered on stream `session`. A node still attached on another stream is
  /// replaced. Rooms are reconciled: kept where both sides know them, listed in
  /// close_rooms where only the node does, reported lost where only the table does.
  register_result on_register(const chroom::medianode::v1::Register& registration,
                              session_id session, clock::time_point now);

  /// Stats from `session` (ignored, returning nothing, when it is not the node's current
  /// session). Brings a joining or suspect node back to its running state.
  std::vector<node_event> on_stats(std::string_view node_id, session_id session,
                                   const chroom::medianode::v1::Stats& stats,
                                   clock::time_point now);

  /// The node's stream ended (only the current session counts): the node turns suspect
  /// at once; it dies at dead_after from its last Stats unless it comes back.
  std::vector<node_event> on_stream_closed(std::string_view node_id, session_id session,
                                           clock::time_point now);

  /// Applies the timing rules: suspect, dead, drain deadlines, forgetting, reservation
  /// expiry. Call it often (every 100 ms or so); it is O(nodes).
  std::vector<node_event> sweep(clock::time_point now);

  /// Operator actions. `deadline` 0 means the configured drain_deadline.
  table_error drain(std::string_view node_id, std::chrono::milliseconds deadline,
                    clock::time_point now, std::vector<node_event>& events);
  table_error cordon(std::string_view node_id, clock::time_point now,
                     std::vector<node_event>& events);
  table_error uncordon(std::string_view node_id, clock::time_point now,
                       std::vector<node_event>& events);

  /// Room bookkeeping (the allocation engine calls these when a node acked PrepareRoom /
  /// CloseRoom). Removing a draining node's last room makes it gone.
  table_error add_room(std::string_view node_id, std::string room_id);
  table_error remove_room(std::string_view node_id, std::string_view room_id, clock::time_point now,
                          std::vector<node_event>& events);

  /// Reserves `participants` on a node that accepts work and has them available.
  /// Returns the reservation id (0 with `error` set otherwise).
  uint64_t reserve(std::string_view node_id, uint32_t participants, std::chrono::milliseconds ttl,
                   clock::time_point now, table_error& error);
  /// The node acknowledged the participants: the reservation ends with the next Stats.
  table_error confirm(std::string_view node_id, uint64_t reservation_id, clock::time_point now);
  /// Gives a reservation back (the allocation was rolled back).
  table_error release(std::string_view node_id, uint64_t reservation_id);

  const node_record* find(std::string_view node_id) const;
  /// Every node, by node_id.
  const std::map<std::string, node_record, std::less<>>& nodes() const { return nodes_; }
  size_t size() const { return nodes_.size(); }
  const liveness_rules& rules() const { return rules_; }

  /// Calls `visit(record, angle_rad)` for every node by increasing distance from `from`
  /// (dead and gone ones too: the visitor filters) until it returns false.
  template <class Visit> void visit_nearest(geo_point from, Visit&& visit) const {
    index_.visit_nearest(from, std::forward<Visit>(visit));
  }

  /// The admin view of a record (load, last seen, deadlines in Unix time).
  static chroom::admin::v1::NodeInfo to_info(const node_record& record, clock::time_point now);

private:
  node_record* find_mutable(std::string_view node_id);
  /// The node if it is known and not dead or gone; otherwise nullptr with `error` set.
  node_record* find_live(std::string_view node_id, table_error& error);
  void change_state(node_record& record, node_state next, clock::time_point now, std::string reason,
                    std::vector<node_event>& events, std::vector<std::string> lost_rooms = {});

  liveness_rules rules_;
  void index(const node_record& record);

  std::map<std::string, node_record, std::less<>> nodes_;
  /// node_id -> record, for the lookups of every allocation (the map above keeps the
  /// order ListNodes pages by).
  std::unordered_map<std::string_view, node_record*> by_id_;
  geo_index index_;
  uint64_t next_reservation_id_ = 1;
};

} // namespace chroom::allocation
