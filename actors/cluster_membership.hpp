#pragma once

// Cluster membership: one `cluster_membership` actor per peer. It is published on the
// peer's cluster port (CAF middleman); it connects to the seeds and to every member it
// hears of, says hello (who it is, which members it knows, its service actors), sends
// heartbeats, and declares a member dead when its connection drops (remote monitor) or it
// is not heard from for the failure timeout. Members carry incarnations (the start time
// of their run): a restarted peer replaces its previous run. A peer shutting down says
// goodbye (left) after its rooms are handed off.
//
// Its subscribers (the allocation service, the registry) get the live view:
//   (cluster_view_atom, cluster_view)    at subscription and on every change
//
// Messages between peers (payloads are serialized chroom.cluster.v1 messages):
//   (hello_atom, Hello, membership, allocation service, registry, app directory)
//       -> (Hello, membership, allocation service, registry, app directory)
//   (heartbeat_atom, peer_id, incarnation, Heartbeat)
//   (leave_atom, peer_id, incarnation)
// Local:
//   (subscribe_atom, actor)
//   (get_cluster_atom) -> GetClusterResponse (members only)
//   (leave_atom) -> bool     say goodbye to every member (at shutdown)
//   (join_wait_atom) -> bool  answered once another peer said hello (true), at once for a
//                             peer without seeds, or after join_timeout (false: alone)

#include "chroom/admin/v1/admin_service.pb.h"
#include "cluster/peer_address.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace chroom::actors {

struct cluster_settings {
  std::string peer_id;
  /// Unix milliseconds at start: identifies this run of the peer.
  uint64_t incarnation = 0;
  /// Where the peer-to-peer socket listens; port 0: no cluster, this peer runs alone.
  cluster::peer_address listen;
  /// This peer's cluster and gRPC addresses as the others reach them.
  std::string cluster_address;
  std::string grpc_address;
  std::vector<cluster::peer_address> seeds;
  std::chrono::milliseconds heartbeat_interval{250};
  std::chrono::milliseconds failure_timeout{1500};
  uint32_t replication_factor = 2;
  /// How long a starting peer waits for a seed before it serves alone.
  std::chrono::milliseconds join_timeout{3000};
  /// Peers talk TLS (the actor system loaded CAF's OpenSSL module with the certificates).
  bool tls = false;
  /// This peer's services, handed to the others in Hello.
  caf::actor allocation_service;
  caf::actor registry;
  caf::actor app_directory;
};

/// A live peer and its service actors (remote proxies, or the local actors for itself).
struct peer_handle {
  std::string peer_id;
  uint64_t incarnation = 0;
  caf::actor allocation_service;
  caf::actor registry;
  caf::actor app_directory;
};

/// The live members as one peer sees them, itself included, sorted by peer_id.
struct cluster_view {
  std::string self_id;
  uint64_t self_incarnation = 0;
  std::vector<peer_handle> live;
  uint32_t replication_factor = 1;

  const peer_handle* find(std::string_view peer_id) const;
  std::vector<std::string> live_ids() const;
  /// The peers holding `key` (owner first, then replicas), replication_factor of them.
  std::vector<const peer_handle*> holders_of(std::string_view key) const;
  /// "peer_id@incarnation" of this peer: its name as a writer of room versions.
  std::string self_writer() const;
};

/// Publishes the membership actor on settings.listen (when its port is not 0) and starts
/// joining the seeds. Throws when the port cannot be bound.
caf::actor spawn_cluster_membership(caf::actor_system& system, cluster_settings settings);

} // namespace chroom::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::cluster_view)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::admin::v1::GetClusterResponse)
