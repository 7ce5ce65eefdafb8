#pragma once

// Deterministic random numbers for the placement simulation. A run with the same --seed
// builds the same world on every machine and library, so the standard distributions (whose
// output differs between implementations) are not used. Every purpose draws from its own
// stream, so adding a draw to one (say, a new client attribute) never moves the nodes.

#include <cmath>
#include <cstdint>

namespace chroom::bench::sim {

/// SplitMix64's finaliser: spreads any 64-bit input over all 64 bits.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// What a stream is for.
enum class stream : uint64_t { nodes = 1, rooms = 2, clients = 3, failures = 4, replay = 5 };

/// A uniform number in [0, 1) that is a pure function of its inputs: properties of pairs
/// (the route factor of a city and a node) need no table and no draw order.
inline double hash_unit(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t h = mix64(mix64(seed ^ 0x5bd1e995ULL) ^ mix64(a * 0x9e3779b97f4a7c15ULL + b));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

class rng {
public:
  rng(uint64_t seed, stream purpose, uint64_t index = 0)
      : state_(mix64(mix64(seed) ^ mix64(static_cast<uint64_t>(purpose) << 32 ^ index))) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_ - 0x9e3779b97f4a7c15ULL);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [low, high).
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  /// Uniform integer in [0, bound); bound > 0.
  uint64_t below(uint64_t bound) { return next() % bound; }
  bool chance(double probability) { return uniform() < probability; }
  /// Exponentially distributed with the given mean (memoryless: stays and gaps).
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }

private:
  uint64_t state_;
};

} // namespace chroom::bench::sim
