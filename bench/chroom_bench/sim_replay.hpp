#pragma once

// Replays the world on one strategy against the real node table: nodes register and send
// Stats every simulated minute with what the simulation placed on them, each join goes
// through the strategy and a reservation, clients leave, crashed nodes are swept to dead
// and their clients re-placed. Collects what the report prints.

#include "allocation/node_table.hpp"
#include "bench/chroom_bench/sim_world.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace chroom::bench::sim {

/// A room's presence on one node.
struct room_part {
  uint32_t node = 0;
  uint32_t participants = 0;
  /// The part this one's relay links to; -1: none (the first part, or a baseline's).
  int parent = -1;
  /// False once the room left the node (emptied, or the node died).
  bool open = true;
};

/// A room as the room actor sees it.
struct room_state {
  std::vector<room_part> parts;
  /// Clients in the room now.
  std::vector<uint32_t> members;
  /// The open part on `node`, or -1.
  int part_on(uint32_t node) const;
  bool has_open_part() const;
};

/// The network as a strategy sees it: the node table (registrations, last Stats,
/// reservations) and the index of each node id.
class network_view {
public:
  /// Registers every node of `w` at time 0; they turn active with their first Stats.
  network_view(const world& w, const allocation::liveness_rules& rules);

  const world& the_world() const { return world_; }
  const allocation::node_table& table() const { return table_; }
  allocation::node_table& table() { return table_; }
  const allocation::node_record& record(uint32_t node) const { return *records_[node]; }
  std::optional<uint32_t> index_of(std::string_view node_id) const;
  /// The node takes new work and has a place left for one participant.
  bool has_room(uint32_t node) const;
  /// Participants reported plus reserved, over max_participants.
  double load(uint32_t node) const;

private:
  const world& world_;
  allocation::node_table table_;
  std::vector<const allocation::node_record*> records_;
  std::unordered_map<std::string, uint32_t> index_;
};

/// What kind of join a strategy made (ours' diagnostics).
enum class join_kind : uint8_t { new_room, affinity, extended, moved };
inline constexpr int join_kinds = 4;
const char* to_string(join_kind kind);

struct join_choice {
  /// The node; nothing: the join is rejected.
  std::optional<uint32_t> node;
  /// A new part links to this part (cascade relay); -1: no relay.
  int relay_to = -1;
  /// The RTT the strategy believed (ours), ms; NaN when it does not estimate.
  double believed_rtt_ms = NAN;
};

class strategy {
public:
  virtual ~strategy() = default;
  virtual std::string name() const = 0;
  /// Where `who` goes in `room` (whose members exclude `who`).
  virtual join_choice choose(const network_view& network, const client& who,
                             const room_state& room) = 0;
};

struct replay_options {
  double stats_interval_s = 60;
  double sweep_interval_s = 10;
  /// Load above which a node counts as hot (and above which ours places nothing new).
  double high_water = 0.85;
  /// Per-join diagnostics (an online reference for every join); costs a little time.
  bool diagnose = false;
};

/// Per-kind diagnostics.
struct kind_figures {
  uint64_t joins = 0;
  double rtt_sum = 0;
  /// Sum of the online reference: the nearest (true RTT) node with room at that moment,
  /// in this strategy's own state.
  double reference_sum = 0;
};

struct replay_result {
  std::string name;
  uint64_t joins = 0;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  /// Rejected while some active node had a free place.
  uint64_t rejected_with_room_elsewhere = 0;
  /// True RTT of each client's first placement (index as world::clients()); NaN: rejected.
  std::vector<float> rtt_ms;
  /// Client-to-client RTT through the SFU(s) of sampled pairs (a join and one member
  /// already in the room): both access legs plus the relay path between their nodes.
  std::vector<float> pair_rtt_ms;
  /// Stats minutes in which a node was above high water / full, and the nodes that were.
  uint64_t hot_node_minutes = 0;
  uint64_t full_node_minutes = 0;
  uint32_t hot_nodes = 0;
  uint32_t full_nodes = 0;
  /// Cascade relays created (extensions and re-links after a crash) and their true RTT sum.
  uint64_t relay_links = 0;
  double relay_rtt_sum_ms = 0;
  /// Rooms that ever spanned more than one node.
  uint64_t cascaded_rooms = 0;
  /// Clients of crashed nodes placed again / not placed.
  uint64_t replaced = 0;
  uint64_t replace_failed = 0;
  /// A strategy's choice the node table then refused (reservation failed).
  uint64_t refused_by_table = 0;
  std::array<kind_figures, join_kinds> kinds{};
  /// Clients that probed / did not (strategies that estimate RTT): joins, true RTT sum,
  /// believed RTT sum, reference sum.
  struct source_figures {
    uint64_t joins = 0;
    double rtt_sum = 0;
    double believed_sum = 0;
    double reference_sum = 0;
  };
  source_figures probed, unprobed;
  double wall_s = 0;
};

replay_result replay(const world& w, strategy& chosen, const replay_options& options);

/// The offline reference: every client on its nearest (true RTT) node that had a free
/// place at its arrival, rooms ignored, crashed nodes out from their crash. Greedy in
/// arrival order, so it is a bound on what a placement without room affinity could have
/// done online with perfect RTT knowledge.
struct bound_result {
  /// Per client; NaN when no node had a place.
  std::vector<float> rtt_ms;
  /// Peak participants at once and the peak's share of all capacity.
  uint64_t peak_participants = 0;
  double peak_utilisation = 0;
  double peak_at_h = 0;
};
bound_result lower_bound(const world& w);

/// The nearest (true RTT) node in `network` with a free place for `who`; NaN when none.
double nearest_with_room_ms(const network_view& network, const client& who);

} // namespace chroom::bench::sim
