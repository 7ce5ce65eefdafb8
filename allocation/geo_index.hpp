#pragma once

// A spatial index of nodes on the sphere, so that a placement looks at the few nodes near a
// client instead of all of them (10,000 nodes, tens of thousands of placements a second).
//
// Nodes sit in 3°x3° latitude/longitude cells. A query is a best-first search: a heap holds
// cells keyed by a lower bound of their distance to the query point, and nodes keyed by
// their exact distance; a node is handed out only when no cell still unopened can hold a
// nearer one. The bound of a cell is the angle to its centre minus its radius; cells open
// their 8 neighbours (the polar rows: their whole row, since paths cross the poles), and a
// geodesic to an unopened cell crosses the opened region's border, so the order is exact.

#include "allocation/geo.hpp"

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace chroom::allocation {

struct node_record;

class geo_index {
public:
  geo_index();

  /// Adds `node` at `at`, or moves it there.
  void upsert(const node_record* node, geo_point at);
  void erase(const node_record* node);
  void clear();
  size_t size() const { return where_.size(); }

  /// Calls `visit(node, angle_rad)` for nodes by increasing distance from `from` until it
  /// returns false or every node was visited. angle_rad * earth_radius_km is the
  /// great-circle distance.
  template <class Visit> void visit_nearest(geo_point from, Visit&& visit) const {
    visit_nearest_impl(from, &visit, [](void* context, const node_record& node, double angle) {
      return (*static_cast<Visit*>(context))(node, angle);
    });
  }

private:
  struct unit_vector {
    double x = 0, y = 0, z = 0;
  };
  struct entry {
    const node_record* node;
    unit_vector at;
  };

  using visit_fn = bool (*)(void*, const node_record&, double);
  void visit_nearest_impl(geo_point from, void* context, visit_fn visit) const;
  static unit_vector to_unit(geo_point point);
  static int cell_of(geo_point point);

  std::vector<std::vector<entry>> cells_;
  /// Each cell's centre, and cos and sin of the angle from it to its farthest corner.
  std::vector<unit_vector> centres_;
  std::vector<double> cos_radii_;
  std::vector<double> sin_radii_;
  std::unordered_map<const node_record*, int> where_;
};

} // namespace chroom::allocation
