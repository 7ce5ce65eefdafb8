// The world the simulated nodes live in: cities with population and coordinates
// (tools/data/cities.csv, derived from GeoNames by tools/data/make_cities.js).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chroom::node_sim {

struct city {
  std::string name;
  // ISO 3166-1 alpha-2.
  std::string country;
  // Coarse operator region, e.g. "eu-west" (see docs/node-sim.md for the mapping).
  std::string region;
  double latitude = 0;  // degrees
  double longitude = 0; // degrees
  std::uint64_t population = 0;
};

class city_table {
public:
  // Reads a CSV with the header name,country,lat,lon,population,region (any column order,
  // RFC 4180 quoting). Returns an empty string on success, else what is wrong and where.
  std::string load(const std::string& path);
  // A handful of big cities, used when no data file can be found.
  void load_fallback();

  // The city whose cumulative population interval holds `u` in [0, 1): a city is chosen
  // with probability proportional to its population.
  const city& pick_weighted(double u) const { return cities_[pick_index(u)]; }
  // The index of that city.
  std::size_t pick_index(double u) const;

  std::size_t size() const { return cities_.size(); }
  const city& operator[](std::size_t i) const { return cities_[i]; }

private:
  void index();

  std::vector<city> cities_;
  // cumulative_[i] = population of cities 0..i.
  std::vector<std::uint64_t> cumulative_;
};

// Great-circle distance on a spherical Earth (haversine, radius 6371 km), kilometres.
double great_circle_km(double lat1, double lon1, double lat2, double lon2);

} // namespace chroom::node_sim
