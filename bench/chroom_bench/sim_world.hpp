#pragma once

// The world the placement simulation replays: media nodes in real cities, rooms and their
// clients arriving over a simulated day, the nodes that crash, and the "true" network
// (what a client really measures), which placement never sees directly. Built once from a
// seed; every strategy replays the same world.

#include "allocation/geo.hpp"
#include "chroom/medianode/v1/media_node.pb.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace chroom::bench::sim {

struct world_options {
  uint64_t seed = 1;
  uint32_t nodes = 300;
  /// Joins to generate (clients); rooms are drawn until their sizes add up to this.
  uint32_t clients = 500'000;
  /// Length of the simulated day, hours (starts at 00:00 UTC).
  double hours = 24;
  /// Share of clients that probe the nearest candidates before allocating.
  double probe_fraction = 0.3;
  /// Nodes that crash during the run.
  uint32_t failures = 4;
  /// Nodes each node measures its RTT to (Stats.peer_rtts), nearest first.
  uint32_t peer_rtts = 16;
  /// tools/data/cities.csv
  std::string cities_path;
};

struct city {
  std::string name;
  std::string country;
  std::string region;
  allocation::geo_point where;
  uint64_t population = 0;
};

struct node {
  std::string id;
  uint32_t city = 0;
  allocation::geo_point where;
  uint32_t max_participants = 0;
  /// When it crashes, seconds from the start; infinity: never.
  double crash_at_s = std::numeric_limits<double>::infinity();
  /// The nodes it measures (Stats.peer_rtts): index and true RTT, ms.
  std::vector<std::pair<uint32_t, double>> peers;
};

enum class room_kind : uint8_t { call, meeting, webinar };
inline constexpr int room_kinds = 3;
const char* to_string(room_kind kind);

struct room {
  room_kind kind = room_kind::call;
  /// Clients of the room (indices into world::clients(), in arrival order).
  std::vector<uint32_t> clients;
};

struct client {
  uint32_t room = 0;
  uint32_t city = 0;
  /// Where the client really is (its city plus a few km); also what it tells Allocate.
  allocation::geo_point where;
  /// Round trip of its own access network (Wi-Fi, DSL, mobile), ms.
  double access_ms = 0;
  double arrive_s = 0;
  double leave_s = 0;
  bool probes = false;
};

class world {
public:
  /// Builds the world; nothing with `error` set when the city file is unusable.
  static std::optional<world> build(const world_options& options, std::string& error);

  const world_options& options() const { return options_; }
  const std::vector<city>& cities() const { return cities_; }
  const std::vector<node>& nodes() const { return nodes_; }
  const std::vector<room>& rooms() const { return rooms_; }
  /// Sorted by arrival time.
  const std::vector<client>& clients() const { return clients_; }
  /// Nodes in the order they crash.
  const std::vector<uint32_t>& crashes() const { return crashes_; }

  /// What the client really measures to a node: the fibre model times the route factor of
  /// (its city, the node), plus its access latency. Placement only knows the model.
  double true_rtt_ms(const client& who, uint32_t node_index) const;
  /// What two nodes really measure between them (what they report in Stats.peer_rtts).
  double true_node_rtt_ms(uint32_t a, uint32_t b) const;
  /// Nodes by true RTT (without access latency) from the centre of `city_index`, nearest
  /// first: the lower bound and the diagnostics walk it instead of every node.
  const std::vector<uint32_t>& nodes_by_rtt(uint32_t city_index) const {
    return nodes_by_rtt_[city_index];
  }

  /// The Register message node `index` sends.
  chroom::medianode::v1::Register registration(uint32_t index) const;

  /// Sum of max_participants.
  uint64_t total_capacity() const;

private:
  world_options options_;
  std::vector<city> cities_;
  std::vector<node> nodes_;
  std::vector<room> rooms_;
  std::vector<client> clients_;
  std::vector<uint32_t> crashes_;
  // Per city; built for every city so that replays on several threads only read.
  std::vector<std::vector<uint32_t>> nodes_by_rtt_;
};

/// Activity at a local hour (0..24), 0..1: how many people are in calls then, relative to
/// the busiest hour of the day.
double activity(double local_hour);

} // namespace chroom::bench::sim
