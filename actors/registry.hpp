#pragma once

// The registry: one per peer, owner of the node table (allocation/node_table.hpp). Media
// node actors report registrations, Stats and closed streams to it; it applies the
// lifecycle rules on a sweep timer, tells media node actors to end streams that were
// replaced or died, and publishes every state change to its subscribers (WatchNodes, the
// allocation engine).
//
// Messages (all local):
//   (node_register_atom, Register, actor media_node) -> node_admission
//   (node_stats_atom, node_id, session, Stats)
//   (node_closed_atom, node_id, session)
//   (node_report_atom, node_id, Event)                 events a node sent by itself
//   (list_nodes_atom, ListNodesRequest) -> ListNodesResponse
//   (get_node_atom | cordon_atom | uncordon_atom, node_id) -> (grpc_status, NodeInfo)
//   (drain_atom, node_id, uint32 deadline_ms) -> (grpc_status, NodeInfo)
//   (subscribe_atom, actor) -> the subscriber gets (node_event_atom, NodeEvent) for the
//                              current state of every node, then for every change
//   (node_command_atom, node_id, Command) -> command_outcome (delegated to the node)
// Allocation (actors/allocation_messages.hpp):
//   (alloc_place_atom, place_batch) -> place_batch_answer   decide and reserve
//   (alloc_confirm_atom | alloc_release_atom, node_id, reservation_id)
//   (room_closed_atom, node_id, node_room_id)                a room left a node
//   (candidates_atom, candidates_query) -> candidates_answer
//   (room_opened_atom, node_id, node_room_id)                a room taken over from a peer
// Cluster (docs/cluster.md): every registry knows every node of the cluster. The home
// peer of a node (the one its stream is connected to) sends its registrations, stream
// ends at once and its latest Stats every update interval to the other peers' registries;
// room placements on nodes go to every peer too. Commands to a node homed elsewhere go
// through its home registry.
//   (cluster_view_atom, cluster_view)                 from the membership actor
//   (node_updates_atom, NodeUpdates bytes)            from another peer's registry
//   (node_command_atom, node_id, Command bytes) -> command_outcome   from another peer

#include "allocation/node_table.hpp"
#include "allocation/placement.hpp"
#include "transport/call_protocol.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/meta/type_name.hpp>

#include <string>
#include <vector>

namespace chroom::actors {

struct registry_settings {
  allocation::liveness_rules rules;
  /// How often the lifecycle rules are applied.
  std::chrono::milliseconds sweep_interval{100};
  allocation::placement_rules placement;
  /// How long capacity stays set aside for an unconfirmed allocation.
  std::chrono::milliseconds reservation_ttl{10'000};
  /// Clients of unknown location are placed at this region's centre; empty: the region
  /// with the most active nodes.
  std::string fallback_region;
  /// This peer's id (the home of the nodes connected to it).
  std::string peer_id;
  /// How often the latest Stats of this peer's nodes go to the other peers.
  std::chrono::milliseconds update_interval{250};
  /// This peer has seeds: until it has the nodes of the cluster it meets (or this long
  /// passed: nobody answered), it places nobody. Zero: a peer alone.
  std::chrono::milliseconds startup_sync{0};
  /// Gets (usage_atom, app_id, UsageCounters bytes): the media bytes this peer's nodes
  /// report per room, added up per app (usage metering).
  caf::actor app_directory;
};

/// The registry's answer to a Register.
struct node_admission {
  bool accepted = false;
  /// Why not, for the node (accepted == false).
  transport::grpc_status refusal;
  /// The stream's session id (accepted == true).
  uint64_t session = 0;
  /// Rooms the node must close.
  std::vector<std::string> close_rooms;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_admission& x) {
  return f(caf::meta::type_name("node_admission"), x.accepted, x.refusal, x.session, x.close_rooms);
}

caf::actor spawn_registry(caf::actor_system& system, registry_settings settings);

} // namespace chroom::actors
