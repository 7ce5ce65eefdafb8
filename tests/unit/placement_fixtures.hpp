#pragma once

// Fixtures shared by the placement tests (placement_test.cpp, geo_index_test.cpp): cities
// of known coordinates, nodes registered and made active in a real node_table, load
// reports, and a seeded random source that gives the same numbers on every standard
// library (std::uniform_real_distribution does not).

#include "allocation/geo.hpp"
#include "allocation/node_table.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <doctest/doctest.h>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace chroom::placement_fixtures {

namespace mn = chroom::medianode::v1;
using chroom::allocation::clock;
using chroom::allocation::geo_point;
using chroom::allocation::node_table;
using chroom::allocation::session_id;
using chroom::allocation::table_error;
using namespace std::chrono_literals;

// City centres, degrees.
inline constexpr geo_point berlin{52.5200, 13.4050};
inline constexpr geo_point potsdam{52.3906, 13.0645};
inline constexpr geo_point warsaw{52.2297, 21.0122};
inline constexpr geo_point frankfurt{50.1109, 8.6821};
inline constexpr geo_point paris{48.8566, 2.3522};
inline constexpr geo_point london{51.5074, -0.1278};
inline constexpr geo_point madrid{40.4168, -3.7038};
inline constexpr geo_point new_york{40.7128, -74.0060};
inline constexpr geo_point boston{42.3601, -71.0589};
inline constexpr geo_point sao_paulo{-23.5505, -46.6333};
inline constexpr geo_point tokyo{35.6762, 139.6503};
inline constexpr geo_point sydney{-33.8688, 151.2093};

// An arbitrary origin: steady time has no meaning of its own.
inline const clock::time_point t0 = clock::time_point{} + 1h;

/// The session every fixture node registers on.
inline constexpr session_id fixture_session = 1;

/// The default features of a fixture node.
inline const std::vector<std::string> basic_features{"opus", "vp8", "relay"};

/// A Register for a node at `at`. `features` holds codec names and "relay",
/// "recording", "e2ee".
inline mn::Register registration_at(const std::string& node_id, geo_point at,
                                    const std::string& region, const std::string& country,
                                    uint32_t max_participants,
                                    const std::vector<std::string>& features = basic_features) {
  mn::Register reg;
  reg.set_node_id(node_id);
  reg.set_protocol_version("1.0");
  reg.set_software_version("chroom-sfu 2.4.1");
  auto* endpoint = reg.add_endpoints();
  endpoint->set_host(node_id + ".example.net");
  endpoint->set_port(3478);
  endpoint->set_transport(mn::Endpoint::TRANSPORT_UDP);
  auto* location = reg.mutable_location();
  location->set_latitude(at.latitude_deg);
  location->set_longitude(at.longitude_deg);
  location->set_region(region);
  location->set_country(country);
  reg.mutable_capacity()->set_max_participants(max_participants);
  reg.mutable_capacity()->set_upload_mbps(1000);
  reg.mutable_capacity()->set_download_mbps(1000);
  reg.mutable_capacity()->set_cpu_cores(8);
  auto* offered = reg.mutable_features();
  for (const auto& feature : features) {
    if (feature == "relay")
      offered->set_relay(true);
    else if (feature == "recording")
      offered->set_recording(true);
    else if (feature == "e2ee")
      offered->set_e2ee(true);
    else
      offered->add_codecs(feature);
  }
  return reg;
}

/// A load report. Designated initialisers keep call sites readable:
/// `report(table, "berlin", {.participants = 80})`.
struct load {
  uint32_t participants = 0;
  double cpu_load = 0.1;
  double bandwidth_out_mbps = 10;
  double packet_loss = 0;
  double jitter_ms = 0;
  /// Measured round trips to other nodes (node id, milliseconds).
  std::vector<std::pair<std::string, double>> peer_rtts = {};
};

inline mn::Stats stats_of(const load& reported) {
  mn::Stats stats;
  stats.set_participants(reported.participants);
  stats.set_cpu_load(reported.cpu_load);
  stats.set_bandwidth_in_mbps(reported.bandwidth_out_mbps);
  stats.set_bandwidth_out_mbps(reported.bandwidth_out_mbps);
  stats.set_packet_loss(reported.packet_loss);
  stats.set_jitter_ms(reported.jitter_ms);
  for (const auto& [node_id, rtt_ms] : reported.peer_rtts) {
    auto* peer = stats.add_peer_rtts();
    peer->set_node_id(node_id);
    peer->set_rtt_ms(rtt_ms);
  }
  return stats;
}

/// Sends Stats for a fixture node (which makes a joining node active).
inline void report(node_table& table, const std::string& node_id, const load& reported = {},
                   clock::time_point now = t0) {
  table.on_stats(node_id, fixture_session, stats_of(reported), now);
}

/// Registers a node without sending Stats: it stays joining.
inline void register_only(node_table& table, const std::string& node_id, geo_point at,
                          const std::string& region, const std::string& country,
                          uint32_t max_participants,
                          const std::vector<std::string>& features = basic_features,
                          clock::time_point now = t0) {
  auto result =
    table.on_register(registration_at(node_id, at, region, country, max_participants, features),
                      fixture_session, now);
  REQUIRE(result.result == chroom::allocation::register_result::outcome::accepted);
}

/// Registers a node and reports an idle load: the node is active.
inline void add_node(node_table& table, const std::string& node_id, geo_point at,
                     const std::string& region, const std::string& country,
                     uint32_t max_participants,
                     const std::vector<std::string>& features = basic_features,
                     clock::time_point now = t0) {
  register_only(table, node_id, at, region, country, max_participants, features, now);
  report(table, node_id, {}, now);
  REQUIRE(table.find(node_id) != nullptr);
  REQUIRE(table.find(node_id)->state == chroom::admin::v1::NODE_STATE_ACTIVE);
}

/// Reserves `participants` on a node, as the registry does after a placement.
inline uint64_t reserve(node_table& table, const std::string& node_id, uint32_t participants = 1,
                        clock::time_point now = t0) {
  table_error error = table_error::none;
  auto id = table.reserve(node_id, participants, 10s, now, error);
  CHECK(error == table_error::none);
  return id;
}

/// A seeded source of uniform numbers that is the same on every platform.
class seeded_random {
public:
  explicit seeded_random(uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  /// Uniform in [low, high).
  double between(double low, double high) { return low + (high - low) * unit(); }
  /// Uniform in [0, n).
  size_t below(size_t n) { return static_cast<size_t>(unit() * static_cast<double>(n)); }
  bool chance(double p) { return unit() < p; }
  /// A point uniform on the sphere.
  geo_point on_sphere() {
    double latitude = std::asin(between(-1.0, 1.0)) * 180.0 / std::numbers::pi;
    return {latitude, between(-180.0, 180.0)};
  }

private:
  std::mt19937_64 engine_;
};

} // namespace chroom::placement_fixtures
