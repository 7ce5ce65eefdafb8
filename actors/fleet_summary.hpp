#pragma once

// The one line a peer logs at info about its media nodes, in place of a line per node
// state change (those are debug): at most once a second while the fleet changes, e.g.
//   fleet: 300 nodes active: eu-central 41, us-east 28, ... and 63 in 9 more regions;
//   2 suspect
// (one line). Pure: the registry decides when, this says what.

#include "allocation/node_table.hpp"

#include <chrono>
#include <string>

namespace chroom::actors {

/// Active regions named before the rest are summed up: enough to see where the fleet is,
/// short enough for one line of a terminal.
inline constexpr size_t fleet_summary_regions = 6;

/// Shortest time between two summaries.
inline constexpr auto fleet_summary_interval = std::chrono::seconds{1};

/// The summary of every node in `table`: active nodes by region (most first, then by
/// name), then the count of each other state that has nodes.
std::string fleet_summary(const allocation::node_table& table);

} // namespace chroom::actors
