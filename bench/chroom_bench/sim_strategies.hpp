#pragma once

// The strategies the simulation compares. The baselines keep a room on one node, as the
// systems they stand for do: the room's first participant picks the node by the
// strategy's rule, everyone after follows it, and a join to a full room node is rejected
// (no cascading). "ours" is allocation::place() itself.

#include "allocation/placement.hpp"
#include "bench/chroom_bench/sim_replay.hpp"

#include <memory>

namespace chroom::bench::sim {

/// Uniformly among the active nodes with a free place (a health check drops full ones).
std::unique_ptr<strategy> make_random(uint64_t seed);
/// The next active node with a free place, in a fixed order.
std::unique_ptr<strategy> make_round_robin();
/// The active node with the lowest load fraction (reported + reserved over capacity);
/// new rooms avoid nodes above `high_water` while any other exists, leaving headroom for
/// the rooms already there to grow (fairer to a strategy that cannot cascade).
std::unique_ptr<strategy> make_least_loaded(const world& w, double high_water);
/// LiveKit's region-aware selection: the region whose centre (the mean position of its
/// nodes) is nearest to the room's first participant, among regions with a node under
/// `high_water`; the least loaded node of that region.
std::unique_ptr<strategy> make_nearest_region(const world& w, double high_water);
/// allocation::place() with `rules` and the app's strategy; clients marked `probes` first
/// ask nearest_candidates() for `probe_count` nodes and send their measured RTTs.
std::unique_ptr<strategy> make_ours(allocation::strategy weights,
                                    const allocation::placement_rules& rules, uint32_t probe_count);

} // namespace chroom::bench::sim
