// Tests of the configuration loader (daemon/config.hpp): defaults, the reflection walker on
// every field kind, error messages (path, line, suggestion), validation, and the shipped
// example file.
#include "daemon/config.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace pb = google::protobuf;
using chroom::config::v1::OrchestratorConfig;
using chroom::daemon::config_error;
using chroom::daemon::decode_yaml;
using chroom::daemon::default_config;
using chroom::daemon::load_config_file;
using chroom::daemon::parse_config;

// The message parse_config throws for `yaml`, or "<no error>".
std::string error_of(std::string_view yaml) {
  try {
    parse_config(yaml, "cfg.yaml");
  } catch (const config_error& error) {
    return error.what();
  }
  return "<no error>";
}

std::string differences(const pb::Message& a, const pb::Message& b) {
  std::string report;
  pb::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&report);
  differencer.Compare(a, b);
  return report;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// A file in the temp directory, removed at scope exit.
class temp_file {
public:
  temp_file(std::string_view stem, std::string_view contents)
      : path_(std::filesystem::temp_directory_path() /
              ("chroom-config-test-" + std::to_string(::getpid()) + "-" + std::string(stem))) {
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;

  std::string path() const { return path_.string(); }

private:
  std::filesystem::path path_;
};

std::filesystem::path source_root() {
  return CHROOM_SOURCE_DIR; // tests/CMakeLists.txt
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Dotted paths of every non-message field of `type`, e.g. "listen.port". A repeated message
// field is a leaf too ("media_nodes.credentials"); with `into_sequences` its fields are
// listed as well, with "[]" for the element ("media_nodes.credentials[].node_id").
void leaf_paths(const pb::Descriptor& type, const std::string& prefix, bool into_sequences,
                std::vector<std::string>& out) {
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor& field = *type.field(i);
    const std::string path = prefix.empty() ? field.name() : prefix + "." + field.name();
    const bool message = field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (message && !field.is_repeated()) {
      leaf_paths(*field.message_type(), path, into_sequences, out);
      continue;
    }
    out.push_back(path);
    if (message && !field.is_map() && into_sequences)
      leaf_paths(*field.message_type(), path + "[]", into_sequences, out);
  }
}

// The fields a file can set, sequences as one field each: what the full-file test changes.
std::vector<std::string> config_leaf_paths() {
  std::vector<std::string> paths;
  leaf_paths(*OrchestratorConfig::descriptor(), "", false, paths);
  return paths;
}

// Every key an operator may write, within sequence elements too: what docs and example cover.
std::vector<std::string> config_documented_paths() {
  std::vector<std::string> paths;
  leaf_paths(*OrchestratorConfig::descriptor(), "", true, paths);
  return paths;
}

// What default_config() must pick for peer_id: the host name when it is 1 to 64 characters
// of [A-Za-z0-9._-], else "peer".
std::string expected_default_peer_id() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0)
    return "peer";
  const std::string host(name);
  const bool valid =
    !host.empty() && host.size() <= 64 && std::all_of(host.begin(), host.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    });
  return valid ? host : "peer";
}

} // namespace

TEST_SUITE_BEGIN("config");

TEST_CASE("default_config fills in every default") {
  const OrchestratorConfig config = default_config();
  CHECK(config.listen().host() == "127.0.0.1");
  CHECK(config.listen().port() == 7443);
  CHECK(config.listen().cert_file().empty());
  CHECK(config.listen().key_file().empty());
  CHECK(config.limits().max_message_bytes() == 4194304);
  CHECK(config.limits().max_concurrent_streams() == 100);
  CHECK(config.limits().max_header_list_bytes() == 16384);
  CHECK(config.limits().max_connections() == 10000);
  CHECK(config.limits().idle_timeout_ms() == 300000);
  CHECK(config.limits().keepalive_interval_ms() == 30000);
  CHECK(config.limits().keepalive_timeout_ms() == 10000);
  CHECK(config.limits().max_pending_output_bytes() == 1048576);
  CHECK(config.limits().max_connection_memory_bytes() == 33554432);
  CHECK(config.limits().max_gateway_memory_bytes() == 2147483648);
  CHECK(config.log().level() == "info");
  CHECK(config.log().format() == "text");
  CHECK(config.shutdown_grace_ms() == 5000);
  const unsigned cores = std::thread::hardware_concurrency();
  CHECK(config.worker_threads() == std::clamp(cores > 1 ? cores - 1 : 1u, 1u, 256u));
  const auto& media_nodes = config.media_nodes();
  CHECK(media_nodes.credentials().empty());
  CHECK(media_nodes.secret_key().empty());
  CHECK(media_nodes.stats_interval_ms() == 1000);
  CHECK(media_nodes.suspect_after_ms() == 1500);
  CHECK(media_nodes.dead_after_ms() == 3000);
  CHECK(media_nodes.command_timeout_ms() == 2000);
  CHECK(media_nodes.drain_deadline_ms() == 600000);
  CHECK(media_nodes.max_nodes() == 20000);
  CHECK(media_nodes.forget_after_ms() == 600000);
  CHECK(media_nodes.register_timeout_ms() == 10000);
  CHECK(config.peer_id() == expected_default_peer_id());
  const auto& allocation = config.allocation();
  CHECK(allocation.lease_ttl_ms() == 30000);
  CHECK(allocation.join_token_ttl_ms() == 300000);
  CHECK(allocation.reservation_ttl_ms() == 10000);
  CHECK(allocation.high_water() == 0.85);
  CHECK(allocation.affinity_slack_ms() == 5);
  CHECK(allocation.max_affinity_rtt_ms() == 150);
  CHECK(allocation.candidate_pool() == 16);
  CHECK(allocation.alternates() == 2);
  CHECK(allocation.fallback_region().empty());
  CHECK(allocation.geoip_database() == "/usr/share/GeoIP/GeoIP.dat");
  REQUIRE(config.apps_size() == 1);
  CHECK(config.apps(0).app_id() == "default");
  CHECK(config.apps(0).strategy() == "balanced");
  CHECK(config.apps(0).allowed_regions().empty());
  CHECK(config.apps(0).allowed_countries().empty());
}

TEST_CASE("empty text, comments only, or a null document give the defaults") {
  for (const char* text : {"", "\n\n", "# nothing here\n   # still nothing\n", "~\n", "---\n"}) {
    CAPTURE(text);
    const OrchestratorConfig config = parse_config(text, "cfg.yaml");
    CHECK(differences(config, default_config()) == "");
  }
}

TEST_CASE("a full file sets every field") {
  const temp_file cert("cert.pem", "-----BEGIN CERTIFICATE-----\n");
  const temp_file key("key.pem", "-----BEGIN PRIVATE KEY-----\n");
  // Any readable file passes validation; only the daemon opens it as a database.
  const temp_file geoip("GeoIP.dat", "not really a database\n");
  const std::string yaml =
    "listen:\n"
    "  host: 0.0.0.0\n"
    "  port: 9443\n"
    "  cert_file: " +
    cert.path() +
    "\n"
    "  key_file: " +
    key.path() +
    "\n"
    "limits:\n"
    "  max_message_bytes: 1048576\n"
    "  max_concurrent_streams: 250\n"
    "  max_header_list_bytes: 8192\n"
    "  max_connections: 500\n"
    "  idle_timeout_ms: 60000\n"
    "  keepalive_interval_ms: 15000\n"
    "  keepalive_timeout_ms: 5000\n"
    "  max_pending_output_bytes: 2097152\n"
    "  max_connection_memory_bytes: 8388608\n"
    "  max_gateway_memory_bytes: 6442450944\n"
    "log:\n"
    "  level: debug\n"
    "  format: json\n"
    "shutdown_grace_ms: 20000\n"
    "worker_threads: 3\n"
    "media_nodes:\n"
    "  credentials:\n"
    "    - node_id: media-1\n"
    "      secret: 0123456789abcdef\n"
    "    - {node_id: eu-west.media_2, secret: \"a secret, 16+ chars\"}\n"
    "  secret_key: a-key-of-sixteen-characters\n"
    "  stats_interval_ms: 500\n"
    "  suspect_after_ms: 2000\n"
    "  dead_after_ms: 5000\n"
    "  command_timeout_ms: 750\n"
    "  drain_deadline_ms: 3600000\n"
    "  max_nodes: 100\n"
    "  forget_after_ms: 5000\n"
    "  register_timeout_ms: 2500\n"
    "peer_id: Peer-1.eu_west\n"
    "allocation:\n"
    "  lease_ttl_ms: 60000\n"
    "  join_token_ttl_ms: 120000\n"
    "  reservation_ttl_ms: 5000\n"
    "  high_water: 0.9\n"
    "  affinity_slack_ms: 25\n"
    "  max_affinity_rtt_ms: 200\n"
    "  candidate_pool: 32\n"
    "  alternates: 0\n"
    "  fallback_region: eu-central\n"
    "  geoip_database: " +
    geoip.path() +
    "\n"
    "apps:\n"
    "  - app_id: telemedicine\n"
    "    strategy: latency\n"
    "    allowed_regions: [eu-west, eu-central]\n"
    "    allowed_countries: [DE, FR]\n"
    "    keys:\n"
    "      - key_id: ck_telemed_1\n"
    "        secret: 0123456789abcdef0123456789abcdef\n"
    "        expires_unix_ms: 1900000000000\n"
    "        created_unix_ms: 1700000000000\n"
    "    denied_regions: [eu-south]\n"
    "    denied_countries: [IT]\n"
    "    max_room_size: 4\n"
    "    roles:\n"
    "      - {role: host, publish: [audio, video], max_per_room: 1}\n"
    "      - {role: viewer, spread: true}\n"
    "    media_profile: screen_share\n"
    "    required_features: [e2ee]\n"
    "    recording: true\n"
    "    weights: {load_ms: 40, health: 2}\n"
    "    latency_budget_ms: 80\n"
    "    cascade: {max_room_nodes: 1, max_relay_depth: 2, fan_out_after: 50}\n"
    "    priority: high\n"
    "    lease_ttl_ms: 10000\n"
    "    quotas: {max_rooms: 10, max_participants: 40, "
    "allocations_per_second: 5.5, allocation_burst: 20}\n"
    "    hooks: {script: \"function before_allocation(r) end\", "
    "max_instructions: 5000, max_memory_kib: 256, max_time_ms: 20}\n"
    "    webhook: {url: \"https://hooks.example.com/chroom\", "
    "secret: abcdefghijklmnopqrstuvwxyz012345, events: [room.started], "
    "max_attempts: 3}\n"
    "    admission: host\n"
    "    audit: true\n"
    "    description: clinics in DE and FR\n"
    "    audio_only_below_kbps: 300\n"
    "  - {app_id: events, strategy: pack, allow_unauthenticated: true}\n"
    "data_dir: /var/lib/chroom\n"
    "metering:\n"
    "  epoch_ms: 60000\n"
    "  signing_key_file: " +
    key.path() +
    "\n"
    "admin:\n"
    "  http: {host: 0.0.0.0, port: 9100, cert_file: " +
    key.path() + ", key_file: " + key.path() +
    "}\n"
    "  tokens: [abcdefghijklmnop0123, qrstuvwxyz0123456789]\n"
    "  disable_http: true\n"
    "  reflection: \"on\"\n"
    "cluster:\n"
    "  listen_host: 0.0.0.0\n"
    "  listen_port: 7100\n"
    "  advertise_host: peer-1.chroom.svc\n"
    "  seeds: [\"peer-0.chroom.svc:7100\", \"[fd00::2]:7100\"]\n"
    "  heartbeat_interval_ms: 100\n"
    "  failure_timeout_ms: 900\n"
    "  replication_factor: 3\n"
    "  node_update_interval_ms: 500\n"
    "  cert_file: " +
    cert.path() +
    "\n"
    "  key_file: " +
    key.path() +
    "\n"
    "  ca_file: " +
    cert.path() + "\n";
  const OrchestratorConfig config = parse_config(yaml, "cfg.yaml");
  CHECK(config.listen().host() == "0.0.0.0");
  CHECK(config.listen().port() == 9443);
  CHECK(config.listen().cert_file() == cert.path());
  CHECK(config.listen().key_file() == key.path());
  CHECK(config.limits().max_message_bytes() == 1048576);
  CHECK(config.limits().max_concurrent_streams() == 250);
  CHECK(config.limits().max_header_list_bytes() == 8192);
  CHECK(config.limits().max_connections() == 500);
  CHECK(config.limits().idle_timeout_ms() == 60000);
  CHECK(config.limits().keepalive_interval_ms() == 15000);
  CHECK(config.limits().keepalive_timeout_ms() == 5000);
  CHECK(config.limits().max_pending_output_bytes() == 2097152);
  CHECK(config.limits().max_connection_memory_bytes() == 8388608);
  CHECK(config.limits().max_gateway_memory_bytes() == 6442450944);
  CHECK(config.log().level() == "debug");
  CHECK(config.log().format() == "json");
  CHECK(config.shutdown_grace_ms() == 20000);
  CHECK(config.worker_threads() == 3);
  chroom::config::v1::MediaNodesConfig media_nodes;
  REQUIRE(pb::TextFormat::ParseFromString(
    R"pb(credentials { node_id: "media-1" secret: "0123456789abcdef" }
           credentials { node_id: "eu-west.media_2" secret: "a secret, 16+ chars" }
           secret_key: "a-key-of-sixteen-characters" stats_interval_ms: 500
           suspect_after_ms: 2000 dead_after_ms: 5000 command_timeout_ms: 750
           drain_deadline_ms: 3600000 max_nodes: 100 forget_after_ms: 5000
           register_timeout_ms: 2500)pb",
    &media_nodes));
  CHECK(differences(config.media_nodes(), media_nodes) == "");
  CHECK(config.peer_id() == "Peer-1.eu_west");
  chroom::config::v1::AllocationConfig allocation;
  REQUIRE(pb::TextFormat::ParseFromString(
    R"pb(lease_ttl_ms: 60000 join_token_ttl_ms: 120000 reservation_ttl_ms: 5000
         high_water: 0.9 affinity_slack_ms: 25 max_affinity_rtt_ms: 200 candidate_pool: 32
         alternates: 0 fallback_region: "eu-central")pb",
    &allocation));
  allocation.set_geoip_database(geoip.path());
  CHECK(differences(config.allocation(), allocation) == "");
  chroom::config::v1::ClusterConfig cluster;
  REQUIRE(pb::TextFormat::ParseFromString(
    R"pb(listen_host: "0.0.0.0" listen_port: 7100 advertise_host: "peer-1.chroom.svc"
         seeds: [ "peer-0.chroom.svc:7100", "[fd00::2]:7100" ] heartbeat_interval_ms: 100
         failure_timeout_ms: 900 replication_factor: 3 node_update_interval_ms: 500)pb",
    &cluster));
  cluster.set_cert_file(cert.path());
  cluster.set_key_file(key.path());
  cluster.set_ca_file(cert.path());
  CHECK(differences(config.cluster(), cluster) == "");
  OrchestratorConfig apps;
  REQUIRE(pb::TextFormat::ParseFromString(
    R"pb(apps {
           app_id: "telemedicine"
           strategy: "latency"
           allowed_regions: [ "eu-west", "eu-central" ]
           allowed_countries: [ "DE", "FR" ]
           keys {
             key_id: "ck_telemed_1"
             secret: "0123456789abcdef0123456789abcdef"
             expires_unix_ms: 1900000000000
             created_unix_ms: 1700000000000
           }
           denied_regions: "eu-south"
           denied_countries: "IT"
           max_room_size: 4
           roles { role: "host" publish: [ "audio", "video" ] max_per_room: 1 }
           roles { role: "viewer" spread: true }
           media_profile: "screen_share"
           required_features: "e2ee"
           recording: true
           weights { load_ms: 40 health: 2 }
           latency_budget_ms: 80
           cascade { max_room_nodes: 1 max_relay_depth: 2 fan_out_after: 50 }
           priority: "high"
           lease_ttl_ms: 10000
           quotas {
             max_rooms: 10
             max_participants: 40
             allocations_per_second: 5.5
             allocation_burst: 20
           }
           hooks {
             script: "function before_allocation(r) end"
             max_instructions: 5000
             max_memory_kib: 256
             max_time_ms: 20
           }
           webhook {
             url: "https://hooks.example.com/chroom"
             secret: "abcdefghijklmnopqrstuvwxyz012345"
             events: "room.started"
             max_attempts: 3
           }
           admission: "host"
           audit: true
           description: "clinics in DE and FR"
           audio_only_below_kbps: 300
         }
         apps {
           app_id: "events"
           strategy: "pack"
           allow_unauthenticated: true
           media_profile: "video"
           priority: "normal"
           admission: "open"
         })pb",
    &apps));
  CHECK(differences(config.apps(0), apps.apps(0)) == "");
  CHECK(differences(config.apps(1), apps.apps(1)) == "");
  CHECK(config.apps_size() == 2);
  CHECK(config.data_dir() == "/var/lib/chroom");
  CHECK(config.metering().epoch_ms() == 60000);
  CHECK(config.metering().signing_key_file() == key.path());
  CHECK(config.admin().http().host() == "0.0.0.0");
  CHECK(config.admin().http().port() == 9100);
  CHECK(config.admin().http().cert_file() == key.path());
  CHECK(config.admin().tokens_size() == 2);
  CHECK(config.admin().disable_http());
  CHECK(config.admin().reflection() == "on");

  // Every field of the schema must differ from its default above: when a field is added to
  // the proto, this names it until the test (and the example file and docs) cover it. A
  // sequence differs by its elements ("added: media_nodes.credentials[0]: ...").
  const std::string changed = differences(config, default_config());
  for (const std::string& path : config_leaf_paths()) {
    CAPTURE(path);
    CHECK((contains(changed, " " + path + ":") || contains(changed, " " + path + "[")));
  }
}

TEST_CASE("keys left out keep their defaults; keys present win, even when zero") {
  SUBCASE("explicit port 0 stays 0 (ephemeral), the rest of listen keeps its defaults") {
    const OrchestratorConfig config = parse_config("listen:\n  port: 0\n", "cfg.yaml");
    CHECK(config.listen().port() == 0);
    CHECK(config.listen().host() == "127.0.0.1");
  }
  SUBCASE("absent port gets 7443") {
    const OrchestratorConfig config = parse_config("listen:\n  host: ::1\n", "cfg.yaml");
    CHECK(config.listen().port() == 7443);
    CHECK(config.listen().host() == "::1");
  }
  SUBCASE("an empty section is the same as none") {
    const OrchestratorConfig config = parse_config("listen:\nlimits: {}\n", "cfg.yaml");
    CHECK(differences(config, default_config()) == "");
  }
  SUBCASE("an explicit zero limit is an error, not the default") {
    CHECK(error_of("limits:\n  max_connections: 0\n") ==
          "cfg.yaml:2: limits.max_connections: must be at least 1, got 0");
  }
  SUBCASE("numbers in other spellings") {
    const OrchestratorConfig config =
      parse_config("listen:\n  port: \"0x1F90\"\nshutdown_grace_ms: +0o17\n", "cfg.yaml");
    CHECK(config.listen().port() == 8080);
    CHECK(config.shutdown_grace_ms() == 15);
  }
}

TEST_CASE("unknown keys name the path and line, and suggest a near key") {
  CHECK(error_of("lsiten:\n  port: 1\n") ==
        "cfg.yaml:1: lsiten: unknown key; did you mean 'listen'?");
  CHECK(error_of("# comment\nlimits:\n  max_connections: 5\n  max_mesage_bytes: 2048\n") ==
        "cfg.yaml:4: limits.max_mesage_bytes: unknown key; did you mean 'max_message_bytes'?");
  SUBCASE("transposed letters and wrong case are near") {
    CHECK(error_of("listen:\n  prot: 1\n") ==
          "cfg.yaml:2: listen.prot: unknown key; did you mean 'port'?");
    CHECK(error_of("Log:\n  level: info\n") == "cfg.yaml:1: Log: unknown key; did you mean 'log'?");
  }
  SUBCASE("camelCase is pointed to the proto name") {
    CHECK(error_of("shutdownGraceMs: 1\n") ==
          "cfg.yaml:1: shutdownGraceMs: unknown key; did you mean 'shutdown_grace_ms'?");
  }
  SUBCASE("a key one level too high") {
    CHECK(error_of("port: 8080\n") == "cfg.yaml:1: port: unknown key; did you mean 'listen.port'?");
  }
  SUBCASE("nothing near: the known keys are listed") {
    CHECK(error_of("listen:\n  zzzzzzzz: 1\n") ==
          "cfg.yaml:2: listen.zzzzzzzz: unknown key (known keys: host, port, cert_file, key_file)");
  }
}

TEST_CASE("wrong types name the path, line, what was expected and what was found") {
  CHECK(error_of("limits:\n  max_message_bytes: abc\n") ==
        "cfg.yaml:2: limits.max_message_bytes: expected an unsigned integer, got \"abc\"");
  CHECK(error_of("listen:\n  port:\n    a: 1\n") ==
        "cfg.yaml:2: listen.port: expected an unsigned integer, got a map");
  CHECK(error_of("listen:\n  port: [1, 2]\n") ==
        "cfg.yaml:2: listen.port: expected an unsigned integer, got a sequence");
  CHECK(error_of("listen:\n  port:\n") ==
        "cfg.yaml:2: listen.port: expected an unsigned integer, got an empty value");
  CHECK(error_of("listen: 7443\n") == "cfg.yaml:1: listen: expected a map, got \"7443\"");
  CHECK(error_of("log:\n  - info\n") == "cfg.yaml:1: log: expected a map, got a sequence");
  CHECK(error_of("log:\n  level: [info]\n") ==
        "cfg.yaml:2: log.level: expected a string, got a sequence");
  CHECK(error_of("log:\n  level:\n") ==
        "cfg.yaml:2: log.level: expected a string, got an empty value (write \"\" for an empty "
        "string)");
  CHECK(error_of("worker_threads: 2.5\n") ==
        "cfg.yaml:1: worker_threads: expected an unsigned integer, got \"2.5\"");
  CHECK(error_of("- listen\n") ==
        "cfg.yaml:1: expected a map of settings at the top level, got a sequence");
  CHECK(error_of("just words\n") ==
        "cfg.yaml:1: expected a map of settings at the top level, got \"just words\"");
}

TEST_CASE("unsigned integers out of range") {
  CHECK(error_of("listen:\n  port: -1\n") ==
        "cfg.yaml:2: listen.port: expected an unsigned integer from 0 to 4294967295, got \"-1\"");
  CHECK(error_of("shutdown_grace_ms: 5000000000\n") ==
        "cfg.yaml:1: shutdown_grace_ms: expected an unsigned integer from 0 to 4294967295, got "
        "\"5000000000\"");
  CHECK(error_of("shutdown_grace_ms: 99999999999999999999999\n") ==
        "cfg.yaml:1: shutdown_grace_ms: expected an unsigned integer from 0 to 4294967295, got "
        "\"99999999999999999999999\"");
}

TEST_CASE("duplicate keys are errors") {
  CHECK(error_of("log:\n  level: info\n  format: text\n  level: debug\n") ==
        "cfg.yaml:4: log.level: duplicate key (first set on line 2)");
  CHECK(error_of("worker_threads: 2\nlog: {}\nworker_threads: 2\n") ==
        "cfg.yaml:3: worker_threads: duplicate key (first set on line 1)");
}

TEST_CASE("YAML syntax errors report the line") {
  CHECK(error_of("listen:\n  port: 1\n\thost: x\n") ==
        "cfg.yaml:3: invalid YAML at column 1: illegal tab when looking for indentation");
  const std::string unclosed = error_of("log:\n  level: info\nlimits: [1, 2\n");
  CHECK(contains(unclosed, "cfg.yaml:"));
  CHECK(contains(unclosed, "invalid YAML"));
  CHECK(error_of("a: 1\n b: 2\n") == "cfg.yaml:2: invalid YAML at column 3: illegal map value");
  CHECK(error_of("log: {}\n---\nlog: {}\n") ==
        "cfg.yaml:3: the file holds more than one YAML document (\"---\"); only one is allowed");
}

TEST_CASE("a ',' outside [...] and {...} is an error, not a hang") {
  // yaml-cpp 0.7's LoadAll never returned on these (fuzz/regressions/config_yaml/), and its
  // Load took them for an empty file.
  CHECK(error_of(",") == "cfg.yaml:1: invalid YAML at column 1: unexpected \",\"");
  CHECK(error_of("  ,x") == "cfg.yaml:1: invalid YAML at column 3: unexpected \",\"");
  CHECK(error_of("[log]\n,\n") == "cfg.yaml:2: invalid YAML at column 1: unexpected \",\"");
  CHECK(error_of("log: {}\n---\n,\n") ==
        "cfg.yaml:3: the file holds more than one YAML document (\"---\"); only one is allowed");
}

TEST_CASE("nothing but config_error escapes, whatever the input") {
  const std::string deep(20000, '[');
  for (const std::string& text :
       {std::string("{"), std::string("a: *nowhere\n"), std::string("\"unterminated\n"),
        std::string("? [1, 2]\n: 3\n"), std::string("\x01\x02\xff\xfe", 4), deep,
        std::string("listen: &a\n  port: 1\nlog: *a\n")}) {
    CAPTURE(text.substr(0, 20));
    CHECK_THROWS_AS(parse_config(text, "cfg.yaml"), config_error);
  }
  // The depth limit is yaml-cpp's (a build-time constant), so only the wording is checked.
  CHECK(contains(error_of(deep), "cfg.yaml:1: invalid YAML: nested more than "));
}

TEST_CASE("validation after defaults") {
  SUBCASE("cert without key, key without cert") {
    CHECK(error_of("listen:\n  cert_file: /etc/ssl/cert.pem\n") ==
          "cfg.yaml:2: listen.cert_file: is set but listen.key_file is not; set both to serve "
          "TLS, or neither to serve h2c");
    CHECK(error_of("listen:\n  host: 0.0.0.0\n  key_file: k.pem\n") ==
          "cfg.yaml:3: listen.key_file: is set but listen.cert_file is not; set both to serve "
          "TLS, or neither to serve h2c");
  }
  SUBCASE("cert and key must be readable, non-empty files") {
    const temp_file key("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    const temp_file empty("empty.pem", "");
    CHECK(error_of("listen:\n  cert_file: /nonexistent/cert.pem\n  key_file: " + key.path() +
                   "\n") == "cfg.yaml:2: listen.cert_file: cannot read \"/nonexistent/cert.pem\": "
                            "No such file or directory");
    CHECK(error_of("listen:\n  cert_file: " + key.path() + "\n  key_file: /tmp\n") ==
          "cfg.yaml:3: listen.key_file: cannot read \"/tmp\": Is a directory");
    CHECK(error_of("listen:\n  cert_file: " + empty.path() + "\n  key_file: " + key.path() +
                   "\n") == "cfg.yaml:2: listen.cert_file: \"" + empty.path() + "\" is empty");
  }
  SUBCASE("listen") {
    CHECK(error_of("listen:\n  port: 70000\n") ==
          "cfg.yaml:2: listen.port: must be at most 65535, got 70000");
    CHECK(
      contains(error_of("listen:\n  host: \"\"\n"), "cfg.yaml:2: listen.host: must not be empty"));
  }
  SUBCASE("log") {
    CHECK(error_of("log:\n  level: verbose\n") ==
          "cfg.yaml:2: log.level: must be one of trace, debug, info, warn, error, critical, off, "
          "got \"verbose\"");
    CHECK(error_of("log:\n  format: xml\n") ==
          "cfg.yaml:2: log.format: must be one of text, json, got \"xml\"");
    CHECK(error_of("log:\n  level: INFO\n") ==
          "cfg.yaml:2: log.level: must be one of trace, debug, info, warn, error, critical, off, "
          "got \"INFO\"; did you mean 'info'?");
    // "off" is a YAML 1.1 boolean; here it must stay the log level "off".
    CHECK(parse_config("log:\n  level: off\n", "cfg.yaml").log().level() == "off");
  }
  SUBCASE("limits out of range") {
    CHECK(error_of("limits:\n  max_message_bytes: 1023\n") ==
          "cfg.yaml:2: limits.max_message_bytes: must be between 1024 and 67108864, got 1023");
    CHECK(error_of("limits:\n  max_message_bytes: 67108865\n") ==
          "cfg.yaml:2: limits.max_message_bytes: must be between 1024 and 67108864, got 67108865");
    CHECK(error_of("limits:\n  max_concurrent_streams: 0\n") ==
          "cfg.yaml:2: limits.max_concurrent_streams: must be between 1 and 100000, got 0");
    CHECK(error_of("limits:\n  max_concurrent_streams: 100001\n") ==
          "cfg.yaml:2: limits.max_concurrent_streams: must be between 1 and 100000, got 100001");
    CHECK(error_of("limits:\n  max_header_list_bytes: 512\n") ==
          "cfg.yaml:2: limits.max_header_list_bytes: must be between 1024 and 1048576, got 512");
    CHECK(error_of("limits:\n  keepalive_interval_ms: 99\n") ==
          "cfg.yaml:2: limits.keepalive_interval_ms: must be at least 100, got 99");
    CHECK(error_of("limits:\n  keepalive_timeout_ms: 0\n") ==
          "cfg.yaml:2: limits.keepalive_timeout_ms: must be at least 100, got 0");
    CHECK(error_of("limits:\n  idle_timeout_ms: 10\n") ==
          "cfg.yaml:2: limits.idle_timeout_ms: must be at least 100, got 10");
    CHECK(error_of("limits:\n  max_pending_output_bytes: 65535\n") ==
          "cfg.yaml:2: limits.max_pending_output_bytes: must be at least 65536, got 65535");
    CHECK(error_of("limits:\n  max_connection_memory_bytes: 8388607\n") ==
          "cfg.yaml:2: limits.max_connection_memory_bytes: must be at least 8388608, got "
          "8388607");
    CHECK(error_of("limits:\n  max_message_bytes: 1024\n  max_connection_memory_bytes: "
                   "2048\n  max_gateway_memory_bytes: 2047\n") ==
          "cfg.yaml:4: limits.max_gateway_memory_bytes: must be at least 2048, got 2047");
  }
  SUBCASE("top-level values") {
    CHECK(error_of("worker_threads: 0\n") ==
          "cfg.yaml:1: worker_threads: must be between 1 and 256, got 0");
    CHECK(error_of("worker_threads: 257\n") ==
          "cfg.yaml:1: worker_threads: must be between 1 and 256, got 257");
    CHECK(error_of("shutdown_grace_ms: 600001\n") ==
          "cfg.yaml:1: shutdown_grace_ms: must be at most 600000, got 600001");
    CHECK(parse_config("shutdown_grace_ms: 0\n", "cfg.yaml").shutdown_grace_ms() == 0);
  }
}

TEST_CASE("media_nodes validation") {
  SUBCASE("neither credentials nor secret_key is valid: no node can register") {
    const OrchestratorConfig config = parse_config("media_nodes:\n  max_nodes: 5\n", "cfg.yaml");
    CHECK(config.media_nodes().credentials().empty());
    CHECK(config.media_nodes().secret_key().empty());
    CHECK(parse_config("media_nodes:\n  credentials: []\n  secret_key: \"\"\n", "cfg.yaml")
            .media_nodes()
            .max_nodes() == 20000);
  }
  SUBCASE("stats_interval_ms is 100..60000") {
    CHECK(error_of("media_nodes:\n  stats_interval_ms: 99\n") ==
          "cfg.yaml:2: media_nodes.stats_interval_ms: must be between 100 and 60000, got 99");
    CHECK(error_of("media_nodes:\n  stats_interval_ms: 60001\n  suspect_after_ms: 70000\n  "
                   "dead_after_ms: 80000\n  forget_after_ms: 80000\n") ==
          "cfg.yaml:2: media_nodes.stats_interval_ms: must be between 100 and 60000, got 60001");
    CHECK(parse_config("media_nodes:\n  stats_interval_ms: 100\n", "cfg.yaml")
            .media_nodes()
            .stats_interval_ms() == 100);
    CHECK(parse_config("media_nodes:\n  stats_interval_ms: 60000\n  suspect_after_ms: 60001\n  "
                       "dead_after_ms: 60002\n  forget_after_ms: 60002\n",
                       "cfg.yaml")
            .media_nodes()
            .forget_after_ms() == 60002);
  }
  SUBCASE("suspect_after_ms > stats_interval_ms, the key the file set is blamed") {
    CHECK(error_of("media_nodes:\n  stats_interval_ms: 1000\n  suspect_after_ms: 1000\n") ==
          "cfg.yaml:3: media_nodes.suspect_after_ms: must be greater than "
          "media_nodes.stats_interval_ms (1000), got 1000");
    CHECK(error_of("media_nodes:\n  suspect_after_ms: 900\n") ==
          "cfg.yaml:2: media_nodes.suspect_after_ms: must be greater than "
          "media_nodes.stats_interval_ms (1000, the default), got 900");
    CHECK(error_of("media_nodes:\n  stats_interval_ms: 2000\n") ==
          "cfg.yaml:2: media_nodes.stats_interval_ms: must be less than "
          "media_nodes.suspect_after_ms (1500, the default), got 2000");
  }
  SUBCASE("dead_after_ms > suspect_after_ms") {
    CHECK(error_of("media_nodes:\n  dead_after_ms: 1500\n") ==
          "cfg.yaml:2: media_nodes.dead_after_ms: must be greater than "
          "media_nodes.suspect_after_ms (1500, the default), got 1500");
    CHECK(error_of("media_nodes:\n  suspect_after_ms: 4000\n") ==
          "cfg.yaml:2: media_nodes.suspect_after_ms: must be less than "
          "media_nodes.dead_after_ms (3000, the default), got 4000");
  }
  SUBCASE("forget_after_ms >= dead_after_ms") {
    CHECK(error_of("media_nodes:\n  dead_after_ms: 5000\n  forget_after_ms: 4999\n") ==
          "cfg.yaml:3: media_nodes.forget_after_ms: must be at least media_nodes.dead_after_ms "
          "(5000), got 4999");
    CHECK(error_of("media_nodes:\n  dead_after_ms: 700000\n") ==
          "cfg.yaml:2: media_nodes.dead_after_ms: must be at most media_nodes.forget_after_ms "
          "(600000, the default), got 700000");
    CHECK(parse_config("media_nodes:\n  forget_after_ms: 3000\n", "cfg.yaml")
            .media_nodes()
            .forget_after_ms() == 3000);
  }
  SUBCASE("command_timeout_ms is 10..600000") {
    CHECK(error_of("media_nodes:\n  command_timeout_ms: 9\n") ==
          "cfg.yaml:2: media_nodes.command_timeout_ms: must be between 10 and 600000, got 9");
    CHECK(error_of("media_nodes:\n  command_timeout_ms: 600001\n") ==
          "cfg.yaml:2: media_nodes.command_timeout_ms: must be between 10 and 600000, got 600001");
    CHECK(parse_config("media_nodes:\n  command_timeout_ms: 10\n", "cfg.yaml")
            .media_nodes()
            .command_timeout_ms() == 10);
  }
  SUBCASE("drain_deadline_ms is at most one day") {
    CHECK(error_of("media_nodes:\n  drain_deadline_ms: 86400001\n") ==
          "cfg.yaml:2: media_nodes.drain_deadline_ms: must be at most 86400000, got 86400001");
    CHECK(parse_config("media_nodes:\n  drain_deadline_ms: 86400000\n", "cfg.yaml")
            .media_nodes()
            .drain_deadline_ms() == 86400000);
    CHECK(parse_config("media_nodes:\n  drain_deadline_ms: 0\n", "cfg.yaml")
            .media_nodes()
            .drain_deadline_ms() == 0);
  }
  SUBCASE("max_nodes is 1..1000000") {
    CHECK(error_of("media_nodes:\n  max_nodes: 0\n") ==
          "cfg.yaml:2: media_nodes.max_nodes: must be between 1 and 1000000, got 0");
    CHECK(error_of("media_nodes:\n  max_nodes: 1000001\n") ==
          "cfg.yaml:2: media_nodes.max_nodes: must be between 1 and 1000000, got 1000001");
    CHECK(
      parse_config("media_nodes:\n  max_nodes: 1000000\n", "cfg.yaml").media_nodes().max_nodes() ==
      1000000);
  }
  SUBCASE("credential node ids are [a-z0-9._-], 1 to 128 characters") {
    const std::string head = "media_nodes:\n  credentials:\n";
    const std::string secret = "      secret: 0123456789abcdef\n";
    CHECK(error_of(head + "    - node_id: Media-1\n" + secret) ==
          "cfg.yaml:3: media_nodes.credentials[0].node_id: must be 1 to 128 characters of a-z, "
          "0-9, '.', '_', '-', got \"Media-1\" (\"M\" is not allowed)");
    CHECK(error_of(head + "    - node_id: \"media 1\"\n" + secret) ==
          "cfg.yaml:3: media_nodes.credentials[0].node_id: must be 1 to 128 characters of a-z, "
          "0-9, '.', '_', '-', got \"media 1\" (\" \" is not allowed)");
    CHECK(error_of(head + "    - node_id: " + std::string(129, 'a') + "\n" + secret) ==
          "cfg.yaml:3: media_nodes.credentials[0].node_id: must be at most 128 characters long, "
          "got 129");
    CHECK(error_of(head + "    - node_id: \"\"\n" + secret) ==
          "cfg.yaml:3: media_nodes.credentials[0].node_id: must not be empty (1 to 128 "
          "characters of a-z, 0-9, '.', '_', '-')");
    // A credential without node_id: reported on the element's line.
    CHECK(error_of(head + "    - node_id: a\n" + secret + "    - secret: 0123456789abcdef\n") ==
          "cfg.yaml:5: media_nodes.credentials[1].node_id: must not be empty (1 to 128 "
          "characters of a-z, 0-9, '.', '_', '-')");
    CHECK(parse_config(head + "    - node_id: " + std::string(128, 'a') + "\n" + secret +
                         "    - node_id: 0.a_b-c\n" + secret,
                       "cfg.yaml")
            .media_nodes()
            .credentials_size() == 2);
  }
  SUBCASE("a node_id listed twice names both lines") {
    CHECK(error_of("media_nodes:\n"
                   "  credentials:\n"
                   "    - node_id: media-1\n"
                   "      secret: 0123456789abcdef\n"
                   "    - node_id: media-2\n"
                   "      secret: 0123456789abcdef\n"
                   "    - secret: 0123456789abcdef\n"
                   "      node_id: media-1\n") ==
          "cfg.yaml:8: media_nodes.credentials[2].node_id: duplicate node_id \"media-1\" (first "
          "listed on line 3)");
  }
  SUBCASE("credential secrets are at least 16 characters, and never shown") {
    const std::string head = "media_nodes:\n  credentials:\n    - node_id: media-1\n";
    const std::string short_secret = error_of(head + "      secret: fifteen-chars-x\n");
    CHECK(short_secret == "cfg.yaml:4: media_nodes.credentials[0].secret: must be at least 16 "
                          "characters long, got 15 characters");
    CHECK(!contains(short_secret, "fifteen"));
    CHECK(error_of(head + "      secret: \"\"\n") ==
          "cfg.yaml:4: media_nodes.credentials[0].secret: must not be empty (at least 16 "
          "characters)");
    // No secret key at all: the element's line.
    CHECK(error_of(head) == "cfg.yaml:3: media_nodes.credentials[0].secret: must not be empty "
                            "(at least 16 characters)");
    CHECK(error_of("media_nodes:\n  credentials: [{node_id: a, secret: x}]\n") ==
          "cfg.yaml:2: media_nodes.credentials[0].secret: must be at least 16 characters long, "
          "got 1 character");
  }
  SUBCASE("secret_key, when set, is at least 16 characters, and never shown") {
    const std::string error = error_of("media_nodes:\n  secret_key: short-key\n");
    CHECK(error == "cfg.yaml:2: media_nodes.secret_key: must be empty or at least 16 characters "
                   "long, got 9 characters");
    CHECK(!contains(error, "short-key"));
    CHECK(parse_config("media_nodes:\n  secret_key: 0123456789abcdef\n", "cfg.yaml")
            .media_nodes()
            .secret_key() == "0123456789abcdef");
  }
}

TEST_CASE("peer_id is [A-Za-z0-9._-], 1 to 64 characters") {
  CHECK(error_of("peer_id: \"\"\n") ==
        "cfg.yaml:1: peer_id: must not be empty (1 to 64 characters of A-Z, a-z, 0-9, '.', '_', "
        "'-')");
  CHECK(error_of("log: {}\npeer_id: peer/1\n") ==
        "cfg.yaml:2: peer_id: must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', got "
        "\"peer/1\" (\"/\" is not allowed)");
  CHECK(error_of("peer_id: " + std::string(65, 'p') + "\n") ==
        "cfg.yaml:1: peer_id: must be at most 64 characters long, got 65");
  CHECK(parse_config("peer_id: " + std::string(64, 'P') + "\n", "cfg.yaml").peer_id() ==
        std::string(64, 'P'));
  CHECK(parse_config("peer_id: eu-1.Orchestrator_2\n", "cfg.yaml").peer_id() ==
        "eu-1.Orchestrator_2");
  // Left out: the default, valid on any host.
  CHECK(parse_config("log: {}\n", "cfg.yaml").peer_id() == expected_default_peer_id());
}

TEST_CASE("allocation validation") {
  SUBCASE("keys left out keep their defaults") {
    const OrchestratorConfig config = parse_config("allocation:\n  alternates: 5\n", "cfg.yaml");
    CHECK(config.allocation().alternates() == 5);
    CHECK(config.allocation().lease_ttl_ms() == 30000);
    CHECK(config.allocation().high_water() == 0.85);
    CHECK(config.allocation().geoip_database() == "/usr/share/GeoIP/GeoIP.dat");
  }
  SUBCASE("an explicit zero is kept where it means something") {
    const OrchestratorConfig config =
      parse_config("allocation:\n  alternates: 0\n  affinity_slack_ms: 0\n", "cfg.yaml");
    CHECK(config.allocation().alternates() == 0);
    CHECK(config.allocation().affinity_slack_ms() == 0);
    CHECK(config.allocation().candidate_pool() == 16);
  }
  SUBCASE("lease_ttl_ms is 1000..3600000") {
    CHECK(error_of("allocation:\n  lease_ttl_ms: 999\n") ==
          "cfg.yaml:2: allocation.lease_ttl_ms: must be between 1000 and 3600000, got 999");
    CHECK(error_of("allocation:\n  lease_ttl_ms: 3600001\n") ==
          "cfg.yaml:2: allocation.lease_ttl_ms: must be between 1000 and 3600000, got 3600001");
    CHECK(error_of("allocation:\n  lease_ttl_ms: 0\n") ==
          "cfg.yaml:2: allocation.lease_ttl_ms: must be between 1000 and 3600000, got 0");
    CHECK(
      parse_config("allocation:\n  lease_ttl_ms: 1000\n", "cfg.yaml").allocation().lease_ttl_ms() ==
      1000);
  }
  SUBCASE("join_token_ttl_ms is 1000..86400000") {
    CHECK(error_of("allocation:\n  join_token_ttl_ms: 999\n") ==
          "cfg.yaml:2: allocation.join_token_ttl_ms: must be between 1000 and 86400000, got 999");
    CHECK(error_of("allocation:\n  join_token_ttl_ms: 86400001\n") ==
          "cfg.yaml:2: allocation.join_token_ttl_ms: must be between 1000 and 86400000, got "
          "86400001");
    CHECK(parse_config("allocation:\n  join_token_ttl_ms: 86400000\n", "cfg.yaml")
            .allocation()
            .join_token_ttl_ms() == 86400000);
  }
  SUBCASE("reservation_ttl_ms is 100..600000") {
    CHECK(error_of("allocation:\n  reservation_ttl_ms: 99\n") ==
          "cfg.yaml:2: allocation.reservation_ttl_ms: must be between 100 and 600000, got 99");
    CHECK(error_of("allocation:\n  reservation_ttl_ms: 600001\n") ==
          "cfg.yaml:2: allocation.reservation_ttl_ms: must be between 100 and 600000, got 600001");
    CHECK(parse_config("allocation:\n  reservation_ttl_ms: 100\n", "cfg.yaml")
            .allocation()
            .reservation_ttl_ms() == 100);
  }
  SUBCASE("high_water is in (0, 1]") {
    const std::string rule = "cfg.yaml:2: allocation.high_water: must be greater than 0 and at "
                             "most 1 (a fraction of capacity), got ";
    CHECK(error_of("allocation:\n  high_water: 0\n") == rule + "0");
    CHECK(error_of("allocation:\n  high_water: -0.5\n") == rule + "-0.5");
    CHECK(error_of("allocation:\n  high_water: 1.01\n") == rule + "1.01");
    CHECK(error_of("allocation:\n  high_water: 85\n") == rule + "85");
    CHECK(error_of("allocation:\n  high_water: .nan\n") == rule + "nan");
    CHECK(error_of("allocation:\n  high_water: .inf\n") == rule + "inf");
    CHECK(parse_config("allocation:\n  high_water: 1\n", "cfg.yaml").allocation().high_water() ==
          1.0);
    CHECK(parse_config("allocation:\n  high_water: 0.01\n", "cfg.yaml").allocation().high_water() ==
          0.01);
  }
  SUBCASE("the RTT settings are at most 10000") {
    CHECK(error_of("allocation:\n  affinity_slack_ms: 10001\n") ==
          "cfg.yaml:2: allocation.affinity_slack_ms: must be at most 10000, got 10001");
    CHECK(error_of("allocation:\n  max_affinity_rtt_ms: 0\n") ==
          "cfg.yaml:2: allocation.max_affinity_rtt_ms: must be between 1 and 10000, got 0");
    CHECK(error_of("allocation:\n  max_affinity_rtt_ms: 10001\n") ==
          "cfg.yaml:2: allocation.max_affinity_rtt_ms: must be between 1 and 10000, got 10001");
    CHECK(parse_config("allocation:\n  affinity_slack_ms: 10000\n  max_affinity_rtt_ms: 10000\n",
                       "cfg.yaml")
            .allocation()
            .max_affinity_rtt_ms() == 10000);
  }
  SUBCASE("candidate_pool is 1..1000, alternates 0..16") {
    CHECK(error_of("allocation:\n  candidate_pool: 0\n") ==
          "cfg.yaml:2: allocation.candidate_pool: must be between 1 and 1000, got 0");
    CHECK(error_of("allocation:\n  candidate_pool: 1001\n") ==
          "cfg.yaml:2: allocation.candidate_pool: must be between 1 and 1000, got 1001");
    CHECK(error_of("allocation:\n  alternates: 17\n") ==
          "cfg.yaml:2: allocation.alternates: must be at most 16, got 17");
    CHECK(parse_config("allocation:\n  candidate_pool: 1\n  alternates: 16\n", "cfg.yaml")
            .allocation()
            .alternates() == 16);
  }
  SUBCASE("fallback_region is at most 256 characters") {
    CHECK(error_of("allocation:\n  fallback_region: " + std::string(257, 'r') + "\n") ==
          "cfg.yaml:2: allocation.fallback_region: must be at most 256 characters long (as node "
          "regions are), got 257");
    CHECK(parse_config("allocation:\n  fallback_region: us-east\n", "cfg.yaml")
            .allocation()
            .fallback_region() == "us-east");
  }
  SUBCASE("geoip_database: none, the default path (never checked: it may be missing), or a "
          "readable file") {
    CHECK(parse_config("allocation:\n  geoip_database: none\n", "cfg.yaml")
            .allocation()
            .geoip_database() == "none");
    CHECK(parse_config("allocation:\n  geoip_database: /usr/share/GeoIP/GeoIP.dat\n", "cfg.yaml")
            .allocation()
            .geoip_database() == "/usr/share/GeoIP/GeoIP.dat");
    CHECK(error_of("allocation:\n  geoip_database: /nonexistent/GeoIP.dat\n") ==
          "cfg.yaml:2: allocation.geoip_database: cannot read \"/nonexistent/GeoIP.dat\": No "
          "such file or directory");
    CHECK(error_of("allocation:\n  geoip_database: /tmp\n") ==
          "cfg.yaml:2: allocation.geoip_database: cannot read \"/tmp\": Is a directory");
    CHECK(error_of("allocation:\n  geoip_database: \"\"\n") ==
          "cfg.yaml:2: allocation.geoip_database: must not be empty: a GeoIP country database "
          "file, or \"none\" to locate no client by IP");
    const temp_file empty("empty.dat", "");
    CHECK(error_of("allocation:\n  geoip_database: " + empty.path() + "\n") ==
          "cfg.yaml:2: allocation.geoip_database: \"" + empty.path() + "\" is empty");
  }
}

TEST_CASE("cluster validation") {
  SUBCASE("defaults: alone, ready to be told otherwise") {
    const auto cluster = default_config().cluster();
    CHECK(cluster.listen_host() == "127.0.0.1");
    CHECK(cluster.listen_port() == 0);
    CHECK(cluster.advertise_host().empty());
    CHECK(cluster.seeds().empty());
    CHECK(cluster.heartbeat_interval_ms() == 250);
    CHECK(cluster.failure_timeout_ms() == 1500);
    CHECK(cluster.replication_factor() == 2);
    CHECK(cluster.node_update_interval_ms() == 250);
  }
  SUBCASE("seeds are host:port") {
    CHECK(error_of("cluster:\n  listen_port: 7100\n  seeds: [\"a:1\", \"nope\"]\n") ==
          "cfg.yaml:3: cluster.seeds[1]: 'nope' is not host:port: no port");
    CHECK(error_of("cluster:\n  listen_port: 7100\n  seeds: [\"::1:7000\"]\n") ==
          "cfg.yaml:3: cluster.seeds[0]: '::1:7000' is not host:port: an IPv6 address needs "
          "brackets, [::1]:7000");
  }
  SUBCASE("seeds need a port of our own") {
    CHECK(error_of("cluster:\n  seeds: [\"a:1\"]\n") ==
          "cfg.yaml:2: cluster.seeds: need cluster.listen_port: a peer joins a cluster on its "
          "port");
  }
  SUBCASE("a wildcard listen address needs an advertised one") {
    CHECK(error_of("cluster:\n  listen_host: 0.0.0.0\n  listen_port: 7100\n") ==
          "cfg.yaml:2: cluster.listen_host: is a wildcard address (0.0.0.0): set "
          "cluster.advertise_host, the address other peers reach this one at");
    CHECK(parse_config("cluster:\n  listen_host: 0.0.0.0\n  listen_port: 7100\n  advertise_host: "
                       "10.1.2.3\n",
                       "cfg.yaml")
            .cluster()
            .advertise_host() == "10.1.2.3");
  }
  SUBCASE("failure_timeout_ms is above heartbeat_interval_ms") {
    CHECK(error_of("cluster:\n  failure_timeout_ms: 200\n  heartbeat_interval_ms: 200\n")
            .find("cluster.failure_timeout_ms") != std::string::npos);
  }
  SUBCASE("TLS files go together") {
    CHECK(error_of("cluster:\n  cert_file: /etc/hostname\n") ==
          "cfg.yaml:2: cluster.cert_file: is set but cluster.key_file is not; TLS between peers "
          "needs cluster.cert_file, cluster.key_file and cluster.ca_file, or none of them");
    CHECK(error_of("cluster:\n  cert_file: /nope.pem\n  key_file: /nope.key\n  ca_file: "
                   "/nope-ca.pem\n")
            .find("cluster.cert_file") != std::string::npos);
  }
  SUBCASE("replication_factor is 1..7") {
    CHECK(error_of("cluster:\n  replication_factor: 0\n") ==
          "cfg.yaml:2: cluster.replication_factor: must be between 1 and 7, got 0");
    CHECK(error_of("cluster:\n  replication_factor: 8\n") ==
          "cfg.yaml:2: cluster.replication_factor: must be between 1 and 7, got 8");
  }
}

TEST_CASE("apps") {
  SUBCASE("a file that lists apps replaces the default app") {
    const OrchestratorConfig config =
      parse_config("apps:\n  - app_id: gaming\n    strategy: latency\n"
                   "    allow_unauthenticated: true\n",
                   "cfg.yaml");
    REQUIRE(config.apps_size() == 1);
    CHECK(config.apps(0).app_id() == "gaming");
    CHECK(config.apps(0).strategy() == "latency");
  }
  SUBCASE("a file without apps keeps the default, also when it sets other keys") {
    const OrchestratorConfig config =
      parse_config("allocation:\n  alternates: 1\nlog: {}\n", "cfg.yaml");
    REQUIRE(config.apps_size() == 1);
    CHECK(config.apps(0).app_id() == "default");
  }
  SUBCASE("a strategy left out or empty is balanced") {
    const OrchestratorConfig config =
      parse_config("apps:\n  - {app_id: a, allow_unauthenticated: true}\n"
                   "  - {app_id: b, strategy: \"\", allow_unauthenticated: true}\n",
                   "cfg.yaml");
    REQUIRE(config.apps_size() == 2);
    CHECK(config.apps(0).strategy() == "balanced");
    CHECK(config.apps(1).strategy() == "balanced");
  }
  SUBCASE("an empty list is an error") {
    const std::string error = "cfg.yaml:1: apps: must list at least one app; leave the key out "
                              "for the default app (\"default\", balanced, no credentials)";
    CHECK(error_of("apps: []\n") == error);
    CHECK(error_of("apps:\n") == error);
  }
  SUBCASE("app ids are [A-Za-z0-9._-], 1 to 64 characters") {
    CHECK(error_of("apps:\n  - app_id: \"tele medicine\"\n") ==
          "cfg.yaml:2: apps[0].app_id: must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', "
          "'-', got \"tele medicine\" (\" \" is not allowed)");
    CHECK(error_of("apps:\n  - app_id: " + std::string(65, 'a') + "\n") ==
          "cfg.yaml:2: apps[0].app_id: must be at most 64 characters long, got 65");
    // An app without app_id: reported on the element's line.
    CHECK(error_of("apps:\n  - app_id: a\n  - strategy: pack\n") ==
          "cfg.yaml:3: apps[1].app_id: must not be empty (1 to 64 characters of A-Z, a-z, 0-9, "
          "'.', '_', '-')");
    CHECK(parse_config("apps:\n  - {allow_unauthenticated: true, app_id: " + std::string(64, 'A') +
                         "}\n  - {allow_unauthenticated: true, app_id: Tele.Med_1-x}\n",
                       "cfg.yaml")
            .apps_size() == 2);
  }
  SUBCASE("an app_id listed twice names both lines") {
    CHECK(error_of("apps:\n"
                   "  - app_id: events\n"
                   "  - app_id: gaming\n"
                   "  - strategy: pack\n"
                   "    app_id: events\n") ==
          "cfg.yaml:5: apps[2].app_id: duplicate app_id \"events\" (first listed on line 2)");
  }
  SUBCASE("strategy is latency, balanced or pack") {
    CHECK(error_of("apps:\n  - app_id: a\n    strategy: fastest\n") ==
          "cfg.yaml:3: apps[0].strategy: must be one of latency, balanced, pack, got \"fastest\"");
    CHECK(error_of("apps:\n  - app_id: a\n    strategy: Balanced\n") ==
          "cfg.yaml:3: apps[0].strategy: must be one of latency, balanced, pack, got "
          "\"Balanced\"; did you mean 'balanced'?");
    CHECK(error_of("apps:\n  - app_id: a\n    strategy: packed\n") ==
          "cfg.yaml:3: apps[0].strategy: must be one of latency, balanced, pack, got "
          "\"packed\"; did you mean 'pack'?");
  }
  SUBCASE("allowed_regions are non-empty") {
    CHECK(error_of("apps:\n  - app_id: a\n    allowed_regions:\n      - eu-west\n      - \"\"\n") ==
          "cfg.yaml:5: apps[0].allowed_regions[1]: must not be empty (a node region, e.g. "
          "eu-west)");
    CHECK(error_of("apps:\n  - app_id: a\n    allowed_regions: [\"" + std::string(257, 'r') +
                   "\"]\n") ==
          "cfg.yaml:3: apps[0].allowed_regions[0]: must be at most 256 characters long (as node "
          "regions are), got 257");
  }
  SUBCASE("allowed_countries are two upper-case letters") {
    CHECK(error_of("apps:\n  - app_id: a\n    allowed_countries: [DE, fr]\n") ==
          "cfg.yaml:3: apps[0].allowed_countries[1]: must be an ISO 3166-1 alpha-2 country code "
          "in upper case (e.g. DE), got \"fr\"; did you mean 'FR'?");
    CHECK(error_of("apps:\n  - app_id: a\n  - app_id: b\n    allowed_countries:\n      - DEU\n") ==
          "cfg.yaml:5: apps[1].allowed_countries[0]: must be an ISO 3166-1 alpha-2 country code "
          "in upper case (e.g. DE), got \"DEU\"");
    CHECK(error_of("apps:\n  - app_id: a\n    allowed_countries: [\"\"]\n") ==
          "cfg.yaml:3: apps[0].allowed_countries[0]: must be an ISO 3166-1 alpha-2 country code "
          "in upper case (e.g. DE), got \"\"");
    CHECK(error_of("apps:\n  - app_id: a\n    allowed_countries: [\"D1\"]\n") ==
          "cfg.yaml:3: apps[0].allowed_countries[0]: must be an ISO 3166-1 alpha-2 country code "
          "in upper case (e.g. DE), got \"D1\"");
  }
}

TEST_CASE("the local demo file loads, with one app per strategy") {
  const OrchestratorConfig config =
    load_config_file((source_root() / "deploy" / "config" / "local-demo.yaml").string());
  REQUIRE(config.apps_size() == 3);
  CHECK(config.apps(0).app_id() == "default");
  CHECK(config.apps(0).strategy() == "balanced");
  CHECK(config.apps(1).app_id() == "telemedicine");
  CHECK(config.apps(1).strategy() == "latency");
  CHECK(!config.apps(1).allowed_countries().empty());
  CHECK(config.apps(2).app_id() == "events");
  CHECK(config.apps(2).strategy() == "pack");
}

TEST_CASE("load_config_file") {
  SUBCASE("a missing file names the path and the reason") {
    CHECK_THROWS_WITH_AS(load_config_file("/nonexistent/chroom/orchestrator.yaml"),
                         "/nonexistent/chroom/orchestrator.yaml: cannot read the config file: No "
                         "such file or directory",
                         config_error);
  }
  SUBCASE("a directory is not a config file") {
    CHECK_THROWS_WITH_AS(load_config_file("/tmp"),
                         "/tmp: cannot read the config file: Is a directory", config_error);
  }
  SUBCASE("errors in the file are prefixed with its path") {
    const temp_file file("bad.yaml", "log:\n  level: loud\n");
    CHECK_THROWS_WITH_AS(load_config_file(file.path()),
                         (file.path() + ":2: log.level: must be one of trace, debug, info, warn, "
                                        "error, critical, off, got \"loud\"")
                           .c_str(),
                         config_error);
  }
  SUBCASE("a good file loads") {
    const temp_file file("good.yaml", "listen:\n  port: 8443\n");
    CHECK(load_config_file(file.path()).listen().port() == 8443);
  }
}

TEST_CASE("admin.reflection: auto, on or off; auto serves it on loopback only") {
  using chroom::daemon::reflection_enabled;
  CHECK(default_config().admin().reflection() == "auto");
  CHECK(reflection_enabled(default_config()));
  CHECK(reflection_enabled(parse_config("listen: {host: \"::1\"}", "cfg.yaml")));
  CHECK(reflection_enabled(parse_config("listen: {host: 127.0.0.2}", "cfg.yaml")));
  CHECK(reflection_enabled(parse_config("listen: {host: localhost}", "cfg.yaml")));
  CHECK_FALSE(reflection_enabled(parse_config("listen: {host: 0.0.0.0}", "cfg.yaml")));
  CHECK_FALSE(reflection_enabled(parse_config("listen: {host: 10.1.2.3}", "cfg.yaml")));
  // YAML 1.1 readers take bare on/off for booleans; the loader keeps a string's text.
  CHECK(reflection_enabled(
    parse_config("listen: {host: 0.0.0.0}\nadmin: {reflection: on}", "cfg.yaml")));
  CHECK_FALSE(reflection_enabled(parse_config("admin: {reflection: off}", "cfg.yaml")));
  const auto error = error_of("admin:\n  reflection: yes\n");
  CHECK(contains(error, "cfg.yaml:2: admin.reflection: must be one of auto, on, off"));
}

TEST_CASE("the shipped example file loads, holds the defaults and mentions every key") {
  const std::filesystem::path example =
    source_root() / "deploy" / "config" / "orchestrator.example.yaml";
  // peer_id is commented out in the example (its default is the host name), so the two
  // compare equal on any host.
  const OrchestratorConfig config = load_config_file(example.string());
  CHECK(differences(config, default_config()) == "");

  const std::string text = read_text(example);
  const std::string docs = read_text(source_root() / "docs" / "configuration.md");
  REQUIRE(!docs.empty());
  for (const std::string& path : config_documented_paths()) {
    CAPTURE(path);
    CHECK(contains(text, path.substr(path.rfind('.') + 1) + ":"));
    CHECK(contains(docs, "`" + path + "`"));
  }
}

// The walker is generic: a schema with every kind of field, built at run time, decodes with
// no change to the loader.
TEST_CASE("decode_yaml handles every field kind by reflection") {
  constexpr const char* schema = R"pb(
  name: "chroom_config_test.proto"
  package: "chroom.test"
  syntax: "proto3"
  enum_type {
    name: "Mode"
    value { name: "MODE_UNSPECIFIED" number: 0 }
    value { name: "MODE_FAST" number: 1 }
    value { name: "MODE_SAFE" number: 2 }
  }
  message_type {
    name: "Inner"
    field { name: "label" number: 1 type: TYPE_STRING }
    field { name: "weight" number: 2 type: TYPE_UINT32 }
  }
  message_type {
    name: "All"
    field { name: "i32" number: 1 type: TYPE_INT32 }
    field { name: "i64" number: 2 type: TYPE_INT64 }
    field { name: "u64" number: 3 type: TYPE_UINT64 }
    field { name: "s32" number: 4 type: TYPE_SINT32 }
    field { name: "sf64" number: 5 type: TYPE_SFIXED64 }
    field { name: "f64" number: 6 type: TYPE_DOUBLE }
    field { name: "f32" number: 7 type: TYPE_FLOAT }
    field { name: "flag" number: 8 type: TYPE_BOOL }
    field { name: "mode" number: 9 type: TYPE_ENUM type_name: ".chroom.test.Mode" }
    field { name: "blob" number: 10 type: TYPE_BYTES }
    field { name: "tags" number: 11 type: TYPE_STRING label: LABEL_REPEATED }
    field { name: "ports" number: 12 type: TYPE_UINT32 label: LABEL_REPEATED }
    field { name: "modes" number: 13 type: TYPE_ENUM label: LABEL_REPEATED
            type_name: ".chroom.test.Mode" }
    field { name: "inners" number: 14 type: TYPE_MESSAGE label: LABEL_REPEATED
            type_name: ".chroom.test.Inner" }
    field { name: "labels" number: 15 type: TYPE_MESSAGE label: LABEL_REPEATED
            type_name: ".chroom.test.All.LabelsEntry" }
    field { name: "by_id" number: 16 type: TYPE_MESSAGE label: LABEL_REPEATED
            type_name: ".chroom.test.All.ByIdEntry" }
    field { name: "inner" number: 17 type: TYPE_MESSAGE type_name: ".chroom.test.Inner" }
    field { name: "by_name" number: 18 type: TYPE_STRING oneof_index: 0 }
    field { name: "by_number" number: 19 type: TYPE_UINT32 oneof_index: 0 }
    nested_type {
      name: "LabelsEntry"
      field { name: "key" number: 1 type: TYPE_STRING }
      field { name: "value" number: 2 type: TYPE_STRING }
      options { map_entry: true }
    }
    nested_type {
      name: "ByIdEntry"
      field { name: "key" number: 1 type: TYPE_INT32 }
      field { name: "value" number: 2 type: TYPE_MESSAGE type_name: ".chroom.test.Inner" }
      options { map_entry: true }
    }
    oneof_decl { name: "target" }
  }
)pb";
  pb::FileDescriptorProto file;
  REQUIRE(pb::TextFormat::ParseFromString(schema, &file));
  pb::DescriptorPool pool;
  const pb::FileDescriptor* built = pool.BuildFile(file);
  REQUIRE(built != nullptr);
  const pb::Descriptor* all = pool.FindMessageTypeByName("chroom.test.All");
  REQUIRE(all != nullptr);
  pb::DynamicMessageFactory factory(&pool);
  const std::unique_ptr<pb::Message> message(factory.GetPrototype(all)->New());
  const auto decode_error = [&](std::string_view yaml) -> std::string {
    try {
      decode_yaml(yaml, "t.yaml", *message);
    } catch (const config_error& error) {
      return error.what();
    }
    return "<no error>";
  };

  SUBCASE("every kind decodes") {
    decode_yaml("i32: -2147483648\n"
                "i64: -9223372036854775808\n"
                "u64: 18446744073709551615\n"
                "s32: -7\n"
                "sf64: 0x7fffffffffffffff\n"
                "f64: 2.5e-3\n"
                "f32: -.inf\n"
                "flag: true\n"
                "mode: MODE_SAFE\n"
                "blob: raw bytes\n"
                "tags: [a, b]\n"
                "ports:\n  - 80\n  - 443\n"
                "modes: [MODE_FAST, MODE_SAFE]\n"
                "inners:\n  - label: x\n    weight: 1\n  - {label: y}\n"
                "labels:\n  region: eu\n  tier: gold\n"
                "by_id:\n  7: {label: seven, weight: 7}\n  -1: {}\n"
                "inner:\n  weight: 3\n"
                "by_number: 0\n",
                "t.yaml", *message);
    const std::unique_ptr<pb::Message> expected(message->New());
    REQUIRE(pb::TextFormat::ParseFromString(
      R"pb(i32: -2147483648 i64: -9223372036854775808 u64: 18446744073709551615 s32: -7
           sf64: 9223372036854775807 f64: 0.0025 f32: -inf flag: true mode: MODE_SAFE
           blob: "raw bytes" tags: ["a", "b"] ports: [80, 443] modes: [MODE_FAST, MODE_SAFE]
           inners { label: "x" weight: 1 } inners { label: "y" }
           labels { key: "region" value: "eu" } labels { key: "tier" value: "gold" }
           by_id { key: 7 value { label: "seven" weight: 7 } } by_id { key: -1 value {} }
           inner { weight: 3 } by_number: 0)pb",
      expected.get()));
    CHECK(differences(*message, *expected) == "");
    // A oneof member set to zero is still the chosen member.
    CHECK(message->GetReflection()->GetOneofFieldDescriptor(*message, all->oneof_decl(0)) ==
          all->FindFieldByName("by_number"));
  }
  SUBCASE("type errors of every kind") {
    CHECK(decode_error("flag: maybe\n") == "t.yaml:1: flag: expected true or false, got \"maybe\"");
    CHECK(decode_error("i32: 2147483648\n") ==
          "t.yaml:1: i32: expected an integer from -2147483648 to 2147483647, got \"2147483648\"");
    CHECK(decode_error("u64: -5\n") ==
          "t.yaml:1: u64: expected an unsigned integer from 0 to 18446744073709551615, got \"-5\"");
    CHECK(decode_error("f64: fast\n") == "t.yaml:1: f64: expected a number, got \"fast\"");
    CHECK(decode_error("f32: 1e39\n") ==
          "t.yaml:1: f32: expected a number within the range of a float, got \"1e39\"");
    CHECK(decode_error("mode: safe\n") ==
          "t.yaml:1: mode: expected one of MODE_UNSPECIFIED, MODE_FAST, MODE_SAFE, got \"safe\"; "
          "did you mean 'MODE_SAFE'?");
    CHECK(decode_error("tags: a\n") == "t.yaml:1: tags: expected a sequence, got \"a\"");
    CHECK(decode_error("ports:\n  - 1\n  - x\n") ==
          "t.yaml:3: ports[1]: expected an unsigned integer, got \"x\"");
    CHECK(decode_error("inners:\n  - label: a\n  - lable: b\n") ==
          "t.yaml:3: inners[1].lable: unknown key; did you mean 'label'?");
    CHECK(decode_error("inners: [1]\n") == "t.yaml:1: inners[0]: expected a map, got \"1\"");
    CHECK(decode_error("labels: [a]\n") == "t.yaml:1: labels: expected a map, got a sequence");
    CHECK(decode_error("labels:\n  a: [x]\n") ==
          "t.yaml:2: labels[\"a\"]: expected a string, got a sequence");
    CHECK(decode_error("labels:\n  a: x\n  a: y\n") ==
          "t.yaml:3: labels[\"a\"]: duplicate key (first set on line 2)");
    CHECK(decode_error("by_id:\n  seven: {}\n") ==
          "t.yaml:2: by_id[\"seven\"]: expected an integer, got \"seven\"");
    CHECK(decode_error("by_id:\n  7: {weigth: 1}\n") ==
          "t.yaml:2: by_id[\"7\"].weigth: unknown key; did you mean 'weight'?");
    CHECK(decode_error("by_name: x\nby_number: 1\n") ==
          "t.yaml:2: by_number: only one of the keys of 'target' may be set, and 'by_name' is "
          "set on line 1");
  }
}

TEST_SUITE_END();
