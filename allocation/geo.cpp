#include "allocation/geo.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace chroom::allocation {

namespace {

double radians(double degrees) {
  return degrees * std::numbers::pi / 180.0;
}

} // namespace

double great_circle_km(geo_point a, geo_point b) {
  double lat1 = radians(a.latitude_deg);
  double lat2 = radians(b.latitude_deg);
  double dlat = lat2 - lat1;
  double dlon = radians(b.longitude_deg - a.longitude_deg);
  double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
             std::cos(lat1) * std::cos(lat2) * std::sin(dlon / 2) * std::sin(dlon / 2);
  // Rounding can push h a hair past 1 for antipodal points.
  return 2 * earth_radius_km * std::asin(std::sqrt(std::clamp(h, 0.0, 1.0)));
}

double estimated_rtt_ms(geo_point a, geo_point b, const fibre_model& model) {
  double one_way_ms = great_circle_km(a, b) * model.path_stretch / model.fibre_km_per_ms;
  return model.base_rtt_ms + 2 * one_way_ms;
}

} // namespace chroom::allocation
