// Distances and the fibre round-trip model.

#include "allocation/geo.hpp"

#include <doctest/doctest.h>

using chroom::allocation::estimated_rtt_ms;
using chroom::allocation::fibre_model;
using chroom::allocation::geo_point;
using chroom::allocation::great_circle_km;

namespace {

constexpr geo_point berlin{52.5200, 13.4050};
constexpr geo_point paris{48.8566, 2.3522};
constexpr geo_point new_york{40.7128, -74.0060};
constexpr geo_point sydney{-33.8688, 151.2093};

} // namespace

TEST_CASE("great-circle distances match known city pairs") {
  // Reference distances from the haversine formula with the same radius, cross-checked
  // against published figures (Berlin-Paris ~878 km, New York-Sydney ~15,990 km).
  CHECK(great_circle_km(berlin, paris) == doctest::Approx(877.5).epsilon(0.005));
  CHECK(great_circle_km(new_york, sydney) == doctest::Approx(15989).epsilon(0.005));
  CHECK(great_circle_km(berlin, berlin) == doctest::Approx(0.0));
  CHECK(great_circle_km(paris, berlin) == doctest::Approx(great_circle_km(berlin, paris)));
}

TEST_CASE("antipodes and the date line") {
  double half_circumference = chroom::allocation::earth_radius_km * 3.141592653589793;
  CHECK(great_circle_km({0, 0}, {0, 180}) == doctest::Approx(half_circumference));
  CHECK(great_circle_km({90, 0}, {-90, 0}) == doctest::Approx(half_circumference));
  // 179.5 E to 179.5 W is one degree of longitude at the equator, not 359.
  CHECK(great_circle_km({0, 179.5}, {0, -179.5}) == doctest::Approx(111.19).epsilon(0.01));
}

TEST_CASE("the fibre model: base cost plus twice the stretched path") {
  fibre_model model;
  CHECK(estimated_rtt_ms(berlin, berlin, model) == doctest::Approx(model.base_rtt_ms));
  double km = great_circle_km(berlin, paris);
  CHECK(estimated_rtt_ms(berlin, paris, model) ==
        doctest::Approx(model.base_rtt_ms + 2 * km * model.path_stretch / model.fibre_km_per_ms));
  // Transatlantic: ~6,385 km great circle; the model says ~101 ms, in the range observed
  // between New York and central European capitals over the public internet (75-125 ms).
  double ny_berlin = estimated_rtt_ms(new_york, berlin, model);
  CHECK(ny_berlin > 75);
  CHECK(ny_berlin < 125);
  // Farther is never cheaper.
  CHECK(estimated_rtt_ms(new_york, sydney, model) > ny_berlin);
}
