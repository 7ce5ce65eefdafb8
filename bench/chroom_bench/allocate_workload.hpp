// What `chroom-bench allocate` asks for: a stream of AllocateRequests of distinct clients
// joining rooms of a configured size mix, from places drawn by population, encoded
// straight into a reused buffer (no protobuf objects on the hot path).
#pragma once

#include "tools/node_sim/cities.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::bench {

// Small, fast, deterministic generator (splitmix64): the workload must follow from --seed
// and cost nanoseconds per draw.
class workload_rng {
public:
  explicit workload_rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Uniform in [0, n), n > 0.
  std::uint64_t below(std::uint64_t n) { return next() % n; }

private:
  std::uint64_t state_;
};

// Where clients are: the cities of tools/data/cities.csv, each drawn with probability
// proportional to its population (so clients crowd where people live, as nodes do).
using city_sampler = chroom::node_sim::city_table;

// One band of the room size mix: rooms of low..high participants (uniform), `weight` of
// all rooms relative to the other bands.
struct room_size_band {
  std::uint32_t low = 2;
  std::uint32_t high = 8;
  double weight = 1;
};

// Parses "2-8:90,50:10" (90 parts of rooms with 2..8 participants, 10 parts with 50).
// Returns an empty string on success, else what is wrong.
std::string parse_room_mix(std::string_view text, std::vector<room_size_band>& out);

// Mean participants per room of a mix.
double mean_room_size(const std::vector<room_size_band>& mix);

struct workload_parameters {
  // AllocateRequest.app_id.
  std::string app_id = "default";
  std::vector<room_size_band> room_mix;
  // Rooms being filled at once: each Allocate joins one of them at random, so joins of
  // different rooms interleave as they would with real clients.
  std::uint32_t open_rooms = 1000;
  // Share of a room's participants in the room's home city; the others come from
  // anywhere (by population), which is what makes rooms span regions and cascade.
  double local_share = 0.8;
  // Clients are scattered up to this far from their city's centre, degrees (~11 km).
  double scatter_degrees = 0.1;
  // Room and client ids carry the seed, so runs with different seeds never collide with
  // the leases of an earlier run on the same peer.
  std::uint64_t seed = 1;
};

// The stream of Allocate requests. Each has a distinct client_id; rooms are filled to a
// size drawn from the mix, then replaced by new rooms.
class allocate_workload {
public:
  allocate_workload(const workload_parameters& parameters, const city_sampler& cities);

  // Appends the next serialized AllocateRequest to `out`.
  void append_next(std::string& out);

  std::uint64_t requests() const { return requests_; }
  std::uint64_t rooms_started() const { return rooms_started_; }

private:
  struct open_room {
    std::uint64_t number = 0;
    std::uint32_t size = 0;
    std::uint32_t joined = 0;
    std::size_t home_city = 0;
  };
  open_room new_room();

  const workload_parameters& parameters_;
  const city_sampler& cities_;
  workload_rng rng_;
  std::vector<open_room> open_;
  std::vector<double> band_cumulative_;
  std::uint64_t requests_ = 0;
  std::uint64_t rooms_started_ = 0;
  // "r<seed>-" and "c<seed>-": the id prefixes, formatted once.
  std::string room_prefix_;
  std::string client_prefix_;
};

// Appends a serialized ReleaseRequest{lease_id}.
void append_release_request(std::string& out, std::string_view lease_id);

// Appends a serialized EchoRequest{payload}: the Echo reference carries the very bytes
// an Allocate would, so both rows move requests of the same size.
void append_echo_request(std::string& out, std::string_view payload);

// AllocateResponse.lease_id found by walking the top-level fields, without parsing the
// response (it holds a join token and node choices the benchmark does not need).
// nullopt when the message is malformed or has no lease_id.
std::optional<std::string_view> find_lease_id(std::string_view allocate_response);

// Encodes a request with the hand encoder and parses it back with the generated classes;
// returns an empty string when the fields match, else what differs. Run once at start so
// a proto change cannot make the benchmark send wrong requests unnoticed.
std::string check_encoders(const workload_parameters& parameters, const city_sampler& cities);

} // namespace chroom::bench
