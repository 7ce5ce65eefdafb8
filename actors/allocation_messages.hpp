#pragma once

// What the allocation actors (allocation service, allocation_request, room,
// client_session) and the registry say to each other. Local messages only: the types are
// moved between actors of one peer, never serialized (see proto_messages.hpp).
//
//   room -> registry     (alloc_place_atom, place_batch) -> std::vector<place_answer>
//   service -> registry  (candidates_atom, candidates_query) -> candidates_answer
//   room -> registry     (alloc_confirm_atom | alloc_release_atom, node_id, reservation_id)
//   room -> registry     (room_closed_atom, node_id, node_room_id)
//   request -> room      (allocate_atom, allocation_ask) -> allocation_reply
//   service -> room      (allocate_atom, allocation_ask, direct_allocation): the room answers
//                        the client's gateway itself

#include "actors/proto_messages.hpp"
#include "allocation/placement.hpp"
#include "apps/app_spec.hpp"
#include "chroom/allocation/v1/allocation_service.pb.h"
#include "chroom/cluster/v1/cluster.pb.h"
#include "transport/call_protocol.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace chroom::actors {

/// Initial metadata of the answers to a room's calls (Allocate, KeepAlive, Release,
/// GetRoom): the gRPC address of the peer that owns the room, which answered. A client that
/// keeps a connection to it calls it directly next time (no forwarding hop); one that
/// ignores the header still works.
inline constexpr std::string_view owner_address_key = "chroom-owner-address";

/// The owner hint of room_settings::owner_address, or nothing.
inline transport::metadata owner_hint(const std::string& owner_address) {
  if (owner_address.empty())
    return {};
  return {{std::string{owner_address_key}, owner_address}};
}

/// One participant (or a moving share of a room) to place.
struct place_query {
  allocation::placement_request request;
  /// Keeps request.app alive while the query travels.
  std::shared_ptr<const allocation::app_policy> app;
  uint32_t alternates = 0;
  /// The client's location is unknown: the registry places it at the fallback point.
  bool at_fallback = false;
};

/// Placements for one room, decided in order: each sees the room as the earlier ones left
/// it (a new part made by the first is a part for the second), so a burst of joins to one
/// room ends on one coherent placement.
struct place_batch {
  /// The room's id on nodes ("app_id/room_id"): the registry records which nodes host it.
  std::string node_room_id;
  allocation::room_view room;
  std::vector<place_query> queries;
};

/// The registry's decision for one place_query.
struct place_answer {
  allocation::placement_result result;
  /// Participants set aside on the chosen node (0 on failure).
  uint64_t reservation_id = 0;
  /// The chosen node and the alternates, as clients see them.
  chroom::allocation::v1::NodeChoice chosen;
  std::vector<chroom::allocation::v1::NodeChoice> alternates;
  /// The chosen node's media_node actor (commands go to it directly).
  caf::actor node_actor;
  /// Where the chosen node is (the room mends its relay tree by distance).
  allocation::geo_point chosen_location;
};

/// The answer to a whole place_batch.
struct place_batch_answer {
  std::vector<place_answer> answers;
  /// Room parts whose node drains: their participants should move (DESIGN.md: a
  /// draining node's rooms move when they next change).
  std::vector<std::string> draining_parts;
};

struct candidates_query {
  /// Who asks (alternates unused).
  place_query query;
  uint32_t count = 5;
};

struct candidates_answer {
  std::vector<chroom::allocation::v1::NodeChoice> candidates;
  /// Each candidate's load after placing the client there, 0..1 (for hooks).
  std::vector<double> load_after;
};

/// What an allocation_request asks of a room.
struct allocation_ask {
  /// The client's request as it came (replicated: a peer taking the room over places the
  /// client again from it).
  chroom::allocation::v1::AllocateRequest request;
  std::string client_id;
  std::string role;
  place_query query;
  uint32_t expected_kbps = 0;
  std::vector<std::string> warnings;
  /// The app's app_policy when its hooks define before_allocation (asked first), and the
  /// app (the role the hook sets is checked against it).
  caf::actor hook;
  std::shared_ptr<const apps::app_definition> app;
  /// For the hook: the client's country when its IP located it; empty otherwise.
  std::string client_country;
};

/// An Allocate the service hands to its room whole (apps without a before_allocation hook):
/// the room answers the client's gateway, no actor relays the answer.
struct direct_allocation {
  transport::call_context call;
  /// When the call reached the service (allocation latency).
  std::chrono::steady_clock::time_point started;
};

/// The room's answer: a response for the client, or an error status.
struct allocation_reply {
  transport::grpc_status status;
  chroom::allocation::v1::AllocateResponse response;
  /// Initial metadata for the client (the owner hint).
  transport::metadata headers;

  /// The refusal `why`.
  static allocation_reply refused(transport::grpc_status why) {
    allocation_reply reply;
    reply.status = std::move(why);
    return reply;
  }
};

} // namespace chroom::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::place_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::place_batch_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::candidates_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::candidates_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::allocation_ask)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::allocation_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::actors::direct_allocation)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::allocation::v1::NodeChoice)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::allocation::v1::Room)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::allocation::v1::RoomUpdate)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::allocation::v1::KeepAliveResponse)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::cluster::v1::RoomState)
