// chroomctl completion bash|zsh: completion scripts generated from the command table. One
// POSIX-style function finds the candidates for the words typed so far (both shells run
// it); a small per-shell wrapper hands them to bash's `complete` or zsh's `compadd`.
#include <ostream>
#include <set>

#include "tools/chroomctl/commands.hpp"

namespace chroom::ctl {

namespace {

// Shell words of a completion spec: "@nodes" asks the server for node ids, "@apps" for app
// ids (with the --server typed so far), "@files" tells the wrapper to complete file names.
std::string candidates_of(std::string_view spec) {
  if (spec == "@nodes")
    return "$(__chroomctl_ids nodes)";
  if (spec == "@apps")
    return "$(__chroomctl_ids apps)";
  return std::string(spec);
}

std::string join_flags(const std::vector<flag_spec>& flags) {
  std::string out;
  for (const auto& flag : flags) {
    if (!out.empty())
      out += ' ';
    out += flag.name;
  }
  return out;
}

std::string shared_function() {
  std::string global_words = join_flags(global_flags());
  // Every flag that takes a value, so that its value is not taken for a command word.
  std::set<std::string_view> value_flags;
  for (const auto& flag : global_flags())
    if (!flag.value.empty()) {
      value_flags.insert(flag.name);
      if (!flag.alias.empty())
        value_flags.insert(flag.alias);
    }
  for (const auto& command : commands())
    for (const auto& flag : command.flags)
      if (!flag.value.empty()) {
        value_flags.insert(flag.name);
        if (!flag.alias.empty())
          value_flags.insert(flag.alias);
      }
  std::string value_pattern;
  for (auto name : value_flags) {
    if (!value_pattern.empty())
      value_pattern += '|';
    value_pattern += name;
  }
  std::string with_subcommands, groups_words;
  for (const auto& group : groups()) {
    groups_words += group.name;
    groups_words += ' ';
    if (group.has_subcommands)
      if (!with_subcommands.empty())
        with_subcommands += '|';
    with_subcommands += group.name;
  }

  std::string out;
  out += std::string(
           "__chroomctl_ids() {\n"
           "  chroomctl ${__chroomctl_server:+--server \"$__chroomctl_server\"} \"$1\" list -o "
           "name --timeout 2 2>/dev/null\n"
           "}\n\n"
           "# Candidates for the word after the given ones (the words typed so far, without the\n"
           "# program name), space separated; @files: complete file names.\n"
           "__chroomctl_candidates() {\n"
           "  local group='' sub='' want='' nargs=0 w\n"
           "  __chroomctl_server=''\n"
           "  for w in \"$@\"; do\n"
           "    if [ -n \"$want\" ]; then\n"
           "      [ \"$want\" = --server ] && __chroomctl_server=\"$w\"\n"
           "      want=''\n"
           "      continue\n"
           "    fi\n"
           "    case \"$w\" in\n"
           "      --*=*) ;;\n"
           "      ") +
         value_pattern +
         ") want=\"$w\" ;;\n"
         "      -*) ;;\n"
         "      *)\n"
         "        if [ -z \"$group\" ]; then group=\"$w\"\n"
         "        elif [ -z \"$sub\" ] && case \"$group\" in " +
         with_subcommands +
         ") true ;; *) false ;; esac; then sub=\"$w\"\n"
         "        else nargs=$((nargs + 1)); fi ;;\n"
         "    esac\n"
         "  done\n"
         "  if [ -n \"$want\" ]; then\n"
         "    case \"$group|$sub|$want\" in\n";
  // Values of flags: the command's first, then the global ones.
  for (const auto& command : commands())
    for (const auto& flag : command.flags) {
      if (flag.value.empty())
        continue;
      std::string pattern =
        std::string(command.group) + "|" + std::string(command.name) + "|" + std::string(flag.name);
      if (!flag.alias.empty())
        pattern += std::string("\"|\"") + std::string(command.group) + "|" +
                   std::string(command.name) + "|" + std::string(flag.alias);
      out += std::string("      \"") + pattern + "\") echo \"" + candidates_of(flag.completions) +
             "\" ;;\n";
    }
  for (const auto& flag : global_flags()) {
    if (flag.value.empty())
      continue;
    std::string pattern = std::string("*\"|") + std::string(flag.name) + "\"";
    if (!flag.alias.empty())
      pattern += std::string("|*\"|") + std::string(flag.alias) + "\"";
    out +=
      std::string("      ") + pattern + ") echo \"" + candidates_of(flag.completions) + "\" ;;\n";
  }
  out += std::string("    esac\n"
                     "    return\n"
                     "  fi\n"
                     "  if [ -z \"$group\" ]; then\n"
                     "    echo \"") +
         groups_words + "help " + global_words +
         "\"\n"
         "    return\n"
         "  fi\n"
         "  case \"$group\" in\n";
  for (const auto& group : groups()) {
    if (!group.has_subcommands)
      continue;
    std::string subs;
    for (const auto& command : commands())
      if (command.group == group.name)
        subs += std::string(command.name) + " ";
    out += std::string("    ") + std::string(group.name) + ") [ -z \"$sub\" ] && { echo \"" + subs +
           "--help\"; return; } ;;\n";
  }
  out += "  esac\n"
         "  case \"$group|$sub\" in\n";
  for (const auto& command : commands()) {
    std::string words = join_flags(command.flags);
    if (!words.empty())
      words += ' ';
    words += global_words;
    out += std::string("    \"") + std::string(command.group) + "|" + std::string(command.name) +
           "\")\n";
    if (!command.arg_completions.empty())
      out += std::string("      [ \"$nargs\" -eq 0 ] && echo \"") +
             candidates_of(command.arg_completions) + "\"\n";
    out += std::string("      echo \"") + words + "\" ;;\n";
  }
  out += "  esac\n"
         "}\n";
  return out;
}

std::string bash_script() {
  return std::string("# bash completion for chroomctl (generated by `chroomctl completion bash`).\n"
                     "# Install: chroomctl completion bash > /etc/bash_completion.d/chroomctl\n"
                     "#      or: source <(chroomctl completion bash)   (in ~/.bashrc)\n\n") +
         shared_function() +
         "\n_chroomctl() {\n"
         "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" candidates\n"
         "  candidates=\"$(__chroomctl_candidates \"${COMP_WORDS[@]:1:COMP_CWORD-1}\")\"\n"
         "  if [ \"$candidates\" = @files ]; then\n"
         "    compopt -o filenames 2>/dev/null\n"
         "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
         "    return\n"
         "  fi\n"
         "  COMPREPLY=($(compgen -W \"$candidates\" -- \"$cur\"))\n"
         "}\n\n"
         "complete -F _chroomctl chroomctl\n";
}

std::string zsh_script() {
  return std::string(
           "#compdef chroomctl\n"
           "# zsh completion for chroomctl (generated by `chroomctl completion zsh`).\n"
           "# Install: chroomctl completion zsh > \"${fpath[1]}/_chroomctl\"  (then compinit)\n"
           "#      or: source <(chroomctl completion zsh)   (in ~/.zshrc, after compinit)\n\n") +
         shared_function() +
         "\n_chroomctl() {\n"
         "  local candidates\n"
         "  local -a words_found\n"
         "  candidates=\"$(__chroomctl_candidates \"${(@)words[2,CURRENT-1]}\")\"\n"
         "  if [[ \"$candidates\" == @files ]]; then\n"
         "    _files\n"
         "    return\n"
         "  fi\n"
         "  words_found=(${=candidates})\n"
         "  compadd -a words_found\n"
         "}\n\n"
         "if [[ \"${funcstack[1]}\" == _chroomctl ]]; then\n"
         "  _chroomctl \"$@\"\n"
         "else\n"
         "  compdef _chroomctl chroomctl\n"
         "fi\n";
}

} // namespace

int run_completion(command_context& context, const invocation& call) {
  const auto& shell = call.args[0];
  if (shell == "bash")
    *context.out << bash_script();
  else if (shell == "zsh")
    *context.out << zsh_script();
  else
    throw usage_error(std::string("completion: unknown shell '") + shell + "' (bash or zsh)",
                      call.command);
  return exit_ok;
}

} // namespace chroom::ctl
