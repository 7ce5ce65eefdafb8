#include "allocation/placement.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>

namespace chroom::allocation {

namespace {

namespace mn = chroom::medianode::v1;

constexpr std::string_view known_codecs[] = {"opus", "vp8", "vp9", "h264", "av1"};

/// A probe this slow says "unreachable" (the .proto tells clients to report a node they
/// cannot reach this way): it rules the node out in practice and says nothing about the
/// client's access network.
constexpr double unreachable_probe_ms = 1000.0;

/// A probe to a node this close to the client makes "probe + that node's measured RTT to
/// another node" a tight estimate (the path from the client runs past it anyway).
constexpr double near_probe_ms = 25.0;

/// Score weights (see placement.hpp): milliseconds an empty-to-full node is worth.
constexpr double latency_load_weight = 10.0;
constexpr double balanced_load_weight = 25.0;
constexpr double pack_load_weight = 25.0;
/// 1% packet loss weighs like 10 ms; 1 ms of jitter like 0.5 ms of RTT.
constexpr double loss_weight_ms = 1000.0;
constexpr double jitter_weight = 0.5;

geo_point location_of(const node_record& node) {
  const auto& location = node.registration.location();
  return {location.latitude(), location.longitude()};
}

bool avoided(const room_view& room, std::string_view node_id) {
  return std::find(room.avoid.begin(), room.avoid.end(), node_id) != room.avoid.end();
}

const room_view::part* part_on(const room_view& room, std::string_view node_id) {
  for (const auto& part : room.parts)
    if (part.node_id == node_id)
      return &part;
  return nullptr;
}

/// A new part may link to `p` under the app's relay depth limit.
bool linkable(const room_view::part& p, const app_policy* app) {
  return app == nullptr || app->max_relay_depth == 0 || p.depth < app->max_relay_depth;
}

/// Some part of the room may take a relay to a new part.
bool can_link(const room_view& room, const app_policy& app) {
  return std::any_of(room.parts.begin(), room.parts.end(),
                     [&](const room_view::part& p) { return linkable(p, &app); });
}

/// Why a node cannot take the request (checked in this order, which is also the order
/// of the failure reasons).
enum class fit { ok, inactive, avoided, region, hook, features, pinned, capacity };

fit check_fit(const node_record& node, const placement_request& request, const room_view& room,
              const placement_rules& rules) {
  if (!node.accepts_work())
    return fit::inactive;
  if (avoided(room, node.node_id))
    return fit::avoided;
  const auto* app = request.app;
  if (app != nullptr && !app->allows(node.registration.location()))
    return fit::region;
  if (!request.allowed_nodes.empty() &&
      std::find(request.allowed_nodes.begin(), request.allowed_nodes.end(), node.node_id) ==
        request.allowed_nodes.end())
    return fit::hook;
  if (!request.features.met_by(node.registration.features()))
    return fit::features;
  const auto* part = part_on(room, node.node_id);
  if (app != nullptr && part == nullptr && !room.parts.empty() &&
      ((app->max_room_nodes > 0 && room.parts.size() >= app->max_room_nodes) ||
       !can_link(room, *app)))
    return fit::pinned;
  double high_water = app != nullptr ? app->high_water(rules.high_water) : rules.high_water;
  if (node.available_participants() < request.participants || overloaded(node, high_water))
    return fit::capacity;
  if (app != nullptr && app->fan_out_after > 0 && part != nullptr &&
      part->participants + request.participants > app->fan_out_after)
    return fit::capacity;
  return fit::ok;
}

double load_after(const node_record& node, uint32_t participants) {
  double max = node.registration.capacity().max_participants();
  if (max <= 0)
    return 1.0;
  double used = max - node.available_participants();
  return std::min(1.0, (used + participants) / max);
}

double health_penalty(const node_record& node) {
  if (!node.has_stats)
    return 0;
  return loss_weight_ms * node.last_stats.packet_loss() +
         jitter_weight * node.last_stats.jitter_ms();
}

/// Scores `candidate` once the pool's best RTT is known.
void score(scored_node& candidate, const node_record& node, const app_policy* app,
           double best_rtt_ms, const placement_rules& rules) {
  strategy chosen = app != nullptr ? app->placement_strategy : strategy::balanced;
  double health = health_penalty(node) * (app != nullptr ? app->health_weight : 1.0);
  auto load_weight = [&](double strategy_weight) {
    return app != nullptr && app->load_weight_ms > 0 ? app->load_weight_ms : strategy_weight;
  };
  switch (chosen) {
    case strategy::latency:
      candidate.score =
        candidate.rtt_ms + load_weight(latency_load_weight) * candidate.load_after + health;
      return;
    case strategy::balanced:
      candidate.score =
        candidate.rtt_ms + load_weight(balanced_load_weight) * candidate.load_after + health;
      return;
    case strategy::pack: {
      double extra = candidate.rtt_ms - best_rtt_ms;
      double rtt_term = best_rtt_ms + (extra <= rules.pack_slack_ms ? 0.0 : 2.0 * extra);
      candidate.score =
        rtt_term + load_weight(pack_load_weight) * (1.0 - candidate.load_after) + health;
      return;
    }
  }
}

/// The client's RTT to the node is above the app's latency budget.
bool over_budget(const scored_node& candidate, const placement_request& request) {
  return request.app != nullptr && request.app->latency_budget_ms > 0 &&
         candidate.rtt_ms > request.app->latency_budget_ms;
}

/// The pool: the nearest `size` nodes that fit, plus every probed node that fits.
struct pool {
  std::vector<scored_node> nodes;
  std::vector<const node_record*> records;
  double best_rtt_ms = 0;
};

pool build_pool(const node_table& table, const placement_request& request, const room_view& room,
                const placement_rules& rules, uint32_t size) {
  pool result;
  auto add = [&](const node_record& node) {
    if (std::find(result.records.begin(), result.records.end(), &node) != result.records.end())
      return;
    auto candidate = estimate_rtt(table, node, request, rules.fibre);
    if (over_budget(candidate, request))
      return;
    candidate.load_after = load_after(node, request.participants);
    result.nodes.push_back(std::move(candidate));
    result.records.push_back(&node);
  };
  table.visit_nearest(request.client, [&](const node_record& node, double) {
    if (check_fit(node, request, room, rules) == fit::ok)
      add(node);
    return result.nodes.size() < size;
  });
  for (const auto& probed : request.probes)
    if (const auto* node = table.find(probed.node_id);
        node != nullptr && check_fit(*node, request, room, rules) == fit::ok)
      add(*node);
  result.best_rtt_ms = std::numeric_limits<double>::infinity();
  for (const auto& candidate : result.nodes)
    result.best_rtt_ms = std::min(result.best_rtt_ms, candidate.rtt_ms);
  for (size_t i = 0; i < result.nodes.size(); ++i)
    score(result.nodes[i], *result.records[i], request.app, result.best_rtt_ms, rules);
  return result;
}

std::string joined(const auto& names) {
  std::string out;
  for (const auto& name : names)
    out += (out.empty() ? "" : ", ") + std::string{name};
  return out;
}

std::string feature_list(const feature_needs& needs) {
  std::vector<std::string> names = needs.codecs;
  if (needs.relay)
    names.emplace_back("relay");
  if (needs.recording)
    names.emplace_back("recording");
  if (needs.e2ee)
    names.emplace_back("e2ee");
  return joined(names);
}

/// Why nothing fits: the furthest filter some active node passed.
void explain_failure(const node_table& table, const placement_request& request,
                     const room_view& room, const placement_rules& rules,
                     placement_result& result) {
  std::map<fit, size_t> count;
  for (const auto& [id, node] : table.nodes())
    ++count[check_fit(node, request, room, rules)];
  // Nodes that fit (ok) passed every filter: placement failed on the latency budget.
  auto passed = [&](fit stage) {
    size_t n = count[fit::ok];
    for (const auto& [reason, how_many] : count)
      if (reason >= stage)
        n += how_many;
    return n;
  };
  if (passed(fit::region) == 0 && count[fit::avoided] > 0) {
    result.failure = placement_failure::capacity;
    result.reason = "the " + std::to_string(count[fit::avoided]) +
                    " active media nodes left refused the client or are being moved off";
  } else if (passed(fit::region) == 0) {
    result.failure = placement_failure::no_active_nodes;
    result.reason = "no media node is active";
  } else if (passed(fit::hook) == 0) {
    result.failure = placement_failure::region_policy;
    const auto& app = *request.app;
    result.reason =
      "no active media node in the places app '" + app.app_id +
      "' allows (regions: " + (app.allowed_regions.empty() ? "any" : joined(app.allowed_regions)) +
      "; countries: " + (app.allowed_countries.empty() ? "any" : joined(app.allowed_countries));
    if (!app.denied_regions.empty() || !app.denied_countries.empty())
      result.reason += "; denied: " + joined(app.denied_regions) +
                       (app.denied_regions.empty() || app.denied_countries.empty() ? "" : ", ") +
                       joined(app.denied_countries);
    result.reason += ")";
  } else if (passed(fit::features) == 0) {
    result.failure = placement_failure::hook_choice;
    result.reason = "none of the nodes the app's hook allowed (" + joined(request.allowed_nodes) +
                    ") can take the participant";
  } else if (passed(fit::pinned) == 0) {
    result.failure = placement_failure::features;
    result.reason = "no active media node has the features " + feature_list(request.features);
  } else if (passed(fit::capacity) == 0) {
    result.failure = placement_failure::room_pinned;
    result.reason = "the room is pinned to its " + std::to_string(room.parts.size()) +
                    " media node(s) (app '" + request.app->app_id +
                    "' cascade.max_room_nodes or max_relay_depth) and none of them can take "
                    "the participant";
  } else if (count[fit::ok] > 0) {
    double nearest = std::numeric_limits<double>::infinity();
    for (const auto& [id, node] : table.nodes())
      if (check_fit(node, request, room, rules) == fit::ok)
        nearest = std::min(nearest, estimate_rtt(table, node, request, rules.fibre).rtt_ms);
    result.failure = placement_failure::latency_budget;
    result.reason =
      "no media node within app '" + request.app->app_id + "' latency budget of " +
      std::to_string(std::lround(request.app->latency_budget_ms)) +
      " ms (the nearest that could take the participant: " + std::to_string(std::lround(nearest)) +
      " ms)";
  } else {
    result.failure = placement_failure::capacity;
    result.reason = "all " + std::to_string(passed(fit::capacity)) +
                    " media nodes that fit are full or over their high-water mark (" +
                    std::to_string(std::lround(rules.high_water * 100)) + "%)";
  }
}

const mn::PeerRtt* measured_rtt(const node_record& from, std::string_view to) {
  for (const auto& peer : from.last_stats.peer_rtts())
    if (peer.node_id() == to && peer.rtt_ms() > 0)
      return &peer;
  return nullptr;
}

} // namespace

std::optional<strategy> parse_strategy(std::string_view name) {
  if (name == "latency")
    return strategy::latency;
  if (name == "balanced")
    return strategy::balanced;
  if (name == "pack")
    return strategy::pack;
  return std::nullopt;
}

std::string_view to_string(strategy value) {
  switch (value) {
    case strategy::latency:
      return "latency";
    case strategy::balanced:
      return "balanced";
    case strategy::pack:
      return "pack";
  }
  return "balanced";
}

bool app_policy::allows(const mn::Location& location) const {
  auto listed = [](const std::vector<std::string>& names, const std::string& name) {
    return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
  };
  auto denied = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  return listed(allowed_regions, location.region()) &&
         listed(allowed_countries, location.country()) &&
         !denied(denied_regions, location.region()) &&
         !denied(denied_countries, location.country());
}

double app_policy::high_water(double configured) const {
  switch (priority) {
    case priority_class::high:
      return 1.0;
    case priority_class::normal:
      return configured;
    case priority_class::low:
      return configured * low_priority_share;
  }
  return configured;
}

bool feature_needs::met_by(const mn::Features& features) const {
  if ((relay && !features.relay()) || (recording && !features.recording()) ||
      (e2ee && !features.e2ee()))
    return false;
  for (const auto& codec : codecs)
    if (std::find(features.codecs().begin(), features.codecs().end(), codec) ==
        features.codecs().end())
      return false;
  return true;
}

std::optional<feature_needs> parse_features(const std::vector<std::string>& names,
                                            std::string& problem) {
  feature_needs needs;
  for (const auto& name : names) {
    if (name == "relay") {
      needs.relay = true;
    } else if (name == "recording") {
      needs.recording = true;
    } else if (name == "e2ee") {
      needs.e2ee = true;
    } else if (std::find(std::begin(known_codecs), std::end(known_codecs), name) !=
               std::end(known_codecs)) {
      if (std::find(needs.codecs.begin(), needs.codecs.end(), name) == needs.codecs.end())
        needs.codecs.push_back(name);
    } else {
      problem = "unknown feature '" + name + "' (known: " + joined(known_codecs) +
                ", relay, recording, e2ee)";
      return std::nullopt;
    }
  }
  return needs;
}

bool overloaded(const node_record& node, double high_water) {
  if (!node.has_stats)
    return false;
  const auto& stats = node.last_stats;
  const auto& capacity = node.registration.capacity();
  return stats.participants() > high_water * capacity.max_participants() ||
         stats.cpu_load() > high_water ||
         (capacity.upload_mbps() > 0 &&
          stats.bandwidth_out_mbps() > high_water * capacity.upload_mbps());
}

double node_rtt_ms(const node_record& a, const node_record& b, const fibre_model& fibre) {
  if (const auto* measured = measured_rtt(a, b.node_id))
    return measured->rtt_ms();
  if (const auto* measured = measured_rtt(b, a.node_id))
    return measured->rtt_ms();
  return estimated_rtt_ms(location_of(a), location_of(b), fibre);
}

scored_node estimate_rtt(const node_table& table, const node_record& node,
                         const placement_request& request, const fibre_model& fibre) {
  scored_node out;
  out.node_id = node.node_id;
  for (const auto& probed : request.probes) {
    if (probed.node_id == node.node_id) {
      out.rtt_ms = probed.rtt_ms;
      out.source = rtt_source::probe;
      return out;
    }
  }
  // A probe to a node near the client, plus that node's measured RTT to this one.
  double via_matrix = std::numeric_limits<double>::infinity();
  // What the client's access network adds to every path: the smallest excess of a probe
  // over the model (a client on a slow link pays its delay everywhere).
  double access_excess = std::numeric_limits<double>::infinity();
  for (const auto& probed : request.probes) {
    const auto* near = table.find(probed.node_id);
    if (near == nullptr || probed.rtt_ms >= unreachable_probe_ms)
      continue;
    access_excess = std::min(
      access_excess, probed.rtt_ms - estimated_rtt_ms(request.client, location_of(*near), fibre));
    if (probed.rtt_ms > near_probe_ms)
      continue;
    const auto* measured = measured_rtt(*near, node.node_id);
    if (measured == nullptr)
      measured = measured_rtt(node, near->node_id);
    if (measured != nullptr)
      via_matrix = std::min(via_matrix, probed.rtt_ms + measured->rtt_ms());
  }
  if (std::isfinite(via_matrix)) {
    out.rtt_ms = via_matrix;
    out.source = rtt_source::node_matrix;
    return out;
  }
  out.rtt_ms = estimated_rtt_ms(request.client, location_of(node), fibre);
  if (std::isfinite(access_excess))
    out.rtt_ms += std::max(0.0, access_excess);
  out.source = rtt_source::distance;
  return out;
}

placement_result place(const node_table& table, const placement_request& request,
                       const room_view& room, const placement_rules& rules, uint32_t alternates) {
  placement_result result;
  auto candidates = build_pool(table, request, room, rules, std::max(rules.candidate_pool, 1u));
  const double slack = request.spread ? 0.0 : rules.affinity_slack_ms;

  // Room affinity: the best room part that fits and is near enough.
  std::optional<scored_node> affine;
  for (const auto& part : room.parts) {
    const auto* node = table.find(part.node_id);
    if (node == nullptr || check_fit(*node, request, room, rules) != fit::ok)
      continue;
    auto candidate = estimate_rtt(table, *node, request, rules.fibre);
    if (over_budget(candidate, request))
      continue;
    candidate.load_after = load_after(*node, request.participants);
    double best = std::min(candidates.best_rtt_ms, candidate.rtt_ms);
    // A room pinned to its nodes stays on them however far they are.
    bool pinned = request.app != nullptr && request.app->max_room_nodes > 0 &&
                  room.parts.size() >= request.app->max_room_nodes;
    if (!pinned &&
        (candidate.rtt_ms > best + slack || candidate.rtt_ms > rules.max_affinity_rtt_ms))
      continue;
    score(candidate, *node, request.app, best, rules);
    if (!affine || candidate.score < affine->score)
      affine = std::move(candidate);
  }

  std::vector<size_t> order(candidates.nodes.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = candidates.nodes[a];
    const auto& y = candidates.nodes[b];
    return x.score != y.score ? x.score < y.score : x.node_id < y.node_id;
  });
  // The app's hook listed its nodes preferred first: that order, not the score.
  if (!request.allowed_nodes.empty()) {
    auto rank = [&](size_t i) {
      const auto& allowed = request.allowed_nodes;
      return std::find(allowed.begin(), allowed.end(), candidates.nodes[i].node_id) -
             allowed.begin();
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return rank(a) < rank(b); });
  }

  if (affine) {
    result.chosen = std::move(*affine);
    result.joins_room_node = true;
  } else if (!order.empty()) {
    result.chosen = candidates.nodes[order.front()];
    auto is_part = [&](const std::string& node_id) {
      return std::any_of(room.parts.begin(), room.parts.end(),
                         [&](const room_view::part& part) { return part.node_id == node_id; });
    };
    result.joins_room_node = is_part(result.chosen.node_id);
    if (!result.joins_room_node && !room.parts.empty()) {
      // Link the new part to the room node nearest to it, so relays stay short.
      const auto* fresh = candidates.records[order.front()];
      double nearest = std::numeric_limits<double>::infinity();
      for (const auto& part : room.parts) {
        const auto* node = table.find(part.node_id);
        if (node == nullptr || !linkable(part, request.app))
          continue;
        double rtt = node_rtt_ms(*fresh, *node, rules.fibre);
        if (rtt < nearest) {
          nearest = rtt;
          result.relay_to = part.node_id;
        }
      }
    }
  } else {
    explain_failure(table, request, room, rules, result);
    return result;
  }

  for (size_t i : order) {
    if (result.alternates.size() >= alternates)
      break;
    if (candidates.nodes[i].node_id != result.chosen.node_id)
      result.alternates.push_back(candidates.nodes[i]);
  }
  return result;
}

std::vector<scored_node> nearest_candidates(const node_table& table,
                                            const placement_request& request,
                                            const placement_rules& rules, uint32_t count) {
  auto candidates = build_pool(table, request, room_view{}, rules,
                               std::max(count, std::max(rules.candidate_pool, 1u)));
  auto& nodes = candidates.nodes;
  std::sort(nodes.begin(), nodes.end(), [](const scored_node& a, const scored_node& b) {
    return a.rtt_ms != b.rtt_ms ? a.rtt_ms < b.rtt_ms : a.node_id < b.node_id;
  });
  if (nodes.size() > count)
    nodes.resize(count);
  return std::move(nodes);
}

std::optional<geo_point> region_centre(const node_table& table, std::string_view region) {
  std::string chosen{region};
  if (chosen.empty()) {
    std::map<std::string, size_t, std::less<>> active;
    for (const auto& [id, node] : table.nodes())
      if (node.accepts_work())
        ++active[node.registration.location().region()];
    size_t most = 0;
    for (const auto& [name, n] : active)
      if (n > most) {
        most = n;
        chosen = name;
      }
  }
  // Mean of unit vectors: right across the antimeridian too.
  double x = 0, y = 0, z = 0;
  size_t n = 0;
  for (const auto& [id, node] : table.nodes()) {
    if (!node.accepts_work() || node.registration.location().region() != chosen)
      continue;
    auto point = location_of(node);
    double lat = point.latitude_deg * std::numbers::pi / 180.0;
    double lon = point.longitude_deg * std::numbers::pi / 180.0;
    x += std::cos(lat) * std::cos(lon);
    y += std::cos(lat) * std::sin(lon);
    z += std::sin(lat);
    ++n;
  }
  if (n == 0)
    return std::nullopt;
  double horizontal = std::hypot(x, y);
  return geo_point{std::atan2(z, horizontal) * 180.0 / std::numbers::pi,
                   std::atan2(y, x) * 180.0 / std::numbers::pi};
}

} // namespace chroom::allocation
