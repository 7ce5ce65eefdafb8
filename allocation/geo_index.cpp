#include "allocation/geo_index.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <queue>

namespace chroom::allocation {

namespace {

// 3° cells: 60 x 120. A dense metro cell holds a few dozen of 10,000 nodes, and an empty
// ocean cell costs one bound computation when the search passes it.
constexpr double cell_deg = 3.0;
constexpr int rows = 60;
constexpr int cols = 120;

double radians(double degrees) {
  return degrees * std::numbers::pi / 180.0;
}

double dot(double ax, double ay, double az, double bx, double by, double bz) {
  return ax * bx + ay * by + az * bz;
}

// Keys in the heap: 1 - cos(angle), monotone in the angle, so neither nodes nor cells
// need an acos.

struct heap_item {
  double key;
  /// A cell (>= 0) or, with cell < 0, a node entry.
  int cell;
  const void* node_entry;
  bool operator>(const heap_item& other) const { return key > other.key; }
};

/// Per-thread scratch of a query, reused: which cells a query opened (generation marks).
struct query_scratch {
  std::vector<uint32_t> opened_in = std::vector<uint32_t>(rows * cols, 0);
  uint32_t generation = 0;
  std::vector<heap_item> heap;
};

} // namespace

geo_index::geo_index()
    : cells_(rows * cols), centres_(rows * cols), cos_radii_(rows * cols), sin_radii_(rows * cols) {
  for (int row = 0; row < rows; ++row) {
    for (int col = 0; col < cols; ++col) {
      int cell = row * cols + col;
      double south = -90.0 + row * cell_deg;
      double west = -180.0 + col * cell_deg;
      geo_point centre{south + cell_deg / 2, west + cell_deg / 2};
      centres_[cell] = to_unit(centre);
      double radius = 0;
      for (double lat : {south, south + cell_deg})
        for (double lon : {west, west + cell_deg})
          radius = std::max(radius, great_circle_km(centre, {lat, lon}) / earth_radius_km);
      // A hair more, so rounding never makes the bound exceed a true distance.
      radius = radius * 1.0001 + 1e-9;
      cos_radii_[cell] = std::cos(radius);
      sin_radii_[cell] = std::sin(radius);
    }
  }
}

geo_index::unit_vector geo_index::to_unit(geo_point point) {
  double lat = radians(point.latitude_deg);
  double lon = radians(point.longitude_deg);
  return {std::cos(lat) * std::cos(lon), std::cos(lat) * std::sin(lon), std::sin(lat)};
}

int geo_index::cell_of(geo_point point) {
  int row = static_cast<int>(std::floor((point.latitude_deg + 90.0) / cell_deg));
  row = std::clamp(row, 0, rows - 1);
  int col = static_cast<int>(std::floor((point.longitude_deg + 180.0) / cell_deg));
  col = ((col % cols) + cols) % cols;
  return row * cols + col;
}

void geo_index::upsert(const node_record* node, geo_point at) {
  erase(node);
  int cell = cell_of(at);
  cells_[cell].push_back({node, to_unit(at)});
  where_[node] = cell;
}

void geo_index::erase(const node_record* node) {
  auto it = where_.find(node);
  if (it == where_.end())
    return;
  auto& cell = cells_[it->second];
  std::erase_if(cell, [node](const entry& e) { return e.node == node; });
  where_.erase(it);
}

void geo_index::clear() {
  for (auto& cell : cells_)
    cell.clear();
  where_.clear();
}

void geo_index::visit_nearest_impl(geo_point from, void* context, visit_fn visit) const {
  if (where_.empty())
    return;
  // One scratch per thread, reused; a query started inside a visitor (nested) gets its own.
  thread_local query_scratch shared_scratch;
  thread_local int depth = 0;
  std::unique_ptr<query_scratch> nested;
  if (depth > 0)
    nested = std::make_unique<query_scratch>();
  auto& scratch = nested ? *nested : shared_scratch;
  struct depth_guard {
    int& depth;
    explicit depth_guard(int& d) : depth(d) { ++depth; }
    ~depth_guard() { --depth; }
  } guard{depth};
  if (++scratch.generation == 0) { // wrapped: forget every old mark
    std::fill(scratch.opened_in.begin(), scratch.opened_in.end(), 0);
    scratch.generation = 1;
  }
  auto generation = scratch.generation;
  auto& heap = scratch.heap;
  heap.clear();
  auto q = to_unit(from);
  auto push_heap = [&](heap_item item) {
    heap.push_back(item);
    std::push_heap(heap.begin(), heap.end(), std::greater<>{});
  };
  auto push_cell = [&](int cell) {
    if (scratch.opened_in[cell] == generation)
      return;
    scratch.opened_in[cell] = generation;
    // The bound is cos(angle to centre - radius), from cos(a - r) = cos a cos r + sin a sin r:
    // no acos per cell. Inside the radius the bound is 0.
    const auto& c = centres_[cell];
    double cos_a = std::clamp(dot(q.x, q.y, q.z, c.x, c.y, c.z), -1.0, 1.0);
    double bound = 0;
    if (cos_a < cos_radii_[cell]) {
      double sin_a = std::sqrt(std::max(0.0, 1.0 - cos_a * cos_a));
      bound = 1.0 - std::min(1.0, cos_a * cos_radii_[cell] + sin_a * sin_radii_[cell]);
    }
    push_heap({bound, cell, nullptr});
  };
  push_cell(cell_of(from));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
    auto item = heap.back();
    heap.pop_back();
    if (item.cell < 0) {
      const auto& e = *static_cast<const entry*>(item.node_entry);
      double angle = std::acos(std::clamp(1.0 - item.key, -1.0, 1.0));
      if (!visit(context, *e.node, angle))
        return;
      continue;
    }
    for (const auto& e : cells_[item.cell])
      push_heap({1.0 - dot(q.x, q.y, q.z, e.at.x, e.at.y, e.at.z), -1, &e});
    int row = item.cell / cols;
    int col = item.cell % cols;
    if (row == 0 || row == rows - 1) {
      for (int other = 0; other < cols; ++other)
        push_cell(row * cols + other);
    }
    for (int dr = -1; dr <= 1; ++dr) {
      int r = row + dr;
      if (r < 0 || r >= rows)
        continue;
      for (int dc = -1; dc <= 1; ++dc)
        push_cell(r * cols + (col + dc + cols) % cols);
    }
  }
}

} // namespace chroom::allocation
