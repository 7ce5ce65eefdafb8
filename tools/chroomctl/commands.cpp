// The command table: every group, command and flag of chroomctl, with its help. The parser,
// the help texts and the shell completion scripts are all generated from it.
#include "tools/chroomctl/commands.hpp"

#include <charconv>
#include <ostream>

#include <google/protobuf/stubs/common.h>

#ifndef CHROOMCTL_VERSION
#define CHROOMCTL_VERSION "0.0.0"
#endif

namespace chroom::ctl {

namespace {

constexpr std::string_view node_states = "joining active draining cordoned suspect dead gone";

} // namespace

const std::vector<flag_spec>& global_flags() {
  static const std::vector<flag_spec> flags = {
    {"--server", "", "HOST:PORT",
     "the peer to talk to (default: $CHROOM_SERVER, else 127.0.0.1:7443)"},
    {"--token", "", "T",
     "admin token, sent as \"authorization: Bearer T\" (default: $CHROOM_ADMIN_TOKEN)"},
    {"--tls", "", "", "connect with TLS (h2c otherwise)"},
    {"--ca-file", "", "FILE", "PEM CA certificates to verify the peer with (implies --tls)",
     "@files"},
    {"--timeout", "", "S", "deadline of each call, seconds (default 10)"},
    {"--output", "-o", "FORMAT", "table (default), json (protobuf JSON) or name (ids only)",
     "table json name"},
    {"--no-headers", "", "", "tables without their header row"},
    {"--help", "-h", "", "help of the command"},
  };
  return flags;
}

const std::vector<group_spec>& groups() {
  static const std::vector<group_spec> list = {
    {"cluster", "the peers of the cluster"},
    {"nodes", "media nodes: list, inspect, cordon, drain"},
    {"rooms", "rooms of the whole cluster: list, inspect, migrate"},
    {"apps", "applications: list, inspect, create, rotate keys, delete, reload"},
    {"usage", "what an app used, per epoch", false},
    {"completion", "print a bash or zsh completion script", false},
    {"version", "print chroomctl's version", false},
  };
  return list;
}

const std::vector<command_spec>& commands() {
  static const std::vector<command_spec> list = {
    {"cluster",
     "status",
     "",
     0,
     0,
     "the peers as the answering peer sees them",
     "Peers with their state, addresses and when they were last heard from (the answering\n"
     "peer is marked *), and how many rooms the answering peer owns and keeps replicas of.\n\n"
     "Example:\n  chroomctl cluster status --server peer-1.example:7443\n",
     {},
     run_cluster_status},
    {"nodes",
     "list",
     "",
     0,
     0,
     "every media node the peer knows",
     "All pages of ListNodes, sorted by node id. LOAD is participants (reported + reserved)\n"
     "over capacity.\n\n"
     "Example:\n  chroomctl nodes list --state active --state cordoned --region eu-west\n"
     "  chroomctl nodes list -o name\n",
     {{"--state", "", "S",
       "only nodes in this state (repeatable, or comma separated): joining, active, draining, "
       "cordoned, suspect, dead, gone",
       node_states},
      {"--region", "", "R", "only nodes of this region"}},
     run_nodes_list},
    {"nodes",
     "get",
     "ID",
     1,
     1,
     "one media node in detail",
     "Example:\n  chroomctl nodes get sfu-fra-1\n",
     {},
     run_nodes_get,
     "@nodes"},
    {"nodes",
     "cordon",
     "ID",
     1,
     1,
     "take no new rooms on a node until uncordoned",
     "Its rooms go on. Example:\n  chroomctl nodes cordon sfu-fra-1\n",
     {},
     run_nodes_cordon,
     "@nodes"},
    {"nodes",
     "uncordon",
     "ID",
     1,
     1,
     "let a cordoned node take rooms again",
     "Example:\n  chroomctl nodes uncordon sfu-fra-1\n",
     {},
     run_nodes_uncordon,
     "@nodes"},
    {"nodes",
     "drain",
     "ID",
     1,
     1,
     "take no new rooms; the node is gone when its rooms end",
     "The node is gone when its last room ends or the deadline passes.\n\n"
     "Example:\n  chroomctl nodes drain sfu-fra-1 --deadline-ms 600000\n",
     {{"--deadline-ms", "", "N",
       "how long its rooms may go on, milliseconds (default: the peer's configured one)"}},
     run_nodes_drain,
     "@nodes"},
    {"rooms",
     "list",
     "",
     0,
     0,
     "rooms of the whole cluster",
     "All pages of ListRooms, by app then room. NODES lists the nodes a room spans with its\n"
     "participants on each.\n\n"
     "Example:\n  chroomctl rooms list --app clinic --node sfu-fra-1\n",
     {{"--app", "", "A", "only rooms of this app", "@apps"},
      {"--node", "", "N", "only rooms with a part on this node", "@nodes"}},
     run_rooms_list},
    {"rooms",
     "get",
     "APP ROOM",
     2,
     2,
     "one room: its nodes, relays and participants",
     "Example:\n  chroomctl rooms get clinic consult-42\n",
     {},
     run_rooms_get,
     "@apps"},
    {"rooms",
     "migrate",
     "APP ROOM",
     2,
     2,
     "move a room's participants to another node",
     "Without --to, placement picks the nodes (never the ones being left); with --from, only\n"
     "the participants on that node move. Clients learn their new node from KeepAlive.\n\n"
     "Example:\n  chroomctl rooms migrate clinic consult-42 --from sfu-fra-1 --to sfu-ams-2\n",
     {{"--to", "", "NODE", "the node to move them to", "@nodes"},
      {"--from", "", "NODE", "move only the participants on this node", "@nodes"}},
     run_rooms_migrate,
     "@apps"},
    {"apps",
     "list",
     "",
     0,
     0,
     "every application of the cluster",
     "Example:\n  chroomctl apps list\n",
     {},
     run_apps_list},
    {"apps",
     "get",
     "ID",
     1,
     1,
     "one application and its whole configuration",
     "Secrets are never shown. Example:\n  chroomctl apps get clinic -o json\n",
     {},
     run_apps_get,
     "@apps"},
    {"apps",
     "create",
     "",
     0,
     0,
     "create an application from a YAML or JSON file",
     "The file is a chroom.config.v1.AppConfig with the field names of the .proto (the\n"
     "format of an entry of the config file's apps list; docs/apps.md). `-f -` reads stdin.\n"
     "Without keys (and without allow_unauthenticated) the peer makes a key and its secret\n"
     "is printed this once.\n\n"
     "Example:\n  chroomctl apps create -f clinic.yaml\n",
     {{"--file", "-f", "FILE", "the app, .yaml/.yml or .json (required)", "@files"}},
     run_apps_create},
    {"apps",
     "rotate-key",
     "ID",
     1,
     1,
     "give an app a new key; the old one works for a while",
     "Prints the new key's secret, this once only.\n\n"
     "Example:\n  chroomctl apps rotate-key clinic --grace-ms 3600000\n",
     {{"--grace-ms", "", "N",
       "how long the current key keeps working, milliseconds (default: a day)"}},
     run_apps_rotate_key,
     "@apps"},
    {"apps",
     "delete",
     "ID",
     1,
     1,
     "delete an application (created through the API)",
     "Example:\n  chroomctl apps delete clinic\n",
     {},
     run_apps_delete,
     "@apps"},
    {"apps",
     "reload",
     "",
     0,
     0,
     "read the answering peer's config file again, apply its apps",
     "Example:\n  chroomctl apps reload --server peer-0.example:7443\n",
     {},
     run_apps_reload},
    {"usage",
     "",
     "APP",
     1,
     1,
     "what an app used, per epoch, and in total",
     "Times are RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01) or Unix milliseconds.\n\n"
     "Example:\n  chroomctl usage clinic --from 2024-05-01T00:00:00Z --to 2024-06-01\n",
     {{"--from", "", "TIME", "epochs starting at or after this time (default: all)"},
      {"--to", "", "TIME", "epochs starting before this time (default: now)"}},
     run_usage,
     "@apps"},
    {"completion",
     "",
     "SHELL",
     1,
     1,
     "print a completion script for bash or zsh",
     "Install:\n  bash: chroomctl completion bash > /etc/bash_completion.d/chroomctl\n"
     "        (or: source <(chroomctl completion bash) in ~/.bashrc)\n"
     "  zsh:  chroomctl completion zsh > \"${fpath[1]}/_chroomctl\"\n"
     "        (or: source <(chroomctl completion zsh) in ~/.zshrc)\n",
     {},
     run_completion,
     "bash zsh"},
    {"version", "", "", 0, 0, "print chroomctl's version", "", {}, run_version},
  };
  return list;
}

admin_client& command_context::client() {
  if (!client_)
    client_ = std::make_unique<admin_client>(connection);
  return *client_;
}

call_hints node_hints() {
  return {"list nodes with `chroomctl nodes list`"};
}

call_hints app_hints() {
  return {"list apps with `chroomctl apps list`"};
}

call_hints room_hints() {
  return {"list rooms with `chroomctl rooms list` (a room exists while it has a participant)"};
}

std::uint32_t parse_uint32_flag(const invocation& call, std::string_view flag) {
  std::string text = call.value(flag);
  std::uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || text.empty())
    throw usage_error(
      std::string(flag) + " needs a number from 0 to 4294967295, not '" + text + "'", call.command);
  return value;
}

int run_version(command_context& context, const invocation&) {
  *context.out << "chroomctl " << CHROOMCTL_VERSION << " (chroom.admin.v1; grpc++ "
               << grpc::Version() << ", protobuf "
               << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION) << ")\n";
  return exit_ok;
}

} // namespace chroom::ctl
