// Small deterministic random numbers for the simulator: every node draws from its own
// generator, seeded from (--seed, node index, purpose), so a run with the same seed places
// the same nodes in the same cities with the same features on every machine. The standard
// distributions are not used because their output differs between library versions.
#pragma once

#include <cmath>
#include <cstdint>

namespace chroom::node_sim {

// SplitMix64 finaliser: spreads any 64-bit input over all 64 bits.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// What a generator is used for; separate streams so that adding a runtime draw never
// changes where nodes are placed.
enum class rng_purpose : std::uint64_t { setup = 1, runtime = 2, faults = 3 };

class rng {
public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  rng(std::uint64_t seed, std::uint64_t index, rng_purpose purpose)
      : state_(mix64(mix64(seed) ^ mix64(index * 0x632be59bd9b4e019ULL) ^
                     static_cast<std::uint64_t>(purpose))) {}

  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_ - 0x9e3779b97f4a7c15ULL);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [low, high).
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Uniform integer in [0, bound); bound > 0.
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }
  bool chance(double probability) { return uniform() < probability; }
  // Exponentially distributed with the given mean (memoryless session lengths).
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }

private:
  std::uint64_t state_;
};

} // namespace chroom::node_sim
