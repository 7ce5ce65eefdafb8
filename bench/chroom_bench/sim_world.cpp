#include "bench/chroom_bench/sim_world.hpp"

#include "bench/chroom_bench/sim_random.hpp"
#include "tools/node_sim/cities.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <numeric>

#include <fmt/format.h>

namespace chroom::bench::sim {

namespace {

// Room mix. Most rooms are small, but webinars carry a large share of the participants,
// which is what makes room affinity and cascading matter.
struct room_profile {
  room_kind kind;
  double share_of_rooms;
  uint32_t min_size;
  uint32_t max_size;
  // Share of participants from the region of the room's first participant (colleagues,
  // family); the others come from anywhere awake.
  double local_share;
  // Mean delay of the others after the first participant, seconds.
  double mean_arrival_delay_s;
  // Mean stay, seconds (exponential).
  double mean_stay_s;
};

constexpr room_profile profiles[room_kinds] = {
  {room_kind::call, 0.60, 2, 2, 0.6, 30, 12 * 60},
  {room_kind::meeting, 0.37, 3, 8, 0.7, 90, 40 * 60},
  {room_kind::webinar, 0.03, 20, 200, 0.5, 300, 60 * 60},
};

// A client is within this of its city's centre (suburbs; IP geolocation is no better).
constexpr double max_jitter_km = 15;
// Round trip of the client's own access network: fibre at home to a busy mobile cell.
constexpr double min_access_ms = 2;
constexpr double max_access_ms = 30;
// Real routes are longer than the model's constant stretch by a factor per path. Between
// clients and nodes the spread is wide (peering, mobile backhaul); between data centres
// the paths are better (transit backbones), so their spread is narrower.
constexpr double max_client_route_factor = 1.8;
constexpr double max_node_route_factor = 1.4;
// Crashes happen within this part of the run, so that load is there to be re-placed and
// the aftermath is inside the run.
constexpr double first_crash_fraction = 0.15;
constexpr double last_crash_fraction = 0.9;

struct capacity_class {
  uint32_t max_participants;
  double share;
};
// Small, medium and large SFU instances.
constexpr capacity_class capacity_mix[] = {{200, 0.5}, {500, 0.35}, {1000, 0.15}};

// The cities file through the loader the node simulator uses (tools/node_sim/cities.hpp).
std::string load_cities(const std::string& path, std::vector<city>& out) {
  node_sim::city_table table;
  if (auto error = table.load(path); !error.empty())
    return error;
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& row = table[i];
    if (row.region.empty())
      return fmt::format("{}: city '{}' has no region", path, row.name);
    city c;
    c.name = row.name;
    c.country = row.country;
    c.region = row.region;
    c.where = {row.latitude, row.longitude};
    c.population = row.population;
    out.push_back(std::move(c));
  }
  if (out.empty())
    return fmt::format("{}: no cities", path);
  return {};
}

// Picks an index with probability proportional to its weight, by cumulative weights.
class weighted_pick {
public:
  weighted_pick() = default;
  explicit weighted_pick(std::vector<uint32_t> items, const std::vector<city>& cities)
      : items_(std::move(items)) {
    uint64_t total = 0;
    for (auto i : items_)
      cumulative_.push_back(total += cities[i].population);
  }
  uint32_t pick(double u) const {
    auto target = static_cast<uint64_t>(u * static_cast<double>(cumulative_.back()));
    auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), target);
    if (it == cumulative_.end())
      --it;
    return items_[static_cast<size_t>(it - cumulative_.begin())];
  }
  bool empty() const { return items_.empty(); }

private:
  std::vector<uint32_t> items_;
  std::vector<uint64_t> cumulative_;
};

double local_hour(double t_s, double longitude_deg) {
  double hour = std::fmod(t_s / 3600.0 + longitude_deg / 15.0, 24.0);
  return hour < 0 ? hour + 24 : hour;
}

allocation::geo_point jitter(allocation::geo_point at, rng& random) {
  double distance_km = random.uniform(0, max_jitter_km);
  double bearing = random.uniform(0, 2 * std::numbers::pi);
  constexpr double km_per_degree = 111.2;
  double lat = at.latitude_deg + distance_km / km_per_degree * std::cos(bearing);
  double cos_lat = std::max(0.01, std::cos(at.latitude_deg * std::numbers::pi / 180));
  double lon = at.longitude_deg + distance_km / (km_per_degree * cos_lat) * std::sin(bearing);
  if (lon > 180)
    lon -= 360;
  if (lon < -180)
    lon += 360;
  return {std::clamp(lat, -90.0, 90.0), lon};
}

} // namespace

const char* to_string(room_kind kind) {
  switch (kind) {
    case room_kind::call:
      return "1:1 call";
    case room_kind::meeting:
      return "meeting 3-8";
    case room_kind::webinar:
      return "webinar 20-200";
  }
  return "?";
}

double activity(double local_hour) {
  // People in calls by local hour: night floor, morning ramp, working day plateau with a
  // lunch dip, evening calls with family. Linear between the hours.
  static constexpr double by_hour[25] = {0.15, 0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.35, 0.65,
                                         0.90, 1.00, 1.00, 0.85, 0.95, 1.00, 1.00, 0.95, 0.80,
                                         0.60, 0.50, 0.45, 0.40, 0.30, 0.22, 0.15};
  double hour = std::clamp(local_hour, 0.0, 24.0);
  auto low = std::min(static_cast<int>(hour), 23);
  double fraction = hour - low;
  return by_hour[low] * (1 - fraction) + by_hour[low + 1] * fraction;
}

std::optional<world> world::build(const world_options& options, std::string& error) {
  world w;
  w.options_ = options;
  error = load_cities(options.cities_path, w.cities_);
  if (!error.empty())
    return std::nullopt;
  const auto& cities = w.cities_;
  std::vector<uint32_t> all(cities.size());
  std::iota(all.begin(), all.end(), 0);
  weighted_pick anywhere(all, cities);
  std::map<std::string, std::vector<uint32_t>> by_region;
  for (uint32_t i = 0; i < cities.size(); ++i)
    by_region[cities[i].region].push_back(i);
  std::map<std::string, weighted_pick> in_region;
  for (auto& [region, members] : by_region)
    in_region.emplace(region, weighted_pick(members, cities));

  // Nodes: operators put servers where people are.
  rng node_random(options.seed, stream::nodes);
  for (uint32_t i = 0; i < options.nodes; ++i) {
    node n;
    n.id = fmt::format("node-{:04}", i);
    n.city = anywhere.pick(node_random.uniform());
    n.where = jitter(cities[n.city].where, node_random);
    double u = node_random.uniform();
    n.max_participants = capacity_mix[std::size(capacity_mix) - 1].max_participants;
    for (const auto& mix : capacity_mix) {
      if (u < mix.share) {
        n.max_participants = mix.max_participants;
        break;
      }
      u -= mix.share;
    }
    w.nodes_.push_back(std::move(n));
  }
  for (uint32_t i = 0; i < w.nodes_.size(); ++i) {
    std::vector<std::pair<double, uint32_t>> others;
    for (uint32_t j = 0; j < w.nodes_.size(); ++j)
      if (j != i)
        others.emplace_back(allocation::great_circle_km(w.nodes_[i].where, w.nodes_[j].where), j);
    auto keep = std::min<size_t>(options.peer_rtts, others.size());
    std::partial_sort(others.begin(), others.begin() + static_cast<ptrdiff_t>(keep), others.end());
    for (size_t k = 0; k < keep; ++k)
      w.nodes_[i].peers.emplace_back(others[k].second, w.true_node_rtt_ms(i, others[k].second));
  }

  rng crash_random(options.seed, stream::failures);
  std::vector<uint32_t> order(w.nodes_.size());
  std::iota(order.begin(), order.end(), 0);
  auto crashes = std::min<size_t>(options.failures, order.size());
  const double run_s = options.hours * 3600;
  for (size_t k = 0; k < crashes; ++k) {
    auto pick = k + crash_random.below(order.size() - k);
    std::swap(order[k], order[pick]);
    w.nodes_[order[k]].crash_at_s =
      crash_random.uniform(first_crash_fraction * run_s, last_crash_fraction * run_s);
    w.crashes_.push_back(order[k]);
  }
  std::sort(w.crashes_.begin(), w.crashes_.end(), [&](uint32_t a, uint32_t b) {
    return w.nodes_[a].crash_at_s < w.nodes_[b].crash_at_s;
  });

  // Rooms start by a Poisson process whose intensity follows the local hour of each city:
  // given how many rooms there are, their start times are independent draws from that
  // intensity (thinning: uniform time and city by population, kept with the activity of
  // the city's local hour).
  rng room_random(options.seed, stream::rooms);
  auto awake_city = [&](rng& random, double t_s) {
    for (;;) {
      auto c = anywhere.pick(random.uniform());
      if (random.chance(activity(local_hour(t_s, cities[c].where.longitude_deg))))
        return c;
    }
  };
  uint64_t generated = 0;
  std::vector<client> clients;
  while (generated < options.clients) {
    uint32_t room_index = static_cast<uint32_t>(w.rooms_.size());
    double start_s = 0;
    uint32_t origin = 0;
    for (;;) {
      start_s = room_random.uniform(0, run_s);
      origin = anywhere.pick(room_random.uniform());
      if (room_random.chance(activity(local_hour(start_s, cities[origin].where.longitude_deg))))
        break;
    }
    double u = room_random.uniform();
    const room_profile* profile = &profiles[room_kinds - 1];
    for (const auto& candidate : profiles) {
      if (u < candidate.share_of_rooms) {
        profile = &candidate;
        break;
      }
      u -= candidate.share_of_rooms;
    }
    // Each room's members come from a stream of their own: the room sequence does not
    // depend on how many draws a room's members took.
    rng member_random(options.seed, stream::clients, room_index);
    uint32_t size = profile->min_size;
    if (profile->max_size > profile->min_size) {
      // Log-uniform: small webinars are more common than big ones.
      double log_size =
        member_random.uniform(std::log(profile->min_size), std::log(profile->max_size + 1.0));
      size = std::min(profile->max_size, static_cast<uint32_t>(std::exp(log_size)));
    }
    size = static_cast<uint32_t>(std::min<uint64_t>(size, options.clients - generated));
    room r;
    r.kind = profile->kind;
    for (uint32_t p = 0; p < size; ++p) {
      client c;
      c.room = room_index;
      c.arrive_s =
        p == 0 ? start_s : start_s + member_random.exponential(profile->mean_arrival_delay_s);
      if (p == 0)
        c.city = origin;
      else if (member_random.chance(profile->local_share))
        c.city = in_region.at(cities[origin].region).pick(member_random.uniform());
      else
        c.city = awake_city(member_random, c.arrive_s);
      c.where = jitter(cities[c.city].where, member_random);
      c.access_ms = member_random.uniform(min_access_ms, max_access_ms);
      c.leave_s = c.arrive_s + std::max(30.0, member_random.exponential(profile->mean_stay_s));
      c.probes = member_random.chance(options.probe_fraction);
      ++generated;
      // Late members of a room that started near the end fall off the simulated day.
      if (c.arrive_s < run_s)
        clients.push_back(c);
    }
    w.rooms_.push_back(std::move(r));
  }

  // Arrival order; the room lists follow the new indices.
  std::vector<uint32_t> by_arrival(clients.size());
  std::iota(by_arrival.begin(), by_arrival.end(), 0);
  std::stable_sort(by_arrival.begin(), by_arrival.end(), [&](uint32_t a, uint32_t b) {
    return clients[a].arrive_s < clients[b].arrive_s;
  });
  w.clients_.reserve(clients.size());
  for (auto i : by_arrival) {
    w.rooms_[clients[i].room].clients.push_back(static_cast<uint32_t>(w.clients_.size()));
    w.clients_.push_back(clients[i]);
  }

  w.nodes_by_rtt_.resize(cities.size());
  for (uint32_t c = 0; c < cities.size(); ++c) {
    client centre;
    centre.city = c;
    centre.where = cities[c].where;
    std::vector<std::pair<double, uint32_t>> ranked;
    ranked.reserve(w.nodes_.size());
    for (uint32_t n = 0; n < w.nodes_.size(); ++n)
      ranked.emplace_back(w.true_rtt_ms(centre, n), n);
    std::sort(ranked.begin(), ranked.end());
    auto& list = w.nodes_by_rtt_[c];
    for (auto& [rtt, n] : ranked)
      list.push_back(n);
  }
  return w;
}

double world::true_rtt_ms(const client& who, uint32_t node_index) const {
  double route =
    1.0 + (max_client_route_factor - 1.0) * hash_unit(options_.seed, who.city, node_index);
  return allocation::estimated_rtt_ms(who.where, nodes_[node_index].where) * route + who.access_ms;
}

double world::true_node_rtt_ms(uint32_t a, uint32_t b) const {
  if (a == b)
    return 0;
  // Symmetric: both ends of a link measure the same path.
  auto low = std::min(a, b), high = std::max(a, b);
  double route = 1.0 + (max_node_route_factor - 1.0) *
                         hash_unit(options_.seed ^ 0xa5a5a5a5ULL, low, uint64_t{high} << 20);
  return allocation::estimated_rtt_ms(nodes_[a].where, nodes_[b].where) * route;
}

chroom::medianode::v1::Register world::registration(uint32_t index) const {
  const auto& n = nodes_[index];
  const auto& c = cities_[n.city];
  chroom::medianode::v1::Register message;
  message.set_node_id(n.id);
  message.set_protocol_version("1.1");
  message.set_software_version("chroom-bench placement");
  auto* endpoint = message.add_endpoints();
  endpoint->set_host(fmt::format("10.{}.{}.1", index / 256, index % 256));
  endpoint->set_port(443);
  endpoint->set_transport(chroom::medianode::v1::Endpoint::TRANSPORT_UDP);
  auto* location = message.mutable_location();
  location->set_latitude(n.where.latitude_deg);
  location->set_longitude(n.where.longitude_deg);
  location->set_region(c.region);
  location->set_country(c.country);
  auto* capacity = message.mutable_capacity();
  capacity->set_max_participants(n.max_participants);
  // Sized so that participants, not bandwidth or CPU, are what fills a node.
  capacity->set_upload_mbps(n.max_participants * 4.0);
  capacity->set_download_mbps(n.max_participants * 4.0);
  capacity->set_cpu_cores(std::max<uint32_t>(2, n.max_participants / 50));
  auto* features = message.mutable_features();
  for (const char* codec : {"opus", "vp8", "vp9", "h264"})
    features->add_codecs(codec);
  features->set_relay(true);
  return message;
}

uint64_t world::total_capacity() const {
  uint64_t total = 0;
  for (const auto& n : nodes_)
    total += n.max_participants;
  return total;
}

} // namespace chroom::bench::sim
