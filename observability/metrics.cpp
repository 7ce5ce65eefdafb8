#include "observability/metrics.hpp"

#include "transport/grpc_status.hpp"

#include <algorithm>
#include <cmath>

namespace chroom::observability {

namespace {

template <class Metric>
prometheus::Family<Metric>& family(prometheus::Registry& registry, const std::string& name,
                                   const std::string& help) {
  if constexpr (std::is_same_v<Metric, prometheus::Counter>)
    return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  else if constexpr (std::is_same_v<Metric, prometheus::Gauge>)
    return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
  else
    return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

} // namespace

const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                           0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                           0.5,     1.0,    2.5,     5.0,    10.0};
  return buckets;
}

peer_metrics::peer_metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      responses_family_(family<prometheus::Counter>(*registry_, "chroom_grpc_responses_total",
                                                    "gRPC calls answered, by status code")),
      allocations_family_(family<prometheus::Counter>(*registry_, "chroom_allocations_total",
                                                      "Allocate calls by app and result code")),
      moves_family_(family<prometheus::Counter>(*registry_, "chroom_participant_moves_total",
                                                "Participants moved to another node, by reason")),
      nodes_family_(family<prometheus::Gauge>(
        *registry_, "chroom_nodes", "Media nodes known to the cluster, by state and region")),
      members_family_(family<prometheus::Gauge>(*registry_, "chroom_cluster_members",
                                                "Cluster peers as this peer sees them, by state")),
      enforcements_family_(family<prometheus::Counter>(
        *registry_, "chroom_gateway_enforcements_total",
        "Calls stopped and connections closed by the gateway's abuse limits, by reason")),
      node_changes_family_(family<prometheus::Counter>(
        *registry_, "chroom_node_state_changes_total",
        "Media node state changes made by this peer's registry, by the state entered")),
      region_capacity_family_(
        family<prometheus::Gauge>(*registry_, "chroom_region_capacity_participants",
                                  "Participants the active media nodes of a region can hold")),
      region_free_family_(family<prometheus::Gauge>(
        *registry_, "chroom_region_free_participants",
        "Free places (not taken, not reserved) on the active media nodes of a region")),
      connections_open(family<prometheus::Gauge>(*registry_, "chroom_grpc_connections",
                                                 "Open gRPC (HTTP/2) connections")
                         .Add({})),
      connections_accepted(family<prometheus::Counter>(*registry_,
                                                       "chroom_grpc_connections_accepted_total",
                                                       "gRPC connections accepted")
                             .Add({})),
      connections_refused(family<prometheus::Counter>(
                            *registry_, "chroom_grpc_connections_refused_total",
                            "gRPC connections refused (limits.max_connections, shutting down)")
                            .Add({})),
      streams_open(
        family<prometheus::Gauge>(*registry_, "chroom_grpc_streams", "Open gRPC calls (streams)")
          .Add({})),
      streams_started(family<prometheus::Counter>(*registry_, "chroom_grpc_streams_started_total",
                                                  "gRPC calls started")
                        .Add({})),
      gateway_memory_bytes(
        family<prometheus::Gauge>(*registry_, "chroom_gateway_memory_bytes",
                                  "Bytes the gateway's connections hold for their clients (calls, "
                                  "queued responses, HTTP/2 buffers)")
          .Add({})),
      allocation_seconds(family<prometheus::Histogram>(
                           *registry_, "chroom_allocation_duration_seconds",
                           "Allocate calls: from arrival at the allocation service to the answer")
                           .Add({}, latency_buckets())),
      replication_seconds(
        family<prometheus::Histogram>(*registry_, "chroom_replication_lag_seconds",
                                      "From a room change to its acknowledgement by every replica")
          .Add({}, latency_buckets())),
      room_failovers(family<prometheus::Counter>(*registry_, "chroom_room_failovers_total",
                                                 "Rooms this peer took over from a dead owner")
                       .Add({})),
      peer_failures(family<prometheus::Counter>(*registry_, "chroom_peer_failures_total",
                                                "Peers this peer saw die")
                      .Add({})),
      rooms_owned(family<prometheus::Gauge>(*registry_, "chroom_rooms",
                                            "Rooms with participants this peer owns (runs)")
                    .Add({})),
      room_replicas(family<prometheus::Gauge>(*registry_, "chroom_room_replicas",
                                              "Rooms this peer keeps a replica of")
                      .Add({})),
      participants(
        family<prometheus::Gauge>(*registry_, "chroom_participants",
                                  "Participants with a live lease in rooms this peer owns")
          .Add({})),
      ready(family<prometheus::Gauge>(*registry_, "chroom_ready",
                                      "1 when the peer is ready (/readyz answers 200)")
              .Add({})),
      live_actors(family<prometheus::Gauge>(*registry_, "chroom_live_actors",
                                            "Actors running in the peer (gateways and calls "
                                            "included)")
                    .Add({})) {
  for (size_t code = 0; code < grpc_code_count; ++code)
    responses_[code] = &responses_family_.Add(
      {{"code", std::string(transport::to_string(static_cast<transport::grpc_code>(code)))}});
}

prometheus::Counter& peer_metrics::responses(int grpc_code) {
  if (grpc_code < 0 || static_cast<size_t>(grpc_code) >= grpc_code_count)
    grpc_code = static_cast<int>(transport::grpc_code::unknown);
  return *responses_[static_cast<size_t>(grpc_code)];
}

prometheus::Counter& peer_metrics::gateway_enforcements(std::string_view reason) {
  return enforcements_family_.Add({{"reason", std::string{reason}}});
}

prometheus::Counter& peer_metrics::allocations(const std::string& app_id,
                                               const std::string& result) {
  return allocations_family_.Add({{"app", app_id}, {"result", result}});
}

prometheus::Counter& peer_metrics::node_state_changes(std::string_view state) {
  return node_changes_family_.Add({{"state", std::string{state}}});
}

void peer_metrics::set_region_capacity(const std::map<std::string, region_capacity>& by_region) {
  std::lock_guard lock{gauges_mutex_};
  for (auto& [region, gauges] : region_gauges_)
    if (by_region.count(region) == 0) {
      gauges.first->Set(0);
      gauges.second->Set(0);
    }
  for (const auto& [region, capacity] : by_region) {
    auto& gauges = region_gauges_[region];
    if (gauges.first == nullptr)
      gauges = {&region_capacity_family_.Add({{"region", region}}),
                &region_free_family_.Add({{"region", region}})};
    gauges.first->Set(capacity.participants);
    gauges.second->Set(capacity.free);
  }
}

prometheus::Counter& peer_metrics::participant_moves(const std::string& reason) {
  return moves_family_.Add({{"reason", reason}});
}

void peer_metrics::set_nodes(
  const std::map<std::pair<std::string, std::string>, double>& by_state_region) {
  std::lock_guard lock{gauges_mutex_};
  for (auto& [key, gauge] : node_gauges_)
    if (by_state_region.count(key) == 0)
      gauge->Set(0);
  for (const auto& [key, count] : by_state_region) {
    auto& gauge = node_gauges_[key];
    if (gauge == nullptr)
      gauge = &nodes_family_.Add({{"state", key.first}, {"region", key.second}});
    gauge->Set(count);
  }
}

void peer_metrics::set_members(const std::map<std::string, double>& by_state) {
  std::lock_guard lock{gauges_mutex_};
  for (auto& [state, gauge] : member_gauges_)
    if (by_state.count(state) == 0)
      gauge->Set(0);
  for (const auto& [state, count] : by_state) {
    auto& gauge = member_gauges_[state];
    if (gauge == nullptr)
      gauge = &members_family_.Add({{"state", state}});
    gauge->Set(count);
  }
}

histogram_sample sample_of(prometheus::Histogram& histogram) {
  histogram_sample sample;
  auto metric = histogram.Collect().histogram;
  sample.count = static_cast<double>(metric.sample_count);
  for (const auto& bucket : metric.bucket) {
    sample.cumulative.push_back(static_cast<double>(bucket.cumulative_count));
    sample.upper_bounds.push_back(bucket.upper_bound);
  }
  return sample;
}

std::optional<double> quantile_between(const histogram_sample& from, const histogram_sample& to,
                                       double q) {
  double total = to.count - from.count;
  if (total <= 0 || from.cumulative.size() != to.cumulative.size() ||
      to.cumulative.size() != to.upper_bounds.size())
    return std::nullopt;
  double target = std::clamp(q, 0.0, 1.0) * total;
  double below = 0;
  double lower_bound = 0;
  for (size_t i = 0; i < to.cumulative.size(); ++i) {
    double in_or_below = to.cumulative[i] - from.cumulative[i];
    double upper = to.upper_bounds[i];
    if (in_or_below >= target && in_or_below > 0) {
      if (std::isinf(upper))
        return lower_bound;
      double share = in_or_below > below ? (target - below) / (in_or_below - below) : 1.0;
      return lower_bound + (upper - lower_bound) * share;
    }
    below = in_or_below;
    lower_bound = upper;
  }
  return lower_bound;
}

peer_metrics& metrics() {
  static peer_metrics instance;
  return instance;
}

} // namespace chroom::observability
