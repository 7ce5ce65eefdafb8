#pragma once

// Placement: which media node takes a participant. Pure: a node table and a request in, a
// decision out; the registry actor executes it (reservation), the room actor turns it into
// node commands, the placement simulator (chroom-bench placement) replays worlds on it.
//
// One placement:
//  1. Pool: walk the nodes nearest to the client (geo index) and keep the first
//     `candidate_pool` that pass the filters, plus every probed node that passes them.
//     Filters (hard): state active (not joining, draining, cordoned, suspect, dead),
//     the app's region and country policy, the required features, not overloaded (last
//     Stats above high_water in participants, CPU or upload), and room for the
//     participants after reservations.
//  2. RTT of each (see estimate_rtt): the client's probe > a probe to a node near the client
//     plus that node's measured RTT to this one > great-circle distance and fibre model,
//     plus the client's access delay (its smallest probe excess over the model). A probe of
//     1000 ms or more means "unreachable": it keeps that node's RTT and nothing else.
//  3. Score (lower is better, milliseconds-equivalent):
//       latency:  rtt + 10 * load_after + health
//       balanced: rtt + 25 * load_after + health
//       pack:     best + 25 * (1 - load_after) + health for nodes within pack_slack_ms of
//                 the nearest one (RTT best); beyond that slack a node's RTT above the
//                 best counts twice, so pack never trades much latency for packing
//     load_after = (reported + reserved + participants) / max_participants after placing;
//     health = 1000 * packet_loss + 0.5 * jitter_ms (1% loss weighs like 10 ms).
//  4. Room affinity: a node the room is on wins when it passes the filters and the
//     client's RTT to it is within affinity_slack_ms of the best pool node's and at most
//     max_affinity_rtt_ms. Otherwise the room extends to the best node, linked by a relay
//     to the room node nearest to it (node-to-node RTT: measured > distance model).

#include "allocation/geo.hpp"
#include "allocation/node_table.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::allocation {

enum class strategy { latency, balanced, pack };

/// "latency", "balanced", "pack"; nothing for anything else.
std::optional<strategy> parse_strategy(std::string_view name);
std::string_view to_string(strategy value);

/// Who yields first when nodes run short (AppConfig.priority).
enum class priority_class { high, normal, low };

/// What an application allows its placements (chroom.config.v1.AppConfig; apps/ builds
/// it from the app's config).
struct app_policy {
  std::string app_id;
  strategy placement_strategy = strategy::balanced;
  /// Node regions (Register.location.region) the app may use; empty: any.
  std::vector<std::string> allowed_regions;
  /// ISO 3166-1 alpha-2 countries the app's nodes must be in; empty: any.
  std::vector<std::string> allowed_countries;
  /// Regions and countries never used, even when allowed above.
  std::vector<std::string> denied_regions;
  std::vector<std::string> denied_countries;
  /// Milliseconds of RTT a whole node's load is worth; 0: the strategy's own.
  double load_weight_ms = 0;
  /// Multiplier of the health penalty.
  double health_weight = 1;
  /// Nodes whose client RTT is estimated above this are not used; 0: no budget.
  double latency_budget_ms = 0;
  /// high: nodes fill up to capacity; normal: up to the high-water mark; low: up to
  /// low_priority_share of it.
  priority_class priority = priority_class::normal;
  /// A room spans at most this many nodes (1: pinned to one); 0: no limit.
  uint32_t max_room_nodes = 0;
  /// A node holding this many of a room's participants takes no more of them; 0: none.
  uint32_t fan_out_after = 0;
  /// A new part links only to a part fewer than this many relay hops from the room's first
  /// node; 0: no limit.
  uint32_t max_relay_depth = 0;

  bool allows(const chroom::medianode::v1::Location& location) const;
  /// The load (fraction of capacity) above which the app places nothing more on a node.
  double high_water(double configured) const;
};

/// Low-priority apps stop at this share of the high-water mark, keeping the rest for
/// normal and high priority ones when nodes run short.
inline constexpr double low_priority_share = 0.8;

/// Features a node must have.
struct feature_needs {
  /// Lower-case codec names.
  std::vector<std::string> codecs;
  bool relay = false;
  bool recording = false;
  bool e2ee = false;

  bool met_by(const chroom::medianode::v1::Features& features) const;
  bool empty() const { return codecs.empty() && !relay && !recording && !e2ee; }
};

/// Features the API accepts: codec names and "relay", "recording", "e2ee".
/// Returns the needs, or sets `problem` (naming the bad entry) and returns nothing.
std::optional<feature_needs> parse_features(const std::vector<std::string>& names,
                                            std::string& problem);

/// A round trip the client measured to a node.
struct probe {
  std::string node_id;
  double rtt_ms = 0;
};

/// Who is placed.
struct placement_request {
  /// Where the client is.
  geo_point client;
  /// Measured round trips (may name unknown nodes: ignored).
  std::vector<probe> probes;
  feature_needs features;
  /// Places needed on one node (1 for a client; more when a room moves a node's share).
  uint32_t participants = 1;
  /// The app's policy; nullptr: no region or country restriction, balanced.
  const app_policy* app = nullptr;
  /// The participant goes to the node nearest it rather than the room's node whenever
  /// that is nearer at all (affinity slack 0): an event's viewers spread over edge nodes.
  bool spread = false;
  /// Only these nodes may take it, the first that can preferred (the app's
  /// before_allocation hook chose them; a room node near enough still wins); empty: any.
  std::vector<std::string> allowed_nodes;
};

/// The room being placed into, as the room actor sees it.
struct room_view {
  struct part {
    std::string node_id;
    /// The room's participants placed on it.
    uint32_t participants = 0;
    /// Relay hops from the room's first node (0 for it).
    uint32_t depth = 0;
  };
  /// The nodes the room is on (live ones; a dead node's part is being re-placed).
  std::vector<part> parts;
  /// Nodes not to choose (a node that just refused, a draining part being moved off).
  std::vector<std::string> avoid;
};

/// Tunables (chroom.config.v1.AllocationConfig).
struct placement_rules {
  /// A node whose last Stats show more than this fraction of its participants, CPU or
  /// upload in use takes no new participant.
  double high_water = 0.85;
  double affinity_slack_ms = 5;
  double max_affinity_rtt_ms = 150;
  /// Feasible nodes scored per placement (nearest first).
  uint32_t candidate_pool = 16;
  /// Pack: nodes within this RTT of the nearest feasible one compete on load.
  double pack_slack_ms = 20;
  fibre_model fibre;
};

enum class rtt_source { probe, node_matrix, distance };

/// A node considered for a placement.
struct scored_node {
  std::string node_id;
  double rtt_ms = 0;
  rtt_source source = rtt_source::distance;
  /// Participants in use after this placement, 0..1 of max_participants.
  double load_after = 0;
  /// Lower is better (see the top of this file).
  double score = 0;
};

enum class placement_failure {
  none,
  /// No node is active at all.
  no_active_nodes,
  /// Active nodes exist, none in the app's allowed regions/countries.
  region_policy,
  /// Allowed nodes exist, none with the required features.
  features,
  /// Allowed nodes with the features exist, all full or overloaded.
  capacity,
  /// Nodes could take the participant, none within the app's latency budget.
  latency_budget,
  /// The room is pinned to its nodes (max_room_nodes) and none of them can take it.
  room_pinned,
  /// None of the nodes the app's hook allowed can take it.
  hook_choice,
};

struct placement_result {
  placement_failure failure = placement_failure::none;
  /// With a failure: why, for people (RESOURCE_EXHAUSTED's message).
  std::string reason;
  /// The node chosen (failure == none).
  scored_node chosen;
  /// chosen is a node the room is on already (room affinity held).
  bool joins_room_node = false;
  /// The room extends to chosen: the room node to link it with (cascade relay).
  std::optional<std::string> relay_to;
  /// Next best pool nodes, best first (at most `alternates`).
  std::vector<scored_node> alternates;

  bool ok() const { return failure == placement_failure::none; }
};

/// Decides where `request` goes. `alternates`: how many runners-up to return.
placement_result place(const node_table& table, const placement_request& request,
                       const room_view& room, const placement_rules& rules,
                       uint32_t alternates = 2);

/// The nearest usable nodes for a client to probe (Candidates): the pool of a placement,
/// best RTT first, at most `count`.
std::vector<scored_node> nearest_candidates(const node_table& table,
                                            const placement_request& request,
                                            const placement_rules& rules, uint32_t count);

/// The client's RTT to `node` by the best source available (see the top of this file).
scored_node estimate_rtt(const node_table& table, const node_record& node,
                         const placement_request& request, const fibre_model& fibre);

/// Round trip between two nodes: the one either measured (Stats.peer_rtts), else the
/// distance model.
double node_rtt_ms(const node_record& a, const node_record& b, const fibre_model& fibre);

/// True when the node's last Stats are above the high-water mark.
bool overloaded(const node_record& node, double high_water);

/// The centre of the active nodes of `region` (the one with the most active nodes when
/// empty); nothing when no node is active. Where clients of unknown location are placed.
std::optional<geo_point> region_centre(const node_table& table, std::string_view region);

} // namespace chroom::allocation
