// chroom-bench placement: placement quality. Builds a world (media nodes in real cities,
// a day of clients joining rooms, a few node crashes, a "true" network placement cannot
// see), replays it on each strategy against the real node table, and prints figures next
// to an offline lower bound computed on the same world. Figures only, never pass/fail.

#include "bench/chroom_bench/commands.hpp"
#include "bench/chroom_bench/sim_replay.hpp"
#include "bench/chroom_bench/sim_strategies.hpp"
#include "bench/chroom_bench/sim_world.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <sys/resource.h>

namespace chroom::bench {

namespace {

using namespace chroom::bench::sim;

constexpr const char* usage = R"(usage: chroom-bench placement [flags]

Replays a simulated day of clients and media nodes on several placement strategies
(random, round-robin, least-loaded, nearest-region, and ours: allocation::place() with the
balanced, latency and pack weights) and prints a Markdown table of what they did.

  --seed N             seed of everything random (default 1)
  --nodes N            media nodes, placed in cities by population (default 300)
  --clients N          joins over the run (default 500000)
  --hours H            length of the simulated day, from 00:00 UTC (default 24)
  --probe-fraction F   share of clients that probe the 5 nearest candidates (default 0.3)
  --failures N         nodes that crash during the run (default 4)
  --peer-rtts N        nodes each node measures and reports in Stats (default 16)
  --strategies LIST    comma-separated subset of: random,round-robin,least-loaded,
                       nearest-region,balanced,latency,pack (default: all)
  --jobs N             strategies replayed at once, one thread each (default 2)
  --cities FILE        city table (default: tools/data/cities.csv of the source tree)
  --affinity-slack-ms MS, --max-affinity-rtt-ms MS, --candidate-pool N, --high-water F
                       ours' placement_rules (defaults: the config's, 40, 150, 16, 0.85);
                       --high-water is also the baselines' headroom for new rooms
  --help               this text
)";

struct options {
  world_options world;
  // Ours' rules: the defaults of chroom.config.v1.AllocationConfig unless a flag changes
  // them (to try variants of the rules on the same world).
  allocation::placement_rules rules;
  std::vector<std::string> strategies{"random",   "round-robin", "least-loaded", "nearest-region",
                                      "balanced", "latency",     "pack"};
  uint32_t jobs = 2;
};

template <typename T> bool parse(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    auto comma = text.find(',');
    parts.emplace_back(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  return parts;
}

// Returns an exit code when the command must stop (help or a bad flag), -1 otherwise.
int parse_flags(int argc, char** argv, options& out) {
  out.world.cities_path = std::string(CHROOM_DATA_DIR) + "/cities.csv";
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "chroom-bench placement: %s needs a value (see --help)\n", argv[i]);
      return 2;
    }
    std::string_view value = argv[++i];
    bool ok = true;
    if (flag == "--seed")
      ok = parse(value, out.world.seed);
    else if (flag == "--nodes")
      ok = parse(value, out.world.nodes) && out.world.nodes >= 2;
    else if (flag == "--clients")
      ok = parse(value, out.world.clients) && out.world.clients >= 1;
    else if (flag == "--hours")
      ok = parse(value, out.world.hours) && out.world.hours > 0 && out.world.hours <= 24 * 14;
    else if (flag == "--probe-fraction")
      ok = parse(value, out.world.probe_fraction) && out.world.probe_fraction >= 0 &&
           out.world.probe_fraction <= 1;
    else if (flag == "--failures")
      ok = parse(value, out.world.failures);
    else if (flag == "--peer-rtts")
      ok = parse(value, out.world.peer_rtts);
    else if (flag == "--jobs")
      ok = parse(value, out.jobs) && out.jobs >= 1 && out.jobs <= 64;
    else if (flag == "--affinity-slack-ms")
      ok = parse(value, out.rules.affinity_slack_ms) && out.rules.affinity_slack_ms >= 0;
    else if (flag == "--max-affinity-rtt-ms")
      ok = parse(value, out.rules.max_affinity_rtt_ms) && out.rules.max_affinity_rtt_ms >= 0;
    else if (flag == "--candidate-pool")
      ok = parse(value, out.rules.candidate_pool) && out.rules.candidate_pool >= 1;
    else if (flag == "--high-water")
      ok =
        parse(value, out.rules.high_water) && out.rules.high_water > 0 && out.rules.high_water <= 1;
    else if (flag == "--cities")
      out.world.cities_path = std::string(value);
    else if (flag == "--strategies") {
      out.strategies = split(value);
      static constexpr std::string_view known[] = {
        "random", "round-robin", "least-loaded", "nearest-region", "balanced", "latency", "pack"};
      for (const auto& name : out.strategies)
        ok = ok && std::find(std::begin(known), std::end(known), name) != std::end(known);
      ok = ok && !out.strategies.empty();
    } else {
      std::fprintf(stderr, "chroom-bench placement: unknown flag %s (see --help)\n", argv[i - 1]);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "chroom-bench placement: bad value '%s' for %s (see --help)\n", argv[i],
                   argv[i - 1]);
      return 2;
    }
  }
  if (out.world.failures > out.world.nodes / 2) {
    std::fprintf(stderr, "chroom-bench placement: --failures must be at most half of --nodes\n");
    return 2;
  }
  return -1;
}

constexpr uint32_t probe_count = 5;

std::unique_ptr<strategy> make(const std::string& name, const world& w,
                               const allocation::placement_rules& rules) {
  if (name == "random")
    return make_random(w.options().seed);
  if (name == "round-robin")
    return make_round_robin();
  if (name == "least-loaded")
    return make_least_loaded(w, rules.high_water);
  if (name == "nearest-region")
    return make_nearest_region(w, rules.high_water);
  return make_ours(*allocation::parse_strategy(name), rules, probe_count);
}

// Nearest-rank percentile of `values` (sorted in place); NaN when empty.
double percentile(std::vector<double>& values, double p) {
  if (values.empty())
    return NAN;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double mean(const std::vector<double>& values) {
  if (values.empty())
    return NAN;
  double sum = 0;
  for (double v : values)
    sum += v;
  return sum / static_cast<double>(values.size());
}

std::string fixed(double value, int decimals = 1) {
  if (std::isnan(value))
    return "–";
  return fmt::format("{:.{}f}", value, decimals);
}

std::string thousands(uint64_t value) {
  auto digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

// What the table prints of one replay, against the bound.
struct summary {
  double mean_rtt = NAN;
  double p95_rtt = NAN;
  // Per client: (rtt - bound) / bound, over clients both placed.
  double mean_gap_pct = NAN;
  double p95_gap_pct = NAN;
  // Mean RTT over the bound's mean RTT on the same clients, minus one.
  double mean_over_bound_pct = NAN;
  double p95_over_bound_pct = NAN;
  double mean_pair = NAN;
  double p95_pair = NAN;
};

summary summarise(const replay_result& run, const bound_result& bound) {
  summary s;
  std::vector<double> rtts, gaps, same_bound;
  for (size_t i = 0; i < run.rtt_ms.size(); ++i) {
    if (std::isnan(run.rtt_ms[i]))
      continue;
    rtts.push_back(run.rtt_ms[i]);
    if (!std::isnan(bound.rtt_ms[i])) {
      gaps.push_back(100.0 * (run.rtt_ms[i] - bound.rtt_ms[i]) / bound.rtt_ms[i]);
      same_bound.push_back(bound.rtt_ms[i]);
    }
  }
  std::vector<double> placed_with_bound;
  for (size_t i = 0; i < run.rtt_ms.size(); ++i)
    if (!std::isnan(run.rtt_ms[i]) && !std::isnan(bound.rtt_ms[i]))
      placed_with_bound.push_back(run.rtt_ms[i]);
  s.mean_rtt = mean(rtts);
  s.p95_rtt = percentile(rtts, 0.95);
  s.mean_gap_pct = mean(gaps);
  s.p95_gap_pct = percentile(gaps, 0.95);
  s.mean_over_bound_pct = 100.0 * (mean(placed_with_bound) / mean(same_bound) - 1);
  s.p95_over_bound_pct =
    100.0 * (percentile(placed_with_bound, 0.95) / percentile(same_bound, 0.95) - 1);
  std::vector<double> pairs(run.pair_rtt_ms.begin(), run.pair_rtt_ms.end());
  s.mean_pair = mean(pairs);
  s.p95_pair = percentile(pairs, 0.95);
  return s;
}

void print_world(const world& w, const bound_result& bound,
                 const allocation::placement_rules& rules, double build_s) {
  const auto& o = w.options();
  uint32_t by_capacity[3] = {0, 0, 0};
  for (const auto& n : w.nodes())
    ++by_capacity[n.max_participants <= 200 ? 0 : n.max_participants <= 500 ? 1 : 2];
  uint64_t rooms_of[room_kinds] = {}, clients_of[room_kinds] = {};
  for (const auto& r : w.rooms()) {
    ++rooms_of[static_cast<int>(r.kind)];
    clients_of[static_cast<int>(r.kind)] += r.clients.size();
  }
  uint64_t probing = 0;
  for (const auto& c : w.clients())
    probing += c.probes;
  uint64_t unplaced = 0;
  for (float rtt : bound.rtt_ms)
    unplaced += std::isnan(rtt);
  std::vector<uint32_t> node_cities;
  for (const auto& n : w.nodes())
    node_cities.push_back(n.city);
  std::sort(node_cities.begin(), node_cities.end());
  node_cities.erase(std::unique(node_cities.begin(), node_cities.end()), node_cities.end());

  fmt::print("## chroom-bench placement\n\n");
  fmt::print("World (seed {}, built in {:.1f} s):\n", o.seed, build_s);
  fmt::print("- {} nodes in {} cities, {} places (200 × {}, 500 × {}, 1000 × {})\n",
             w.nodes().size(), node_cities.size(), thousands(w.total_capacity()), by_capacity[0],
             by_capacity[1], by_capacity[2]);
  fmt::print("- {} h from 00:00 UTC, {} joins in {} rooms:", o.hours, thousands(w.clients().size()),
             thousands(w.rooms().size()));
  for (int k = 0; k < room_kinds; ++k)
    fmt::print("{} {}: {} rooms / {} joins", k ? ";" : "", to_string(static_cast<room_kind>(k)),
               thousands(rooms_of[k]), thousands(clients_of[k]));
  fmt::print("\n- {:.0f}% of clients probe {} candidates first; each node reports RTTs to its {} "
             "nearest nodes\n",
             100.0 * static_cast<double>(probing) /
               static_cast<double>(std::max<size_t>(1, w.clients().size())),
             probe_count, o.peer_rtts);
  fmt::print("- crashes:");
  for (auto n : w.crashes())
    fmt::print(" {} ({}, {} places) at {:.1f} h;", w.nodes()[n].id,
               w.cities()[w.nodes()[n].city].name, w.nodes()[n].max_participants,
               w.nodes()[n].crash_at_s / 3600);
  if (w.crashes().empty())
    fmt::print(" none");
  fmt::print("\n- ours' rules: affinity slack {} ms, max affinity RTT {} ms, candidate pool {}, "
             "high water {} (also the baselines' headroom for new rooms)",
             rules.affinity_slack_ms, rules.max_affinity_rtt_ms, rules.candidate_pool,
             rules.high_water);
  fmt::print("\n- offline bound: peak {} participants at once ({:.0f}% of all places) at {:.1f} h "
             "UTC; {} joins it could not place\n\n",
             thousands(bound.peak_participants), 100 * bound.peak_utilisation, bound.peak_at_h,
             thousands(unplaced));
}

void print_table(const std::vector<replay_result>& runs, const std::vector<summary>& sums,
                 const bound_result& bound) {
  fmt::print(
    "| strategy | joins | rejected | …with room elsewhere | mean RTT ms | p95 RTT ms | "
    "gap to bound mean / p95 % | client↔client mean / p95 ms | nodes >85% | "
    "node-min >85% | full node-min | relays in rooms (mean relay RTT ms) | re-placed / failed |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<double> bound_rtts;
  for (float rtt : bound.rtt_ms)
    if (!std::isnan(rtt))
      bound_rtts.push_back(rtt);
  double bound_mean = mean(bound_rtts);
  double bound_p95 = percentile(bound_rtts, 0.95);
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const auto& s = sums[i];
    auto relays =
      r.relay_links == 0
        ? std::string("0")
        : fmt::format("{} in {} rooms ({})", thousands(r.relay_links), thousands(r.cascaded_rooms),
                      fixed(r.relay_rtt_sum_ms / static_cast<double>(r.relay_links)));
    fmt::print(
      "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} | {} / {} |\n", r.name,
      thousands(r.joins), thousands(r.rejected), thousands(r.rejected_with_room_elsewhere),
      fixed(s.mean_rtt), fixed(s.p95_rtt), fixed(s.mean_gap_pct), fixed(s.p95_gap_pct),
      fixed(s.mean_pair), fixed(s.p95_pair), r.hot_nodes, thousands(r.hot_node_minutes),
      thousands(r.full_node_minutes), relays, thousands(r.replaced), thousands(r.replace_failed));
  }
  fmt::print("| offline bound | {} | – | – | {} | {} | 0 / 0 | – | – | – | – | – | – |\n\n",
             thousands(bound.rtt_ms.size()), fixed(bound_mean), fixed(bound_p95));
}

void print_ratios(const std::vector<replay_result>& runs, const std::vector<summary>& sums) {
  auto find = [&](std::string_view name) -> int {
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].name == name)
        return static_cast<int>(i);
    return -1;
  };
  int region = find("nearest-region");
  for (const char* ours : {"ours (balanced)", "ours (latency)", "ours (pack)"}) {
    int i = find(ours);
    if (i < 0)
      continue;
    fmt::print("- {}:", ours);
    if (region >= 0)
      fmt::print(" p95 RTT / nearest-region's p95 = **{:.2f}** (goal ≤ 0.8; rejected {} vs {});",
                 sums[i].p95_rtt / sums[region].p95_rtt, thousands(runs[i].rejected),
                 thousands(runs[region].rejected));
    fmt::print(" mean RTT within **{}%** of the bound's on the same clients (goal ≤ 10%), p95 "
               "within {}%\n",
               fixed(sums[i].mean_over_bound_pct), fixed(sums[i].p95_over_bound_pct));
  }
  fmt::print("\n");
}

void print_diagnostics(const std::vector<replay_result>& runs) {
  fmt::print("Where ours' RTT goes. Reference: the nearest node (true RTT) with a free place at "
             "that moment in the same run, rooms ignored; believed: the RTT place() scored "
             "(probe, node matrix or distance model).\n\n");
  fmt::print(
    "| strategy | joins by kind | joins | mean RTT ms | mean reference ms | excess ms |\n");
  fmt::print("|---|---|---|---|---|---|\n");
  for (const auto& r : runs) {
    if (r.name.rfind("ours", 0) != 0)
      continue;
    for (int k = 0; k < join_kinds; ++k) {
      const auto& f = r.kinds[k];
      if (f.joins == 0)
        continue;
      double n = static_cast<double>(f.joins);
      fmt::print("| {} | {} | {} | {} | {} | {} |\n", r.name, to_string(static_cast<join_kind>(k)),
                 thousands(f.joins), fixed(f.rtt_sum / n), fixed(f.reference_sum / n),
                 fixed((f.rtt_sum - f.reference_sum) / n));
    }
    for (auto [label, f] : {std::pair{"clients that probed", &r.probed},
                            std::pair{"clients that did not", &r.unprobed}}) {
      if (f->joins == 0)
        continue;
      double n = static_cast<double>(f->joins);
      fmt::print("| {} | {} (believed {} ms) | {} | {} | {} | {} |\n", r.name, label,
                 fixed(f->believed_sum / n), thousands(f->joins), fixed(f->rtt_sum / n),
                 fixed(f->reference_sum / n), fixed((f->rtt_sum - f->reference_sum) / n));
    }
  }
  fmt::print("\n");
}

} // namespace

int run_placement(int argc, char** argv) {
  options o;
  if (int code = parse_flags(argc, argv, o); code >= 0)
    return code;
  auto started = std::chrono::steady_clock::now();
  auto seconds_since = [](auto start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::string error;
  auto built = world::build(o.world, error);
  if (!built) {
    std::fprintf(stderr, "chroom-bench placement: %s\n", error.c_str());
    return 1;
  }
  const world& w = *built;
  double build_s = seconds_since(started);
  auto bound = lower_bound(w);
  print_world(w, bound, o.rules, build_s);
  std::fflush(stdout);

  // Each strategy replays the same world on its own node table; they share only the
  // (read-only) world, so they can run side by side.
  std::vector<replay_result> runs(o.strategies.size());
  // Ours' rows take ten times as long as a baseline's: they start first, so that the
  // baselines fill the gaps instead of one long row running alone at the end.
  std::vector<size_t> schedule(o.strategies.size());
  for (size_t i = 0; i < schedule.size(); ++i)
    schedule[i] = i;
  auto is_ours = [&](size_t i) { return allocation::parse_strategy(o.strategies[i]).has_value(); };
  std::stable_partition(schedule.begin(), schedule.end(), is_ours);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t job; (job = next++) < schedule.size();) {
      auto i = schedule[job];
      auto chosen = make(o.strategies[i], w, o.rules);
      replay_options replay_with;
      replay_with.high_water = o.rules.high_water;
      replay_with.diagnose = chosen->name().rfind("ours", 0) == 0;
      runs[i] = replay(w, *chosen, replay_with);
    }
  };
  std::vector<std::thread> threads;
  for (uint32_t t = 1; t < std::min<size_t>(o.jobs, o.strategies.size()); ++t)
    threads.emplace_back(worker);
  worker();
  for (auto& t : threads)
    t.join();

  std::vector<summary> sums;
  sums.reserve(runs.size());
  for (const auto& r : runs)
    sums.push_back(summarise(r, bound));
  print_table(runs, sums, bound);
  print_ratios(runs, sums);
  print_diagnostics(runs);
  for (const auto& r : runs)
    if (r.refused_by_table > 0)
      fmt::print("{}: {} choices the node table then refused (counted as rejected)\n", r.name,
                 thousands(r.refused_by_table));
  fmt::print("Replay time per strategy:");
  for (const auto& r : runs)
    fmt::print(" {} {:.1f} s;", r.name, r.wall_s);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto cpu_s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  fmt::print(" total {:.1f} s wall, {:.1f} s CPU, with --jobs {}\n", seconds_since(started),
             cpu_s(usage.ru_utime) + cpu_s(usage.ru_stime), o.jobs);
  return 0;
}

} // namespace chroom::bench
