#pragma once

// Geography for placement: distances on the Earth and the round-trip time a distance
// costs over real networks. Pure functions; units in the names.

namespace chroom::allocation {

/// A point on the Earth, degrees.
struct geo_point {
  double latitude_deg = 0;
  double longitude_deg = 0;
};

/// Mean Earth radius (IUGG), kilometres.
inline constexpr double earth_radius_km = 6371.0088;

/// Great-circle distance between two points (haversine), kilometres.
double great_circle_km(geo_point a, geo_point b);

/// How a distance becomes a round-trip time when nothing was measured.
struct fibre_model {
  /// Light in fibre covers about 200 km per millisecond (refractive index ~1.47).
  double fibre_km_per_ms = 200.0;
  /// Cables do not follow great circles: routed paths are longer by this factor
  /// (published path-stretch figures run from ~1.3 on long-haul routes to 2+ within
  /// regions; 1.5 puts New York-Berlin at ~100 ms, close to what is observed).
  double path_stretch = 1.5;
  /// Fixed cost of the last mile, switching and queuing on a round trip, milliseconds.
  double base_rtt_ms = 5.0;
};

/// Estimated round-trip time between two points, milliseconds.
double estimated_rtt_ms(geo_point a, geo_point b, const fibre_model& model = {});

} // namespace chroom::allocation
