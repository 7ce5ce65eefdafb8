// Configuration loading: YAML text -> OrchestratorConfig, by protobuf reflection.
//
// Three steps, each in its own section below:
//   1. decode   walk the YAML with the message's Descriptor; every key must name a field, every
//               value must fit its field's type. Records which key paths the file set, and on
//               which line, for steps 2 and 3.
//   2. defaults take default_config(), drop the fields the file set, merge the file on top.
//               A key present in the file wins even when its value is zero. Then fill in
//               the defaults of keys inside sequence elements (an app's strategy).
//   3. validate the rules that reflection cannot know (ranges, pairs of fields, names,
//               secrets, files).
#include "daemon/config.hpp"

#include "apps/app_spec.hpp"
#include "cluster/peer_address.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <vector>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace chroom::daemon {
namespace {

namespace pb = google::protobuf;
using chroom::config::v1::OrchestratorConfig;

// ------------------------------------------------------------------------------------------
// Defaults: the one place they live. default_config() builds the message from these.

// Loopback only: a peer started without a config file must not be reachable from the network.
constexpr std::string_view default_listen_host = "127.0.0.1";
// Unprivileged, and apart from the 443/8443 that other local HTTPS services tend to take.
constexpr std::uint32_t default_listen_port = 7443;
// 4 MiB, gRPC's customary receive limit: stock clients already keep messages below it, and
// one message cannot make the gateway buffer more.
constexpr std::uint32_t default_max_message_bytes = 4 * 1024 * 1024;
// The minimum RFC 9113 (section 6.5.2) recommends advertising; plenty for one client or node.
constexpr std::uint32_t default_max_concurrent_streams = 100;
// gRPC metadata is small; 16 KiB fits any stock client's headers while bounding what one
// request's HPACK-decoded header list can make us hold.
constexpr std::uint32_t default_max_header_list_bytes = 16 * 1024;
// A peer serves thousands of media nodes and backends; past this, refusing new connections
// keeps file descriptors and per-connection session memory bounded.
constexpr std::uint32_t default_max_connections = 10000;
// 5 minutes: a client between calls keeps its connection, an abandoned one is reclaimed.
constexpr std::uint32_t default_idle_timeout_ms = 300000;
// 30 s: below the 60 s idle timeout common in NATs and load balancers, so quiet connections
// through them stay open.
constexpr std::uint32_t default_keepalive_interval_ms = 30000;
// 10 s: many round trips even on a poor intercontinental path, so only a dead peer misses it.
constexpr std::uint32_t default_keepalive_timeout_ms = 10000;
// 1 MiB: the most a slow reader can make us queue before the gateway stops producing for it.
constexpr std::uint32_t default_max_pending_output_bytes = 1024 * 1024;
// 32 MiB: a few messages of the largest size each way, which no client needs at once on one
// connection; an attacker holding streams half-sent or unread gets no more than this.
constexpr std::uint32_t default_max_connection_memory_bytes = 32 * 1024 * 1024;
// 2 GiB: what a 24 GiB machine can give call buffers with 10,000 connections open and the
// rest of the peer (rooms, leases, the node table) beside them.
constexpr std::uint64_t default_max_gateway_memory_bytes = std::uint64_t{2} << 30;
// Operational events without per-call noise.
constexpr std::string_view default_log_level = "info";
// Readable at a terminal; "json" is for log shippers and is opt-in.
constexpr std::string_view default_log_format = "text";
// 5 s: long enough for in-flight unary calls to finish, well inside the 30 s grace period of
// Kubernetes and the 90 s stop timeout of systemd.
constexpr std::uint32_t default_shutdown_grace_ms = 5000;

// Media nodes (media_nodes.*).
// Stats once a second: placement sees a node's load change within a second, and 20000 nodes
// cost a peer 20000 small messages a second.
constexpr std::uint32_t default_stats_interval_ms = 1000;
// One and a half intervals: a single late Stats (a pause, a retransmission) makes a node
// suspect, which Stats arriving again undo, without declaring it dead.
constexpr std::uint32_t default_suspect_after_ms = 1500;
// Three intervals without Stats: the node is dead and its rooms are reported lost within
// about 3 s, before most users give up on a frozen call.
constexpr std::uint32_t default_dead_after_ms = 3000;
// 2 s: many round trips on any path between a peer and its nodes, yet a lost command is
// sent again soon enough for room set-up to stay interactive.
constexpr std::uint32_t default_command_timeout_ms = 2000;
// 10 minutes: most calls on a draining node end by themselves, and a rolling upgrade of a
// fleet still finishes in hours.
constexpr std::uint32_t default_drain_deadline_ms = 600000;
// Well above the nodes one peer is expected to serve; bounds the node table and the Stats
// traffic that a misconfigured or hostile fleet can make one peer take.
constexpr std::uint32_t default_max_nodes = 20000;
// 10 minutes: operators (and a node that comes back) still see a dead node for a while,
// then its entry stops taking memory.
constexpr std::uint32_t default_forget_after_ms = 600000;
// 10 s: a real node sends Register at once; a connection that does not is not a node and
// should not hold a stream.
constexpr std::uint32_t default_register_timeout_ms = 10000;
constexpr std::uint32_t min_register_timeout_ms = 100;
constexpr std::uint32_t max_register_timeout_ms = 600000;
// Allocation (allocation.*).
// 30 s: a client that stops renewing (crashed, lost its network) frees its place within half a
// minute, while one renewing every 10 s survives two lost KeepAlives.
constexpr std::uint32_t default_lease_ttl_ms = 30000;
// 5 minutes: ample time to connect to the node after Allocate (and to retry), short enough
// that a leaked token is soon useless. KeepAlive hands out fresh ones.
constexpr std::uint32_t default_join_token_ttl_ms = 300000;
// 10 s: the node's Ack (command_timeout_ms, 2 s, and a retry) and the next Stats showing the
// participant (stats_interval_ms, 1 s) fit several times over; a reservation whose node
// never confirms is freed soon after.
constexpr std::uint32_t default_reservation_ttl_ms = 10000;
// 85%: headroom for the participants placed between two Stats reports and for load bursts,
// before a node is full; rooms grow onto other nodes instead.
constexpr double default_high_water = 0.85;
// 40 ms: a participant accepts a somewhat worse node to stay with its room (one node: no
// relay hop, no cascade traffic) but not a clearly worse one.
constexpr std::uint32_t default_affinity_slack_ms = 5;
// 150 ms: beyond that round trip, jitter buffers and encoding push mouth-to-ear delay past
// ITU-T G.114's 150 ms for interactive speech; a nearer node linked by a relay does better.
constexpr std::uint32_t default_max_affinity_rtt_ms = 150;
// Enough nearby nodes to find one with headroom and a good score, few enough that scoring
// them all per request stays cheap.
constexpr std::uint32_t default_candidate_pool = 16;
// A client whose node fails at connect time has two others to try without a new Allocate.
constexpr std::uint32_t default_alternates = 2;
// Debian's geoip-database. May be missing: the daemon then warns and locates no client by IP.
constexpr std::string_view default_geoip_database = "/usr/share/GeoIP/GeoIP.dat";
// geoip_database's value that turns IP location off.
constexpr std::string_view no_geoip_database = "none";

// Usage metering (metering.*).
// An hour: the unit clouds and CDNs bill in, and few enough epochs per app and peer (24 a
// day) for the store and the exchange between peers to stay small.
constexpr std::uint32_t default_epoch_ms = 3'600'000;
constexpr std::uint32_t min_epoch_ms = 1000;
constexpr std::uint32_t max_epoch_ms = 31u * 24 * 3'600'000;

// Applications (apps[]).
// One app that any client may name, so that a peer with no config places clients at all.
constexpr std::string_view default_app_id = "default";
// Near and lightly loaded: the strategy that suits most apps; also what an app without a
// strategy gets.
constexpr std::string_view default_strategy = "balanced";

// Operations (admin.*).
constexpr std::string_view default_admin_http_host = "127.0.0.1";
// Next to the gRPC port's 7443; not a port Prometheus exporters commonly take.
constexpr std::uint32_t default_admin_http_port = 7480;
// Shorter tokens are guessable; longer ones are not credentials but documents.
constexpr std::size_t min_admin_token_length = 16;
constexpr std::size_t max_admin_token_length = 256;
constexpr std::size_t max_admin_tokens = 16;
// Reflection describes every service, the operator API included: a convenience on the
// developer's machine, a choice to make on a network (docs/operations.md).
constexpr std::string_view default_reflection = "auto";
constexpr std::string_view reflection_modes[] = {"auto", "on", "off"};

// Cluster (cluster.*).
constexpr std::string_view default_cluster_listen_host = "127.0.0.1";
// 0: the peer runs alone; a cluster is something an operator asks for.
constexpr std::uint32_t default_cluster_listen_port = 0;
// Four heartbeats fit in the failure timeout: one or two lost ones do not kill a peer.
constexpr std::uint32_t default_heartbeat_interval_ms = 250;
// The bound for detecting a dead peer is 2 s; a dropped connection is seen at once.
constexpr std::uint32_t default_failure_timeout_ms = 1500;
constexpr std::uint32_t default_replication_factor = 2;
constexpr std::uint32_t default_node_update_interval_ms = 250;
constexpr std::uint32_t max_replication_factor = 7;
constexpr std::size_t max_seeds = 64;

// The peer id when the host name is not a valid one (see default_peer_id()).
constexpr std::string_view fallback_peer_id = "peer";

// ------------------------------------------------------------------------------------------
// Validation limits (see validate()).

constexpr std::uint32_t max_port = 65535;
// Under 1 KiB hardly any real call fits; over 64 MiB one stream could make the gateway
// buffer too much.
constexpr std::uint32_t min_message_bytes = 1024;
constexpr std::uint32_t max_message_bytes = 64 * 1024 * 1024;
constexpr std::uint32_t max_concurrent_streams = 100000;
// Under 1 KiB the standard gRPC headers plus some metadata may not fit; over 1 MiB a header
// flood costs the sender too little.
constexpr std::uint32_t min_header_list_bytes = 1024;
constexpr std::uint32_t max_header_list_bytes = 1024 * 1024;
// Shorter timers would turn keepalive and idle handling into a busy loop.
constexpr std::uint32_t min_timer_ms = 100;
// At least one default HTTP/2 flow-control window (65535 bytes), so that a reader's full
// window can be queued without pausing the connection.
constexpr std::uint32_t min_pending_output_bytes = 65536;
// Beyond any machine we target; workers beyond the core count only add wake-ups (DESIGN.md).
constexpr std::uint32_t max_worker_threads = 256;
// 10 minutes: beyond this a stuck shutdown is indistinguishable from a hang.
constexpr std::uint32_t max_shutdown_grace_ms = 600000;

// Stats more often than every 100 ms is load rather than information; less often than once
// a minute, liveness is judged far too late.
constexpr std::uint32_t min_stats_interval_ms = 100;
constexpr std::uint32_t max_stats_interval_ms = 60000;
// Under 10 ms a command times out before any network round trip; over 10 minutes a lost
// command goes unnoticed.
constexpr std::uint32_t min_command_timeout_ms = 10;
constexpr std::uint32_t max_command_timeout_ms = 600000;
// One day: a drain meant to last longer is a decommission.
constexpr std::uint32_t max_drain_deadline_ms = 86400000;
// Far beyond one peer's capacity; a larger value is a typo.
constexpr std::uint32_t max_max_nodes = 1000000;
// Register.node_id in the Media Node RPC: [a-z0-9._-], 1 to 128 characters.
constexpr std::size_t max_node_id_length = 128;
// 16 characters (of a random hex string: 64 bits) is the least that is not guessable
// online; node secrets and the key they are derived from alike.
constexpr std::size_t min_secret_length = 16;
// Shows up in every log line and in Registered.peer_id: [A-Za-z0-9._-], 1 to 64 characters
// (a host name fits).
constexpr std::size_t max_peer_id_length = 64;

// Allocation. A lease under a second would need KeepAlives faster than any client sends
// them; over an hour, a vanished client holds its place far too long.
constexpr std::uint32_t min_lease_ttl_ms = 1000;
constexpr std::uint32_t max_lease_ttl_ms = 3600000;
// A token must outlive the connect that follows Allocate; one valid for more than a day is
// a credential, not a ticket.
constexpr std::uint32_t min_join_token_ttl_ms = 1000;
constexpr std::uint32_t max_join_token_ttl_ms = 86400000;
// Under 100 ms a reservation lapses before any node can confirm; over 10 minutes an
// unconfirmed one blocks capacity for too long.
constexpr std::uint32_t min_reservation_ttl_ms = 100;
constexpr std::uint32_t max_reservation_ttl_ms = 600000;
// 10 s of RTT is no network a call survives: a larger value is a typo (seconds for ms).
constexpr std::uint32_t max_rtt_setting_ms = 10000;
// Scoring more nodes than this per request costs CPU and gains nothing.
constexpr std::uint32_t max_candidate_pool = 1000;
// More alternates than this only make Allocate answers longer.
constexpr std::uint32_t max_alternates = 16;
// AllocateRequest.app_id: [A-Za-z0-9._-], 1 to 64 characters.
constexpr std::size_t max_app_id_length = 64;

constexpr std::string_view strategies[] = {"latency", "balanced", "pack"};

constexpr std::string_view log_levels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};
constexpr std::string_view log_formats[] = {"text", "json"};

// One core is left to CAF's I/O thread (the middleman's multiplexer, which runs every
// gateway), the others get a scheduler worker each. More workers than that only add
// thread wake-ups: on 2 cores, 1 worker served the gateway benchmark at 3.3 us of CPU per
// call against 4.3 us with 2 (bench/gateway_bench). hardware_concurrency() may be 0.
std::uint32_t default_worker_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<std::uint32_t>(cores > 1 ? cores - 1 : 1, 1, max_worker_threads);
}

// A character of a node id (Register.node_id): [a-z0-9._-].
bool is_node_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// A character of a peer id: [A-Za-z0-9._-], which host names fit.
bool is_peer_id_char(char c) {
  return is_node_id_char(c) || (c >= 'A' && c <= 'Z');
}

// The host name, which tells peers apart in logs without any configuration, when it is a
// valid peer id; else "peer".
std::string default_peer_id() {
  // HOST_NAME_MAX is 64 on Linux; the buffer is larger and stays zero-terminated because
  // gethostname may not terminate a truncated name.
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0)
    return std::string(fallback_peer_id);
  const std::string_view host(name);
  if (host.empty() || host.size() > max_peer_id_length ||
      !std::all_of(host.begin(), host.end(), is_peer_id_char))
    return std::string(fallback_peer_id);
  return std::string(host);
}

OrchestratorConfig make_default_config() {
  OrchestratorConfig config;
  auto& listen = *config.mutable_listen();
  listen.set_host(std::string(default_listen_host));
  listen.set_port(default_listen_port);
  // cert_file/key_file stay empty: h2c, as DESIGN.md wants for a peer with no config.
  auto& limits = *config.mutable_limits();
  limits.set_max_message_bytes(default_max_message_bytes);
  limits.set_max_concurrent_streams(default_max_concurrent_streams);
  limits.set_max_header_list_bytes(default_max_header_list_bytes);
  limits.set_max_connections(default_max_connections);
  limits.set_idle_timeout_ms(default_idle_timeout_ms);
  limits.set_keepalive_interval_ms(default_keepalive_interval_ms);
  limits.set_keepalive_timeout_ms(default_keepalive_timeout_ms);
  limits.set_max_pending_output_bytes(default_max_pending_output_bytes);
  limits.set_max_connection_memory_bytes(default_max_connection_memory_bytes);
  limits.set_max_gateway_memory_bytes(default_max_gateway_memory_bytes);
  auto& log = *config.mutable_log();
  log.set_level(std::string(default_log_level));
  log.set_format(std::string(default_log_format));
  config.set_shutdown_grace_ms(default_shutdown_grace_ms);
  config.set_worker_threads(default_worker_threads());
  // credentials and secret_key stay empty: no node may register until an operator says who.
  auto& media_nodes = *config.mutable_media_nodes();
  media_nodes.set_stats_interval_ms(default_stats_interval_ms);
  media_nodes.set_suspect_after_ms(default_suspect_after_ms);
  media_nodes.set_dead_after_ms(default_dead_after_ms);
  media_nodes.set_command_timeout_ms(default_command_timeout_ms);
  media_nodes.set_drain_deadline_ms(default_drain_deadline_ms);
  media_nodes.set_max_nodes(default_max_nodes);
  media_nodes.set_forget_after_ms(default_forget_after_ms);
  media_nodes.set_register_timeout_ms(default_register_timeout_ms);
  config.set_peer_id(default_peer_id());
  auto& allocation = *config.mutable_allocation();
  allocation.set_lease_ttl_ms(default_lease_ttl_ms);
  allocation.set_join_token_ttl_ms(default_join_token_ttl_ms);
  allocation.set_reservation_ttl_ms(default_reservation_ttl_ms);
  allocation.set_high_water(default_high_water);
  allocation.set_affinity_slack_ms(default_affinity_slack_ms);
  allocation.set_max_affinity_rtt_ms(default_max_affinity_rtt_ms);
  allocation.set_candidate_pool(default_candidate_pool);
  allocation.set_alternates(default_alternates);
  // fallback_region stays empty: the region with the most active nodes, which needs no
  // knowledge of the fleet here.
  allocation.set_geoip_database(std::string(default_geoip_database));
  auto& cluster = *config.mutable_cluster();
  cluster.set_listen_host(std::string(default_cluster_listen_host));
  cluster.set_listen_port(default_cluster_listen_port);
  // advertise_host stays empty: listen_host; seeds stay empty: alone until told otherwise.
  cluster.set_heartbeat_interval_ms(default_heartbeat_interval_ms);
  cluster.set_failure_timeout_ms(default_failure_timeout_ms);
  cluster.set_replication_factor(default_replication_factor);
  cluster.set_node_update_interval_ms(default_node_update_interval_ms);
  config.mutable_metering()->set_epoch_ms(default_epoch_ms);
  auto& admin_http = *config.mutable_admin()->mutable_http();
  admin_http.set_host(std::string(default_admin_http_host));
  admin_http.set_port(default_admin_http_port);
  config.mutable_admin()->set_reflection(std::string(default_reflection));
  // tokens stay empty: AdminService is open, as the gRPC port is on localhost.
  // signing_key_file stays empty: a key made on first start in data_dir.
  auto& app = *config.add_apps();
  app.set_app_id(std::string(default_app_id));
  // No credentials: a peer started without a config file serves local tools and the
  // simulator at once. Files list their apps with keys.
  app.set_allow_unauthenticated(true);
  apps::apply_app_defaults(app);
  return config;
}

// Defaults inside sequence elements, which step 2 cannot apply (an element's absent key has
// no default element to come from). An app without a strategy, or with an empty one (the
// same thing in proto3), gets "balanced" (apps/app_spec.hpp has all of an app's defaults):
// the rest of the peer then sees exactly one of the names.
void fill_in_element_defaults(OrchestratorConfig& config) {
  for (auto& app : *config.mutable_apps())
    apps::apply_app_defaults(app);
}

// ------------------------------------------------------------------------------------------
// Messages.

// Key path -> 1-based line, for every key the file set (e.g. "listen.port") and for every
// sequence element or map entry it holds (e.g. "media_nodes.credentials[0]").
using key_lines = std::map<std::string, int, std::less<>>;

// "<source>:<line>: <path>: <problem>"; line 0 and an empty path are left out.
std::string format_error(std::string_view source, int line, std::string_view path,
                         std::string_view problem) {
  std::string out(source.empty() ? std::string_view("<config>") : source);
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!path.empty()) {
    out += path;
    out += ": ";
  }
  out += problem;
  return out;
}

// yaml-cpp counts lines from 0; people and editors count from 1. 0 means "unknown".
int line_of(const YAML::Mark& mark) {
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string join_path(std::string_view prefix, std::string_view name) {
  std::string out(prefix);
  if (!out.empty())
    out += '.';
  out += name;
  return out;
}

// A value as it appears in a message (apps/app_spec.hpp: one quoting for every message).
std::string quote(std::string_view text) {
  return apps::quoted(text);
}

// What a YAML node is, for "got ..." in messages.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "an empty value";
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string to_upper(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Unknown keys and values within this many edits of a known one get a "did you mean".
constexpr std::size_t max_suggestion_distance = 2;

// Optimal string alignment distance (Levenshtein plus adjacent transpositions, so that
// "prot" is one edit from "port"). Only small distances matter, so long or very different
// strings return early with "far".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  constexpr std::size_t far = 100;
  if (a.size() > 64 || b.size() > 64)
    return far;
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > max_suggestion_distance)
    return far;
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The field an unknown key was probably meant to be, as a path relative to `message`:
// a near-miss spelling, the camelCase (JSON) spelling, or a key one level too high
// ("port" at the top instead of under "listen").
std::optional<std::string> suggest_field(const pb::Descriptor& message, std::string_view key) {
  const std::string lowered = to_lower(key);
  const pb::FieldDescriptor* best = nullptr;
  std::size_t best_distance = max_suggestion_distance + 1;
  for (int i = 0; i < message.field_count(); ++i) {
    const pb::FieldDescriptor* field = message.field(i);
    const std::size_t distance = edit_distance(lowered, field->name());
    if (distance < best_distance) {
      best = field;
      best_distance = distance;
    }
  }
  if (best != nullptr)
    return best->name();
  for (int i = 0; i < message.field_count(); ++i) {
    const pb::FieldDescriptor* field = message.field(i);
    if (field->json_name() == key)
      return field->name();
  }
  for (int i = 0; i < message.field_count(); ++i) {
    const pb::FieldDescriptor* field = message.field(i);
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE || field->is_repeated())
      continue;
    if (const auto* inner = field->message_type()->FindFieldByName(std::string(key)))
      return field->name() + "." + inner->name();
  }
  return std::nullopt;
}

std::string unknown_key_problem(const pb::Descriptor& message, std::string_view key) {
  std::string problem = "unknown key";
  if (auto suggestion = suggest_field(message, key)) {
    problem += "; did you mean '" + *suggestion + "'?";
  } else if (message.field_count() <= 12) {
    // Few enough to list: saves a trip to the docs.
    problem += " (known keys:";
    for (int i = 0; i < message.field_count(); ++i) {
      problem += i == 0 ? " " : ", ";
      problem += message.field(i)->name();
    }
    problem += ')';
  }
  return problem;
}

// ------------------------------------------------------------------------------------------
// Scalars. YAML 1.2 core-schema spellings; quoted scalars are accepted for numbers and bools
// as protobuf's JSON mapping accepts them (templated configs often quote everything).

enum class number_status { ok, invalid, out_of_range };

struct parsed_integer {
  number_status status = number_status::invalid;
  bool negative = false;
  std::uint64_t magnitude = 0;
};

// Decimal, 0x hexadecimal or 0o octal, with an optional sign.
parsed_integer parse_integer(std::string_view text) {
  parsed_integer result;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    result.negative = text.front() == '-';
    text.remove_prefix(1);
  }
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  } else if (text.size() > 2 && text[0] == '0' && (text[1] == 'o' || text[1] == 'O')) {
    base = 8;
    text.remove_prefix(2);
  }
  if (text.empty() || !std::isxdigit(static_cast<unsigned char>(text.front())))
    return result;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, result.magnitude, base);
  if (stop != end)
    return result;
  if (error == std::errc::result_out_of_range) {
    result.status = number_status::out_of_range;
  } else if (error == std::errc{}) {
    result.status = number_status::ok;
  }
  return result;
}

// The integer as a T, or nothing when it does not fit.
template <class T> std::optional<T> narrow_integer(const parsed_integer& parsed) {
  if (parsed.status != number_status::ok)
    return std::nullopt;
  if constexpr (std::is_unsigned_v<T>) {
    if (parsed.negative && parsed.magnitude != 0)
      return std::nullopt;
    if (parsed.magnitude > std::numeric_limits<T>::max())
      return std::nullopt;
    return static_cast<T>(parsed.magnitude);
  } else {
    const auto max = static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    if (!parsed.negative) {
      if (parsed.magnitude > max)
        return std::nullopt;
      return static_cast<T>(parsed.magnitude);
    }
    if (parsed.magnitude > max + 1)
      return std::nullopt;
    if (parsed.magnitude == max + 1)
      return std::numeric_limits<T>::min();
    return static_cast<T>(-static_cast<T>(parsed.magnitude));
  }
}

template <class T> std::string integer_kind() {
  return std::is_unsigned_v<T> ? "an unsigned integer" : "an integer";
}

template <class T> std::string integer_range() {
  return integer_kind<T>() + " from " + std::to_string(std::numeric_limits<T>::min()) + " to " +
         std::to_string(std::numeric_limits<T>::max());
}

std::optional<double> parse_double(std::string_view text) {
  const std::string lowered = to_lower(text);
  if (lowered == ".inf" || lowered == "+.inf")
    return std::numeric_limits<double>::infinity();
  if (lowered == "-.inf")
    return -std::numeric_limits<double>::infinity();
  if (lowered == ".nan")
    return std::numeric_limits<double>::quiet_NaN();
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+')
    digits.remove_prefix(1);
  double value = 0;
  const char* end = digits.data() + digits.size();
  const auto [stop, error] = std::from_chars(digits.data(), end, value);
  if (!digits.empty() && stop == end && error == std::errc{})
    return value;
  // Hexadecimal and octal integers are numbers too.
  const parsed_integer integer = parse_integer(text);
  if (integer.status == number_status::ok) {
    const auto magnitude = static_cast<double>(integer.magnitude);
    return integer.negative ? -magnitude : magnitude;
  }
  return std::nullopt;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE")
    return true;
  if (text == "false" || text == "False" || text == "FALSE")
    return false;
  return std::nullopt;
}

// What a field accepts, for "expected ..." in messages.
std::string expectation(const pb::FieldDescriptor& field, bool element) {
  if (!element && field.is_map())
    return "a map";
  if (!element && field.is_repeated())
    return "a sequence";
  switch (field.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return "an unsigned integer";
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return "a map";
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      std::string names = "one of";
      const pb::EnumDescriptor& type = *field.enum_type();
      for (int i = 0; i < type.value_count(); ++i) {
        names += i == 0 ? " " : ", ";
        names += type.value(i)->name();
      }
      return names;
    }
  }
  return "a value";
}

std::optional<std::string> suggest_enum_value(const pb::EnumDescriptor& type,
                                              std::string_view text) {
  const std::string upper = to_upper(text);
  for (int i = 0; i < type.value_count(); ++i) {
    const std::string& name = type.value(i)->name();
    // "info" for LOG_LEVEL_INFO: the value without its enum prefix, in any case.
    if (name == upper || (name.size() > upper.size() &&
                          name.compare(name.size() - upper.size(), upper.size(), upper) == 0 &&
                          name[name.size() - upper.size() - 1] == '_'))
      return name;
  }
  for (int i = 0; i < type.value_count(); ++i) {
    const std::string& name = type.value(i)->name();
    if (edit_distance(upper, name) <= max_suggestion_distance)
      return name;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------------------------------
// Step 1: decoding.

class yaml_decoder {
public:
  explicit yaml_decoder(std::string_view source_name) : source_(source_name) {}

  // Decodes `yaml_text` into `message`, which must be empty.
  void decode(std::string_view yaml_text, pb::Message& message) {
    const std::string text(yaml_text);
    check_single_document(text);
    const YAML::Node root = YAML::Load(text);
    if (root.IsNull())
      return;
    if (!root.IsMap())
      fail(line_of(root.Mark()), "",
           "expected a map of settings at the top level, got " + describe(root));
    decode_message(root, message, "");
  }

  const key_lines& present() const { return present_; }

private:
  // Where each document starts, and where its root node does (nothing else is kept).
  class document_starts final : public YAML::EventHandler {
  public:
    struct document {
      YAML::Mark start;
      YAML::Mark root;
    };
    std::vector<document> documents;

    void OnDocumentStart(const YAML::Mark& mark) override {
      documents.push_back({mark, mark});
      root_seen_ = false;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  const std::string&) override {
      node(mark);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
      node(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
      node(mark);
    }
    void OnMapEnd() override {}

  private:
    void node(const YAML::Mark& mark) {
      if (!root_seen_ && !documents.empty())
        documents.back().root = mark;
      root_seen_ = true;
    }
    bool root_seen_ = false;
  };

  // One document at most. Not with YAML::LoadAll: yaml-cpp 0.7 hands out an empty document
  // for a ',' outside any [...] or {...} without consuming it, again and again, so
  // LoadAll(",") never returns (found by fuzz/config_yaml_fuzz.cpp), and Load(",") takes
  // it for an empty file. The documents are counted by events instead, three at most: a
  // document that starts where the one before it started is that stuck parser.
  void check_single_document(const std::string& text) const {
    std::istringstream in(text);
    YAML::Parser parser(in);
    document_starts starts;
    const auto& documents = starts.documents;
    while (documents.size() < 3 && parser.HandleNextDocument(starts)) {
      const auto count = documents.size();
      if (count >= 2 && documents[count - 1].start.pos == documents[count - 2].start.pos) {
        const auto& stuck = documents.back().start;
        const auto at = static_cast<std::size_t>(stuck.pos);
        fail(line_of(stuck), "",
             "invalid YAML at column " + std::to_string(stuck.column + 1) + ": unexpected " +
               (at < text.size() ? quote(text.substr(at, 1)) : std::string("end of file")));
      }
    }
    if (documents.size() > 1)
      fail(line_of(documents[1].root), "",
           "the file holds more than one YAML document (\"---\"); only one is allowed");
  }

  [[noreturn]] void fail(int line, std::string_view path, std::string_view problem) const {
    throw config_error(format_error(source_, line, path, problem));
  }

  [[noreturn]] void fail_type(int line, std::string_view path, const pb::FieldDescriptor& field,
                              bool element, const YAML::Node& value) const {
    std::string problem = "expected " + expectation(field, element) + ", got " + describe(value);
    if (value.IsNull() && field.cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING)
      problem += " (write \"\" for an empty string)";
    fail(line, path, problem);
  }

  // `node` is a map or null (an empty section such as "limits:" with every key commented out).
  void decode_message(const YAML::Node& node, pb::Message& message, const std::string& prefix) {
    if (node.IsNull())
      return;
    const pb::Descriptor& type = *message.GetDescriptor();
    key_lines seen; // key -> line within this map, for duplicates and oneofs
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies, not references: yaml-cpp's iterator hands out a temporary pair (Node is a
      // cheap handle).
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      const int line = line_of(key.Mark());
      if (!key.IsScalar())
        fail(line, prefix, "keys must be plain names, got " + describe(key) + " as a key");
      const std::string& name = key.Scalar();
      const std::string path = join_path(prefix, name);
      if (const auto [first, inserted] = seen.emplace(name, line); !inserted)
        fail(line, path, "duplicate key (first set on line " + std::to_string(first->second) + ")");
      const pb::FieldDescriptor* field = type.FindFieldByName(name);
      if (field == nullptr)
        fail(line, path, unknown_key_problem(type, name));
      if (const pb::OneofDescriptor* oneof = field->real_containing_oneof())
        check_oneof(*oneof, *field, seen, line, path);
      present_.emplace(path, line);
      decode_field(value, message, *field, path, line);
    }
  }

  void check_oneof(const pb::OneofDescriptor& oneof, const pb::FieldDescriptor& field,
                   const key_lines& seen, int line, const std::string& path) const {
    for (int i = 0; i < oneof.field_count(); ++i) {
      const pb::FieldDescriptor& other = *oneof.field(i);
      if (&other == &field)
        continue;
      if (auto found = seen.find(other.name()); found != seen.end())
        fail(line, path,
             "only one of the keys of '" + oneof.name() + "' may be set, and '" + other.name() +
               "' is set on line " + std::to_string(found->second));
    }
  }

  void decode_field(const YAML::Node& value, pb::Message& message, const pb::FieldDescriptor& field,
                    const std::string& path, int line) {
    const pb::Reflection& reflection = *message.GetReflection();
    if (field.is_map()) {
      decode_map(value, message, field, path, line);
    } else if (field.is_repeated()) {
      decode_sequence(value, message, field, path, line);
    } else if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!value.IsMap() && !value.IsNull())
        fail_type(line, path, field, false, value);
      // Mutable even for an empty section: the key was there, so the message is "set".
      decode_message(value, *reflection.MutableMessage(&message, &field), path);
    } else {
      store_scalar(value, message, field, path, line);
    }
  }

  // A null value ("peers:" with nothing after it) is an empty sequence.
  void decode_sequence(const YAML::Node& value, pb::Message& message,
                       const pb::FieldDescriptor& field, const std::string& path, int line) {
    if (value.IsNull())
      return;
    if (!value.IsSequence())
      fail_type(line, path, field, false, value);
    const pb::Reflection& reflection = *message.GetReflection();
    std::size_t index = 0;
    for (const YAML::Node& element : value) {
      const std::string element_path = path + "[" + std::to_string(index++) + "]";
      const int element_line = line_of(element.Mark()) > 0 ? line_of(element.Mark()) : line;
      present_.emplace(element_path, element_line);
      if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        if (!element.IsMap() && !element.IsNull())
          fail_type(element_line, element_path, field, true, element);
        decode_message(element, *reflection.AddMessage(&message, &field), element_path);
      } else {
        store_scalar(element, message, field, element_path, element_line);
      }
    }
  }

  // A protobuf map is a repeated entry message {key = 1, value = 2}; a null value is empty.
  void decode_map(const YAML::Node& value, pb::Message& message, const pb::FieldDescriptor& field,
                  const std::string& path, int line) {
    if (value.IsNull())
      return;
    if (!value.IsMap())
      fail_type(line, path, field, false, value);
    const pb::Reflection& reflection = *message.GetReflection();
    const pb::FieldDescriptor& key_field = *field.message_type()->map_key();
    const pb::FieldDescriptor& value_field = *field.message_type()->map_value();
    key_lines seen;
    for (auto it = value.begin(); it != value.end(); ++it) {
      const YAML::Node key = it->first; // a copy, as in decode_message
      const YAML::Node entry_value = it->second;
      const int entry_line = line_of(key.Mark()) > 0 ? line_of(key.Mark()) : line;
      if (!key.IsScalar())
        fail(entry_line, path, "map keys must be scalars, got " + describe(key) + " as a key");
      const std::string entry_path = path + "[" + quote(key.Scalar()) + "]";
      if (const auto [first, inserted] = seen.emplace(key.Scalar(), entry_line); !inserted)
        fail(entry_line, entry_path,
             "duplicate key (first set on line " + std::to_string(first->second) + ")");
      present_.emplace(entry_path, entry_line);
      pb::Message& entry = *reflection.AddMessage(&message, &field);
      store_scalar(key, entry, key_field, entry_path, entry_line);
      decode_field(entry_value, entry, value_field, entry_path, entry_line);
    }
  }

  // Sets a singular scalar field, or appends to a repeated one.
  void store_scalar(const YAML::Node& value, pb::Message& message, const pb::FieldDescriptor& field,
                    const std::string& path, int line) {
    if (!value.IsScalar())
      fail_type(line, path, field, true, value);
    const pb::Reflection& reflection = *message.GetReflection();
    const std::string& text = value.Scalar();
    const auto put = [&](auto set, auto add, auto converted) {
      if (field.is_repeated()) {
        (reflection.*add)(&message, &field, std::move(converted));
      } else {
        (reflection.*set)(&message, &field, std::move(converted));
      }
    };
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        put(&pb::Reflection::SetInt32, &pb::Reflection::AddInt32,
            to_integer<std::int32_t>(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        put(&pb::Reflection::SetInt64, &pb::Reflection::AddInt64,
            to_integer<std::int64_t>(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        put(&pb::Reflection::SetUInt32, &pb::Reflection::AddUInt32,
            to_integer<std::uint32_t>(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        put(&pb::Reflection::SetUInt64, &pb::Reflection::AddUInt64,
            to_integer<std::uint64_t>(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        put(&pb::Reflection::SetDouble, &pb::Reflection::AddDouble, to_double(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        put(&pb::Reflection::SetFloat, &pb::Reflection::AddFloat, to_float(text, path, line));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        const std::optional<bool> parsed = parse_bool(text);
        if (!parsed)
          fail(line, path, "expected true or false, got " + quote(text));
        put(&pb::Reflection::SetBool, &pb::Reflection::AddBool, *parsed);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_STRING:
        // Bytes fields take the text as is, too: config values are text.
        put(&pb::Reflection::SetString, &pb::Reflection::AddString, text);
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumDescriptor& type = *field.enum_type();
        const pb::EnumValueDescriptor* enum_value = type.FindValueByName(text);
        if (enum_value == nullptr) {
          std::string problem = "expected " + expectation(field, true) + ", got " + quote(text);
          if (auto suggestion = suggest_enum_value(type, text))
            problem += "; did you mean '" + *suggestion + "'?";
          fail(line, path, problem);
        }
        put(&pb::Reflection::SetEnum, &pb::Reflection::AddEnum, enum_value);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        // Message fields never reach here (decode_field and decode_sequence route them).
        fail_type(line, path, field, true, value);
    }
  }

  template <class T> T to_integer(const std::string& text, const std::string& path, int line) {
    const parsed_integer parsed = parse_integer(text);
    if (parsed.status == number_status::invalid)
      fail(line, path, "expected " + integer_kind<T>() + ", got " + quote(text));
    const std::optional<T> narrowed = narrow_integer<T>(parsed);
    if (!narrowed)
      fail(line, path, "expected " + integer_range<T>() + ", got " + quote(text));
    return *narrowed;
  }

  double to_double(const std::string& text, const std::string& path, int line) {
    const std::optional<double> parsed = parse_double(text);
    if (!parsed)
      fail(line, path, "expected a number, got " + quote(text));
    return *parsed;
  }

  float to_float(const std::string& text, const std::string& path, int line) {
    const double parsed = to_double(text, path, line);
    if (std::isfinite(parsed) && std::fabs(parsed) > std::numeric_limits<float>::max())
      fail(line, path, "expected a number within the range of a float, got " + quote(text));
    return static_cast<float>(parsed);
  }

  std::string source_;
  key_lines present_;
};

// ------------------------------------------------------------------------------------------
// Step 2: defaults.

// Clears in `defaults` every field whose key the file set, so that merging the file on top
// keeps the file's value even when it is zero (which MergeFrom would otherwise skip).
// Sections the file set are descended into: a file setting only listen.port keeps the
// default listen.host.
void clear_fields_set_in_file(pb::Message& defaults, const std::string& prefix,
                              const key_lines& present) {
  const pb::Descriptor& type = *defaults.GetDescriptor();
  const pb::Reflection& reflection = *defaults.GetReflection();
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor& field = *type.field(i);
    const std::string path = join_path(prefix, field.name());
    if (present.find(path) == present.end())
      continue;
    if (const pb::OneofDescriptor* oneof = field.real_containing_oneof();
        oneof != nullptr && reflection.GetOneofFieldDescriptor(defaults, oneof) != &field) {
      // The file chose another member of the oneof than the defaults did.
      reflection.ClearOneof(&defaults, oneof);
      continue;
    }
    if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !field.is_repeated()) {
      if (reflection.HasField(defaults, &field))
        clear_fields_set_in_file(*reflection.MutableMessage(&defaults, &field), path, present);
    } else {
      reflection.ClearField(&defaults, &field);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Step 3: validation.

struct file_closer {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// Reads up to `max_bytes` of the file at `path` into `contents`. On failure returns the
// system's reason (errno text).
std::optional<std::string> read_file(const std::string& path, std::string& contents,
                                     std::size_t max_bytes) {
  errno = 0;
  const std::unique_ptr<std::FILE, file_closer> file(std::fopen(path.c_str(), "rb"));
  if (!file)
    return std::error_code(errno, std::generic_category()).message();
  contents.clear();
  char buffer[64 * 1024];
  while (contents.size() < max_bytes) {
    const std::size_t wanted = std::min(sizeof buffer, max_bytes - contents.size());
    const std::size_t got = std::fread(buffer, 1, wanted, file.get());
    contents.append(buffer, got);
    if (got < wanted)
      break;
  }
  // A directory opens fine on Linux and fails on the first read with EISDIR.
  if (std::ferror(file.get()))
    return std::error_code(errno, std::generic_category()).message();
  return std::nullopt;
}

// Why `text` is not a name of 1 to `max_length` characters for which `allowed` holds
// (`alphabet` describes them for people), or nothing when it is one.
std::optional<std::string> name_problem(std::string_view text, std::size_t max_length,
                                        bool (*allowed)(char), std::string_view alphabet) {
  const std::string rule =
    "1 to " + std::to_string(max_length) + " characters of " + std::string(alphabet);
  if (text.empty())
    return "must not be empty (" + rule + ")";
  if (text.size() > max_length)
    return "must be at most " + std::to_string(max_length) + " characters long, got " +
           std::to_string(text.size());
  const auto bad = std::find_if_not(text.begin(), text.end(), allowed);
  if (bad != text.end())
    return "must be " + rule + ", got " + quote(text) + " (" + quote(std::string_view(&*bad, 1)) +
           " is not allowed)";
  return std::nullopt;
}

constexpr std::string_view node_id_alphabet = "a-z, 0-9, '.', '_', '-'";
constexpr std::string_view peer_id_alphabet = "A-Z, a-z, 0-9, '.', '_', '-'";

class validator {
public:
  validator(std::string_view source_name, const key_lines& present)
      : source_(source_name), present_(present) {}

  [[noreturn]] void fail(std::string_view path, std::string_view problem) const {
    throw config_error(format_error(source_, line(path), path, problem));
  }

  // The line of `path` in the file, or 0 when the value is a default. A key left out of a
  // sequence element that the file holds (a credential without a secret) is on the
  // element's line.
  int line(std::string_view path) const {
    if (const auto found = present_.find(path); found != present_.end())
      return found->second;
    if (const std::size_t bracket = path.rfind(']'); bracket != std::string_view::npos)
      if (const auto found = present_.find(path.substr(0, bracket + 1)); found != present_.end())
        return found->second;
    return 0;
  }

  bool from_file(std::string_view path) const { return present_.find(path) != present_.end(); }

  // Checks value > other (value >= other with `or_equal`), two fields that bound each other.
  // The key blamed is the one the file set: `path` when both or neither are, so that the
  // message points at the line to change.
  void check_above(std::string_view path, std::uint64_t value, std::string_view other_path,
                   std::uint64_t other, bool or_equal) const {
    if (value > other || (or_equal && value == other))
      return;
    const auto shown = [&](std::string_view shown_path, std::uint64_t shown_value) {
      return std::string(shown_path) + " (" + std::to_string(shown_value) +
             (from_file(shown_path) ? "" : ", the default") + ")";
    };
    if (!from_file(path) && from_file(other_path))
      fail(other_path, std::string(or_equal ? "must be at most " : "must be less than ") +
                         shown(path, value) + ", got " + std::to_string(other));
    fail(path, std::string(or_equal ? "must be at least " : "must be greater than ") +
                 shown(other_path, other) + ", got " + std::to_string(value));
  }

  void check_name(std::string_view path, std::string_view name, std::size_t max_length,
                  bool (*allowed)(char), std::string_view alphabet) const {
    if (auto problem = name_problem(name, max_length, allowed, alphabet))
      fail(path, *problem);
  }

  // Secrets are never shown, not even in part: error messages end up in logs.
  void check_secret_length(std::string_view path, std::string_view secret,
                           std::string_view problem) const {
    if (secret.size() < min_secret_length)
      fail(path, std::string(problem) + ", got " + std::to_string(secret.size()) +
                   (secret.size() == 1 ? " character" : " characters"));
  }

  void check_range(std::string_view path, std::uint64_t value, std::uint64_t low,
                   std::uint64_t high) const {
    if (value >= low && value <= high)
      return;
    std::string problem;
    if (high == std::numeric_limits<std::uint64_t>::max()) {
      problem = "must be at least " + std::to_string(low);
    } else if (low == 0) {
      problem = "must be at most " + std::to_string(high);
    } else {
      problem = "must be between " + std::to_string(low) + " and " + std::to_string(high);
    }
    fail(path, problem + ", got " + std::to_string(value));
  }

  void check_one_of(std::string_view path, const std::string& value, const auto& allowed) const {
    if (std::find(std::begin(allowed), std::end(allowed), value) != std::end(allowed))
      return;
    std::string problem = "must be one of";
    bool first = true;
    for (std::string_view choice : allowed) {
      problem += first ? " " : ", ";
      problem += choice;
      first = false;
    }
    problem += ", got " + quote(value);
    const std::string lowered = to_lower(value);
    for (std::string_view choice : allowed) {
      if (edit_distance(lowered, choice) <= max_suggestion_distance) {
        problem += "; did you mean '" + std::string(choice) + "'?";
        break;
      }
    }
    fail(path, problem);
  }

  void check_readable_file(std::string_view path, const std::string& file_name) const {
    std::string head;
    if (auto reason = read_file(file_name, head, 1))
      fail(path, "cannot read " + quote(file_name) + ": " + *reason);
    if (head.empty())
      fail(path, quote(file_name) + " is empty");
  }

private:
  std::string_view source_;
  const key_lines& present_;
};

constexpr std::uint64_t no_limit = std::numeric_limits<std::uint64_t>::max();

// Neither credentials nor secret_key is valid: the peer runs, and no node can register.
void validate_media_nodes(const chroom::config::v1::MediaNodesConfig& media_nodes,
                          const validator& check) {
  const std::string min_secret = std::to_string(min_secret_length);
  // node_id -> the key path where it was first listed, to name both places of a duplicate.
  std::map<std::string_view, std::string, std::less<>> seen;
  for (int i = 0; i < media_nodes.credentials_size(); ++i) {
    const auto& credential = media_nodes.credentials(i);
    const std::string path = "media_nodes.credentials[" + std::to_string(i) + "]";
    const std::string node_id_path = path + ".node_id";
    check.check_name(node_id_path, credential.node_id(), max_node_id_length, is_node_id_char,
                     node_id_alphabet);
    if (const auto [first, inserted] = seen.emplace(credential.node_id(), node_id_path);
        !inserted) {
      const int first_line = check.line(first->second);
      check.fail(node_id_path, "duplicate node_id " + quote(credential.node_id()) + " (first " +
                                 (first_line > 0 ? "listed on line " + std::to_string(first_line)
                                                 : "in " + first->second) +
                                 ")");
    }
    if (credential.secret().empty())
      check.fail(path + ".secret", "must not be empty (at least " + min_secret + " characters)");
    check.check_secret_length(path + ".secret", credential.secret(),
                              "must be at least " + min_secret + " characters long");
  }
  if (!media_nodes.secret_key().empty())
    check.check_secret_length("media_nodes.secret_key", media_nodes.secret_key(),
                              "must be empty or at least " + min_secret + " characters long");

  check.check_range("media_nodes.stats_interval_ms", media_nodes.stats_interval_ms(),
                    min_stats_interval_ms, max_stats_interval_ms);
  check.check_above("media_nodes.suspect_after_ms", media_nodes.suspect_after_ms(),
                    "media_nodes.stats_interval_ms", media_nodes.stats_interval_ms(), false);
  check.check_above("media_nodes.dead_after_ms", media_nodes.dead_after_ms(),
                    "media_nodes.suspect_after_ms", media_nodes.suspect_after_ms(), false);
  check.check_above("media_nodes.forget_after_ms", media_nodes.forget_after_ms(),
                    "media_nodes.dead_after_ms", media_nodes.dead_after_ms(), true);
  check.check_range("media_nodes.command_timeout_ms", media_nodes.command_timeout_ms(),
                    min_command_timeout_ms, max_command_timeout_ms);
  check.check_range("media_nodes.drain_deadline_ms", media_nodes.drain_deadline_ms(), 0,
                    max_drain_deadline_ms);
  check.check_range("media_nodes.max_nodes", media_nodes.max_nodes(), 1, max_max_nodes);
  check.check_range("media_nodes.register_timeout_ms", media_nodes.register_timeout_ms(),
                    min_register_timeout_ms, max_register_timeout_ms);
}

// "0.85", "1e-05", "nan": the shortest text that reads back as `value`.
std::string format_number(double value) {
  char buffer[32];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return error == std::errc{} ? std::string(buffer, end) : std::to_string(value);
}

// A node region in the Media Node RPC (Register.location.region) is at most this long, so a
// longer name can match no node.
constexpr std::size_t max_region_length = 256;

void validate_allocation(const chroom::config::v1::AllocationConfig& allocation,
                         const validator& check) {
  check.check_range("allocation.lease_ttl_ms", allocation.lease_ttl_ms(), min_lease_ttl_ms,
                    max_lease_ttl_ms);
  check.check_range("allocation.join_token_ttl_ms", allocation.join_token_ttl_ms(),
                    min_join_token_ttl_ms, max_join_token_ttl_ms);
  check.check_range("allocation.reservation_ttl_ms", allocation.reservation_ttl_ms(),
                    min_reservation_ttl_ms, max_reservation_ttl_ms);
  // Written so that NaN fails too.
  if (!(allocation.high_water() > 0 && allocation.high_water() <= 1))
    check.fail("allocation.high_water",
               "must be greater than 0 and at most 1 (a fraction of capacity), got " +
                 format_number(allocation.high_water()));
  check.check_range("allocation.affinity_slack_ms", allocation.affinity_slack_ms(), 0,
                    max_rtt_setting_ms);
  check.check_range("allocation.max_affinity_rtt_ms", allocation.max_affinity_rtt_ms(), 1,
                    max_rtt_setting_ms);
  check.check_range("allocation.candidate_pool", allocation.candidate_pool(), 1,
                    max_candidate_pool);
  check.check_range("allocation.alternates", allocation.alternates(), 0, max_alternates);
  if (allocation.fallback_region().size() > max_region_length)
    check.fail("allocation.fallback_region", "must be at most " +
                                               std::to_string(max_region_length) +
                                               " characters long (as node regions are), got " +
                                               std::to_string(allocation.fallback_region().size()));
  const std::string& geoip = allocation.geoip_database();
  if (geoip.empty())
    check.fail("allocation.geoip_database",
               "must not be empty: a GeoIP country database file, or \"none\" to locate no "
               "client by IP");
  // The default may be missing (geoip-database not installed): the daemon warns and goes
  // on. A file the operator named must be there.
  if (geoip != no_geoip_database && geoip != default_geoip_database)
    check.check_readable_file("allocation.geoip_database", geoip);
}

void validate_apps(const OrchestratorConfig& config, const validator& check) {
  if (config.apps_size() == 0)
    check.fail("apps", "must list at least one app; leave the key out for the default app (\"" +
                         std::string(default_app_id) + "\", " + std::string(default_strategy) +
                         ", no credentials)");
  // app_id (and key_id) -> the key path where it was first listed, to name both places of a
  // duplicate.
  std::map<std::string_view, std::string, std::less<>> seen;
  std::map<std::string_view, std::string, std::less<>> seen_keys;
  auto duplicate = [&](auto& first_seen, std::string_view what, const std::string& value,
                       const std::string& path) {
    const auto [first, inserted] = first_seen.emplace(value, path);
    if (inserted)
      return;
    const int first_line = check.line(first->second);
    check.fail(path, "duplicate " + std::string(what) + " " + quote(value) + " (first " +
                       (first_line > 0 ? "listed on line " + std::to_string(first_line)
                                       : "in " + first->second) +
                       ")");
  };
  // Names first, then everything else, credentials last: a file with a typo is told about
  // the typo before it is told that its apps have no keys yet.
  for (int i = 0; i < config.apps_size(); ++i) {
    const auto& app = config.apps(i);
    const std::string path = "apps[" + std::to_string(i) + "]";
    check.check_name(path + ".app_id", app.app_id(), max_app_id_length, is_peer_id_char,
                     peer_id_alphabet);
    duplicate(seen, "app_id", app.app_id(), path + ".app_id");
    check.check_one_of(path + ".strategy", app.strategy(), strategies);
  }
  std::vector<std::pair<std::string, std::string>> credential_problems;
  for (int i = 0; i < config.apps_size(); ++i) {
    const auto& app = config.apps(i);
    const std::string path = "apps[" + std::to_string(i) + "]";
    for (const auto& problem : apps::app_problems(app)) {
      if (problem.field == "app_id" || problem.field == "strategy") // checked above
        continue;
      if (problem.field == "keys")
        credential_problems.emplace_back(path + ".keys", problem.problem);
      else
        check.fail(path + "." + problem.field, problem.problem);
    }
    for (int j = 0; j < app.keys_size(); ++j)
      duplicate(seen_keys, "key_id", app.keys(j).key_id(),
                path + ".keys[" + std::to_string(j) + "].key_id");
    if (!app.hooks().script_file().empty())
      check.check_readable_file(path + ".hooks.script_file", app.hooks().script_file());
  }
  for (const auto& [path, problem] : credential_problems)
    check.fail(path, problem);
}

bool is_wildcard_host(std::string_view host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]";
}

void validate_cluster(const chroom::config::v1::ClusterConfig& cluster, const validator& check) {
  if (cluster.listen_host().empty())
    check.fail("cluster.listen_host", "must not be empty; use 127.0.0.1 for this machine only, "
                                      "0.0.0.0 or :: for every interface");
  check.check_range("cluster.listen_port", cluster.listen_port(), 0, max_port);
  if (cluster.listen_port() != 0 && cluster.advertise_host().empty() &&
      is_wildcard_host(cluster.listen_host()))
    check.fail("cluster.listen_host", "is a wildcard address (" + cluster.listen_host() +
                                        "): set cluster.advertise_host, the address other "
                                        "peers reach this one at");
  if (is_wildcard_host(cluster.advertise_host()))
    check.fail("cluster.advertise_host",
               "must be an address other peers can reach, got " + quote(cluster.advertise_host()));
  if (static_cast<std::size_t>(cluster.seeds_size()) > max_seeds)
    check.fail("cluster.seeds", "at most " + std::to_string(max_seeds) + " seeds");
  for (int i = 0; i < cluster.seeds_size(); ++i) {
    const std::string path = "cluster.seeds[" + std::to_string(i) + "]";
    std::string problem;
    if (!cluster::parse_peer_address(cluster.seeds(i), problem))
      check.fail(path, problem);
  }
  if (cluster.seeds_size() > 0 && cluster.listen_port() == 0)
    check.fail("cluster.seeds", "need cluster.listen_port: a peer joins a cluster on its port");
  check.check_range("cluster.heartbeat_interval_ms", cluster.heartbeat_interval_ms(), 10, 60'000);
  check.check_above("cluster.failure_timeout_ms", cluster.failure_timeout_ms(),
                    "cluster.heartbeat_interval_ms", cluster.heartbeat_interval_ms(), false);
  check.check_range("cluster.replication_factor", cluster.replication_factor(), 1,
                    max_replication_factor);
  check.check_range("cluster.node_update_interval_ms", cluster.node_update_interval_ms(), 10,
                    60'000);
  const std::pair<std::string_view, const std::string*> tls_files[] = {
    {"cluster.cert_file", &cluster.cert_file()},
    {"cluster.key_file", &cluster.key_file()},
    {"cluster.ca_file", &cluster.ca_file()}};
  const auto set = std::count_if(std::begin(tls_files), std::end(tls_files),
                                 [](const auto& file) { return !file.second->empty(); });
  if (set != 0 && set != 3) {
    // Blame a key the file set (it has a line); name the one missing.
    auto given = std::find_if(std::begin(tls_files), std::end(tls_files),
                              [](const auto& file) { return !file.second->empty(); });
    auto missing = std::find_if(std::begin(tls_files), std::end(tls_files),
                                [](const auto& file) { return file.second->empty(); });
    check.fail(given->first, "is set but " + std::string(missing->first) +
                               " is not; TLS between peers needs cluster.cert_file, "
                               "cluster.key_file and cluster.ca_file, or none of them");
  }
  if (set == 3)
    for (const auto& [path, file] : tls_files)
      check.check_readable_file(path, *file);
}

void validate_admin(const chroom::config::v1::AdminConfig& admin, const validator& check) {
  const auto& http = admin.http();
  if (http.host().empty())
    check.fail("admin.http.host", "must not be empty; use 127.0.0.1 for this machine only");
  check.check_range("admin.http.port", http.port(), 0, max_port);
  if (http.cert_file().empty() != http.key_file().empty())
    check.fail(http.cert_file().empty() ? "admin.http.key_file" : "admin.http.cert_file",
               "set both admin.http.cert_file and admin.http.key_file to serve HTTPS, or neither");
  if (!http.cert_file().empty()) {
    check.check_readable_file("admin.http.cert_file", http.cert_file());
    check.check_readable_file("admin.http.key_file", http.key_file());
  }
  if (static_cast<std::size_t>(admin.tokens_size()) > max_admin_tokens)
    check.fail("admin.tokens",
               std::string("at most ") + std::to_string(max_admin_tokens) + " tokens");
  for (int i = 0; i < admin.tokens_size(); ++i) {
    const auto& token = admin.tokens(i);
    auto path = std::string("admin.tokens[") + std::to_string(i) + "]";
    if (token.size() < min_admin_token_length || token.size() > max_admin_token_length)
      check.fail(path, std::string("must be ") + std::to_string(min_admin_token_length) + ".." +
                         std::to_string(max_admin_token_length) + " characters, got " +
                         std::to_string(token.size()));
    if (!std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
      check.fail(path, "must be printable ASCII without spaces (it travels in a header)");
  }
  check.check_one_of("admin.reflection", admin.reflection(), reflection_modes);
}

void validate(const OrchestratorConfig& config, const validator& check) {
  const auto& listen = config.listen();
  if (listen.host().empty())
    check.fail("listen.host",
               "must not be empty; use 127.0.0.1 for this machine only, 0.0.0.0 or :: for every "
               "interface");
  // 0 is allowed: an ephemeral port, which the daemon logs once bound.
  check.check_range("listen.port", listen.port(), 0, max_port);
  const bool has_cert = !listen.cert_file().empty();
  const bool has_key = !listen.key_file().empty();
  if (has_cert != has_key) {
    const std::string_view set = has_cert ? "listen.cert_file" : "listen.key_file";
    const std::string_view unset = has_cert ? "listen.key_file" : "listen.cert_file";
    check.fail(set, "is set but " + std::string(unset) +
                      " is not; set both to serve TLS, or neither to serve h2c");
  }
  if (has_cert) {
    check.check_readable_file("listen.cert_file", listen.cert_file());
    check.check_readable_file("listen.key_file", listen.key_file());
  }

  const auto& limits = config.limits();
  check.check_range("limits.max_message_bytes", limits.max_message_bytes(), min_message_bytes,
                    max_message_bytes);
  check.check_range("limits.max_concurrent_streams", limits.max_concurrent_streams(), 1,
                    max_concurrent_streams);
  check.check_range("limits.max_header_list_bytes", limits.max_header_list_bytes(),
                    min_header_list_bytes, max_header_list_bytes);
  check.check_range("limits.max_connections", limits.max_connections(), 1, no_limit);
  check.check_range("limits.idle_timeout_ms", limits.idle_timeout_ms(), min_timer_ms, no_limit);
  check.check_range("limits.keepalive_interval_ms", limits.keepalive_interval_ms(), min_timer_ms,
                    no_limit);
  check.check_range("limits.keepalive_timeout_ms", limits.keepalive_timeout_ms(), min_timer_ms,
                    no_limit);
  check.check_range("limits.max_pending_output_bytes", limits.max_pending_output_bytes(),
                    min_pending_output_bytes, no_limit);
  // One request and one response of the largest size must fit, or such calls could never
  // complete.
  check.check_range("limits.max_connection_memory_bytes", limits.max_connection_memory_bytes(),
                    2 * std::uint64_t{limits.max_message_bytes()}, no_limit);
  check.check_range("limits.max_gateway_memory_bytes", limits.max_gateway_memory_bytes(),
                    limits.max_connection_memory_bytes(), no_limit);

  check.check_one_of("log.level", config.log().level(), log_levels);
  check.check_one_of("log.format", config.log().format(), log_formats);

  check.check_range("shutdown_grace_ms", config.shutdown_grace_ms(), 0, max_shutdown_grace_ms);
  check.check_range("worker_threads", config.worker_threads(), 1, max_worker_threads);

  validate_media_nodes(config.media_nodes(), check);
  check.check_name("peer_id", config.peer_id(), max_peer_id_length, is_peer_id_char,
                   peer_id_alphabet);
  validate_allocation(config.allocation(), check);
  validate_apps(config, check);
  check.check_range("metering.epoch_ms", config.metering().epoch_ms(), min_epoch_ms, max_epoch_ms);
  if (!config.metering().signing_key_file().empty())
    check.check_readable_file("metering.signing_key_file", config.metering().signing_key_file());
  validate_cluster(config.cluster(), check);
  validate_admin(config.admin(), check);
}

// Runs `body`, turning every exception into a config_error about `source`, so that callers
// need to handle one exception type only.
template <class Body> auto only_config_errors(std::string_view source, Body&& body) {
  try {
    return body();
  } catch (const config_error&) {
    throw;
  } catch (const YAML::DeepRecursion& error) {
    // yaml-cpp gives this one a meaningless message ("bad file").
    throw config_error(format_error(source, line_of(error.mark), "",
                                    "invalid YAML: nested more than " +
                                      std::to_string(error.depth() - 1) + " levels deep"));
  } catch (const YAML::Exception& error) {
    const int line = line_of(error.mark);
    std::string problem = "invalid YAML";
    if (line > 0)
      problem += " at column " + std::to_string(error.mark.column + 1);
    throw config_error(format_error(source, line, "", problem + ": " + error.msg));
  } catch (const std::exception& error) {
    throw config_error(
      format_error(source, 0, "", std::string("cannot load the configuration: ") + error.what()));
  } catch (...) {
    throw config_error(format_error(source, 0, "", "cannot load the configuration"));
  }
}

} // namespace

bool is_loopback_host(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

bool reflection_enabled(const OrchestratorConfig& config) {
  const auto& mode = config.admin().reflection();
  return mode == "on" || (mode == "auto" && is_loopback_host(config.listen().host()));
}

OrchestratorConfig default_config() {
  return make_default_config();
}

void decode_yaml(std::string_view yaml_text, std::string_view source_name,
                 google::protobuf::Message& message) {
  only_config_errors(source_name, [&] {
    message.Clear();
    yaml_decoder(source_name).decode(yaml_text, message);
  });
}

OrchestratorConfig parse_config(std::string_view yaml_text, std::string_view source_name) {
  return only_config_errors(source_name, [&] {
    yaml_decoder decoder(source_name);
    OrchestratorConfig from_file;
    decoder.decode(yaml_text, from_file);
    OrchestratorConfig config = make_default_config();
    clear_fields_set_in_file(config, "", decoder.present());
    config.MergeFrom(from_file);
    fill_in_element_defaults(config);
    validate(config, validator(source_name, decoder.present()));
    return config;
  });
}

OrchestratorConfig load_config_file(const std::string& path) {
  return only_config_errors(path, [&] {
    std::string text;
    if (auto reason = read_file(path, text, std::numeric_limits<std::size_t>::max()))
      throw config_error(format_error(path, 0, "", "cannot read the config file: " + *reason));
    return parse_config(text, path);
  });
}

} // namespace chroom::daemon
