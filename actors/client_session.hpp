#pragma once

// A client_session: one actor per allocated client, holder of its lease. KeepAlive renews
// the lease and hands out a fresh join token for the node the client belongs to now (it
// changes when the room moves the client); a lease not renewed for lease_ttl ends, and the
// room frees the client's place and tells the node. The allocation service keeps the
// leases' expiry times in one wheel (one timer for all leases, not one per lease) and
// sends the session timeout_atom when its lease expired.
//
//   alive --KeepAlive--> alive
//   alive --Release | timeout (lease_ttl without KeepAlive)--> room told (release_atom), ended
//   alive --revoked by the room (lease_end_atom) | room gone--> ended
//
// Messages:
//   (keep_alive_atom) -> KeepAliveResponse
//   (release_atom) -> grpc_status
//   (timeout_atom)                         from the service: the lease expired
//   (moved_atom, NodeChoice)               from the room: the client's new node
//   (lease_end_atom, reason)               from the room: the lease is revoked

#include "actors/room.hpp"
#include "chroom/allocation/v1/allocation_service.pb.h"

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace caf {
class local_actor;
}

namespace chroom::actors {

/// Who a lease is for.
struct lease_holder {
  std::string app_id;
  std::string room_id;
  std::string client_id;
  std::string role;
  std::string lease_id;
  /// Join token claims from the app's rules ("pub", "rec"); unset for an unknown app.
  std::optional<std::string> publish;
  std::optional<bool> recording;
  std::optional<std::string> tier;
  /// The app's lease TTL; 0: the peer's (room_settings::lease_ttl).
  std::chrono::milliseconds lease_ttl{0};

  /// The lease TTL that applies.
  std::chrono::milliseconds ttl(const room_settings& settings) const {
    return lease_ttl.count() > 0 ? lease_ttl : settings.lease_ttl;
  }
};

/// A join token and when it expires (Unix milliseconds).
struct signed_join_token {
  std::string token;
  int64_t expires_unix_ms = 0;
};

/// Signs a join token for `holder` on `node_id` with that node's secret (`node_secret`,
/// from settings.credentials->secret_of(node_id): callers keep it, deriving it costs an
/// HMAC).
signed_join_token join_token_for(const room_settings& settings, const lease_holder& holder,
                                 const std::string& node_id, const std::string& node_secret);

/// Spawns the session of a new lease; it watches `room` and ends with it.
caf::actor spawn_client_session(caf::local_actor* room, lease_holder holder,
                                chroom::allocation::v1::NodeChoice node,
                                std::shared_ptr<const room_settings> settings);

} // namespace chroom::actors
