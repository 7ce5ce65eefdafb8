#pragma once

// chroom.allocation.v1.AllocationService: the actor behind the service's calls, one per
// peer. It checks requests, knows the apps, the rooms (one `room` actor each, spawned on
// first use) and the leases (one `client_session` actor each), and spawns one
// `allocation_request` actor per Allocate: it locates the client (point, IP, or the
// fallback region), asks the room, and answers the call. It subscribes to the registry's
// node events and tells rooms on nodes that died which participants to move.
//
// Messages besides the gRPC calls (transport/call_protocol.hpp):
//   (node_event_atom, NodeEvent)                    from the registry
//   (room_for_atom, app_id, room_id) -> (grpc_status, room actor)   get or create
//   (room_idle_atom, app_id, room_id)               from a room that quits
//   (lease_open_atom, lease_id, session)            from a room
//   (app_catalog_atom, catalog)                     from the app directory
// Cluster (docs/cluster.md): a room is run by its owner peer (rendezvous hashing over the
// live peers). Calls for a room owned elsewhere (Allocate, GetRoom, KeepAlive and Release
// by the room in the lease id, WatchRoom) go to the owner's service, which answers the
// client's gateway directly. The service keeps the replicas this peer holds, takes rooms
// over when their owner is gone, and hands rooms off when another peer owns them now.
//   (cluster_view_atom, cluster_view)               from the membership actor
//   (replicate_atom, room key, RoomState bytes) -> bool     from an owner: keep a replica
//   (absorb_atom, room key, RoomState bytes, hops) -> bool  this peer owns the room now
//   (leave_atom) -> bool          hand every room off to the others (at shutdown)
//   (get_cluster_atom) -> (rooms owned, replicas held)

#include "actors/room.hpp"
#include "allocation/ip_locator.hpp"
#include "allocation/placement.hpp"
#include "apps/app_catalog.hpp"
#include "transport/grpc_status.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>

namespace chroom::actors {

struct allocation_service_settings {
  /// For the rooms; `service` is filled in by the service itself.
  room_settings room;
  /// The apps at start; the app directory sends every later version.
  std::shared_ptr<const apps::app_catalog> catalog;
  caf::actor app_directory;
  /// Locates clients by IP; null or not open: IPs are not located.
  std::shared_ptr<const allocation::ip_locator> locator;
  /// This peer's id (in forwarded calls' metadata, for logs).
  std::string peer_id;
};

caf::actor spawn_allocation_service(caf::actor_system& system,
                                    allocation_service_settings settings);

/// Why (app_id, room_id) cannot name a room ("room_id is required", "... may hold only
/// ..."), empty when it can.
std::string room_key_problem(std::string_view app_id, std::string_view room_id);

/// The status a call naming an invalid room key fails with: INVALID_ARGUMENT with the
/// field (app_id or room_id) in its details (docs/errors.md); nothing when it is valid.
std::optional<transport::grpc_status> room_key_refusal(std::string_view app_id,
                                                       std::string_view room_id);

} // namespace chroom::actors
