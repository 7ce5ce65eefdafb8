// chroom-bench: benchmarks and simulations that print figures (never pass/fail).
//   chroom-bench placement [flags]   placement quality: strategies replayed on a world
//   chroom-bench allocate [flags]    Allocate load through a peer's gateway

#include "bench/chroom_bench/commands.hpp"

#include <cstdio>
#include <string_view>

int main(int argc, char** argv) {
  std::string_view command = argc > 1 ? argv[1] : "";
  if (command == "placement")
    return chroom::bench::run_placement(argc - 1, argv + 1);
  if (command == "allocate")
    return chroom::bench::run_allocate(argc - 1, argv + 1);
  std::fprintf(stderr, "usage: chroom-bench placement|allocate [--help]\n");
  return 2;
}
