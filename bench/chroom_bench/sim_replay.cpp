#include "bench/chroom_bench/sim_replay.hpp"

#include "bench/chroom_bench/sim_random.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <queue>

namespace chroom::bench::sim {

namespace {

namespace v1 = chroom::medianode::v1;
using allocation::clock;

constexpr double infinity = std::numeric_limits<double>::infinity();
// Reservations are confirmed at once (the simulated node always acks); the TTL only
// matters for unconfirmed ones, of which there are none.
constexpr std::chrono::milliseconds reservation_ttl{120'000};
// A client's location jitter moves its true RTT by well under this from its city centre's,
// so the nearest node with room is among those this close to the first one found.
constexpr double nearest_window_ms = 2.0;
// Mean media bitrate a participant sends through its node, Mbps (fills bandwidth_out).
constexpr double mbps_per_participant = 1.5;

clock::time_point at(double seconds) {
  return clock::time_point{} +
         std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
}

allocation::session_id session_of(uint32_t node) {
  return node + 1;
}

// Lifecycle timing scaled to Stats every stats_interval (the orchestrator's defaults assume
// one-second Stats): suspect after one and a half missed reports, dead after two and a half.
// Ended nodes are not forgotten within a run, so the records strategies hold stay valid.
allocation::liveness_rules liveness(const world& w, double stats_interval_s) {
  allocation::liveness_rules rules;
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  rules.suspect_after = ms(1.5 * stats_interval_s);
  rules.dead_after = ms(2.5 * stats_interval_s);
  rules.forget_after = ms(w.options().hours * 3600 * 2 + 86'400);
  rules.max_nodes = w.nodes().size() + 1;
  return rules;
}

// The nearest node by true RTT among those `usable`, and that RTT; (NaN, -1) when none.
// Walks the client's city's ranking instead of every node: a client is at most
// max_jitter_km off its city centre, which moves its RTTs by far less than
// nearest_window_ms, so no node after the first one that far behind the best can win.
template <typename usable_fn>
std::pair<double, int32_t> nearest_node(const world& w, const client& who, usable_fn usable) {
  double best = NAN;
  int32_t best_node = -1;
  for (auto n : w.nodes_by_rtt(who.city)) {
    if (best_node >= 0) {
      double rtt = w.true_rtt_ms(who, n);
      if (rtt > best + nearest_window_ms)
        break;
      if (rtt < best && usable(n)) {
        best = rtt;
        best_node = static_cast<int32_t>(n);
      }
    } else if (usable(n)) {
      best = w.true_rtt_ms(who, n);
      best_node = static_cast<int32_t>(n);
    }
  }
  return {best, best_node};
}

// Where a client is placed now.
struct placement {
  int32_t node = -1;
  int32_t part = -1;
  float rtt_ms = 0;
  // Index in its room's member list.
  uint32_t member_slot = 0;
};

class replayer {
public:
  replayer(const world& w, strategy& chosen, const replay_options& options)
      : world_(w), strategy_(chosen), options_(options),
        network_(w, liveness(w, options.stats_interval_s)), rooms_(w.rooms().size()),
        placed_(w.clients().size()), count_(w.nodes().size(), 0), crashed_(w.nodes().size(), false),
        ever_hot_(w.nodes().size(), false), ever_full_(w.nodes().size(), false),
        cascaded_(w.rooms().size(), false), random_(w.options().seed, stream::replay) {
    result_.name = chosen.name();
    result_.rtt_ms.assign(w.clients().size(), NAN);
    for (uint32_t n = 0; n < w.nodes().size(); ++n) {
      v1::Stats stats;
      stats.set_jitter_ms(3);
      for (auto& [peer, rtt] : w.nodes()[n].peers) {
        auto* measured = stats.add_peer_rtts();
        measured->set_node_id(w.nodes()[peer].id);
        measured->set_rtt_ms(rtt);
      }
      stats_.push_back(std::move(stats));
    }
  }

  replay_result run() {
    auto started = std::chrono::steady_clock::now();
    const auto& clients = world_.clients();
    const auto& crashes = world_.crashes();
    const double end_s = world_.options().hours * 3600;
    size_t next_arrival = 0;
    size_t next_crash = 0;
    double next_stats = 0;
    double next_sweep = options_.sweep_interval_s;
    for (;;) {
      double arrival = next_arrival < clients.size() ? clients[next_arrival].arrive_s : infinity;
      double departure = departures_.empty() ? infinity : departures_.top().first;
      double crash =
        next_crash < crashes.size() ? world_.nodes()[crashes[next_crash]].crash_at_s : infinity;
      double now = std::min({arrival, departure, crash, next_stats, next_sweep});
      if (now > end_s)
        break;
      // At equal times: leaving frees places first, then the network changes, then joins.
      if (departure == now) {
        auto who = departures_.top().second;
        departures_.pop();
        leave(who);
      } else if (crash == now) {
        on_crash(crashes[next_crash++], now);
      } else if (next_stats == now) {
        send_stats(now);
        next_stats += options_.stats_interval_s;
      } else if (next_sweep == now) {
        sweep(now);
        next_sweep += options_.sweep_interval_s;
      } else {
        auto who = static_cast<uint32_t>(next_arrival++);
        ++result_.joins;
        if (join(who, now, false)) {
          ++result_.accepted;
          result_.rtt_ms[who] = placed_[who].rtt_ms;
          departures_.emplace(clients[who].leave_s, who);
        } else {
          ++result_.rejected;
          if (room_anywhere())
            ++result_.rejected_with_room_elsewhere;
        }
      }
    }
    for (bool hot : ever_hot_)
      result_.hot_nodes += hot;
    for (bool full : ever_full_)
      result_.full_nodes += full;
    for (bool cascaded : cascaded_)
      result_.cascaded_rooms += cascaded;
    result_.wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return std::move(result_);
  }

private:
  bool room_anywhere() const {
    for (uint32_t n = 0; n < world_.nodes().size(); ++n)
      if (network_.has_room(n))
        return true;
    return false;
  }

  // Places `who`; false when the strategy or the node table said no.
  bool join(uint32_t who, double now, bool replacement) {
    const auto& c = world_.clients()[who];
    auto& room = rooms_[c.room];
    auto reference = options_.diagnose ? nearest_with_room_ms(network_, c) : NAN;
    auto had_parts = room.has_open_part();
    auto choice = strategy_.choose(network_, c, room);
    if (!choice.node)
      return false;
    auto node = *choice.node;
    allocation::table_error error = allocation::table_error::none;
    auto& table = network_.table();
    auto reservation = table.reserve(world_.nodes()[node].id, 1, reservation_ttl, at(now), error);
    if (reservation == 0) {
      ++result_.refused_by_table;
      return false;
    }
    table.confirm(world_.nodes()[node].id, reservation, at(now));
    ++count_[node];

    auto part = room.part_on(node);
    auto kind = replacement ? join_kind::moved
                : part >= 0 ? join_kind::affinity
                : had_parts ? join_kind::extended
                            : join_kind::new_room;
    if (part < 0) {
      part = static_cast<int>(room.parts.size());
      room_part fresh;
      fresh.node = node;
      if (choice.relay_to >= 0 && choice.relay_to < part && room.parts[choice.relay_to].open) {
        fresh.parent = choice.relay_to;
        add_relay(c.room, node, room.parts[choice.relay_to].node);
      }
      room.parts.push_back(fresh);
    }
    ++room.parts[part].participants;

    auto rtt = static_cast<float>(world_.true_rtt_ms(c, node));
    if (!room.members.empty()) {
      auto other = room.members[random_.below(room.members.size())];
      const auto& there = placed_[other];
      result_.pair_rtt_ms.push_back(
        static_cast<float>(rtt + path_ms(room, part, there.part) + there.rtt_ms));
    }
    placed_[who] = {static_cast<int32_t>(node), part, rtt,
                    static_cast<uint32_t>(room.members.size())};
    room.members.push_back(who);

    auto& figures = result_.kinds[static_cast<int>(kind)];
    ++figures.joins;
    figures.rtt_sum += rtt;
    figures.reference_sum += reference;
    if (!std::isnan(choice.believed_rtt_ms) && !replacement) {
      auto& source = c.probes ? result_.probed : result_.unprobed;
      ++source.joins;
      source.rtt_sum += rtt;
      source.believed_sum += choice.believed_rtt_ms;
      source.reference_sum += reference;
    }
    return true;
  }

  void add_relay(uint32_t room, uint32_t a, uint32_t b) {
    ++result_.relay_links;
    result_.relay_rtt_sum_ms += world_.true_node_rtt_ms(a, b);
    cascaded_[room] = true;
  }

  // RTT between two parts of a room along its relays (0 on the same part).
  double path_ms(const room_state& room, int from, int to) const {
    if (from == to)
      return 0;
    // Cost from `from` up to each of its ancestors; then walk up from `to` until one.
    double up = 0;
    std::vector<std::pair<int, double>> ancestors{{from, 0.0}};
    for (int p = from; room.parts[p].parent >= 0; p = room.parts[p].parent) {
      up += world_.true_node_rtt_ms(room.parts[p].node, room.parts[room.parts[p].parent].node);
      ancestors.emplace_back(room.parts[p].parent, up);
    }
    double down = 0;
    for (int p = to;; p = room.parts[p].parent) {
      for (auto& [ancestor, cost] : ancestors)
        if (ancestor == p)
          return cost + down;
      if (room.parts[p].parent < 0)
        break;
      down += world_.true_node_rtt_ms(room.parts[p].node, room.parts[room.parts[p].parent].node);
    }
    // Not linked (a baseline's room that moved off a crashed node): direct.
    return world_.true_node_rtt_ms(room.parts[from].node, room.parts[to].node);
  }

  bool has_open_children(const room_state& room, int part) const {
    for (const auto& other : room.parts)
      if (other.open && other.parent == part)
        return true;
    return false;
  }

  // Takes `who` off its node and out of its room's member list; returns the part it was on.
  int detach(uint32_t who) {
    auto& where = placed_[who];
    auto& room = rooms_[world_.clients()[who].room];
    --count_[where.node];
    --room.parts[where.part].participants;
    auto last = room.members.back();
    room.members[where.member_slot] = last;
    placed_[last].member_slot = where.member_slot;
    room.members.pop_back();
    auto part = where.part;
    where.node = -1;
    where.part = -1;
    return part;
  }

  void leave(uint32_t who) {
    if (placed_[who].node < 0)
      return; // rejected, or lost with a crashed node and not placed again
    auto& room = rooms_[world_.clients()[who].room];
    auto part = detach(who);
    // A part nobody uses and nothing relays through closes (CloseRoom on that node); so
    // does the part it linked to, if that one is now idle too. An empty room closes all.
    while (part >= 0 && room.parts[part].open && room.parts[part].participants == 0 &&
           !has_open_children(room, part)) {
      room.parts[part].open = false;
      part = room.parts[part].parent;
    }
    if (room.members.empty())
      room.parts.clear();
  }

  void on_crash(uint32_t node, double now) {
    crashed_[node] = true;
    // The node's stream dies with it: the table marks it suspect at once, dead when
    // dead_after has passed since its last Stats (sweep).
    network_.table().on_stream_closed(world_.nodes()[node].id, session_of(node), at(now));
  }

  void send_stats(double now) {
    auto& table = network_.table();
    for (uint32_t n = 0; n < world_.nodes().size(); ++n) {
      if (crashed_[n])
        continue;
      auto max = world_.nodes()[n].max_participants;
      double fill = static_cast<double>(count_[n]) / max;
      auto& stats = stats_[n];
      stats.set_participants(count_[n]);
      stats.set_cpu_load(std::min(1.0, fill));
      stats.set_bandwidth_in_mbps(count_[n] * mbps_per_participant);
      stats.set_bandwidth_out_mbps(count_[n] * mbps_per_participant);
      table.on_stats(world_.nodes()[n].id, session_of(n), stats, at(now));
      if (fill > options_.high_water) {
        ++result_.hot_node_minutes;
        ever_hot_[n] = true;
      }
      if (count_[n] >= max) {
        ++result_.full_node_minutes;
        ever_full_[n] = true;
      }
    }
  }

  void sweep(double now) {
    for (const auto& event : network_.table().sweep(at(now)))
      if (event.state == chroom::admin::v1::NODE_STATE_DEAD)
        if (auto node = network_.index_of(event.node_id))
          replace_clients_of(*node, now);
  }

  // The node was declared dead: its clients reconnect and are placed again, each with its
  // room's remaining parts.
  void replace_clients_of(uint32_t node, double now) {
    std::vector<uint32_t> lost;
    for (uint32_t who = 0; who < placed_.size(); ++who)
      if (placed_[who].node == static_cast<int32_t>(node))
        lost.push_back(who);
    std::vector<uint32_t> touched_rooms;
    for (auto who : lost) {
      touched_rooms.push_back(world_.clients()[who].room);
      detach(who);
    }
    std::sort(touched_rooms.begin(), touched_rooms.end());
    touched_rooms.erase(std::unique(touched_rooms.begin(), touched_rooms.end()),
                        touched_rooms.end());
    for (auto r : touched_rooms)
      close_dead_part(r, node);
    for (auto who : lost) {
      if (join(who, now, true))
        ++result_.replaced;
      else
        ++result_.replace_failed;
    }
  }

  // The room's part on a dead node closes; parts that linked to it link to its parent, or
  // (it was the first part) to the first of them, so the room stays one tree.
  void close_dead_part(uint32_t r, uint32_t node) {
    auto& room = rooms_[r];
    auto dead = room.part_on(node);
    if (dead < 0)
      return;
    room.parts[dead].open = false;
    int heir = room.parts[dead].parent;
    for (int p = 0; p < static_cast<int>(room.parts.size()); ++p) {
      auto& part = room.parts[p];
      if (!part.open || part.parent != dead)
        continue;
      if (heir < 0) {
        part.parent = -1;
        heir = p;
      } else {
        part.parent = heir;
        add_relay(r, part.node, room.parts[heir].node);
      }
    }
    if (room.members.empty())
      room.parts.clear();
  }

  const world& world_;
  strategy& strategy_;
  replay_options options_;
  network_view network_;
  std::vector<room_state> rooms_;
  std::vector<placement> placed_;
  std::vector<uint32_t> count_;
  std::vector<bool> crashed_;
  std::vector<bool> ever_hot_;
  std::vector<bool> ever_full_;
  std::vector<bool> cascaded_;
  std::vector<v1::Stats> stats_;
  using departure = std::pair<double, uint32_t>;
  std::priority_queue<departure, std::vector<departure>, std::greater<>> departures_;
  rng random_;
  replay_result result_;
};

} // namespace

int room_state::part_on(uint32_t node) const {
  for (size_t p = 0; p < parts.size(); ++p)
    if (parts[p].open && parts[p].node == node)
      return static_cast<int>(p);
  return -1;
}

bool room_state::has_open_part() const {
  for (const auto& part : parts)
    if (part.open)
      return true;
  return false;
}

network_view::network_view(const world& w, const allocation::liveness_rules& rules)
    : world_(w), table_(rules) {
  for (uint32_t n = 0; n < w.nodes().size(); ++n) {
    table_.on_register(w.registration(n), session_of(n), at(0));
    index_.emplace(w.nodes()[n].id, n);
  }
  // The table's map never erases within a run (forget_after is longer than the run), so
  // the records stay where they are.
  for (const auto& n : w.nodes())
    records_.push_back(table_.find(n.id));
}

std::optional<uint32_t> network_view::index_of(std::string_view node_id) const {
  auto it = index_.find(std::string(node_id));
  if (it == index_.end())
    return std::nullopt;
  return it->second;
}

bool network_view::has_room(uint32_t node) const {
  const auto& r = record(node);
  return r.accepts_work() && r.available_participants() > 0;
}

double network_view::load(uint32_t node) const {
  const auto& r = record(node);
  double used = r.last_stats.participants() + r.reserved_participants();
  return used / r.registration.capacity().max_participants();
}

const char* to_string(join_kind kind) {
  switch (kind) {
    case join_kind::new_room:
      return "first in room (or on its own)";
    case join_kind::affinity:
      return "joined a node the room is on";
    case join_kind::extended:
      return "extended the room (cascade)";
    case join_kind::moved:
      return "re-placed after a crash";
  }
  return "?";
}

replay_result replay(const world& w, strategy& chosen, const replay_options& options) {
  replayer run(w, chosen, options);
  return run.run();
}

double nearest_with_room_ms(const network_view& network, const client& who) {
  return nearest_node(network.the_world(), who, [&](uint32_t n) { return network.has_room(n); })
    .first;
}

bound_result lower_bound(const world& w) {
  bound_result result;
  const auto& clients = w.clients();
  const auto& nodes = w.nodes();
  result.rtt_ms.assign(clients.size(), NAN);
  std::vector<uint32_t> count(nodes.size(), 0);
  std::vector<int32_t> on(clients.size(), -1);
  using departure = std::pair<double, uint32_t>;
  std::priority_queue<departure, std::vector<departure>, std::greater<>> departures;
  size_t next_crash = 0;
  std::vector<bool> crashed(nodes.size(), false);
  uint64_t total = 0;
  const double capacity = static_cast<double>(w.total_capacity());
  for (uint32_t who = 0; who < clients.size(); ++who) {
    const auto& c = clients[who];
    while (!departures.empty() && departures.top().first <= c.arrive_s) {
      auto gone = departures.top().second;
      departures.pop();
      if (on[gone] >= 0) {
        --count[on[gone]];
        --total;
      }
    }
    while (next_crash < w.crashes().size() &&
           nodes[w.crashes()[next_crash]].crash_at_s <= c.arrive_s) {
      auto node = w.crashes()[next_crash++];
      crashed[node] = true;
      total -= count[node];
      count[node] = 0;
      for (auto& placed : on)
        if (placed == static_cast<int32_t>(node))
          placed = -1;
    }
    auto [best, best_node] = nearest_node(
      w, c, [&](uint32_t n) { return !crashed[n] && count[n] < nodes[n].max_participants; });
    if (best_node < 0)
      continue;
    result.rtt_ms[who] = static_cast<float>(best);
    on[who] = best_node;
    ++count[best_node];
    ++total;
    departures.emplace(c.leave_s, who);
    if (total > result.peak_participants) {
      result.peak_participants = total;
      result.peak_at_h = c.arrive_s / 3600;
    }
  }
  result.peak_utilisation = static_cast<double>(result.peak_participants) / capacity;
  return result;
}

} // namespace chroom::bench::sim
