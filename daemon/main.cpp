// chroom-orchestrator: one peer of the Chroom Orchestrator cluster.
//
//   chroom-orchestrator [--config FILE] [--log-level L] [--log-format text|json]
//
// Start-up: config → logging → actor system → services → gateway. SIGTERM/SIGINT:
// NOT_SERVING, stop accepting, GOAWAY, in-flight calls get shutdown_grace_ms, exit 0.

#include "actors/admin_service.hpp"
#include "actors/allocation_service.hpp"
#include "actors/app_directory.hpp"
#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/diagnostics_service.hpp"
#include "actors/health_service.hpp"
#include "actors/media_node.hpp"
#include "actors/reflection_service.hpp"
#include "actors/registry.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/allocation/v1/allocation_service.pb.h"
#include "chroom/diag/v1/diagnostics.pb.h"
#include "chroom/medianode/v1/media_node.pb.h"
#include "cluster/peer_address.hpp"
#include "common/unix_time.hpp"
#include "daemon/admin_http.hpp"
#include "daemon/config.hpp"
#include "daemon/logging.hpp"
#include "grpc/health/v1/health.pb.h"
#include "transport/gateway.hpp"
#include "transport/grpc_router.hpp"
#include "transport/tls.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/manager.hpp>
#include <fmt/ranges.h>
#include <google/protobuf/descriptor.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <unistd.h>

namespace {

using namespace chroom;

/// middleman.max-consecutive-reads: see run().
constexpr size_t io_reads_per_pass = 4;

constexpr std::string_view usage =
  R"(usage: chroom-orchestrator [--config FILE] [--log-level L] [--log-format text|json]

  --config FILE       YAML configuration (schema: chroom.config.v1.OrchestratorConfig,
                      see docs/configuration.md); without it the peer runs on embedded
                      defaults: h2c on 127.0.0.1:7443, single peer
  --log-level L       trace, debug, info, warn, error, critical or off (overrides the file)
  --log-format F      text or json (overrides the file)
  --help              this text
)";

/// How long the actor system may take to shut down once the peer stopped.
constexpr auto teardown_limit = std::chrono::seconds{5};

/// After joining a cluster, how long the peer waits for another peer's apps before it
/// serves with its own store's.
constexpr auto apps_sync_timeout = std::chrono::seconds{5};

/// After the grace period, how long the peer waits for connections to close.
constexpr auto shutdown_wait_slack = std::chrono::seconds{3};

struct command_line {
  std::optional<std::string> config_file;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
};

/// Parses argv; exits with 2 and a message on a bad argument.
command_line parse_command_line(int argc, char** argv) {
  command_line result;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value_of = [&](std::string_view flag) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "chroom-orchestrator: " << flag << " needs a value\n" << usage;
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (arg == "--config") {
      result.config_file = value_of(arg);
    } else if (arg == "--log-level") {
      result.log_level = value_of(arg);
    } else if (arg == "--log-format") {
      result.log_format = value_of(arg);
    } else {
      std::cerr << "chroom-orchestrator: unknown argument '" << arg << "'\n" << usage;
      std::exit(2);
    }
  }
  return result;
}

/// Loads the file (or the defaults) and applies command-line overrides, re-validated.
config::v1::OrchestratorConfig load_configuration(const command_line& args) {
  auto cfg =
    args.config_file ? daemon::load_config_file(*args.config_file) : daemon::default_config();
  if (args.log_level || args.log_format) {
    // Overrides go through the same parser so they are validated the same way.
    std::string yaml = "log: {";
    if (args.log_level)
      yaml += "level: \"" + *args.log_level + "\", ";
    if (args.log_format)
      yaml += "format: \"" + *args.log_format + "\"";
    yaml += "}";
    auto overrides = daemon::parse_config(yaml, "command line");
    if (args.log_level)
      cfg.mutable_log()->set_level(overrides.log().level());
    if (args.log_format)
      cfg.mutable_log()->set_format(overrides.log().format());
  }
  return cfg;
}

std::shared_ptr<transport::gateway_settings>
gateway_settings_from(const config::v1::OrchestratorConfig& cfg) {
  auto settings = std::make_shared<transport::gateway_settings>();
  const auto& limits = cfg.limits();
  settings->host = cfg.listen().host();
  settings->port = static_cast<uint16_t>(cfg.listen().port());
  settings->limits.max_message_bytes = limits.max_message_bytes();
  settings->limits.max_concurrent_streams = limits.max_concurrent_streams();
  settings->limits.max_header_list_bytes = limits.max_header_list_bytes();
  settings->limits.max_pending_output_bytes = limits.max_pending_output_bytes();
  settings->limits.max_connection_memory_bytes = limits.max_connection_memory_bytes();
  settings->memory =
    std::make_shared<transport::peer_memory_budget>(limits.max_gateway_memory_bytes());
  settings->max_connections = limits.max_connections();
  settings->idle_timeout = std::chrono::milliseconds{limits.idle_timeout_ms()};
  settings->keepalive_interval = std::chrono::milliseconds{limits.keepalive_interval_ms()};
  settings->keepalive_timeout = std::chrono::milliseconds{limits.keepalive_timeout_ms()};
  if (!cfg.listen().cert_file().empty())
    settings->tls =
      transport::tls_server_context::load(cfg.listen().cert_file(), cfg.listen().key_file());
  return settings;
}

/// SIGTERM/SIGINT are turned into a byte on this pipe by an async-signal-safe handler;
/// main reads it. A handler, not a blocked mask: threads started before main (the
/// sanitizers' own) would otherwise take the signal with its default action.
int signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal_number) {
  auto byte = static_cast<char>(signal_number);
  [[maybe_unused]] auto written = write(signal_pipe[1], &byte, 1);
}

void install_signal_handlers() {
  if (pipe(signal_pipe) != 0) {
    std::perror("chroom-orchestrator: pipe");
    std::exit(1);
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

/// "host:port" at which the other peers reach this one.
std::string advertised_cluster_address(const config::v1::OrchestratorConfig& cfg) {
  const auto& cluster = cfg.cluster();
  auto host = cluster.advertise_host().empty() ? cluster.listen_host() : cluster.advertise_host();
  return cluster::peer_address{host, static_cast<uint16_t>(cluster.listen_port())}.to_string();
}

/// The peer is to join others (a seed other than itself is listed).
bool has_other_seeds(const config::v1::OrchestratorConfig& cfg) {
  if (cfg.cluster().listen_port() == 0)
    return false;
  auto self = advertised_cluster_address(cfg);
  return std::any_of(cfg.cluster().seeds().begin(), cfg.cluster().seeds().end(),
                     [&](const std::string& seed) {
                       std::string problem;
                       auto address = cluster::parse_peer_address(seed, problem);
                       return address && address->to_string() != self;
                     });
}

actors::registry_settings registry_settings_from(const config::v1::OrchestratorConfig& cfg) {
  const auto& nodes = cfg.media_nodes();
  actors::registry_settings settings;
  settings.rules.suspect_after = std::chrono::milliseconds{nodes.suspect_after_ms()};
  settings.rules.dead_after = std::chrono::milliseconds{nodes.dead_after_ms()};
  settings.rules.drain_deadline = std::chrono::milliseconds{nodes.drain_deadline_ms()};
  settings.rules.forget_after = std::chrono::milliseconds{nodes.forget_after_ms()};
  settings.rules.max_nodes = nodes.max_nodes();
  // Death is detected within dead_after + one sweep: a tenth of the suspect window keeps
  // that margin small at O(nodes) work per sweep.
  settings.sweep_interval =
    std::clamp(settings.rules.suspect_after / 10, std::chrono::milliseconds{10},
               std::chrono::milliseconds{200});
  const auto& allocation = cfg.allocation();
  settings.placement.high_water = allocation.high_water();
  settings.placement.affinity_slack_ms = allocation.affinity_slack_ms();
  settings.placement.max_affinity_rtt_ms = allocation.max_affinity_rtt_ms();
  settings.placement.candidate_pool = allocation.candidate_pool();
  settings.reservation_ttl = std::chrono::milliseconds{allocation.reservation_ttl_ms()};
  settings.fallback_region = allocation.fallback_region();
  settings.peer_id = cfg.peer_id();
  settings.update_interval = std::chrono::milliseconds{cfg.cluster().node_update_interval_ms()};
  if (has_other_seeds(cfg))
    // As long as the membership waits for a seed, and the snapshot wait on top.
    settings.startup_sync =
      std::chrono::milliseconds{2 * cfg.cluster().failure_timeout_ms()} + std::chrono::seconds{2};
  return settings;
}

/// The peer takes part in a cluster (config validation makes seeds need a cluster port).
bool is_clustered(const config::v1::OrchestratorConfig& cfg) {
  return cfg.cluster().listen_port() != 0;
}

/// This peer's gRPC address as other peers and clients reach it; empty for an ephemeral
/// port (0), which is not known before the gateway binds.
std::string advertised_grpc_address(const config::v1::OrchestratorConfig& cfg) {
  auto port = static_cast<uint16_t>(cfg.listen().port());
  if (port == 0)
    return {};
  const auto& cluster = cfg.cluster();
  auto grpc_host = cfg.listen().host();
  if (grpc_host == "0.0.0.0" || grpc_host == "::")
    grpc_host = cluster.advertise_host().empty() ? cluster.listen_host() : cluster.advertise_host();
  return cluster::peer_address{grpc_host, port}.to_string();
}

actors::cluster_settings cluster_settings_from(const config::v1::OrchestratorConfig& cfg) {
  const auto& cluster = cfg.cluster();
  actors::cluster_settings settings;
  settings.peer_id = cfg.peer_id();
  settings.incarnation = static_cast<uint64_t>(unix_ms_now());
  settings.listen = {cluster.listen_host(), static_cast<uint16_t>(cluster.listen_port())};
  settings.cluster_address = advertised_cluster_address(cfg);
  settings.grpc_address = advertised_grpc_address(cfg);
  for (const auto& seed : cluster.seeds()) {
    std::string problem; // validated with the config
    if (auto address = cluster::parse_peer_address(seed, problem))
      settings.seeds.push_back(*address);
  }
  settings.heartbeat_interval = std::chrono::milliseconds{cluster.heartbeat_interval_ms()};
  settings.failure_timeout = std::chrono::milliseconds{cluster.failure_timeout_ms()};
  settings.replication_factor = cluster.replication_factor();
  // Seeds starting together find each other in milliseconds; the first peer of a cluster
  // waits this long for the others before it serves alone.
  settings.join_timeout = 2 * settings.failure_timeout;
  settings.tls = !cluster.cert_file().empty();
  return settings;
}

/// Types that cross peers inside CAF messages (peer-to-peer calls and node commands); the
/// rest of what peers say is serialized protobuf in strings.
void add_peer_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<transport::grpc_status>("chroom::grpc_status");
  cfg.add_message_type<transport::call_context>("chroom::call_context");
  cfg.add_message_type<transport::unary_call>("chroom::unary_call");
  cfg.add_message_type<transport::unary_reply>("chroom::unary_reply");
  cfg.add_message_type<actors::command_outcome>("chroom::command_outcome");
}

actors::allocation_service_settings
allocation_settings_from(const config::v1::OrchestratorConfig& cfg, caf::actor registry,
                         std::shared_ptr<const transport::node_credentials> credentials) {
  const auto& allocation = cfg.allocation();
  actors::allocation_service_settings settings;
  settings.room.registry = std::move(registry);
  settings.room.credentials = std::move(credentials);
  settings.room.lease_ttl = std::chrono::milliseconds{allocation.lease_ttl_ms()};
  settings.room.join_token_ttl = std::chrono::milliseconds{allocation.join_token_ttl_ms()};
  settings.room.alternates = allocation.alternates();
  // A replica that has not answered within the failure timeout is about to be declared dead.
  settings.room.replication_timeout = std::chrono::milliseconds{cfg.cluster().failure_timeout_ms()};
  settings.peer_id = cfg.peer_id();
  // Alone, every room is this peer's: no hint to give.
  if (is_clustered(cfg))
    settings.room.owner_address = advertised_grpc_address(cfg);
  const auto& database = allocation.geoip_database();
  if (database != "none") {
    auto locator = std::make_shared<allocation::ip_locator>();
    if (auto problem =
          locator->open(database, allocation::ip_locator::ipv6_database_beside(database)))
      spdlog::warn("clients are not located by IP: {}", *problem);
    else
      settings.locator = std::move(locator);
  }
  return settings;
}

std::shared_ptr<const actors::media_node_settings>
media_node_settings_from(const config::v1::OrchestratorConfig& cfg) {
  const auto& nodes = cfg.media_nodes();
  std::map<std::string, std::string, std::less<>> secrets;
  for (const auto& credential : nodes.credentials())
    secrets[credential.node_id()] = credential.secret();
  auto settings = std::make_shared<actors::media_node_settings>();
  settings->credentials =
    std::make_shared<transport::node_credentials>(std::move(secrets), nodes.secret_key());
  settings->stats_interval = std::chrono::milliseconds{nodes.stats_interval_ms()};
  settings->suspect_after = std::chrono::milliseconds{nodes.suspect_after_ms()};
  settings->dead_after = std::chrono::milliseconds{nodes.dead_after_ms()};
  settings->command_timeout = std::chrono::milliseconds{nodes.command_timeout_ms()};
  settings->register_timeout = std::chrono::milliseconds{nodes.register_timeout_ms()};
  settings->peer_id = cfg.peer_id();
  return settings;
}

/// Blocks until SIGTERM or SIGINT; returns the signal number.
int wait_for_signal() {
  char byte = 0;
  while (read(signal_pipe[0], &byte, 1) < 0 && errno == EINTR) {
  }
  return byte;
}

/// Where the peer keeps its app store: data_dir, or chroom-data/<peer_id>.
std::filesystem::path data_dir_of(const config::v1::OrchestratorConfig& cfg) {
  if (!cfg.data_dir().empty())
    return cfg.data_dir();
  return std::filesystem::path{"chroom-data"} / cfg.peer_id();
}

/// Opens the app store and combines it with the config file's apps; null after logging
/// why not.
std::optional<actors::app_directory_settings>
app_directory_settings_from(const config::v1::OrchestratorConfig& cfg,
                            const std::optional<std::string>& config_file) {
  std::string error;
  auto dir = data_dir_of(cfg);
  std::shared_ptr<apps::app_store> store = apps::app_store::open(dir, error);
  if (!store) {
    spdlog::critical("app store: {}", error);
    return std::nullopt;
  }
  std::vector<config::v1::AppConfig> file_apps{cfg.apps().begin(), cfg.apps().end()};
  auto records = actors::app_directory_start(*store, file_apps, cfg.peer_id(), error);
  if (!error.empty()) {
    spdlog::critical("app store: {}", error);
    return std::nullopt;
  }
  actors::app_directory_settings settings;
  settings.peer_id = cfg.peer_id();
  settings.epoch_ms = cfg.metering().epoch_ms();
  const auto& key_file = cfg.metering().signing_key_file();
  settings.signer = apps::usage_signer::open(key_file.empty() ? dir / "usage-signing-key.pem"
                                                              : std::filesystem::path{key_file},
                                             key_file.empty(), error);
  if (!settings.signer) {
    spdlog::critical("usage metering: {}", error);
    return std::nullopt;
  }
  settings.store = std::move(store);
  settings.records = std::move(records);
  settings.read_file_apps =
    [config_file](std::string& why) -> std::optional<std::vector<config::v1::AppConfig>> {
    try {
      auto fresh = config_file ? daemon::load_config_file(*config_file) : daemon::default_config();
      return std::vector<config::v1::AppConfig>{fresh.apps().begin(), fresh.apps().end()};
    } catch (const std::exception& e) {
      why = e.what();
      return std::nullopt;
    }
  };
  spdlog::info("app store {}: {} app record(s)", settings.store->file().string(),
               settings.records.size());
  return settings;
}

int run(const config::v1::OrchestratorConfig& cfg, const std::optional<std::string>& config_file) {
  caf::actor_system_config caf_cfg;
  caf_cfg.set("scheduler.max-threads", static_cast<size_t>(cfg.worker_threads()));
  // CAF's default work-stealing workers poll (spin, then sleep 50 us) while idle: with
  // 1,000 nodes reporting once a second that polling alone took 13% of a core. Sharing
  // workers block on a condition variable: 2.6% for the same fleet (bench/node_bench), and
  // less CPU per gateway call too (2.3 against 3.0 us, bench/gateway_bench).
  caf_cfg.set("scheduler.policy", caf::atom("sharing"));
  // Reads per connection per pass of the I/O thread (CAF's default is 50): with 16 KiB per
  // read, one connection can hold the thread for at most 64 KiB of input before every
  // other connection is served once.
  caf_cfg.set("middleman.max-consecutive-reads", io_reads_per_pass);
  caf_cfg.load<caf::io::middleman>();
  if (!cfg.cluster().cert_file().empty()) {
    caf_cfg.load<caf::openssl::manager>();
    caf_cfg.openssl_certificate = cfg.cluster().cert_file();
    caf_cfg.openssl_key = cfg.cluster().key_file();
    caf_cfg.openssl_cafile = cfg.cluster().ca_file();
  }
  add_peer_message_types(caf_cfg);
  caf::actor_system system{caf_cfg};

  auto directory_settings = app_directory_settings_from(cfg, config_file);
  if (!directory_settings)
    return 1;
  auto catalog = actors::catalog_of(directory_settings->records);
  auto app_directory = actors::spawn_app_directory(system, std::move(*directory_settings));
  auto registry_settings = registry_settings_from(cfg);
  registry_settings.app_directory = app_directory;
  auto registry = actors::spawn_registry(system, std::move(registry_settings));
  auto node_settings = media_node_settings_from(cfg);
  auto media_nodes = actors::spawn_media_node_service(system, registry, node_settings);
  auto service_settings = allocation_settings_from(cfg, registry, node_settings->credentials);
  service_settings.catalog = std::move(catalog);
  service_settings.app_directory = app_directory;
  auto allocation_service = actors::spawn_allocation_service(system, std::move(service_settings));
  auto settings = gateway_settings_from(cfg);
  // The gateway binds later; an ephemeral gRPC port (0) is not known to the cluster.
  auto membership_settings = cluster_settings_from(cfg);
  membership_settings.allocation_service = allocation_service;
  membership_settings.registry = registry;
  membership_settings.app_directory = app_directory;
  caf::actor membership;
  try {
    membership = actors::spawn_cluster_membership(system, std::move(membership_settings));
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    for (const auto& actor : {registry, media_nodes, allocation_service, app_directory})
      caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    return 1;
  }
  caf::anon_send(membership, subscribe_atom::value, registry);
  caf::anon_send(membership, subscribe_atom::value, allocation_service);
  caf::anon_send(membership, subscribe_atom::value, app_directory);
  auto admin = actors::spawn_admin_service(
    system, registry, membership, allocation_service, app_directory,
    std::vector<std::string>{cfg.admin().tokens().begin(), cfg.admin().tokens().end()});
  if (cfg.admin().tokens().empty() && !daemon::is_loopback_host(cfg.listen().host()))
    spdlog::warn("AdminService takes calls without credentials on {}: set admin.tokens",
                 cfg.listen().host());
  auto diagnostics = actors::spawn_diagnostics_service(system);

  // Every service of the peer: its descriptor and the actor serving it.
  const std::pair<const google::protobuf::ServiceDescriptor*, caf::actor> services[] = {
    {medianode::v1::Register::descriptor()->file()->FindServiceByName("MediaNodeService"),
     media_nodes},
    {admin::v1::NodeInfo::descriptor()->file()->FindServiceByName("AdminService"), admin},
    {chroom::allocation::v1::AllocateRequest::descriptor()->file()->FindServiceByName(
       "AllocationService"),
     allocation_service},
    {diag::v1::EchoRequest::descriptor()->file()->FindServiceByName("Diagnostics"), diagnostics},
  };
  const auto* health_descriptor =
    grpc::health::v1::HealthCheckRequest::descriptor()->file()->FindServiceByName("Health");
  std::vector<std::string> service_names{health_descriptor->full_name()};
  auto router = std::make_shared<transport::grpc_router>();
  for (const auto& [descriptor, actor] : services) {
    router->add_service(descriptor, actor);
    service_names.push_back(descriptor->full_name());
  }
  const auto reflection_descriptors = daemon::reflection_enabled(cfg)
                                        ? actors::reflection_services()
                                        : decltype(actors::reflection_services()){};
  for (const auto* descriptor : reflection_descriptors)
    service_names.push_back(descriptor->full_name());
  auto health = actors::spawn_health_service(system, service_names);
  router->add_service(health_descriptor, health);
  caf::actor reflection;
  if (!reflection_descriptors.empty()) {
    reflection = actors::spawn_reflection_service(
      system, std::make_shared<const transport::reflection_catalog>(service_names),
      std::vector<std::string>{cfg.admin().tokens().begin(), cfg.admin().tokens().end()});
    for (const auto* descriptor : reflection_descriptors)
      router->add_service(descriptor, reflection);
  }
  const bool clustered = is_clustered(cfg);
  if (clustered) // serving once the peer knows the cluster: its rooms, its nodes
    actors::set_serving(health, false);

  settings->router = router;
  auto stop_services = [&] {
    for (const auto& actor : {registry, media_nodes, allocation_service, admin, diagnostics, health,
                              reflection, membership, app_directory})
      caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  };
  transport::gateway_listener listener;
  try {
    listener = transport::start_gateway(system, settings);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    stop_services();
    return 1;
  }
  spdlog::info("gateway listening on {}:{} ({})", settings->host, listener.port,
               settings->tls ? "TLS 1.3, ALPN h2" : "h2c");
  auto ready = std::make_shared<daemon::readiness>();
  // Alone, the app store and the file are all the apps there are (loaded above); in a
  // cluster, the apps are loaded once another peer's directory sent its records.
  ready->set("apps_loaded", !clustered);
  ready->set("cluster_joined", !clustered);
  ready->set("serving", true);
  std::unique_ptr<daemon::admin_http> admin_port;
  if (!cfg.admin().disable_http()) {
    daemon::admin_http_settings http;
    http.host = cfg.admin().http().host();
    http.port = static_cast<uint16_t>(cfg.admin().http().port());
    http.cert_file = cfg.admin().http().cert_file();
    http.key_file = cfg.admin().http().key_file();
    http.peer_id = cfg.peer_id();
    http.registry = registry;
    http.membership = membership;
    http.allocation_service = allocation_service;
    http.gateway_memory = settings->memory;
    admin_port = std::make_unique<daemon::admin_http>(system, std::move(http), ready);
    try {
      auto port = admin_port->start();
      auto scheme = cfg.admin().http().cert_file().empty() ? "http" : "https";
      spdlog::info("admin HTTP listening on {}:{} (dashboard {}://{}:{}/, metrics /metrics)",
                   cfg.admin().http().host(), port, scheme, cfg.admin().http().host(), port);
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      transport::stop_gateway(listener, std::chrono::milliseconds{0});
      stop_services();
      return 1;
    }
  }
  if (clustered) {
    caf::scoped_actor waiter{system};
    bool joined = false;
    waiter->request(membership, caf::infinite, join_wait_atom::value)
      .receive([&](bool answer) { joined = answer; }, [](caf::error&) {});
    if (joined)
      spdlog::info("joined the cluster");
    else
      spdlog::warn("no seed answered: serving alone until other peers join");
    ready->set("cluster_joined", true);
    if (joined) {
      waiter->request(app_directory, apps_sync_timeout, join_wait_atom::value)
        .receive([](bool) {},
                 [](caf::error&) {
                   spdlog::warn(
                     "apps: no peer sent its apps within {} s; serving with this "
                     "peer's app store",
                     std::chrono::duration_cast<std::chrono::seconds>(apps_sync_timeout).count());
                 });
    }
    ready->set("apps_loaded", true);
    actors::set_serving(health, true);
  }
  spdlog::info("peer ready ({}): gRPC services {}", cfg.peer_id(), fmt::join(service_names, ", "));

  int signal_number = wait_for_signal();
  auto grace = std::chrono::milliseconds{cfg.shutdown_grace_ms()};
  spdlog::info("received {}, shutting down (grace {} ms)", strsignal(signal_number), grace.count());
  ready->set("serving", false);
  caf::scoped_actor self{system};
  if (clustered) {
    // Rooms go to their new owners while the gateway still forwards calls to them; then
    // the others hear this peer left (not that it died).
    self->request(allocation_service, std::chrono::seconds{10}, leave_atom::value)
      .receive([](bool) {},
               [](caf::error& err) { spdlog::warn("room hand-off: {}", caf::to_string(err)); });
    self->request(membership, std::chrono::seconds{2}, leave_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
    spdlog::info("left the cluster");
  }
  actors::set_serving(health, false);
  self->monitor(listener.actor);
  transport::stop_gateway(listener, grace);
  bool stopped = false;
  self->receive([&](const caf::down_msg&) { stopped = true; },
                caf::after(grace + shutdown_wait_slack) >> [] {});
  if (!stopped) {
    spdlog::warn("connections still open after the grace period; stopping anyway");
    caf::anon_send_exit(listener.actor, caf::exit_reason::kill);
  }
  if (admin_port)
    admin_port->stop(); // its threads ask the services
  stop_services();
  spdlog::info("stopped");
  // The actor system's destructor waits for every actor. CAF 0.17 has been seen to wait
  // forever for one of its own detached threads after a cluster run (rarely); the peer's
  // work is done by now, so a hung teardown must not keep the process (and its ports).
  std::thread([] {
    std::this_thread::sleep_for(teardown_limit);
    spdlog::warn("the actor system did not shut down within {} s; exiting anyway",
                 std::chrono::duration_cast<std::chrono::seconds>(teardown_limit).count());
    spdlog::default_logger()->flush();
    std::_Exit(0);
  }).detach();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  install_signal_handlers();

  auto args = parse_command_line(argc, argv);
  config::v1::OrchestratorConfig cfg;
  try {
    cfg = load_configuration(args);
  } catch (const daemon::config_error& e) {
    std::cerr << "chroom-orchestrator: configuration error: " << e.what() << "\n";
    return 2;
  }
  daemon::setup_logging(cfg.log().level(), cfg.log().format(), cfg.peer_id());
  try {
    return run(cfg, args.config_file);
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
