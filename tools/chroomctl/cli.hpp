// chroomctl's command line: the command table, the parser of argv against it, and the help
// texts generated from it (so that help, parsing and shell completion never disagree).
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::ctl {

// Exit codes, documented in `chroomctl --help` and docs/chroomctl.md.
enum exit_code : int {
  exit_ok = 0,
  // The server answered with an error status.
  exit_server_error = 1,
  // The command line is wrong (unknown command or flag, missing argument, unreadable file).
  exit_usage = 2,
  // The server could not be reached (connection refused, timed out, TLS handshake failed).
  exit_unreachable = 3,
};

enum class output_format { table, json, name };

// A flag of a command, or a global flag.
struct flag_spec {
  // "--state"
  std::string_view name;
  // "-o", or empty.
  std::string_view alias;
  // The value's placeholder ("S", "FILE"); empty: a switch taking no value.
  std::string_view value;
  std::string_view help;
  // Words completion offers for the value (space separated); "@files": file names,
  // "@nodes"/"@apps": ids asked from the server; empty: nothing to offer.
  std::string_view completions = {};
};

struct command_context;
struct invocation;

// What a command does; returns the exit code.
using command_handler = int (*)(command_context&, const invocation&);

// One command: a group ("nodes") and, in groups that have them, a subcommand ("list").
struct command_spec {
  std::string_view group;
  // Empty for a group that is a command by itself (usage, version, completion).
  std::string_view name;
  // Positional arguments as shown in usage ("APP ROOM"); empty: none.
  std::string_view args;
  std::size_t min_args = 0;
  std::size_t max_args = 0;
  std::string_view summary;
  // More help, with an example.
  std::string_view details;
  std::vector<flag_spec> flags;
  command_handler run = nullptr;
  // Completion of the first positional argument: "@nodes", "@apps", or words.
  std::string_view arg_completions = {};

  std::string path() const;
};

struct group_spec {
  std::string_view name;
  std::string_view summary;
  // The group's commands have subcommand names.
  bool has_subcommands = true;
};

// Every group and command (commands.cpp).
const std::vector<group_spec>& groups();
const std::vector<command_spec>& commands();
// Flags every command takes.
const std::vector<flag_spec>& global_flags();

// The flags (global and the command's) of a command line, by name ("--state").
struct invocation {
  const command_spec* command = nullptr;
  std::vector<std::string> args;
  std::map<std::string, std::vector<std::string>, std::less<>> flags;

  bool has(std::string_view name) const { return flags.find(name) != flags.end(); }
  // The last value given, or fallback.
  std::string value(std::string_view name, std::string fallback = {}) const;
  // Every value given (a flag may be repeated).
  std::vector<std::string> values(std::string_view name) const;
};

// A wrong command line. The usage printed with it is the command's, else the group's, else
// the top level's.
struct usage_error : std::runtime_error {
  usage_error(std::string message, const command_spec* command = nullptr,
              const group_spec* group = nullptr)
      : std::runtime_error(std::move(message)), command(command), group(group) {}
  const command_spec* command;
  const group_spec* group;
};

// What argv asks for: a command to run, or help at some level.
struct parsed_command_line {
  invocation call;
  bool help = false;
  // Help of this group (with command unset), or of call.command.
  const group_spec* help_group = nullptr;
};

// Parses argv[1..]. Throws usage_error.
parsed_command_line parse_command_line(int argc, const char* const* argv);

// Help texts.
std::string top_level_help();
std::string group_help(const group_spec& group);
std::string command_help(const command_spec& command);
// The one-line usage of a command, a group, or the program (both null).
std::string usage_line(const command_spec* command, const group_spec* group);

// The closest of candidates to word when it looks like a typo of it, for "did you mean".
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string_view>& candidates);

} // namespace chroom::ctl
