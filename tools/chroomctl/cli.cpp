#include "tools/chroomctl/cli.hpp"

#include <algorithm>

namespace chroom::ctl {

namespace {

constexpr std::string_view program = "chroomctl";

const group_spec* find_group(std::string_view name) {
  for (const auto& group : groups())
    if (group.name == name)
      return &group;
  return nullptr;
}

const command_spec* find_command(std::string_view group, std::string_view name) {
  for (const auto& command : commands())
    if (command.group == group && command.name == name)
      return &command;
  return nullptr;
}

const flag_spec* find_flag(const std::vector<flag_spec>& flags, std::string_view name) {
  for (const auto& flag : flags)
    if (flag.name == name || (!flag.alias.empty() && flag.alias == name))
      return &flag;
  return nullptr;
}

std::vector<std::string_view> group_names() {
  std::vector<std::string_view> names;
  for (const auto& group : groups())
    names.push_back(group.name);
  return names;
}

std::vector<std::string_view> subcommand_names(std::string_view group) {
  std::vector<std::string_view> names;
  for (const auto& command : commands())
    if (command.group == group)
      names.push_back(command.name);
  return names;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates) {
  auto best = closest(word, candidates);
  return best ? std::string(" (did you mean '") + *best + "'?)" : std::string();
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string flag_usage(const flag_spec& flag) {
  std::string text = flag.alias.empty() ? std::string(flag.name)
                                        : std::string(flag.alias) + ", " + std::string(flag.name);
  if (!flag.value.empty()) {
    text += ' ';
    text += flag.value;
  }
  return text;
}

void append_flags(std::string& out, const std::vector<flag_spec>& flags) {
  std::size_t width = 0;
  for (const auto& flag : flags)
    width = std::max(width, flag_usage(flag).size());
  for (const auto& flag : flags) {
    std::string usage = flag_usage(flag);
    out += "  ";
    out += usage;
    out.append(width - usage.size() + 3, ' ');
    out += flag.help;
    out += '\n';
  }
}

void append_exit_codes(std::string& out) {
  out += "\nExit codes:\n"
         "  0  success\n"
         "  1  the server answered with an error (printed as `chroomctl: CODE: message`)\n"
         "  2  usage error: unknown command or flag, missing argument, unreadable file\n"
         "  3  the server could not be reached (wrong --server, peer down, TLS failure)\n";
}

} // namespace

std::string command_spec::path() const {
  std::string text(group);
  if (!name.empty()) {
    text += ' ';
    text += name;
  }
  return text;
}

std::string invocation::value(std::string_view name, std::string fallback) const {
  auto found = flags.find(name);
  return found == flags.end() || found->second.empty() ? fallback : found->second.back();
}

std::vector<std::string> invocation::values(std::string_view name) const {
  auto found = flags.find(name);
  return found == flags.end() ? std::vector<std::string>{} : found->second;
}

std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string_view>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (auto candidate : candidates) {
    auto distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best;
}

parsed_command_line parse_command_line(int argc, const char* const* argv) {
  parsed_command_line parsed;
  invocation& call = parsed.call;
  const group_spec* group = nullptr;
  bool only_positionals = false;
  bool help_word = false; // `chroomctl help nodes list`

  for (int i = 1; i < argc; ++i) {
    std::string_view token = argv[i];
    bool is_flag = !only_positionals && token.size() > 1 && token[0] == '-';
    if (is_flag && token == "--") {
      only_positionals = true;
      continue;
    }
    if (is_flag) {
      std::string_view name = token;
      std::optional<std::string> inline_value;
      if (auto equals = token.find('='); token.starts_with("--") && equals != token.npos) {
        name = token.substr(0, equals);
        inline_value = std::string(token.substr(equals + 1));
      } else if (!token.starts_with("--") && token.size() > 2) {
        // "-ojson"
        name = token.substr(0, 2);
        inline_value = std::string(token.substr(2));
      }
      const flag_spec* flag = find_flag(global_flags(), name);
      if (!flag && call.command)
        flag = find_flag(call.command->flags, name);
      if (!flag) {
        std::vector<std::string_view> known;
        for (const auto& f : global_flags())
          known.push_back(f.name);
        if (call.command)
          for (const auto& f : call.command->flags)
            known.push_back(f.name);
        std::string where = call.command ? std::string(" for `") + std::string(program) + " " +
                                             call.command->path() + "`"
                                         : std::string();
        throw usage_error(std::string("unknown flag ") + std::string(name) + where +
                            did_you_mean(name, known),
                          call.command, group);
      }
      if (flag->name == "--help") {
        parsed.help = true;
        continue;
      }
      std::string value;
      if (flag->value.empty()) {
        if (inline_value)
          throw usage_error(std::string(flag->name) + " takes no value", call.command, group);
      } else if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw usage_error(std::string(flag->name) + " needs a value " + std::string(flag->value),
                          call.command, group);
      }
      call.flags[std::string(flag->name)].push_back(std::move(value));
      continue;
    }

    // A word: the group, the subcommand, then the command's arguments.
    if (!group && !call.command) {
      if (token == "help" && !help_word) {
        help_word = true;
        parsed.help = true;
        continue;
      }
      group = find_group(token);
      if (!group)
        throw usage_error(std::string("unknown command '") + std::string(token) + "'" +
                          did_you_mean(token, group_names()));
      if (!group->has_subcommands)
        call.command = find_command(group->name, "");
      continue;
    }
    if (!call.command) {
      call.command = find_command(group->name, token);
      if (!call.command)
        throw usage_error(std::string("unknown command '") + std::string(group->name) + " " +
                            std::string(token) + "'" +
                            did_you_mean(token, subcommand_names(group->name)),
                          nullptr, group);
      continue;
    }
    call.args.emplace_back(token);
  }

  if (parsed.help) {
    parsed.help_group = call.command ? nullptr : group;
    return parsed;
  }
  if (!group)
    throw usage_error("no command given");
  if (!call.command)
    throw usage_error(std::string("'") + std::string(group->name) + "' needs a subcommand", nullptr,
                      group);
  const auto& command = *call.command;
  if (call.args.size() < command.min_args)
    throw usage_error(std::string("`") + std::string(program) + " " + command.path() + "` needs " +
                        std::string(command.args),
                      call.command);
  if (call.args.size() > command.max_args)
    throw usage_error(std::string("unexpected argument '") + call.args[command.max_args] + "'",
                      call.command);
  return parsed;
}

std::string usage_line(const command_spec* command, const group_spec* group) {
  std::string line = std::string("Usage: ") + std::string(program);
  if (command) {
    line += ' ';
    line += command->path();
    if (!command->args.empty()) {
      line += ' ';
      line += command->args;
    }
    line += command->flags.empty() ? " [global flags]" : " [flags]";
  } else if (group) {
    line += ' ';
    line += group->name;
    line += " COMMAND [args] [flags]";
  } else {
    line += " COMMAND [SUBCOMMAND] [args] [flags]";
  }
  return line;
}

std::string top_level_help() {
  std::string out =
    std::string(program) +
    " operates a Chroom Orchestrator cluster through one peer's\n"
    "chroom.admin.v1.AdminService (any peer: they share nodes, rooms and apps).\n\n";
  out += usage_line(nullptr, nullptr);
  out += "\n\nCommands:\n";
  std::vector<std::pair<std::string, std::string_view>> lines;
  for (const auto& command : commands()) {
    std::string name = command.path();
    if (!command.args.empty()) {
      name += ' ';
      name += command.args;
    }
    lines.emplace_back(std::move(name), command.summary);
  }
  std::size_t width = 0;
  for (const auto& [name, summary] : lines)
    width = std::max(width, name.size());
  for (const auto& [name, summary] : lines) {
    out += "  ";
    out += name;
    out.append(width - name.size() + 3, ' ');
    out += summary;
    out += '\n';
  }
  out += "\nGlobal flags (anywhere on the line):\n";
  append_flags(out, global_flags());
  out += "\nEnvironment:\n"
         "  CHROOM_SERVER        default of --server\n"
         "  CHROOM_ADMIN_TOKEN   default of --token\n";
  append_exit_codes(out);
  out += "\nRun `chroomctl COMMAND --help` for a command's flags and an example.\n";
  return out;
}

std::string group_help(const group_spec& group) {
  std::string out = std::string(program) + " " + std::string(group.name) + ": " +
                    std::string(group.summary) + "\n\n" + usage_line(nullptr, &group) +
                    "\n\nCommands:\n";
  std::size_t width = 0;
  for (const auto& command : commands())
    if (command.group == group.name)
      width = std::max(width, command.name.size() + 1 + command.args.size());
  for (const auto& command : commands()) {
    if (command.group != group.name)
      continue;
    std::string name = std::string(command.name);
    if (!command.args.empty()) {
      name += ' ';
      name += command.args;
    }
    out += "  ";
    out += name;
    out.append(width - name.size() + 3, ' ');
    out += command.summary;
    out += '\n';
  }
  out += "\nRun `chroomctl ";
  out += group.name;
  out += " COMMAND --help` for a command's flags; `chroomctl --help` for global flags.\n";
  return out;
}

std::string command_help(const command_spec& command) {
  std::string out = std::string(program) + " " + command.path() + ": " +
                    std::string(command.summary) + "\n\n" + usage_line(&command, nullptr) + "\n";
  if (!command.details.empty()) {
    out += '\n';
    out += command.details;
  }
  if (!command.flags.empty()) {
    out += "\nFlags:\n";
    append_flags(out, command.flags);
  }
  out += "\nGlobal flags:\n";
  append_flags(out, global_flags());
  append_exit_codes(out);
  return out;
}

} // namespace chroom::ctl
