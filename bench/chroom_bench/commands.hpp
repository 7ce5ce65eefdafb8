#pragma once

// The subcommands of chroom-bench; each gets argv with its own name as argv[0].

namespace chroom::bench {

int run_placement(int argc, char** argv);
int run_allocate(int argc, char** argv);

} // namespace chroom::bench
