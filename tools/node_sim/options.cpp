#include "tools/node_sim/options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace chroom::node_sim {

namespace {

// Upper bound on --nodes: each node costs ~30 KB (its stream's grpc state and buffers);
// 100,000 is ~3 GB, past which one process is the wrong way to simulate a fleet.
constexpr std::uint32_t max_nodes = 100'000;
// Node ids are at most 128 characters; "-NNNNN" takes 6 of them (more past 99,999 nodes).
constexpr std::size_t max_prefix_length = 100;

constexpr std::string_view help_text =
  R"(chroom-node-sim: a fleet of simulated media nodes speaking chroom.medianode.v1 to an
orchestrator (one Connect stream per node).

Usage: chroom-node-sim --target HOST:PORT[,HOST:PORT...] --nodes N [options]

Connection:
  --target HOST:PORT[,...]  orchestrator peers (required); node i starts on peer i mod count
                            and moves to the next peer when its stream fails
  --tls-ca FILE             use TLS, trusting the CA certificates in FILE (PEM)
  --tls-cert FILE           client certificate for mutual TLS (with --tls-key)
  --tls-key FILE            client private key for mutual TLS
  --tls-server-name NAME    check the server certificate against NAME
  --connections C           TCP connections per peer to spread the streams over
                            (default: ceil(N/90), under the 100 streams per connection limit)
Fleet:
  --nodes N                 nodes to simulate, 1..100000 (required)
  --id-prefix P             node ids are P-00000, P-00001, ... (default sim)
  --secret-key K            each node presents hex(HMAC-SHA256(K, node_id))
  --credential C            every node presents C
  --seed S                  places, features and noise follow from S (default 1)
  --cities FILE             cities CSV (default: tools/data/cities.csv of the source tree)
  --max-participants P      per node (default 500)
  --upload-mbps X           per node (default 1000)
  --download-mbps X         per node (default: as upload)
  --cpu-cores N             per node (default 8)
  --profile good|mixed|poor network quality of the nodes (default good)
  --peer-rtts K             other nodes each node reports an RTT to (default 4)
  --mean-session-s S        mean participant session, seconds (default 600)
Run:
  --duration-s D            quit after D seconds (default: run until quit/SIGTERM)
  --status-interval-s S     print a status line every S seconds (default 0: never)
  --log-level L             trace|debug|info|warn|error|off, to stderr (default info)
  --crash-every-s S         every S seconds a random registered node crashes ...
  --crash-down-s D          ... and comes back after D seconds (default 10)
  --freeze-every-s S        every S seconds a random registered node freezes ...
  --freeze-s D              ... for D seconds (default 10)
  --help, --version

Commands on stdin, one per line (replies on stdout, one line each): status, node ID,
crash ID|random|all, restart ID|random|all [keep|fresh], freeze ID|random|all [SECONDS],
thaw ID|all, flap ID|random|all DOWN_MS, slow-acks ID|random|all DELAY_MS, help, quit.
See docs/node-sim.md.
)";

template <typename T> bool parse_number(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

// "HOST:PORT" with a host name, an IPv4 address or a bracketed IPv6 address, and a port
// 1..65535. Empty when fine, else what is wrong with it.
std::string target_problem(std::string_view entry) {
  if (entry.empty())
    return "is empty";
  const auto colon = entry.rfind(':');
  if (colon == std::string_view::npos)
    return "has no :PORT";
  const auto host = entry.substr(0, colon);
  const auto port_text = entry.substr(colon + 1);
  std::uint32_t port = 0;
  if (!parse_number(port_text, port) || port < 1 || port > 65535)
    return "needs a port from 1 to 65535 after its last ':'";
  if (host.empty())
    return "has no HOST";
  if (host.front() == '[') {
    // [IPv6] with an optional %zone.
    if (host.size() < 3 || host.back() != ']')
      return "has an unclosed [IPv6] host";
    for (const char c : host.substr(1, host.size() - 2)) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      c == ':' || c == '.' || c == '%' || c == '-' || c == '_';
      if (!ok)
        return "has a bad [IPv6] host";
    }
    return {};
  }
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) {
      return c == ':' ? "has a ':' in its host (write an IPv6 address as [ADDRESS]:PORT)"
                      : "has a character that is not allowed in a host name";
    }
  }
  return {};
}

// --target's comma-separated list into `targets`; an error names the bad entry.
std::string parse_targets(std::string_view list, std::vector<std::string>& targets) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t number = 1;; ++number) {
    const auto comma = list.find(',', start);
    const auto entry =
      list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (auto problem = target_problem(entry); !problem.empty()) {
      return fmt::format("HOST:PORT[,HOST:PORT...]; entry {} \"{}\" {}", number, entry, problem);
    }
    if (std::find(out.begin(), out.end(), entry) != out.end()) {
      return fmt::format("HOST:PORT[,HOST:PORT...]; entry {} \"{}\" is listed twice", number,
                         entry);
    }
    out.emplace_back(entry);
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  targets = std::move(out);
  return {};
}

bool valid_prefix(std::string_view prefix) {
  if (prefix.empty() || prefix.size() > max_prefix_length)
    return false;
  for (const char c : prefix) {
    const bool ok =
      (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

} // namespace

parse_result parse_options(int argc, char** argv) {
  options out;
  auto& parameters = out.fleet.parameters;
  auto& connection = out.fleet.connection;
  bool have_nodes = false;
  bool have_download = false;
  std::string error;

  // Each flag's setter returns an error message, empty when the value is fine.
  using setter = std::function<std::string(std::string_view)>;
  auto text = [](std::string& field) {
    return setter([&field](std::string_view v) {
      field = std::string(v);
      return std::string();
    });
  };
  auto positive = [](double& field, bool allow_zero) {
    return setter([&field, allow_zero](std::string_view v) -> std::string {
      double value = 0;
      if (!parse_number(v, value) || !std::isfinite(value) || value < 0 ||
          (!allow_zero && value == 0)) {
        return allow_zero ? "a number >= 0" : "a number > 0";
      }
      field = value;
      return {};
    });
  };
  auto count = [](std::uint32_t& field, std::uint32_t low, std::uint32_t high) {
    return setter([&field, low, high](std::string_view v) -> std::string {
      std::uint32_t value = 0;
      if (!parse_number(v, value) || value < low || value > high) {
        return fmt::format("an integer from {} to {}", low, high);
      }
      field = value;
      return {};
    });
  };
  const std::map<std::string, setter, std::less<>> flags = {
    {"--target", [&](std::string_view v) { return parse_targets(v, connection.targets); }},
    {"--tls-ca", text(connection.tls_ca_file)},
    {"--tls-cert", text(connection.tls_cert_file)},
    {"--tls-key", text(connection.tls_key_file)},
    {"--tls-server-name", text(connection.tls_server_name)},
    {"--connections", count(connection.connections, 1, max_nodes)},
    {"--nodes",
     [&](std::string_view v) {
       have_nodes = true;
       return count(parameters.nodes, 1, max_nodes)(v);
     }},
    {"--id-prefix",
     [&](std::string_view v) -> std::string {
       if (!valid_prefix(v))
         return "1 to 100 characters of [a-z0-9._-]";
       parameters.id_prefix = std::string(v);
       return {};
     }},
    {"--secret-key", text(parameters.secret_key)},
    {"--credential", text(parameters.credential)},
    {"--seed",
     [&](std::string_view v) -> std::string {
       return parse_number(v, parameters.seed) ? "" : "an unsigned integer";
     }},
    {"--cities", text(out.cities_file)},
    {"--max-participants", count(parameters.max_participants, 1, 1'000'000)},
    {"--upload-mbps", positive(parameters.upload_mbps, false)},
    {"--download-mbps",
     [&](std::string_view v) {
       have_download = true;
       return positive(parameters.download_mbps, false)(v);
     }},
    {"--cpu-cores", count(parameters.cpu_cores, 1, 4096)},
    {"--profile",
     [&](std::string_view v) -> std::string {
       if (v == "good")
         parameters.profile = network_profile::good;
       else if (v == "mixed")
         parameters.profile = network_profile::mixed;
       else if (v == "poor")
         parameters.profile = network_profile::poor;
       else
         return "good, mixed or poor";
       return {};
     }},
    {"--peer-rtts", count(parameters.peer_rtts, 0, 64)},
    {"--mean-session-s", positive(out.fleet.mean_session_s, false)},
    {"--duration-s", positive(out.duration_s, true)},
    {"--status-interval-s", positive(out.status_interval_s, true)},
    {"--log-level",
     [&](std::string_view v) -> std::string {
       for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
         if (v == level) {
           out.log_level = std::string(v);
           return {};
         }
       }
       return "trace, debug, info, warn, error or off";
     }},
    {"--crash-every-s", positive(out.crash_every_s, true)},
    {"--crash-down-s", positive(out.crash_down_s, true)},
    {"--freeze-every-s", positive(out.freeze_every_s, true)},
    {"--freeze-s", positive(out.freeze_s, false)},
  };

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h")
      return print_and_exit{std::string(help_text)};
    if (arg == "--version") {
      return print_and_exit{"chroom-node-sim " CHROOM_NODE_SIM_VERSION "\n"};
    }
    std::string_view value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    auto it = flags.find(arg);
    if (it == flags.end())
      return usage_error{fmt::format("unknown option {}", arg)};
    if (!inline_value) {
      if (i + 1 >= argc)
        return usage_error{fmt::format("{} needs a value", arg)};
      value = argv[++i];
    }
    if (auto problem = it->second(value); !problem.empty()) {
      return usage_error{fmt::format("{} {}: expected {}", arg, value, problem)};
    }
  }

  if (connection.targets.empty())
    return usage_error{"--target HOST:PORT[,HOST:PORT...] is required"};
  if (!have_nodes)
    return usage_error{"--nodes N is required"};
  if (!parameters.secret_key.empty() && !parameters.credential.empty()) {
    return usage_error{"give --secret-key or --credential, not both"};
  }
  if (connection.tls_cert_file.empty() != connection.tls_key_file.empty()) {
    return usage_error{"--tls-cert and --tls-key go together"};
  }
  if (!connection.tls_cert_file.empty() && connection.tls_ca_file.empty()) {
    return usage_error{"mutual TLS (--tls-cert) needs --tls-ca"};
  }
  if (!connection.tls_server_name.empty() && connection.tls_ca_file.empty()) {
    return usage_error{"--tls-server-name needs --tls-ca"};
  }
  if (!have_download)
    parameters.download_mbps = parameters.upload_mbps;
  return out;
}

} // namespace chroom::node_sim
