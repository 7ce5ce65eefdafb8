// What one simulated media node is and does, without any networking: its fixed profile
// (identity, place, capacity, features, network quality) and its changing state (rooms,
// participants, relays, draining), the commands it obeys and the Stats it reports.
// The fleet (fleet.hpp) owns one node_model per node and moves its messages over gRPC.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "chroom/medianode/v1/media_node.pb.h"
#include "tools/node_sim/cities.hpp"
#include "tools/node_sim/random.hpp"

namespace chroom::node_sim {

namespace v1 = chroom::medianode::v1;
using sim_clock = std::chrono::steady_clock;

// How a fleet's network behaves (--profile).
enum class network_profile { good, mixed, poor };

// Packet loss and jitter a node sees on its media before load makes them worse.
struct network_quality {
  double packet_loss = 0; // 0..1
  double jitter_ms = 0;
};

// Everything about the fleet that is fixed before the first connection.
struct fleet_parameters {
  std::uint32_t nodes = 1;
  std::string id_prefix = "sim";
  std::uint64_t seed = 1;
  std::uint32_t max_participants = 500;
  double upload_mbps = 1000;
  double download_mbps = 1000;
  std::uint32_t cpu_cores = 8;
  network_profile profile = network_profile::good;
  // Other nodes each node reports a round trip to in Stats.peer_rtts.
  std::uint32_t peer_rtts = 4;
  // Exactly one of the two: nodes prove their identity with hex(HMAC-SHA256(secret_key,
  // node_id)), or all present the same credential.
  std::string secret_key;
  std::string credential;
};

// The fixed description of one node.
struct node_profile {
  std::uint32_t index = 0;
  std::string node_id;
  std::string credential;
  std::uint32_t media_port = 0;
  double latitude = 0;  // degrees
  double longitude = 0; // degrees
  std::string region;
  std::string country;
  std::string city;
  std::uint32_t max_participants = 0;
  double upload_mbps = 0;
  double download_mbps = 0;
  std::uint32_t cpu_cores = 0;
  bool recording = false;
  bool e2ee = false;
  network_quality quality;
  // CPU use of an idle node (0..1): the SFU's own housekeeping.
  double base_cpu = 0;
  struct peer {
    std::string node_id;
    // Round trip predicted from the great-circle distance, before noise (ms).
    double base_rtt_ms = 0;
  };
  std::vector<peer> peers;
};

// The Media Node RPC version the simulator speaks (Register.protocol_version): 1.1 adds
// RemoveParticipant.
inline constexpr const char* protocol_version = "1.1";

// "<prefix>-<5-digit index>", e.g. sim-00042 (more digits past 99,999).
std::string node_id_for(const std::string& prefix, std::uint32_t index);

// Round trip between two places over fibre: light covers ~200 km per ms in glass, so
// 1 ms of RTT per 100 km of straight line; real routes are ~1.5x longer than the great
// circle; plus 2 ms for the last miles and switching at both ends.
double modelled_rtt_ms(double distance_km);

// The profiles of all nodes of a fleet, deterministic for (parameters, cities).
std::vector<node_profile> make_profiles(const fleet_parameters& parameters,
                                        const city_table& cities);

// The changing state of one node and its behaviour. Not thread-safe: the fleet locks.
class node_model {
public:
  node_model(const node_profile& profile, double mean_session_s, std::uint64_t seed);

  const node_profile& profile() const { return *profile_; }

  // The Register message that opens a stream, listing the rooms hosted now.
  void fill_register(v1::Register& out) const;

  // Obeys a command; returns the Ack or Nack to send. Commands are idempotent: a repeated
  // PrepareRoom/AdmitParticipant/AttachRelay is acknowledged again without change, closing,
  // detaching or removing something already gone is acknowledged.
  v1::NodeMessage apply(const v1::Command& command, sim_clock::time_point now);

  // Drops the rooms the orchestrator did not know (Registered.close_rooms).
  void close_rooms(const google::protobuf::RepeatedPtrField<std::string>& room_ids);

  // Participants whose session has ended by `now` leave: appends a ParticipantLeft event
  // for each and a RoomEmpty for each room they left empty.
  void expire_participants(sim_clock::time_point now, std::vector<v1::NodeMessage>& events);

  // A load report for now (draws noise from the node's generator).
  /// Stats as of `now`, with each room's traffic since the previous Stats.
  void fill_stats(v1::Stats& out, sim_clock::time_point now);

  // Forgets all rooms and the drain (a restart as a fresh process).
  void reset();

  std::uint32_t participants() const { return participants_; }
  std::uint32_t rooms() const { return static_cast<std::uint32_t>(rooms_.size()); }
  std::uint32_t relays() const;
  bool draining() const { return draining_; }

  // {"rooms":[{"room_id":..,"participants":..,"relays":[..]}],"draining":..} for `node`.
  std::string rooms_json() const;

private:
  struct participant {
    std::string participant_id;
    sim_clock::time_point leaves_at;
  };
  struct room {
    std::string app_id;
    std::vector<participant> participants;
    std::set<std::string> relays; // peer node ids
  };

  v1::NodeMessage ack(std::uint64_t command_id) const;
  v1::NodeMessage nack(std::uint64_t command_id, v1::Nack::Reason reason,
                       std::string message) const;
  void recompute_next_departure();

  const node_profile* profile_;
  double mean_session_s_;
  rng rng_;
  std::map<std::string, room> rooms_;
  std::uint32_t participants_ = 0;
  // When the last Stats counted traffic (room_traffic covers the time since).
  sim_clock::time_point last_traffic_{};
  bool draining_ = false;
  // Earliest leaves_at of any participant, so most ticks skip the scan.
  sim_clock::time_point next_departure_ = sim_clock::time_point::max();
};

} // namespace chroom::node_sim
