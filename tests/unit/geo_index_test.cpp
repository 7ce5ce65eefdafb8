// Tests of the spatial index (allocation/geo_index.hpp): visit_nearest hands out every node
// in exact increasing great-circle order, checked against brute force over thousands of
// seeded random points (poles, the antimeridian and exact duplicates included), with early
// stops, erase, upsert (moves) and clear; and the same index reached through node_table.
#include "allocation/geo_index.hpp"

#include "allocation/geo.hpp"
#include "allocation/node_table.hpp"
#include "placement_fixtures.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <doctest/doctest.h>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fx = chroom::placement_fixtures;
using chroom::allocation::earth_radius_km;
using chroom::allocation::geo_index;
using chroom::allocation::geo_point;
using chroom::allocation::great_circle_km;
using chroom::allocation::node_record;
using chroom::allocation::node_table;
using namespace std::chrono_literals;

// Two distances closer than this are a tie: the index keys nodes by 1 - cos(angle) and the
// reference is haversine, so the two disagree by far less than a metre except between
// points a few metres apart, which only the deliberate duplicates are.
constexpr double order_tolerance_km = 1e-3;
// The angle the index reports, against haversine. acos(1 - key) loses precision near 0:
// 1e-16 of key is 1.4e-8 rad (90 m) at distance 0, far less anywhere else.
constexpr double angle_tolerance_km = 0.2;

/// Nodes and where they are; the records are only identities for the index.
struct world {
  std::deque<node_record> records; // a deque: addresses stay valid while it grows
  std::map<const node_record*, geo_point> where;

  const node_record* add(geo_point at) {
    records.emplace_back();
    records.back().node_id = "n" + std::to_string(records.size() - 1);
    where[&records.back()] = at;
    return &records.back();
  }
};

struct visit {
  const node_record* node;
  double angle_rad;
};

std::vector<visit> visit_all(const geo_index& index, geo_point from) {
  std::vector<visit> order;
  index.visit_nearest(from, [&](const node_record& node, double angle) {
    order.push_back({&node, angle});
    return true;
  });
  return order;
}

/// Checks that `order` is every node of `nodes` exactly once, by increasing distance (ties
/// allowed), position by position the same distances as brute force.
void check_exact_order(const std::vector<visit>& order,
                       const std::map<const node_record*, geo_point>& nodes, geo_point from) {
  REQUIRE(order.size() == nodes.size());
  std::set<const node_record*> seen;
  std::vector<double> reference;
  for (const auto& [node, at] : nodes)
    reference.push_back(great_circle_km(from, at));
  std::sort(reference.begin(), reference.end());

  size_t out_of_order = 0, wrong_distance = 0, wrong_angle = 0, unknown = 0;
  double previous = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    auto it = nodes.find(order[i].node);
    if (it == nodes.end()) {
      ++unknown;
      continue;
    }
    seen.insert(order[i].node);
    double km = great_circle_km(from, it->second);
    if (km < previous - order_tolerance_km)
      ++out_of_order;
    previous = std::max(previous, km);
    if (std::abs(km - reference[i]) > order_tolerance_km)
      ++wrong_distance;
    if (std::abs(order[i].angle_rad * earth_radius_km - km) > angle_tolerance_km)
      ++wrong_angle;
  }
  INFO("query at " << from.latitude_deg << ", " << from.longitude_deg);
  CHECK(unknown == 0);
  CHECK(seen.size() == nodes.size()); // nobody twice, nobody missing
  CHECK(out_of_order == 0);
  CHECK(wrong_distance == 0);
  CHECK(wrong_angle == 0);
}

/// 3,000 points: uniform on the sphere, and crowds near both poles (the poles themselves
/// included), along the antimeridian (±180 exactly included), on the equator, and exact
/// duplicates.
world random_world(fx::seeded_random& random, size_t count) {
  world out;
  while (out.records.size() < count) {
    switch (random.below(8)) {
      case 0:
        out.add({random.between(84.0, 90.0), random.between(-180.0, 180.0)});
        break;
      case 1:
        out.add({random.between(-90.0, -84.0), random.between(-180.0, 180.0)});
        break;
      case 2: {
        double lon =
          random.chance(0.5) ? random.between(176.0, 180.0) : random.between(-180.0, -176.0);
        out.add({random.between(-80.0, 80.0), lon});
        break;
      }
      case 3:
        out.add({random.between(-3.0, 3.0), random.between(-180.0, 180.0)});
        break;
      case 4: { // exact edge values: poles, the antimeridian, cell borders
        const double lats[] = {90.0, -90.0, 87.0, -87.0, 0.0, 3.0, 45.0};
        const double lons[] = {180.0, -180.0, 0.0, 177.0, -177.0, 3.0};
        out.add({lats[random.below(7)], lons[random.below(6)]});
        break;
      }
      case 5:
        if (!out.records.empty()) { // a duplicate of an existing point
          auto it = out.where.begin();
          std::advance(it, static_cast<long>(random.below(out.where.size())));
          out.add(it->second);
          break;
        }
        [[fallthrough]];
      default:
        out.add(random.on_sphere());
        break;
    }
  }
  return out;
}

geo_point random_query(fx::seeded_random& random) {
  switch (random.below(6)) {
    case 0:
      return {random.between(85.0, 90.0), random.between(-180.0, 180.0)};
    case 1:
      return {random.between(-90.0, -85.0), random.between(-180.0, 180.0)};
    case 2:
      return {random.between(-60.0, 60.0),
              random.chance(0.5) ? random.between(178.0, 180.0) : random.between(-180.0, -178.0)};
    default:
      return random.on_sphere();
  }
}

geo_index index_of(const world& nodes) {
  geo_index index;
  for (const auto& [node, at] : nodes.where)
    index.upsert(node, at);
  return index;
}

} // namespace

TEST_CASE("geo_index: an empty index visits nothing") {
  geo_index index;
  CHECK(index.size() == 0);
  int calls = 0;
  for (geo_point from : {fx::berlin, geo_point{90, 0}, geo_point{-90, 180}, geo_point{0, -180}})
    index.visit_nearest(from, [&](const node_record&, double) {
      ++calls;
      return true;
    });
  CHECK(calls == 0);

  // Emptied again by erase, and by clear.
  node_record a, b;
  index.upsert(&a, fx::paris);
  index.erase(&a);
  CHECK(index.size() == 0);
  CHECK(visit_all(index, fx::paris).empty());
  index.upsert(&a, fx::paris);
  index.upsert(&b, fx::tokyo);
  CHECK(index.size() == 2);
  index.clear();
  CHECK(index.size() == 0);
  CHECK(visit_all(index, fx::tokyo).empty());
}

TEST_CASE("geo_index: a single node is found from anywhere, with its distance") {
  geo_index index;
  node_record only;
  index.upsert(&only, fx::sydney);
  for (geo_point from : {fx::sydney, fx::berlin, geo_point{90, 0}, geo_point{-90, 0},
                         geo_point{0, 180}, geo_point{33.87, -28.79}}) { // ~antipode of Sydney
    auto order = visit_all(index, from);
    REQUIRE(order.size() == 1);
    CHECK(order[0].node == &only);
    CHECK(order[0].angle_rad * earth_radius_km ==
          doctest::Approx(great_circle_km(from, fx::sydney)).epsilon(1e-6));
  }
}

TEST_CASE("geo_index: small cases across the antimeridian and over the poles") {
  SUBCASE("the nearest node is across the antimeridian") {
    geo_index index;
    node_record east, west;
    index.upsert(&east, {0, 178.0});  // 211 km from the query
    index.upsert(&west, {0, -179.9}); // 22 km, in the last column
    auto order = visit_all(index, {0, 179.9});
    REQUIRE(order.size() == 2);
    CHECK(order[0].node == &west);
    CHECK(order[0].angle_rad * earth_radius_km == doctest::Approx(22.24).epsilon(0.01));
    CHECK(order[1].node == &east);
  }
  SUBCASE("the nearest node is over the north pole") {
    geo_index index;
    node_record over, below;
    index.upsert(&below, {85.0, 10.0});  // 500 km south along the meridian
    index.upsert(&over, {89.5, -170.0}); // 111 km, on the far side of the pole
    auto order = visit_all(index, {89.5, 10.0});
    REQUIRE(order.size() == 2);
    CHECK(order[0].node == &over);
    CHECK(order[0].angle_rad * earth_radius_km == doctest::Approx(111.19).epsilon(0.01));
    CHECK(order[1].node == &below);
  }
  SUBCASE("the nearest node is over the south pole, the query on the antimeridian") {
    geo_index index;
    node_record over, beside;
    index.upsert(&beside, {-86.0, 178.0}); // ~334 km
    index.upsert(&over, {-89.0, 0.0});     // ~222 km, across the pole
    auto order = visit_all(index, {-89.0, 180.0});
    REQUIRE(order.size() == 2);
    CHECK(order[0].node == &over);
    CHECK(order[1].node == &beside);
  }
  SUBCASE("longitudes 180 and -180 are the same place") {
    geo_index index;
    node_record a, b, far;
    index.upsert(&a, {10.0, 180.0});
    index.upsert(&far, {10.0, 170.0});
    index.upsert(&b, {10.0, -180.0});
    auto order = visit_all(index, {10.0, -180.0});
    REQUIRE(order.size() == 3);
    CHECK(order[0].angle_rad * earth_radius_km < 0.2);
    CHECK(order[1].angle_rad * earth_radius_km < 0.2);
    CHECK(order[2].node == &far);
  }
}

TEST_CASE("geo_index: the full visiting order equals brute force (3,000 points, 200 queries)") {
  fx::seeded_random random(20240611);
  auto nodes = random_world(random, 3000);
  auto index = index_of(nodes);
  REQUIRE(index.size() == 3000);
  for (int query = 0; query < 200; ++query) {
    auto from = random_query(random);
    check_exact_order(visit_all(index, from), nodes.where, from);
  }
  // Queries exactly at the poles and on the antimeridian, and at a node's own place.
  for (geo_point from : {geo_point{90, 0}, geo_point{-90, 0}, geo_point{90, 180}, geo_point{0, 180},
                         geo_point{0, -180}, geo_point{-45, 180}, nodes.where.begin()->second})
    check_exact_order(visit_all(index, from), nodes.where, from);
}

TEST_CASE("geo_index: a sparse world (a few nodes far apart) is in exact order too") {
  // Few nodes, so most cells a query opens are empty and the search crosses oceans.
  fx::seeded_random random(77);
  for (size_t count : {2u, 5u, 17u, 60u}) {
    world nodes;
    for (size_t i = 0; i < count; ++i)
      nodes.add(random.on_sphere());
    auto index = index_of(nodes);
    for (int query = 0; query < 50; ++query) {
      auto from = random_query(random);
      check_exact_order(visit_all(index, from), nodes.where, from);
    }
  }
}

TEST_CASE("geo_index: an early stop hands out exactly the k nearest, then nothing") {
  fx::seeded_random random(99);
  auto nodes = random_world(random, 3000);
  auto index = index_of(nodes);
  for (int query = 0; query < 100; ++query) {
    auto from = random_query(random);
    size_t k = 1 + random.below(40);
    std::vector<visit> order;
    index.visit_nearest(from, [&](const node_record& node, double angle) {
      order.push_back({&node, angle});
      return order.size() < k; // false on the k-th: no further call
    });
    REQUIRE(order.size() == k);
    std::vector<double> reference;
    for (const auto& [node, at] : nodes.where)
      reference.push_back(great_circle_km(from, at));
    std::sort(reference.begin(), reference.end());
    for (size_t i = 0; i < k; ++i) {
      INFO("query " << query << ", rank " << i);
      CHECK(std::abs(great_circle_km(from, nodes.where.at(order[i].node)) - reference[i]) <=
            order_tolerance_km);
    }
  }
  // Stopping at the first node.
  int calls = 0;
  index.visit_nearest(fx::berlin, [&](const node_record&, double) {
    ++calls;
    return false;
  });
  CHECK(calls == 1);
}

TEST_CASE("geo_index: erased nodes are never visited again") {
  fx::seeded_random random(4242);
  auto nodes = random_world(random, 3000);
  auto index = index_of(nodes);

  // Erase a third, chosen at random.
  std::vector<const node_record*> all;
  for (const auto& [node, at] : nodes.where)
    all.push_back(node);
  for (size_t i = 0; i < 1000; ++i) {
    size_t j = i + random.below(all.size() - i);
    std::swap(all[i], all[j]);
    index.erase(all[i]);
    nodes.where.erase(all[i]);
  }
  CHECK(index.size() == 2000);
  // Erasing again, or erasing a node never added, changes nothing.
  index.erase(all[0]);
  node_record stranger;
  index.erase(&stranger);
  CHECK(index.size() == 2000);

  for (int query = 0; query < 100; ++query) {
    auto from = random_query(random);
    check_exact_order(visit_all(index, from), nodes.where, from);
  }

  // Everything erased: empty again.
  for (const auto& [node, at] : nodes.where)
    index.erase(node);
  CHECK(index.size() == 0);
  CHECK(visit_all(index, fx::berlin).empty());
}

TEST_CASE("geo_index: upsert moves a node, it is found at its new place only") {
  fx::seeded_random random(31337);
  auto nodes = random_world(random, 3000);
  auto index = index_of(nodes);

  std::vector<const node_record*> all;
  for (const auto& [node, at] : nodes.where)
    all.push_back(node);
  // Move 1,000 nodes (some twice) to new random places, poles and antimeridian included.
  for (int i = 0; i < 1000; ++i) {
    const auto* node = all[random.below(all.size())];
    auto to = random.chance(0.3) ? random_query(random) : random.on_sphere();
    index.upsert(node, to);
    nodes.where[node] = to;
  }
  CHECK(index.size() == 3000); // moved, not added

  for (int query = 0; query < 100; ++query) {
    auto from = random_query(random);
    check_exact_order(visit_all(index, from), nodes.where, from);
  }

  // A node moved to an empty spot is the first one found there, and only once.
  const auto* mover = all.front();
  index.upsert(mover, {-60.0, -140.0}); // the South Pacific, far from the random crowds
  nodes.where[mover] = {-60.0, -140.0};
  auto order = visit_all(index, {-60.0, -140.0});
  REQUIRE(order.size() == 3000);
  CHECK(order[0].node == mover);
  CHECK(order[0].angle_rad * earth_radius_km < angle_tolerance_km);
  CHECK(std::count_if(order.begin(), order.end(),
                      [mover](const visit& v) { return v.node == mover; }) == 1);
  // Moving it within its own cell, and onto the same place again, keeps one entry.
  index.upsert(mover, {-60.5, -140.5});
  index.upsert(mover, {-60.5, -140.5});
  nodes.where[mover] = {-60.5, -140.5};
  CHECK(index.size() == 3000);
  check_exact_order(visit_all(index, {-60.0, -140.0}), nodes.where, {-60.0, -140.0});
}

TEST_CASE("geo_index: queries from inside a visitor do not disturb the outer one") {
  // Regression: every query on a thread shared one thread_local scratch (heap and "cell
  // opened" marks), so a visitor running another query (e.g. "for each candidate, the
  // node nearest to it") emptied the outer query's heap: the outer query from Berlin
  // stopped after Berlin instead of visiting Berlin, Paris, Tokyo.
  geo_index index;
  node_record b, p, t;
  index.upsert(&b, fx::berlin);
  index.upsert(&p, fx::paris);
  index.upsert(&t, fx::tokyo);
  std::vector<const node_record*> outer;
  index.visit_nearest(fx::berlin, [&](const node_record& node, double) {
    outer.push_back(&node);
    CHECK(visit_all(index, fx::sydney).size() == 3);
    return outer.size() < 10; // a guard in case the outer query loops
  });
  CHECK(outer.size() == 3);
  CHECK(outer == std::vector<const node_record*>{&b, &p, &t});

  // On a big world, two levels deep: every order still exact.
  fx::seeded_random random(8080);
  auto nodes = random_world(random, 3000);
  auto big = index_of(nodes);
  auto from = random_query(random);
  std::vector<visit> order;
  int inner_queries = 0;
  big.visit_nearest(from, [&](const node_record& node, double angle) {
    order.push_back({&node, angle});
    if (order.size() % 500 == 1) {
      auto inner_from = random_query(random);
      std::vector<visit> inner;
      big.visit_nearest(inner_from, [&](const node_record& other, double other_angle) {
        inner.push_back({&other, other_angle});
        if (inner.size() == 1000) {
          auto deepest_from = random_query(random);
          check_exact_order(visit_all(big, deepest_from), nodes.where, deepest_from);
        }
        return true;
      });
      check_exact_order(inner, nodes.where, inner_from);
      ++inner_queries;
    }
    return true;
  });
  CHECK(inner_queries == 6);
  check_exact_order(order, nodes.where, from);
}

TEST_CASE("geo_index: node_table keeps its index in step with registrations") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);
  fx::add_node(table, "tokyo", fx::tokyo, "ap-northeast", "JP", 100);

  auto order_from = [](const node_table& nodes, geo_point from) {
    std::vector<std::string> ids;
    double previous = -1;
    nodes.visit_nearest(from, [&](const node_record& node, double angle) {
      CHECK(angle >= previous);
      previous = angle;
      // The records handed out are the table's own.
      CHECK(nodes.find(node.node_id) == &node);
      ids.push_back(node.node_id);
      return true;
    });
    return ids;
  };
  using ids = std::vector<std::string>;
  CHECK(order_from(table, fx::warsaw) == ids{"berlin", "paris", "new-york", "tokyo"});
  CHECK(order_from(table, fx::boston) == ids{"new-york", "paris", "berlin", "tokyo"});
  CHECK(order_from(table, fx::sydney) == ids{"tokyo", "new-york", "berlin", "paris"});

  // A node registering again from elsewhere moves in the index.
  table.on_register(fx::registration_at("paris", fx::sydney, "ap-southeast", "AU", 100),
                    fx::fixture_session, fx::t0 + 1s);
  CHECK(order_from(table, fx::sydney) == ids{"paris", "tokyo", "new-york", "berlin"});

  // Dead nodes are still visited (the visitor filters) until the table forgets them.
  table.on_stream_closed("tokyo", fx::fixture_session, fx::t0 + 2s);
  fx::report(table, "berlin", {}, fx::t0 + 5s);
  fx::report(table, "paris", {}, fx::t0 + 5s);
  fx::report(table, "new-york", {}, fx::t0 + 5s);
  table.sweep(fx::t0 + 5s);
  REQUIRE(table.find("tokyo")->state == chroom::admin::v1::NODE_STATE_DEAD);
  CHECK(order_from(table, fx::sydney) == ids{"paris", "tokyo", "new-york", "berlin"});
  auto later = fx::t0 + 5s + table.rules().forget_after;
  fx::report(table, "berlin", {}, later);
  fx::report(table, "paris", {}, later);
  fx::report(table, "new-york", {}, later);
  table.sweep(later);
  REQUIRE(table.find("tokyo") == nullptr);
  CHECK(order_from(table, fx::sydney) == ids{"paris", "new-york", "berlin"});

  // A copy has an index of its own records; a move keeps the records it indexes.
  auto copy = std::make_unique<node_table>(table);
  auto copied = *copy;
  copy.reset();
  CHECK(order_from(copied, fx::warsaw) == ids{"berlin", "new-york", "paris"});
  node_table assigned;
  assigned = copied;
  CHECK(order_from(assigned, fx::boston) == ids{"new-york", "berlin", "paris"});
  node_table moved = std::move(assigned);
  CHECK(order_from(moved, fx::boston) == ids{"new-york", "berlin", "paris"});
}
