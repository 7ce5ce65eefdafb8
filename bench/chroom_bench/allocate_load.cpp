// chroom-bench allocate: closed-loop Allocate load through a peer's gateway, each call a
// distinct client joining rooms of a size mix, with latency, statuses, throughput and the
// client's own CPU per call. `--method echo` runs the same loop, with requests of the same
// size, against Diagnostics/Echo: the gateway's own cost, the reference for the Allocate
// figures of the same run.

#include <sys/resource.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench/chroom_bench/allocate_client.hpp"
#include "bench/chroom_bench/allocate_stats.hpp"
#include "bench/chroom_bench/allocate_workload.hpp"
#include "bench/chroom_bench/commands.hpp"
#include "chroom/allocation/v1/allocation_service.pb.h"
#include "tools/node_sim/json.hpp"

namespace chroom::bench {

namespace {

using node_sim::json_string;
using std::chrono::duration;
using std::chrono::duration_cast;

constexpr std::string_view allocate_path = "/chroom.allocation.v1.AllocationService/Allocate";
constexpr std::string_view release_path = "/chroom.allocation.v1.AllocationService/Release";
constexpr std::string_view echo_path = "/chroom.diag.v1.Diagnostics/Echo";
// Index of each path in h2_client_settings::paths.
constexpr std::size_t primary_path = 0;
constexpr std::size_t release_path_index = 1;

// After the run stops starting calls, those in flight (and the Releases they lead to) get
// this long to end before they count as unfinished.
constexpr auto drain_grace = std::chrono::seconds(5);
// No call ending for this long means the peer hangs: the run ends rather than wait forever.
constexpr auto stall_timeout = std::chrono::seconds(10);
// Under --rate, starts missed while no slot was free (or while this process was not
// scheduled: the machine is shared) are made up for at most this far back. Long enough to
// ride out a descheduled client on a busy box; the bursts it allows are bounded by the
// calls in flight anyway. A peer slower than the rate shows as calls/s below it.
constexpr auto max_catch_up = std::chrono::milliseconds(100);
// Under --rate, a wake-up starts every call due within this much: the client then wakes
// ~4,000 times a second rather than once per call, at the price of bursts this short.
constexpr auto pace_tick = std::chrono::microseconds(250);
// Upper bounds of the flags: far beyond a useful run on one machine, low enough that a
// typo does not exhaust memory or file descriptors.
constexpr std::uint32_t max_connections = 256;
constexpr std::uint32_t max_concurrency = 10'000;
constexpr std::uint32_t max_open_rooms = 10'000'000;

constexpr std::string_view help_text =
  R"(chroom-bench allocate: closed-loop Allocate load on an orchestrator peer (h2c gRPC).

Usage: chroom-bench allocate [options]

Each connection keeps --concurrency calls in flight; a call that ends starts the next at
once. Every Allocate is a distinct client joining one of --open-rooms rooms being filled,
whose sizes follow --room-sizes; clients come from the cities of the cities file, drawn by
population, most of a room's clients from the room's own city. Prints the calls, OK, each
other status with its count and first message, throughput, latency percentiles (request
written -> trailers read) and the client's CPU per call. Exits 0 when at least one call
was OK, 1 when none was (or no connection), 2 on a bad flag.

Target and load:
  --target HOST:PORT[,HOST:PORT...]
                         peer(s) to call (default 127.0.0.1:7443), cleartext HTTP/2;
                         with several (peers of one cluster), connection i goes to the
                         (i mod count)-th: give a multiple of their count as --connections
                         to load them evenly
  --method M             allocate (default) or echo: chroom.diag.v1.Diagnostics/Echo with
                         the same request bytes as payload, the gateway's own cost
  --connections C        TCP connections (default 2)
  --concurrency M        calls in flight per connection (default 16)
  --requests N           stop after N Allocate (or Echo) calls (default 0: no limit)
  --duration-s S         stop after S seconds (default 10; 0: no limit); the first of
                         --requests and --duration-s ends the run
  --warmup-s W           calls ending in the first W seconds are not counted (default 0)
  --rate R               start at most R Allocate (or Echo) calls per second over all
                         connections (default 0: as fast as the closed loop goes); the
                         latency at a given load, e.g. the goal's 30000/s
  --release              release each lease right after its Allocate answer; Release
                         calls are counted and timed separately
Workload:
  --app-id A             AllocateRequest.app_id (default "default")
  --room-sizes MIX       room sizes and their shares of rooms: LOW-HIGH:WEIGHT or
                         SIZE:WEIGHT, comma-separated (default 2-8:90,50:10)
  --open-rooms K         rooms being filled at once (default 1000)
  --local-share F        share of a room's clients in the room's city, 0..1 (default 0.8)
  --cities FILE          cities CSV (default tools/data/cities.csv of the source tree)
  --seed S               workload seed; room and client ids carry it, so give each run
                         on one peer its own seed (default 1)
Output:
  --json                 print the result as one JSON object instead of text
  --help
)";

template <typename T> bool parse_number(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

struct options {
  std::string target = "127.0.0.1:7443";
  std::vector<h2_target> targets;
  bool echo = false;
  std::uint32_t connections = 2;
  std::uint32_t concurrency = 16;
  std::uint64_t requests = 0;
  double duration_s = 10;
  double warmup_s = 0;
  double rate = 0;
  bool release = false;
  bool json = false;
  std::string room_sizes = "2-8:90,50:10";
  std::string cities_file = CHROOM_DATA_DIR "/cities.csv";
  workload_parameters workload;
};

// Splits "host:port", "[v6]:port"; false when there is no port.
bool split_target(const std::string& target, std::string& host, std::string& port) {
  std::size_t colon = std::string::npos;
  if (target.starts_with('[')) {
    const auto close = target.find(']');
    if (close == std::string::npos || close + 1 >= target.size() || target[close + 1] != ':')
      return false;
    host = target.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = target.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return false;
    host = target.substr(0, colon);
  }
  port = target.substr(colon + 1);
  std::uint32_t number = 0;
  return parse_number(std::string_view(port), number) && number >= 1 && number <= 65535;
}

// Splits "HOST:PORT,HOST:PORT,..." into targets; false when one has no port (or none is
// given).
bool split_targets(const std::string& list, std::vector<h2_target>& out) {
  out.clear();
  std::size_t from = 0;
  for (;;) {
    const auto comma = list.find(',', from);
    h2_target t;
    t.authority = list.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
    if (!split_target(t.authority, t.host, t.port))
      return false;
    out.push_back(std::move(t));
    if (comma == std::string::npos)
      return true;
    from = comma + 1;
  }
}

// Parses the flags into `out`; returns an error message, empty when all is well.
std::string parse_options(int argc, char** argv, options& out, bool& help) {
  using setter = std::function<std::string(std::string_view)>;
  auto count = [](auto& field, std::uint64_t low, std::uint64_t high) {
    return setter([&field, low, high](std::string_view v) -> std::string {
      std::uint64_t value = 0;
      if (!parse_number(v, value) || value < low || value > high)
        return fmt::format("an integer from {} to {}", low, high);
      field = static_cast<std::remove_reference_t<decltype(field)>>(value);
      return {};
    });
  };
  auto seconds = [](double& field) {
    return setter([&field](std::string_view v) -> std::string {
      double value = 0;
      if (!parse_number(v, value) || !std::isfinite(value) || value < 0 || value > 86400)
        return "seconds from 0 to 86400";
      field = value;
      return {};
    });
  };
  const std::map<std::string, setter, std::less<>> flags = {
    {"--target",
     [&](std::string_view v) -> std::string {
       out.target = std::string(v);
       return split_targets(out.target, out.targets) ? "" : "HOST:PORT, comma-separated";
     }},
    {"--method",
     [&](std::string_view v) -> std::string {
       if (v != "allocate" && v != "echo")
         return "allocate or echo";
       out.echo = v == "echo";
       return {};
     }},
    {"--connections", count(out.connections, 1, max_connections)},
    {"--concurrency", count(out.concurrency, 1, max_concurrency)},
    {"--requests", count(out.requests, 0, UINT64_MAX)},
    {"--duration-s", seconds(out.duration_s)},
    {"--warmup-s", seconds(out.warmup_s)},
    {"--rate",
     [&](std::string_view v) -> std::string {
       double value = 0;
       if (!parse_number(v, value) || !(value >= 0 && value <= 10'000'000))
         return "calls per second from 0 to 10000000";
       out.rate = value;
       return {};
     }},
    {"--app-id",
     [&](std::string_view v) -> std::string {
       // The service's own rule; a bad id would only measure INVALID_ARGUMENT.
       const bool ok =
         !v.empty() && v.size() <= 64 &&
         v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789._-") == std::string_view::npos;
       out.workload.app_id = std::string(v);
       return ok ? "" : "1 to 64 characters of [A-Za-z0-9._-]";
     }},
    {"--room-sizes",
     [&](std::string_view v) {
       out.room_sizes = std::string(v);
       const auto error = parse_room_mix(v, out.workload.room_mix);
       return error.empty() ? error : fmt::format("bands like 2-8:90,50:10 ({})", error);
     }},
    {"--open-rooms", count(out.workload.open_rooms, 1, max_open_rooms)},
    {"--local-share",
     [&](std::string_view v) -> std::string {
       double value = 0;
       if (!parse_number(v, value) || !(value >= 0 && value <= 1))
         return "a number from 0 to 1";
       out.workload.local_share = value;
       return {};
     }},
    {"--cities",
     [&](std::string_view v) {
       out.cities_file = std::string(v);
       return std::string();
     }},
    {"--seed", count(out.workload.seed, 0, UINT64_MAX)},
  };
  split_targets(out.target, out.targets);
  parse_room_mix(out.room_sizes, out.workload.room_mix);
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help = true;
      return {};
    }
    if (arg == "--release") {
      out.release = true;
      continue;
    }
    if (arg == "--json") {
      out.json = true;
      continue;
    }
    std::string_view value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    const auto it = flags.find(arg);
    if (it == flags.end())
      return fmt::format("unknown option {}", arg);
    if (!inline_value) {
      if (i + 1 >= argc)
        return fmt::format("{} needs a value", arg);
      value = argv[++i];
    }
    if (auto problem = it->second(value); !problem.empty())
      return fmt::format("{} {}: expected {}", arg, value, problem);
  }
  if (out.requests == 0 && out.duration_s == 0)
    return "give --requests N or --duration-s S (or both): the run must end by itself";
  if (out.duration_s > 0 && out.warmup_s >= out.duration_s)
    return "--warmup-s must be shorter than --duration-s";
  if (out.echo && out.release)
    return "--release needs --method allocate (Echo makes no lease)";
  return {};
}

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Why the run stopped starting calls.
enum class stop_reason { not_stopped, requests, duration, stalled };

const char* to_string(stop_reason reason) {
  switch (reason) {
    case stop_reason::requests:
      return "--requests";
    case stop_reason::duration:
      return "--duration-s";
    case stop_reason::stalled:
      return "a stall (no answer for 10 s)";
    case stop_reason::not_stopped:
      break;
  }
  return "the connections ending";
}

// What one kind of call (Allocate/Echo, or Release) did during the measured window.
struct call_figures {
  outcome_tally outcomes;
  latency_histogram latency;
};

// The driver: what each slot calls next, and what the answers say.
class load_driver final : public call_driver {
public:
  load_driver(const options& o, const city_sampler& cities, std::size_t slots)
      : options_(o), workload_(o.workload, cities), lease_(slots), framed_(slots, nullptr),
        releasing_(slots, false) {
    started_at_ = load_clock::now();
    measure_from_ = started_at_ + duration_cast<load_clock::duration>(duration<double>(o.warmup_s));
    if (o.duration_s > 0)
      stop_at_ = started_at_ + duration_cast<load_clock::duration>(duration<double>(o.duration_s));
    now_ = last_progress_ = next_start_ = started_at_;
    if (o.rate > 0) {
      rate_interval_ = duration_cast<load_clock::duration>(duration<double>(1.0 / o.rate));
    }
    measuring_ = o.warmup_s == 0;
    if (measuring_)
      cpu_at_start_ = cpu_seconds();
  }

  call_decision next_call(std::size_t slot, call_request& call) override {
    if (!lease_[slot].empty()) {
      // The Allocate of this slot got a lease: release it before anything else, also after
      // the run stopped, so the peer is left as it was found.
      append_release_request(*call.framed, lease_[slot]);
      lease_[slot].clear();
      call.path = release_path_index;
      releasing_[slot] = true;
      started_call();
      return call_decision::start;
    }
    if (stopping())
      return call_decision::stop;
    if (rate_interval_) {
      if (now_ + pace_tick < next_start_)
        return call_decision::wait;
      // After a stall, catch up a little, not with a burst of everything missed.
      next_start_ = std::max(next_start_, now_ - max_catch_up) + *rate_interval_;
    }
    ++started_;
    if (options_.requests > 0 && started_ >= options_.requests)
      stop(stop_reason::requests);
    releasing_[slot] = false;
    call.path = primary_path;
    framed_[slot] = call.framed;
    if (options_.echo) {
      // The Allocate request's bytes as the payload: a request of the same size.
      scratch_.clear();
      workload_.append_next(scratch_);
      append_echo_request(*call.framed, scratch_);
    } else {
      workload_.append_next(*call.framed);
    }
    started_call();
    return call_decision::start;
  }

  load_clock::time_point wake_at() const override { return next_start_ - pace_tick; }

  void call_done(std::size_t slot, const call_result& r) override {
    last_progress_ = now_;
    --in_flight_;
    const bool ok = r.grpc_status == 0;
    if (!releasing_[slot] && ok) {
      if (options_.echo) {
        const std::string_view sent = std::string_view(*framed_[slot]).substr(grpc_prefix_bytes);
        // An EchoResponse with the request's payload serializes to the request's bytes.
        if (r.response != sent)
          ++echo_mismatches_;
      } else if (options_.release || sample_.empty()) {
        const auto lease = find_lease_id(r.response);
        if (!lease || lease->empty())
          ++missing_leases_;
        else if (options_.release)
          lease_[slot].assign(*lease);
        if (sample_.empty())
          describe_sample(r.response);
      }
    }
    if (!measuring_)
      return;
    call_figures& f = releasing_[slot] ? releases_ : primary_;
    if (r.grpc_status >= 0)
      f.outcomes.add_status(r.grpc_status, r.grpc_message);
    else
      f.outcomes.add_failure(r.failure, r.failure_detail);
    if (r.grpc_status >= 0 && r.latency_ns > 0)
      f.latency.record(r.latency_ns);
  }

  bool give_up(load_clock::time_point now) override {
    now_ = now;
    if (!measuring_ && now >= measure_from_) {
      measuring_ = true;
      cpu_at_start_ = cpu_seconds();
    }
    if (!stopping() && stop_at_ && now >= *stop_at_)
      stop(stop_reason::duration);
    if (in_flight_ > 0 && now - last_progress_ > stall_timeout) {
      stopped_by_ = stop_reason::stalled;
      return true;
    }
    return stopping() && now - stopped_at_ > drain_grace;
  }

  // Called once the client returned.
  void finish() {
    ended_at_ = load_clock::now();
    cpu_at_end_ = cpu_seconds();
    if (!measuring_) // the run ended inside the warm-up
      cpu_at_start_ = cpu_at_end_;
  }

  int report(std::FILE* out) const;

private:
  bool stopping() const { return stopped_by_ != stop_reason::not_stopped; }
  void started_call() {
    ++in_flight_;
    last_progress_ = now_;
  }
  void stop(stop_reason why) {
    stopped_by_ = why;
    stopped_at_ = now_;
  }
  void describe_sample(std::string_view bytes);
  double elapsed_s() const {
    const auto from = std::max(started_at_, measure_from_);
    return ended_at_ > from ? duration<double>(ended_at_ - from).count() : 0;
  }
  std::string json() const;
  std::string text() const;

  const options& options_;
  allocate_workload workload_;
  std::string scratch_;
  // Per slot: a lease to release next, the request of its current call, and whether
  // that call is a Release.
  std::vector<std::string> lease_;
  std::vector<std::string*> framed_;
  std::vector<bool> releasing_;

  load_clock::time_point started_at_, measure_from_, now_, last_progress_, stopped_at_, ended_at_;
  std::optional<load_clock::time_point> stop_at_;
  // --rate: time between two call starts, and when the next may start.
  std::optional<load_clock::duration> rate_interval_;
  load_clock::time_point next_start_;
  stop_reason stopped_by_ = stop_reason::not_stopped;
  bool measuring_ = false;
  double cpu_at_start_ = 0, cpu_at_end_ = 0;
  std::uint64_t started_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t missing_leases_ = 0;
  std::uint64_t echo_mismatches_ = 0;
  call_figures primary_, releases_;
  std::string sample_;
};

void load_driver::describe_sample(std::string_view bytes) {
  chroom::allocation::v1::AllocateResponse response;
  if (!response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    sample_ = "the first OK answer does not parse as an AllocateResponse";
    return;
  }
  const auto& node = response.node();
  static constexpr const char* sources[] = {"unspecified", "probe", "node matrix", "distance"};
  const auto source = static_cast<std::size_t>(node.rtt_source());
  sample_ = fmt::format(
    "node {} ({} {}, {:.1f} ms by {}), {} alternates, room on {} node(s), lease ttl {} ms, "
    "join token {} bytes",
    node.node_id(), node.region(), node.country(), node.estimated_rtt_ms(),
    source < std::size(sources) ? sources[source] : "?", response.alternates_size(),
    response.room_nodes(), response.lease_ttl_ms(), response.join_token().size());
}

std::string latency_json(const latency_histogram& h) {
  auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  return fmt::format(R"({{"p50":{:.4f},"p90":{:.4f},"p99":{:.4f},"max":{:.4f}}})",
                     ms(h.percentile(0.50)), ms(h.percentile(0.90)), ms(h.percentile(0.99)),
                     ms(h.max()));
}

std::string figures_json(const call_figures& f, double elapsed) {
  std::string problems;
  for (const auto& p : f.outcomes.problems()) {
    problems +=
      fmt::format(R"({}{{"status":{},"count":{},"first_message":{}}})", problems.empty() ? "" : ",",
                  json_string(p.what), p.count, json_string(p.first_message));
  }
  const auto calls = f.outcomes.calls();
  return fmt::format(R"({{"calls":{},"ok":{},"calls_per_s":{:.1f},"latency_ms":{},)"
                     R"("problems":[{}]}})",
                     calls, f.outcomes.ok(), elapsed > 0 ? calls / elapsed : 0.0,
                     latency_json(f.latency), problems);
}

std::string load_driver::json() const {
  const double elapsed = elapsed_s();
  const auto all_calls = primary_.outcomes.calls() + releases_.outcomes.calls();
  const double cpu = cpu_at_end_ - cpu_at_start_;
  std::string out =
    fmt::format(R"({{"method":"{}","target":{},"connections":{},"concurrency":{},"rate":{},)"
                R"("seed":{},"elapsed_s":{:.3f},"stopped_by":{},"primary":{},)",
                options_.echo ? "echo" : "allocate", json_string(options_.target),
                options_.connections, options_.concurrency, options_.rate, options_.workload.seed,
                elapsed, json_string(to_string(stopped_by_)), figures_json(primary_, elapsed));
  if (options_.release)
    out += fmt::format(R"("release":{},)", figures_json(releases_, elapsed));
  out += fmt::format(R"("missing_lease_ids":{},"echo_mismatches":{},"rooms_started":{},)",
                     missing_leases_, echo_mismatches_, workload_.rooms_started());
  out += fmt::format(R"("sample":{},"client_cpu_s":{:.4f},"client_cpu_us_per_call":{:.3f}}})",
                     json_string(sample_), cpu, all_calls > 0 ? cpu * 1e6 / all_calls : 0.0);
  return out;
}

std::string figures_text(std::string_view name, const call_figures& f, double elapsed) {
  auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  const auto calls = f.outcomes.calls();
  std::string out = fmt::format("{:<9} calls {}  OK {}  {:.0f} calls/s\n", name, calls,
                                f.outcomes.ok(), elapsed > 0 ? calls / elapsed : 0.0);
  if (f.latency.count() > 0) {
    out += fmt::format("{:<9} latency ms  p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  max {:.3f}"
                       "  (over {} answered calls)\n",
                       "", ms(f.latency.percentile(0.50)), ms(f.latency.percentile(0.90)),
                       ms(f.latency.percentile(0.99)), ms(f.latency.max()), f.latency.count());
  }
  for (const auto& p : f.outcomes.problems()) {
    out +=
      fmt::format("{:<9} {} × {}{}\n", "", p.what, p.count,
                  p.first_message.empty() ? "" : fmt::format(", first: \"{}\"", p.first_message));
  }
  return out;
}

std::string load_driver::text() const {
  const double elapsed = elapsed_s();
  const auto all_calls = primary_.outcomes.calls() + releases_.outcomes.calls();
  const double cpu = cpu_at_end_ - cpu_at_start_;
  std::string out =
    fmt::format("chroom-bench allocate: {} on {}, {} connection(s) x {} calls in flight{}, "
                "seed {}\n",
                options_.echo ? "Echo (reference)" : "Allocate", options_.target,
                options_.connections, options_.concurrency,
                options_.rate > 0 ? fmt::format(", at most {} calls/s", options_.rate) : "",
                options_.workload.seed);
  out += fmt::format(
    "  workload: app \"{}\", room sizes {} (mean {:.1f}), {} rooms open at a time, "
    "{:.0f}% of a room's clients in its city{}\n",
    options_.workload.app_id, options_.room_sizes, mean_room_size(options_.workload.room_mix),
    options_.workload.open_rooms, options_.workload.local_share * 100,
    options_.echo ? " (sent as Echo payload)" : "");
  out +=
    fmt::format("  measured {:.2f} s{}, stopped by {}\n", elapsed,
                options_.warmup_s > 0 ? fmt::format(" after {} s warm-up", options_.warmup_s) : "",
                to_string(stopped_by_));
  out += figures_text(options_.echo ? "Echo" : "Allocate", primary_, elapsed);
  if (options_.release)
    out += figures_text("Release", releases_, elapsed);
  if (missing_leases_ > 0)
    out += fmt::format("  {} OK answers had no lease_id\n", missing_leases_);
  if (echo_mismatches_ > 0)
    out += fmt::format("  {} Echo answers differed from their request\n", echo_mismatches_);
  if (!sample_.empty())
    out += fmt::format("  first answer: {}\n", sample_);
  out += fmt::format("client CPU: {:.2f} µs per call ({} calls, {:.0f}% of one core)\n",
                     all_calls > 0 ? cpu * 1e6 / all_calls : 0.0, all_calls,
                     elapsed > 0 ? cpu / elapsed * 100 : 0.0);
  return out;
}

int load_driver::report(std::FILE* out) const {
  const std::string s = options_.json ? json() + "\n" : text();
  std::fwrite(s.data(), 1, s.size(), out);
  std::fflush(out);
  return primary_.outcomes.ok() > 0 ? 0 : 1;
}

} // namespace

int run_allocate(int argc, char** argv) {
  options o;
  bool help = false;
  if (auto error = parse_options(argc, argv, o, help); !error.empty()) {
    std::fprintf(stderr, "chroom-bench allocate: %s (see --help)\n", error.c_str());
    return 2;
  }
  if (help) {
    std::fwrite(help_text.data(), 1, help_text.size(), stdout);
    return 0;
  }
  city_sampler cities;
  if (auto error = cities.load(o.cities_file); !error.empty()) {
    std::fprintf(stderr, "chroom-bench allocate: %s\n", error.c_str());
    return 2;
  }
  if (auto error = check_encoders(o.workload, cities); !error.empty()) {
    std::fprintf(stderr, "chroom-bench allocate: request encoder out of date: %s\n", error.c_str());
    return 1;
  }

  h2_client_settings settings;
  settings.targets = o.targets;
  settings.paths = {std::string(o.echo ? echo_path : allocate_path), std::string(release_path)};
  settings.connections = o.connections;
  settings.streams_per_connection = o.concurrency;

  load_driver driver(o, cities, std::size_t{o.connections} * o.concurrency);
  try {
    if (auto error = run_h2_client(settings, driver); !error.empty()) {
      std::fprintf(stderr, "chroom-bench allocate: %s\n", error.c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    // Thrown by the driver inside an nghttp2 callback and carried out of the C code.
    std::fprintf(stderr, "chroom-bench allocate: %s\n", e.what());
    return 1;
  }
  driver.finish();
  return driver.report(stdout);
}

} // namespace chroom::bench
