#pragma once

// The peer's Prometheus metrics (docs/operations.md lists them). One registry per process,
// served at the admin HTTP port's /metrics.
//
// Counters and histograms are bumped where things happen (gateway, allocation service,
// rooms, membership): each bump is an atomic add, safe from any thread. Gauges of state
// that actors own (nodes by state and region, rooms, members) are set when a scrape asks
// the actors (daemon/admin_http.cpp), not on every change.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::observability {

/// gRPC status codes 0..16.
inline constexpr size_t grpc_code_count = 17;

class peer_metrics {
  // First: the families and metrics below are made in it.
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& responses_family_;
  std::array<prometheus::Counter*, grpc_code_count> responses_{};
  prometheus::Family<prometheus::Counter>& allocations_family_;
  prometheus::Family<prometheus::Counter>& moves_family_;
  prometheus::Family<prometheus::Gauge>& nodes_family_;
  prometheus::Family<prometheus::Gauge>& members_family_;
  prometheus::Family<prometheus::Counter>& enforcements_family_;
  prometheus::Family<prometheus::Counter>& node_changes_family_;
  prometheus::Family<prometheus::Gauge>& region_capacity_family_;
  prometheus::Family<prometheus::Gauge>& region_free_family_;
  std::mutex gauges_mutex_;
  /// Label sets set before: a combination that disappears is set to 0, not left stale.
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> node_gauges_;
  std::map<std::string, prometheus::Gauge*> member_gauges_;
  std::map<std::string, std::pair<prometheus::Gauge*, prometheus::Gauge*>> region_gauges_;

public:
  peer_metrics();
  peer_metrics(const peer_metrics&) = delete;
  peer_metrics& operator=(const peer_metrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // --- gateway (transport/) -------------------------------------------------------------
  prometheus::Gauge& connections_open;
  prometheus::Counter& connections_accepted;
  prometheus::Counter& connections_refused;
  prometheus::Gauge& streams_open;
  prometheus::Counter& streams_started;
  /// Calls answered, by gRPC status code ("OK", "NOT_FOUND", ...).
  prometheus::Counter& responses(int grpc_code);
  /// Calls stopped and connections closed by the gateway's abuse limits, by reason
  /// ("connection_memory", "peer_memory", "header_list", "premature_resets", ...). The
  /// lookup takes a lock: for events that end a call or a connection, not per call.
  prometheus::Counter& gateway_enforcements(std::string_view reason);
  /// Bytes the gateway's connections hold for their clients (set at scrape time).
  prometheus::Gauge& gateway_memory_bytes;

  // --- allocation (actors/allocation_service.cpp) --------------------------------------
  /// Allocate calls by app and result ("OK", "RESOURCE_EXHAUSTED", ...). The family lookup
  /// takes a lock: callers keep the returned counter (it lives as long as the registry).
  prometheus::Counter& allocations(const std::string& app_id, const std::string& result);
  /// Seconds from an Allocate's arrival at the service to its answer.
  prometheus::Histogram& allocation_seconds;
  /// Participants moved between nodes, by reason ("node lost", "node draining", "migrated").
  prometheus::Counter& participant_moves(const std::string& reason);

  // --- cluster (actors/room.cpp, allocation_service.cpp, cluster_membership.cpp) -------
  /// Seconds from a room change to the acknowledgement of every replica.
  prometheus::Histogram& replication_seconds;
  /// Rooms this peer took over from a dead owner.
  prometheus::Counter& room_failovers;
  /// Peers this peer saw die.
  prometheus::Counter& peer_failures;

  // --- media nodes (actors/registry.cpp) ------------------------------------------------
  /// Media node state changes this peer's registry made, by the state entered ("dead",
  /// "suspect", "active", ...). Every registry knows every node of the cluster, so every
  /// peer counts every node's changes. The lookup takes a lock: changes are rare events.
  prometheus::Counter& node_state_changes(std::string_view state);

  // --- state, set at scrape time ----------------------------------------------------------
  /// Media nodes by state and region (every node the peer knows, cluster-wide).
  void set_nodes(const std::map<std::pair<std::string, std::string>, double>& by_state_region);
  /// Cluster members by state, as this peer sees them.
  void set_members(const std::map<std::string, double>& by_state);
  /// Participants the active nodes of each region can hold, and how many of those places
  /// are free (neither taken nor reserved), by region.
  struct region_capacity {
    double participants = 0;
    double free = 0;
  };
  void set_region_capacity(const std::map<std::string, region_capacity>& by_region);
  prometheus::Gauge& rooms_owned;
  prometheus::Gauge& room_replicas;
  prometheus::Gauge& participants;
  prometheus::Gauge& ready;
  /// Actors running in the peer's actor system (gateways and calls included).
  prometheus::Gauge& live_actors;
};

/// The process's metrics.
peer_metrics& metrics();

/// Buckets of the latency histograms, seconds: 50 us .. 10 s.
const std::vector<double>& latency_buckets();

/// A histogram's state at one moment: its count and cumulative buckets.
struct histogram_sample {
  double count = 0;
  /// Observations <= upper_bounds[i], for each bucket (the last bound is +Inf).
  std::vector<double> cumulative;
  std::vector<double> upper_bounds;
};

/// The histogram's single metric (a histogram family without labels) as it is now.
histogram_sample sample_of(prometheus::Histogram& histogram);

/// The q-quantile (0..1) of the observations made between two samples of one histogram,
/// interpolated linearly within its bucket as Prometheus' histogram_quantile does (the
/// lower bound of the +Inf bucket when it falls there); nothing without observations.
std::optional<double> quantile_between(const histogram_sample& from, const histogram_sample& to,
                                       double q);

/// Seconds since `start` as a double, for Observe.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace chroom::observability
