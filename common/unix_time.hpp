#pragma once

// Wall-clock time as protocol messages and records carry it: milliseconds since the Unix
// epoch. Durations and timeouts use steady_clock instead.

#include <chrono>
#include <cstdint>

namespace chroom {

inline int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace chroom
