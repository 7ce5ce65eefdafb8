#pragma once

// Versions and merging of replicated room state (chroom.cluster.v1.RoomState). A room's
// version has one counter per peer run that wrote it (a version vector): a replica keeps
// the newest state, and two states that diverged during a partition are merged on heal
// rather than one dropped. Pure functions on the message; the room actor applies them.

#include "chroom/cluster/v1/cluster.pb.h"

#include <string>
#include <string_view>

namespace chroom::cluster {

using chroom::cluster::v1::RoomState;

enum class version_order {
  same,
  /// Every counter of a is >= b's, one is greater: a supersedes b.
  newer,
  older,
  /// Each has a change the other has not seen: merge them.
  concurrent,
};

version_order compare_versions(const RoomState& a, const RoomState& b);

/// Counts one more change by `writer` ("peer_id@incarnation").
void count_change(RoomState& state, std::string_view writer);

/// The total number of changes in a version (for logs).
uint64_t total_changes(const RoomState& state);

/// `a` and `b` as one: the newer when one supersedes the other; for concurrent states the
/// union — members by client id (a's entry wins a conflict), parts by node, relay links
/// without loops — with every part linked into one relay tree: parts that only one side
/// knew are joined to the nearest part of the other by a new link, so a room placed on two
/// nodes during a partition is relayed, not split. The version is the pointwise maximum;
/// the result is closed only when both were.
RoomState merge_rooms(const RoomState& a, const RoomState& b);

/// The links of `state` form a tree over its parts (every part reachable, no loop).
bool links_form_tree(const RoomState& state);

} // namespace chroom::cluster
