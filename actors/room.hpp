#pragma once

// A room: one actor per (app, room) on the peer that owns it. It holds the room's
// placement (the nodes it spans, the relays linking them, its participants and their
// leases) and is the only writer of it, so concurrent joins of one room end coherent.
//
// Joins queue while a placement is in flight; the queue goes to the registry as one batch
// (actors/allocation_messages.hpp), decided in order. For each placed participant the room
// prepares the room on a new node (PrepareRoom, AttachRelay to the nearest part), admits
// the participant (AdmitParticipant with its join token), spawns its client_session (the
// lease) and answers the allocation_request at once: the signed token lets the node admit
// the client even before its Ack. An Ack confirms the reservation; a Nack or silence
// releases it and places the participant again elsewhere (the client learns it from
// KeepAlive), once; then the lease is revoked.
//
//   parts: empty --first join--> one node --far or full join--> cascade (relay tree)
//   a part's last participant leaves --> DetachRelay/mend the tree, CloseRoom on the node
//   a part's node dies (node_lost) or drains (seen at the next batch) --> its participants
//   are placed again (moves), sessions and watchers are told
//   no participant, no watcher for idle_linger --> the room asks the service to forget it
//
// Messages:
//   (allocate_atom, allocation_ask) -> allocation_reply
//   (release_atom, client_id, lease_id, reason)        from client_session
//   (node_lost_atom, node_id)                          from the allocation service
//   (get_room_atom) -> (grpc_status, Room)
//   (watch_room_atom, watcher) -> watcher gets (room_update_atom, RoomUpdate bytes) now and
//                                 on change (bytes: the watcher may be on another peer)
// Cluster (docs/cluster.md): the room is run by its owner peer and replicated.
//   (cluster_view_atom, replicas, writer)   the allocation services holding replicas, and
//                                           this peer's name as a writer of versions
//   every change --> (replicate_atom, key, RoomState bytes) to each replica; the answers to
//                    the joins it holds go out once the replicas acknowledged it
//   (handoff_atom, new owner's service)     the room moves: its state goes to the new owner
//                                           (absorb_atom), queued joins are sent back to be
//                                           routed again, the room quits without telling
//                                           nodes anything
//   (lease_open_atom, lease_id) -> session  the session of a member's lease (null if none)
//   (absorb_atom, RoomState)                merge state from elsewhere (a handoff, a replica,
//                                           the other side of a healed partition)

#include "actors/allocation_messages.hpp"
#include "allocation/placement.hpp"
#include "apps/app_spec.hpp"
#include "transport/node_credentials.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace chroom::actors {

struct room_settings {
  caf::actor registry;
  /// The allocation service: leases are registered with it; an idle room says goodbye.
  caf::actor service;
  std::shared_ptr<const transport::node_credentials> credentials;
  std::chrono::milliseconds lease_ttl{30'000};
  std::chrono::milliseconds join_token_ttl{300'000};
  /// How long a room with no participant and no watcher lingers.
  std::chrono::milliseconds idle_linger{10'000};
  uint32_t alternates = 2;
  /// How long a replica may take to acknowledge a change.
  std::chrono::milliseconds replication_timeout{2000};
  /// The placement query of a client from its request (a room taken over from another
  /// peer places its members from their requests); nothing for an unknown app.
  std::function<std::optional<place_query>(const chroom::allocation::v1::AllocateRequest&)>
    query_of;
  /// The app as the catalog has it now (room size, roles, admission, lease TTL, token
  /// claims); null for an unknown app.
  std::function<std::shared_ptr<const apps::app_definition>(const std::string& app_id)> app_of;
  /// The app's app_policy actor on this peer (it gets the room's events); null if none.
  std::function<caf::actor(const std::string& app_id)> policy_of;
  /// This peer (in event ids).
  std::string peer_id;
  /// This peer's gRPC address as clients reach it ("host:port"): answers to a room's calls
  /// name it (owner_address_key), so a client calls the owner directly next time. Empty
  /// (a peer alone, or an ephemeral port): no hint.
  std::string owner_address;
  /// Gets (usage_atom, app_id, UsageCounters bytes): rooms opened, relay links set up.
  caf::actor app_directory;
};

/// The UNAVAILABLE message of a join that reached a room as it moved to another peer; the
/// request is routed again.
inline constexpr std::string_view room_moved_message = "the room moved to another peer";

/// The key of a room among all apps, also its id on media nodes: "app_id/room_id" (ids
/// have no '/').
std::string node_room_id(const std::string& app_id, const std::string& room_id);
/// (app_id, room_id) of a node_room_id (split at its first '/'); nullopt without a '/'.
std::optional<std::pair<std::string_view, std::string_view>>
split_node_room_id(std::string_view key);

caf::actor spawn_room(caf::actor_system& system, std::string app_id, std::string room_id,
                      std::shared_ptr<const room_settings> settings);

/// A room that continues from `state` (taken over from a dead or leaving owner): its
/// members get sessions with a fresh lease TTL, its parts and relays are as the state
/// says; nodes are not told anything (they still run the room).
caf::actor spawn_restored_room(caf::actor_system& system, chroom::cluster::v1::RoomState state,
                               std::shared_ptr<const room_settings> settings);

} // namespace chroom::actors
