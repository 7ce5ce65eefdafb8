// chroom-node-sim's command line.
#pragma once

#include <string>
#include <variant>

#include "tools/node_sim/fleet.hpp"

namespace chroom::node_sim {

struct options {
  fleet_options fleet;
  // Data file of cities; empty: the one shipped in tools/data (CHROOM_DATA_DIR).
  std::string cities_file;
  // Quit after this long; 0: run until `quit`, SIGINT or SIGTERM.
  double duration_s = 0;
  // Print a status line every this often; 0: only on `status`.
  double status_interval_s = 0;
  std::string log_level = "info";
  // Scheduled faults; 0 disables each. A crashed node comes back after crash_down_s, a
  // frozen one is thawed after freeze_s.
  double crash_every_s = 0;
  double crash_down_s = 10;
  double freeze_every_s = 0;
  double freeze_s = 10;
};

// What the command line asks for: options to run with, text to print and exit 0 (help,
// version), or an error message (exit 2).
struct print_and_exit {
  std::string text;
};
struct usage_error {
  std::string message;
};
using parse_result = std::variant<options, print_and_exit, usage_error>;

parse_result parse_options(int argc, char** argv);

} // namespace chroom::node_sim
