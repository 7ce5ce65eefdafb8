#include "bench/chroom_bench/sim_strategies.hpp"

#include "bench/chroom_bench/sim_random.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

namespace chroom::bench::sim {

namespace {

// The common rule of the baselines: follow the room's node while it takes work (a full one
// rejects the join); pick one by the strategy's own rule for a new room, or when the room's
// node is gone (the room moves).
class single_node_strategy : public strategy {
public:
  join_choice choose(const network_view& network, const client& who, const room_state& room) final {
    for (const auto& part : room.parts) {
      if (!part.open || !network.record(part.node).accepts_work())
        continue;
      join_choice choice;
      if (network.has_room(part.node))
        choice.node = part.node;
      return choice;
    }
    join_choice choice;
    choice.node = pick(network, who);
    return choice;
  }

protected:
  virtual std::optional<uint32_t> pick(const network_view& network, const client& who) = 0;
};

class random_strategy final : public single_node_strategy {
public:
  explicit random_strategy(uint64_t seed) : random_(seed, stream::replay, 1) {}
  std::string name() const override { return "random"; }

private:
  std::optional<uint32_t> pick(const network_view& network, const client&) override {
    candidates_.clear();
    for (uint32_t n = 0; n < network.the_world().nodes().size(); ++n)
      if (network.has_room(n))
        candidates_.push_back(n);
    if (candidates_.empty())
      return std::nullopt;
    return candidates_[random_.below(candidates_.size())];
  }

  rng random_;
  std::vector<uint32_t> candidates_;
};

class round_robin_strategy final : public single_node_strategy {
public:
  std::string name() const override { return "round-robin"; }

private:
  std::optional<uint32_t> pick(const network_view& network, const client&) override {
    auto count = static_cast<uint32_t>(network.the_world().nodes().size());
    for (uint32_t step = 0; step < count; ++step) {
      auto n = next_;
      next_ = (next_ + 1) % count;
      if (network.has_room(n))
        return n;
    }
    return std::nullopt;
  }

  uint32_t next_ = 0;
};

// Lowest load among `nodes` with a free place, preferring those under high water.
std::optional<uint32_t> least_loaded_of(const network_view& network,
                                        const std::vector<uint32_t>& nodes, double high_water) {
  std::optional<uint32_t> best;
  double best_load = 0;
  bool best_cool = false;
  for (auto n : nodes) {
    if (!network.has_room(n))
      continue;
    double load = network.load(n);
    bool cool = load < high_water;
    if (!best || (cool && !best_cool) || (cool == best_cool && load < best_load)) {
      best = n;
      best_load = load;
      best_cool = cool;
    }
  }
  return best;
}

class least_loaded_strategy final : public single_node_strategy {
public:
  least_loaded_strategy(const world& w, double high_water) : high_water_(high_water) {
    for (uint32_t n = 0; n < w.nodes().size(); ++n)
      all_.push_back(n);
  }
  std::string name() const override { return "least-loaded"; }

private:
  std::optional<uint32_t> pick(const network_view& network, const client&) override {
    return least_loaded_of(network, all_, high_water_);
  }

  double high_water_;
  std::vector<uint32_t> all_;
};

class nearest_region_strategy final : public single_node_strategy {
public:
  nearest_region_strategy(const world& w, double high_water) : high_water_(high_water) {
    std::map<std::string, std::vector<uint32_t>> members;
    for (uint32_t n = 0; n < w.nodes().size(); ++n)
      members[w.cities()[w.nodes()[n].city].region].push_back(n);
    for (auto& [name, nodes] : members) {
      // The centre is the mean of the nodes' positions as unit vectors (a plain mean of
      // longitudes breaks across the antimeridian).
      double x = 0, y = 0, z = 0;
      for (auto n : nodes) {
        auto [lat, lon] = w.nodes()[n].where;
        double phi = lat * std::numbers::pi / 180, lambda = lon * std::numbers::pi / 180;
        x += std::cos(phi) * std::cos(lambda);
        y += std::cos(phi) * std::sin(lambda);
        z += std::sin(phi);
      }
      region r;
      r.centre = {std::atan2(z, std::hypot(x, y)) * 180 / std::numbers::pi,
                  std::atan2(y, x) * 180 / std::numbers::pi};
      r.nodes = std::move(nodes);
      regions_.push_back(std::move(r));
    }
  }
  std::string name() const override { return "nearest-region"; }

private:
  struct region {
    allocation::geo_point centre;
    std::vector<uint32_t> nodes;
  };

  std::optional<uint32_t> pick(const network_view& network, const client& who) override {
    order_.clear();
    for (size_t r = 0; r < regions_.size(); ++r)
      order_.emplace_back(allocation::great_circle_km(who.where, regions_[r].centre), r);
    std::sort(order_.begin(), order_.end());
    // Nearest region with a node under high water; failing that, with any free place.
    std::optional<uint32_t> fallback;
    for (auto& [distance, r] : order_) {
      auto best = least_loaded_of(network, regions_[r].nodes, high_water_);
      if (!best)
        continue;
      if (network.load(*best) < high_water_)
        return best;
      if (!fallback)
        fallback = best;
    }
    return fallback;
  }

  double high_water_;
  std::vector<region> regions_;
  std::vector<std::pair<double, size_t>> order_;
};

class ours_strategy final : public strategy {
public:
  ours_strategy(allocation::strategy weights, const allocation::placement_rules& rules,
                uint32_t probe_count)
      : rules_(rules), probe_count_(probe_count) {
    app_.app_id = "bench";
    app_.placement_strategy = weights;
  }
  std::string name() const override {
    return "ours (" + std::string(allocation::to_string(app_.placement_strategy)) + ")";
  }

  join_choice choose(const network_view& network, const client& who,
                     const room_state& room) override {
    const auto& w = network.the_world();
    allocation::placement_request request;
    request.client = who.where;
    request.app = &app_;
    if (who.probes && probe_count_ > 0) {
      // Two-phase allocation: Candidates, the client measures them, then Allocate.
      for (const auto& candidate :
           allocation::nearest_candidates(network.table(), request, rules_, probe_count_))
        if (auto n = network.index_of(candidate.node_id))
          request.probes.push_back({candidate.node_id, w.true_rtt_ms(who, *n)});
    }
    allocation::room_view view;
    for (const auto& part : room.parts)
      if (part.open && network.record(part.node).state != chroom::admin::v1::NODE_STATE_DEAD)
        view.parts.push_back({w.nodes()[part.node].id, part.participants});
    auto result = allocation::place(network.table(), request, view, rules_, 0);
    join_choice choice;
    if (!result.ok())
      return choice;
    choice.node = network.index_of(result.chosen.node_id);
    choice.believed_rtt_ms = result.chosen.rtt_ms;
    if (result.relay_to)
      if (auto target = network.index_of(*result.relay_to))
        choice.relay_to = room.part_on(*target);
    return choice;
  }

private:
  allocation::app_policy app_;
  allocation::placement_rules rules_;
  uint32_t probe_count_;
};

} // namespace

std::unique_ptr<strategy> make_random(uint64_t seed) {
  return std::make_unique<random_strategy>(seed);
}

std::unique_ptr<strategy> make_round_robin() {
  return std::make_unique<round_robin_strategy>();
}

std::unique_ptr<strategy> make_least_loaded(const world& w, double high_water) {
  return std::make_unique<least_loaded_strategy>(w, high_water);
}

std::unique_ptr<strategy> make_nearest_region(const world& w, double high_water) {
  return std::make_unique<nearest_region_strategy>(w, high_water);
}

std::unique_ptr<strategy> make_ours(allocation::strategy weights,
                                    const allocation::placement_rules& rules,
                                    uint32_t probe_count) {
  return std::make_unique<ours_strategy>(weights, rules, probe_count);
}

} // namespace chroom::bench::sim
