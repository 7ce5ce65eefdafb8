// What every command gets (the connection, the output settings), and the commands
// themselves, one file per group: cluster.cpp, nodes.cpp, rooms.cpp, apps.cpp, usage.cpp,
// completion.cpp. commands.cpp puts them in the table the parser and the help read.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>

#include "tools/chroomctl/admin_client.hpp"
#include "tools/chroomctl/cli.hpp"

namespace chroom::ctl {

struct command_context {
  connection_options connection;
  output_format format = output_format::table;
  bool headers = true;
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;

  // The client, created on first use (commands that need no server never create one).
  admin_client& client();

private:
  std::unique_ptr<admin_client> client_;
};

// Hints for NOT_FOUND answers.
call_hints node_hints();
call_hints app_hints();
call_hints room_hints();

int run_cluster_status(command_context&, const invocation&);
int run_nodes_list(command_context&, const invocation&);
int run_nodes_get(command_context&, const invocation&);
int run_nodes_cordon(command_context&, const invocation&);
int run_nodes_uncordon(command_context&, const invocation&);
int run_nodes_drain(command_context&, const invocation&);
int run_rooms_list(command_context&, const invocation&);
int run_rooms_get(command_context&, const invocation&);
int run_rooms_migrate(command_context&, const invocation&);
int run_apps_list(command_context&, const invocation&);
int run_apps_get(command_context&, const invocation&);
int run_apps_create(command_context&, const invocation&);
int run_apps_rotate_key(command_context&, const invocation&);
int run_apps_delete(command_context&, const invocation&);
int run_apps_reload(command_context&, const invocation&);
int run_usage(command_context&, const invocation&);
int run_completion(command_context&, const invocation&);
int run_version(command_context&, const invocation&);

// A flag's value as an unsigned number; throws usage_error naming the flag.
std::uint32_t parse_uint32_flag(const invocation& call, std::string_view flag);

} // namespace chroom::ctl
