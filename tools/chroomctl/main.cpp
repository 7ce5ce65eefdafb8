// chroomctl: the admin command line of Chroom Orchestrator (docs/chroomctl.md). A stock
// grpc++ client of chroom.admin.v1.AdminService, like any operator tool would be.
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/errors.hpp"

namespace chroom::ctl {

namespace {

constexpr std::string_view default_server = "127.0.0.1:7443";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// --timeout S: seconds, fractions allowed ("2.5"), or with a unit ("500ms", "3s").
std::chrono::milliseconds parse_timeout(const invocation& call) {
  std::string text = call.value("--timeout");
  std::size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  double ms = unit == "ms" ? value : value * 1000.0;
  if (used == 0 || (unit != "" && unit != "s" && unit != "ms") || !(ms > 0) || ms > 86400e3)
    throw usage_error(std::string("--timeout needs seconds (e.g. 10, 2.5, 500ms), not '") + text +
                        "'",
                      call.command);
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms + 0.5));
}

output_format parse_output(const invocation& call) {
  std::string text = call.value("--output", "table");
  if (text == "table")
    return output_format::table;
  if (text == "json")
    return output_format::json;
  if (text == "name")
    return output_format::name;
  throw usage_error(std::string("-o needs table, json or name, not '") + text + "'", call.command);
}

command_context context_of(const invocation& call) {
  command_context context;
  auto& connection = context.connection;
  if (call.has("--server")) {
    connection.server = call.value("--server");
    connection.server_source = "--server";
  } else if (auto from_env = env("CHROOM_SERVER"); !from_env.empty()) {
    connection.server = from_env;
    connection.server_source = "CHROOM_SERVER";
  } else {
    connection.server = default_server;
    connection.server_source = "the default";
  }
  if (connection.server.empty())
    throw usage_error("--server needs HOST:PORT", call.command);
  connection.token = call.has("--token") ? call.value("--token") : env("CHROOM_ADMIN_TOKEN");
  connection.tls = call.has("--tls");
  connection.ca_file = call.value("--ca-file");
  if (call.has("--timeout"))
    connection.timeout = parse_timeout(call);
  context.format = parse_output(call);
  context.headers = !call.has("--no-headers");
  context.out = &std::cout;
  context.err = &std::cerr;
  return context;
}

int run(int argc, char** argv) {
  parsed_command_line parsed;
  try {
    parsed = parse_command_line(argc, argv);
  } catch (const usage_error& error) {
    return report(std::cerr, error);
  }
  if (parsed.help) {
    if (parsed.call.command)
      std::cout << command_help(*parsed.call.command);
    else if (parsed.help_group)
      std::cout << group_help(*parsed.help_group);
    else
      std::cout << top_level_help();
    return exit_ok;
  }
  command_context context;
  try {
    context = context_of(parsed.call);
    return parsed.call.command->run(context, parsed.call);
  } catch (const usage_error& error) {
    return report(std::cerr, error);
  } catch (const rpc_failure& failure) {
    return report(std::cerr, failure, context.connection);
  } catch (const unreachable_failure& failure) {
    return report(std::cerr, failure, context.connection);
  } catch (const setup_failure& failure) {
    std::cerr << "chroomctl: " << failure.what() << '\n';
    return exit_usage;
  }
}

} // namespace

} // namespace chroom::ctl

int main(int argc, char** argv) {
  // `chroomctl nodes list | head` must end quietly, not by SIGPIPE mid-table.
  std::signal(SIGPIPE, SIG_IGN);
  std::ios::sync_with_stdio(true);
  return chroom::ctl::run(argc, argv);
}
