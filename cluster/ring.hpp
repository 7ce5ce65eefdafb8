#pragma once

// Room ownership by rendezvous (highest random weight) hashing: every peer scores every
// room with a hash of (peer, room); the room's owner is the live peer with the highest
// score and its replicas are the next ones. Any peer computes the same answer from the
// same member list, and a peer joining or leaving moves only the rooms it wins or held
// (1/N of them), not a reshuffle.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::cluster {

/// The score of `peer_id` for `key`: a 64-bit hash, stable across builds and machines.
uint64_t rendezvous_score(std::string_view peer_id, std::string_view key);

/// The peers that hold `key`, best first: [0] owns it, the next `count - 1` replicate it.
/// Fewer when there are fewer peers. `peers` need not be sorted; ties (impossible in
/// practice) go to the smaller peer id.
std::vector<std::string> owners_of(std::string_view key, const std::vector<std::string>& peers,
                                   size_t count);

} // namespace chroom::cluster
