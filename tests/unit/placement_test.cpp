// Tests of placement (allocation/placement.hpp) on a real node_table, from its documented
// contract: the hard filters (state, avoid, app policy, features, capacity after
// reservations, high water), the failure kinds and their messages, the RTT sources
// (probe > node matrix > distance model, plus the access excess), the three strategies and
// network health, room affinity and cascading, alternates, Candidates, region centres and
// node-to-node RTTs. Expected values come from the fibre model: RTT = 5 ms + 0.015 ms per
// great-circle km (e.g. a Berlin client: Berlin 5.00, Potsdam 5.41, Frankfurt 11.35,
// Warsaw 12.76, Paris 18.16, London 18.97, Madrid 33.04, New York 100.78 ms).
#include "allocation/placement.hpp"

#include "allocation/geo.hpp"
#include "allocation/node_table.hpp"
#include "placement_fixtures.hpp"

#include <algorithm>
#include <cmath>
#include <doctest/doctest.h>
#include <map>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

namespace chroom::allocation {
// doctest prints enums as numbers; found by argument-dependent lookup, these show names.
inline doctest::String toString(placement_failure value) {
  switch (value) {
    case placement_failure::none:
      return "none";
    case placement_failure::no_active_nodes:
      return "no_active_nodes";
    case placement_failure::region_policy:
      return "region_policy";
    case placement_failure::features:
      return "features";
    case placement_failure::capacity:
      return "capacity";
    case placement_failure::latency_budget:
      return "latency_budget";
    case placement_failure::room_pinned:
      return "room_pinned";
    case placement_failure::hook_choice:
      return "hook_choice";
  }
  return "?";
}
inline doctest::String toString(rtt_source value) {
  switch (value) {
    case rtt_source::probe:
      return "probe";
    case rtt_source::node_matrix:
      return "node_matrix";
    case rtt_source::distance:
      return "distance";
  }
  return "?";
}
} // namespace chroom::allocation

namespace {

namespace fx = chroom::placement_fixtures;
namespace admin = chroom::admin::v1;
using namespace std::chrono_literals;
using chroom::allocation::app_policy;
using chroom::allocation::clock;
using chroom::allocation::estimate_rtt;
using chroom::allocation::estimated_rtt_ms;
using chroom::allocation::feature_needs;
using chroom::allocation::geo_point;
using chroom::allocation::great_circle_km;
using chroom::allocation::nearest_candidates;
using chroom::allocation::node_event;
using chroom::allocation::node_record;
using chroom::allocation::node_rtt_ms;
using chroom::allocation::node_table;
using chroom::allocation::overloaded;
using chroom::allocation::parse_features;
using chroom::allocation::parse_strategy;
using chroom::allocation::place;
using chroom::allocation::placement_failure;
using chroom::allocation::placement_request;
using chroom::allocation::placement_result;
using chroom::allocation::placement_rules;
using chroom::allocation::probe;
using chroom::allocation::region_centre;
using chroom::allocation::room_view;
using chroom::allocation::rtt_source;
using chroom::allocation::scored_node;
using chroom::allocation::strategy;
using chroom::allocation::table_error;
using strings = std::vector<std::string>;

/// The fibre model with its defaults: what every expectation below is computed with.
double model(geo_point a, geo_point b) {
  return estimated_rtt_ms(a, b);
}

placement_request client_at(geo_point where, std::vector<probe> probes = {}) {
  placement_request request;
  request.client = where;
  request.probes = std::move(probes);
  return request;
}

placement_result place_at(const node_table& table, geo_point where, const room_view& room = {},
                          const placement_rules& rules = {}, uint32_t alternates = 2) {
  return place(table, client_at(where), room, rules, alternates);
}

strings ids_of(const std::vector<scored_node>& nodes) {
  strings out;
  for (const auto& node : nodes)
    out.push_back(node.node_id);
  return out;
}

app_policy app_with(strategy chosen, strings regions = {}, strings countries = {}) {
  app_policy app;
  app.app_id = "telemed";
  app.placement_strategy = chosen;
  app.allowed_regions = std::move(regions);
  app.allowed_countries = std::move(countries);
  return app;
}

room_view room_on(strings node_ids) {
  room_view room;
  for (auto& id : node_ids)
    room.parts.push_back({std::move(id), 3});
  return room;
}

const node_record& record(const node_table& table, const std::string& node_id) {
  const auto* found = table.find(node_id);
  REQUIRE(found != nullptr);
  return *found;
}

/// Berlin, Paris, New York and Tokyo, 100 places each, idle.
node_table four_cities() {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);
  fx::add_node(table, "tokyo", fx::tokyo, "ap-northeast", "JP", 100);
  return table;
}

/// Six European nodes, 100 places each, idle. From a Berlin client by RTT: berlin,
/// potsdam, frankfurt, warsaw, paris, london.
node_table six_european() {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "potsdam", fx::potsdam, "eu-central", "DE", 100);
  fx::add_node(table, "warsaw", fx::warsaw, "eu-central", "PL", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  return table;
}

void check_failure(const placement_result& result, placement_failure kind,
                   const std::string& reason) {
  CHECK_FALSE(result.ok());
  CHECK(result.failure == kind);
  CHECK(result.reason == reason);
  CHECK(result.chosen.node_id.empty());
  CHECK(result.alternates.empty());
  CHECK_FALSE(result.relay_to.has_value());
}

} // namespace

// ---- small pure pieces -------------------------------------------------------------------

TEST_CASE("placement: strategy names round-trip, unknown ones are refused") {
  for (auto value : {strategy::latency, strategy::balanced, strategy::pack})
    CHECK(parse_strategy(chroom::allocation::to_string(value)) == value);
  CHECK(chroom::allocation::to_string(strategy::latency) == "latency");
  CHECK(chroom::allocation::to_string(strategy::balanced) == "balanced");
  CHECK(chroom::allocation::to_string(strategy::pack) == "pack");
  CHECK_FALSE(parse_strategy("").has_value());
  CHECK_FALSE(parse_strategy("fastest").has_value());
  CHECK_FALSE(parse_strategy("Latency").has_value());
}

TEST_CASE("placement: parse_features accepts the known names") {
  std::string problem;
  auto all =
    parse_features({"opus", "vp8", "vp9", "h264", "av1", "relay", "recording", "e2ee"}, problem);
  REQUIRE(all.has_value());
  CHECK(problem.empty());
  CHECK(all->codecs == strings{"opus", "vp8", "vp9", "h264", "av1"});
  CHECK(all->relay);
  CHECK(all->recording);
  CHECK(all->e2ee);
  CHECK_FALSE(all->empty());

  // Repeats count once; nothing asked is nothing needed.
  auto repeated = parse_features({"vp8", "opus", "vp8", "relay", "relay"}, problem);
  REQUIRE(repeated.has_value());
  CHECK(repeated->codecs == strings{"vp8", "opus"});
  CHECK(repeated->relay);
  CHECK_FALSE(repeated->recording);
  CHECK_FALSE(repeated->e2ee);

  auto none = parse_features({}, problem);
  REQUIRE(none.has_value());
  CHECK(none->empty());

  auto only_e2ee = parse_features({"e2ee"}, problem);
  REQUIRE(only_e2ee.has_value());
  CHECK(only_e2ee->codecs.empty());
  CHECK(only_e2ee->e2ee);
  CHECK_FALSE(only_e2ee->empty());
}

TEST_CASE("placement: parse_features refuses an unknown name, naming it") {
  std::string problem;
  CHECK_FALSE(parse_features({"h265"}, problem).has_value());
  CHECK(problem == "unknown feature 'h265' (known: opus, vp8, vp9, h264, av1, relay, "
                   "recording, e2ee)");

  // After valid ones too: the message names the bad entry, not the first.
  problem.clear();
  CHECK_FALSE(parse_features({"opus", "relay", "4k"}, problem).has_value());
  CHECK(problem.find("'4k'") != std::string::npos);
  CHECK(problem.find("'opus'") == std::string::npos);

  problem.clear();
  CHECK_FALSE(parse_features({""}, problem).has_value());
  CHECK(problem.find("unknown feature ''") == 0);
}

TEST_CASE("placement: feature_needs::met_by") {
  chroom::medianode::v1::Features offered;
  offered.add_codecs("opus");
  offered.add_codecs("vp8");
  offered.set_relay(true);

  CHECK(feature_needs{}.met_by(offered));
  CHECK(feature_needs{{"opus"}, false, false, false}.met_by(offered));
  CHECK(feature_needs{{"vp8", "opus"}, true, false, false}.met_by(offered));
  CHECK_FALSE(feature_needs{{"vp9"}, false, false, false}.met_by(offered));
  CHECK_FALSE(feature_needs{{"opus", "h264"}, false, false, false}.met_by(offered));
  CHECK_FALSE(feature_needs{{}, false, true, false}.met_by(offered));
  CHECK_FALSE(feature_needs{{}, false, false, true}.met_by(offered));
  offered.set_relay(false);
  CHECK_FALSE(feature_needs{{}, true, false, false}.met_by(offered));
}

TEST_CASE("placement: app_policy::allows regions and countries, both when both are set") {
  chroom::medianode::v1::Location berlin_dc;
  berlin_dc.set_region("eu-central");
  berlin_dc.set_country("DE");
  chroom::medianode::v1::Location paris_dc;
  paris_dc.set_region("eu-west");
  paris_dc.set_country("FR");

  CHECK(app_with(strategy::balanced).allows(berlin_dc));
  CHECK(app_with(strategy::balanced, {}, {"FR"}).allows(paris_dc));
  CHECK_FALSE(app_with(strategy::balanced, {}, {"FR"}).allows(berlin_dc));
  CHECK(app_with(strategy::balanced, {"eu-central", "eu-west"}).allows(berlin_dc));
  CHECK_FALSE(app_with(strategy::balanced, {"eu-west"}).allows(berlin_dc));
  CHECK(app_with(strategy::balanced, {"eu-west"}, {"FR"}).allows(paris_dc));
  CHECK_FALSE(app_with(strategy::balanced, {"eu-west"}, {"DE"}).allows(paris_dc));
  CHECK_FALSE(app_with(strategy::balanced, {"eu-central"}, {"FR"}).allows(paris_dc));
}

TEST_CASE("placement: overloaded() compares the last Stats with the high-water mark") {
  node_table table;
  fx::register_only(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  // No Stats yet: nothing says it is loaded.
  CHECK_FALSE(overloaded(record(table, "berlin"), 0.85));

  auto with = [&](const fx::load& reported) {
    fx::report(table, "berlin", reported);
    return overloaded(record(table, "berlin"), 0.85);
  };
  CHECK_FALSE(with({}));
  CHECK_FALSE(with({.participants = 85})); // "more than" the fraction
  CHECK(with({.participants = 86}));
  CHECK_FALSE(with({.cpu_load = 0.85}));
  CHECK(with({.cpu_load = 0.86}));
  CHECK_FALSE(with({.bandwidth_out_mbps = 850})); // of 1000 Mbps upload
  CHECK(with({.bandwidth_out_mbps = 851}));
  fx::report(table, "berlin", {.participants = 60});
  CHECK(overloaded(record(table, "berlin"), 0.5));
  CHECK_FALSE(overloaded(record(table, "berlin"), 0.6));

  // Without a declared upload, bandwidth is not judged.
  auto reg = fx::registration_at("berlin", fx::berlin, "eu-central", "DE", 100);
  reg.mutable_capacity()->set_upload_mbps(0);
  table.on_register(reg, fx::fixture_session, fx::t0);
  fx::report(table, "berlin", {.bandwidth_out_mbps = 5000});
  CHECK_FALSE(overloaded(record(table, "berlin"), 0.85));
}

// ---- choosing the nearest ------------------------------------------------------------------

TEST_CASE("placement: the nearest active node is chosen, with its RTT, load and score") {
  auto table = four_cities();

  auto from_warsaw = place_at(table, fx::warsaw);
  REQUIRE(from_warsaw.ok());
  CHECK(from_warsaw.failure == placement_failure::none);
  CHECK(from_warsaw.reason.empty());
  CHECK(from_warsaw.chosen.node_id == "berlin");
  CHECK(from_warsaw.chosen.rtt_ms == doctest::Approx(model(fx::warsaw, fx::berlin)));
  CHECK(from_warsaw.chosen.rtt_ms == doctest::Approx(12.76).epsilon(0.001));
  CHECK(from_warsaw.chosen.source == rtt_source::distance);
  CHECK(from_warsaw.chosen.load_after == doctest::Approx(0.01));
  // No app: balanced, rtt + 25 * load_after (+ no health penalty on a clean node).
  CHECK(from_warsaw.chosen.score == doctest::Approx(from_warsaw.chosen.rtt_ms + 0.25));
  CHECK_FALSE(from_warsaw.joins_room_node);
  CHECK_FALSE(from_warsaw.relay_to.has_value());
  CHECK(ids_of(from_warsaw.alternates) == strings{"paris", "new-york"});

  CHECK(place_at(table, fx::london).chosen.node_id == "paris");
  CHECK(place_at(table, fx::boston).chosen.node_id == "new-york");
  CHECK(place_at(table, fx::sydney).chosen.node_id == "tokyo");
  CHECK(place_at(table, fx::sao_paulo).chosen.node_id == "new-york");

  // A client at the node's own place pays the base RTT only.
  auto at_berlin = place_at(table, fx::berlin);
  CHECK(at_berlin.chosen.node_id == "berlin");
  CHECK(at_berlin.chosen.rtt_ms == doctest::Approx(5.0));
}

TEST_CASE("placement: a node without room for the participants is skipped") {
  auto app = app_with(strategy::latency); // load matters little: only the filter moves it
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::report(table, "berlin", {.participants = 80}); // below high water; 20 places left

  auto request = client_at(fx::berlin);
  request.app = &app;
  request.participants = 20;
  auto fits = place(table, request, {}, {});
  CHECK(fits.chosen.node_id == "berlin");
  CHECK(fits.chosen.load_after == doctest::Approx(1.0));
  CHECK(fits.chosen.score == doctest::Approx(5.0 + 10 * 1.0));

  request.participants = 21;
  auto skipped = place(table, request, {}, {});
  CHECK(skipped.chosen.node_id == "paris");
  CHECK(skipped.chosen.load_after == doctest::Approx(0.21));
  CHECK(ids_of(skipped.alternates).empty());

  SUBCASE("reservations take places too") {
    auto held = fx::reserve(table, "berlin", 15); // 5 places left
    request.participants = 5;
    CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");
    request.participants = 6;
    CHECK(place(table, request, {}, {}).chosen.node_id == "paris");
    // Released: the places are back.
    CHECK(table.release("berlin", held) == table_error::none);
    CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");
  }
}

TEST_CASE("placement: a burst of placements, each reserved, never overfills a node") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 10);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 10);
  const std::string full_reason =
    "all 2 media nodes that fit are full or over their high-water mark (85%)";

  SUBCASE("latency: Berlin fills up, then Paris, then capacity") {
    auto app = app_with(strategy::latency);
    auto request = client_at(fx::berlin);
    request.app = &app;
    strings sequence;
    for (int i = 0; i < 25; ++i) {
      auto result = place(table, request, {}, {});
      if (!result.ok()) {
        check_failure(result, placement_failure::capacity, full_reason);
        sequence.push_back("-");
        continue;
      }
      sequence.push_back(result.chosen.node_id);
      CHECK(result.chosen.load_after <= 1.0);
      fx::reserve(table, result.chosen.node_id);
    }
    strings expected(10, "berlin");
    expected.insert(expected.end(), 10, "paris");
    expected.insert(expected.end(), 5, "-");
    CHECK(sequence == expected);
    CHECK(record(table, "berlin").available_participants() == 0);
    CHECK(record(table, "paris").available_participants() == 0);
  }

  SUBCASE("balanced: spread, still never over capacity") {
    std::map<std::string, int> placed;
    int failures = 0;
    for (int i = 0; i < 25; ++i) {
      auto result = place_at(table, fx::berlin);
      if (!result.ok()) {
        check_failure(result, placement_failure::capacity, full_reason);
        ++failures;
        continue;
      }
      CHECK(failures == 0); // no success after the first failure
      table_error error = table_error::none;
      table.reserve(result.chosen.node_id, 1, 10s, fx::t0, error);
      CHECK(error == table_error::none);
      ++placed[result.chosen.node_id];
    }
    CHECK(placed["berlin"] == 10);
    CHECK(placed["paris"] == 10);
    CHECK(failures == 5);
  }

  SUBCASE("confirmed and then reported participants still count") {
    // The registry's cycle: reserve, the node acks (confirm), the next Stats show the
    // participants and the reservation ends. Stats every 3 placements.
    std::map<std::string, uint32_t> confirmed;
    int failures = 0;
    auto now = fx::t0;
    for (int i = 0; i < 30; ++i) {
      now += 100ms;
      auto result = place_at(table, fx::berlin);
      if (result.ok()) {
        CHECK(failures == 0);
        const auto& id = result.chosen.node_id;
        auto held = fx::reserve(table, id, 1, now);
        CHECK(table.confirm(id, held, now) == table_error::none);
        ++confirmed[id];
      } else {
        CHECK(result.failure == placement_failure::capacity);
        ++failures;
      }
      if (i % 3 == 2)
        for (const auto& [id, count] : confirmed)
          fx::report(table, id, {.participants = count}, now + 1ms);
      for (const auto* id : {"berlin", "paris"}) {
        const auto& node = record(table, id);
        CHECK(node.last_stats.participants() + node.reserved_participants() <=
              node.registration.capacity().max_participants());
      }
    }
    CHECK(failures > 0);
    CHECK(confirmed["berlin"] <= 10);
    CHECK(confirmed["paris"] <= 10);
  }
}

TEST_CASE("placement: overloaded nodes (high water) are avoided") {
  auto app = app_with(strategy::latency); // Berlin would win on RTT despite its load
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  auto request = client_at(fx::berlin);
  request.app = &app;
  auto chosen_with = [&](const fx::load& berlin_load, const placement_rules& rules = {}) {
    fx::report(table, "berlin", berlin_load);
    return place(table, request, {}, rules).chosen.node_id;
  };

  CHECK(chosen_with({.participants = 85}) == "berlin");
  CHECK(chosen_with({.participants = 86}) == "paris");
  CHECK(chosen_with({.cpu_load = 0.85}) == "berlin");
  CHECK(chosen_with({.cpu_load = 0.9}) == "paris");
  CHECK(chosen_with({.bandwidth_out_mbps = 800}) == "berlin");
  CHECK(chosen_with({.bandwidth_out_mbps = 900}) == "paris");
  placement_rules strict;
  strict.high_water = 0.5;
  CHECK(chosen_with({.participants = 50}, strict) == "berlin");
  CHECK(chosen_with({.participants = 51}, strict) == "paris");
  CHECK(chosen_with({.cpu_load = 0.6}, strict) == "paris");

  // Everything overloaded: a capacity failure naming the mark.
  fx::report(table, "berlin", {.cpu_load = 0.95});
  fx::report(table, "paris", {.bandwidth_out_mbps = 990});
  check_failure(place(table, request, {}, {}), placement_failure::capacity,
                "all 2 media nodes that fit are full or over their high-water mark (85%)");
  placement_rules lenient;
  lenient.high_water = 0.96;
  CHECK(place(table, request, {}, lenient).chosen.node_id == "berlin");
  lenient.high_water = 0.9;
  check_failure(place(table, request, {}, lenient), placement_failure::capacity,
                "all 2 media nodes that fit are full or over their high-water mark (90%)");
}

TEST_CASE("placement: the capacity message shows the configured high-water mark") {
  // Regression: the percentage was static_cast<int>(high_water * 100), which truncates:
  // 0.57 * 100 is 56.999999999999993 in double, so 0.57 showed as 56% (0.29 as 28%, 0.58
  // as 57%).
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::report(table, "berlin", {.cpu_load = 0.99});
  for (int percent : {29, 57, 58, 85, 90}) {
    placement_rules rules;
    rules.high_water = percent / 100.0;
    auto result = place_at(table, fx::berlin, {}, rules);
    CHECK(result.failure == placement_failure::capacity);
    CHECK(result.reason == "all 1 media nodes that fit are full or over their high-water mark (" +
                             std::to_string(percent) + "%)");
  }
}

TEST_CASE("placement: joining, draining, cordoned, suspect, dead and gone nodes are never "
          "chosen") {
  // Berlin is the nearest to the client; Paris and London are the others.
  node_table table;
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  std::vector<node_event> events;
  auto now = fx::t0;

  SUBCASE("joining (registered, no Stats yet)") {
    fx::register_only(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_JOINING);
  }
  SUBCASE("draining") {
    fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    REQUIRE(table.add_room("berlin", "r1") == table_error::none);
    REQUIRE(table.drain("berlin", 0ms, now, events) == table_error::none);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_DRAINING);
  }
  SUBCASE("cordoned") {
    fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    REQUIRE(table.cordon("berlin", now, events) == table_error::none);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_CORDONED);
  }
  SUBCASE("suspect (stream closed)") {
    fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    table.on_stream_closed("berlin", fx::fixture_session, now);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_SUSPECT);
  }
  SUBCASE("dead") {
    fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    table.on_stream_closed("berlin", fx::fixture_session, now);
    now += 4s;
    fx::report(table, "paris", {}, now);
    fx::report(table, "london", {}, now);
    table.sweep(now);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_DEAD);
  }
  SUBCASE("gone (drained)") {
    fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
    REQUIRE(table.drain("berlin", 0ms, now, events) == table_error::none);
    REQUIRE(record(table, "berlin").state == admin::NODE_STATE_GONE);
  }

  auto result = place_at(table, fx::berlin, {}, {}, 5);
  CHECK(result.chosen.node_id == "paris");
  CHECK(ids_of(result.alternates) == strings{"london"});
  CHECK(ids_of(nearest_candidates(table, client_at(fx::berlin), {}, 5)) ==
        strings{"paris", "london"});
  // Even probed as the best node.
  auto probed = place(table, client_at(fx::berlin, {{"berlin", 1.0}}), {}, {});
  CHECK(probed.chosen.node_id == "paris");
}

TEST_CASE("placement: a node back to active is chosen again") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  std::vector<node_event> events;
  REQUIRE(table.cordon("berlin", fx::t0, events) == table_error::none);
  CHECK(place_at(table, fx::berlin).chosen.node_id == "paris");
  REQUIRE(table.uncordon("berlin", fx::t0, events) == table_error::none);
  CHECK(place_at(table, fx::berlin).chosen.node_id == "berlin");

  table.on_stream_closed("berlin", fx::fixture_session, fx::t0 + 100ms);
  CHECK(place_at(table, fx::berlin).chosen.node_id == "paris");
  table.on_register(fx::registration_at("berlin", fx::berlin, "eu-central", "DE", 100), 2,
                    fx::t0 + 200ms);
  REQUIRE(record(table, "berlin").state == admin::NODE_STATE_ACTIVE);
  CHECK(place_at(table, fx::berlin).chosen.node_id == "berlin");
}

TEST_CASE("placement: with no active node at all, no_active_nodes") {
  const std::string reason = "no media node is active";
  node_table table;
  check_failure(place_at(table, fx::berlin), placement_failure::no_active_nodes, reason);

  std::vector<node_event> events;
  fx::register_only(table, "joining", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "cordoned", fx::paris, "eu-west", "FR", 100);
  REQUIRE(table.cordon("cordoned", fx::t0, events) == table_error::none);
  fx::add_node(table, "suspect", fx::london, "eu-west", "GB", 100);
  table.on_stream_closed("suspect", fx::fixture_session, fx::t0);
  check_failure(place_at(table, fx::berlin), placement_failure::no_active_nodes, reason);
  // Whatever the app and the features asked.
  auto app = app_with(strategy::pack, {"ap-south"});
  auto request = client_at(fx::berlin);
  request.app = &app;
  request.features.e2ee = true;
  check_failure(place(table, request, {}, {}), placement_failure::no_active_nodes, reason);
  CHECK(nearest_candidates(table, request, {}, 5).empty());
}

TEST_CASE("placement: room_view.avoid is honoured") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);

  room_view room;
  room.avoid = {"berlin"};
  auto result = place_at(table, fx::berlin, room, {}, 5);
  CHECK(result.chosen.node_id == "paris");
  CHECK(ids_of(result.alternates) == strings{"london"});

  room.avoid = {"paris", "berlin"};
  CHECK(place_at(table, fx::berlin, room).chosen.node_id == "london");

  // An avoided room part is not joined either: the room extends.
  auto on_berlin = room_on({"berlin"});
  on_berlin.avoid = {"berlin"};
  auto moved = place_at(table, fx::berlin, on_berlin);
  CHECK(moved.chosen.node_id == "paris");
  CHECK_FALSE(moved.joins_room_node);
  CHECK(moved.relay_to == "berlin");

  // Everything avoided: nothing is placed.
  room.avoid = {"paris", "berlin", "london"};
  auto none = place_at(table, fx::berlin, room);
  CHECK_FALSE(none.ok());
  CHECK(none.chosen.node_id.empty());
}

// ---- features and app policy -------------------------------------------------------------

TEST_CASE("placement: required features filter the nodes") {
  // From a Berlin client: berlin 5.0, frankfurt 11.35, paris 18.16, london 18.97 ms.
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100, {"opus", "vp8", "relay"});
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100, {"opus", "vp8", "h264"});
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100,
               {"opus", "vp8", "vp9", "av1", "relay", "recording"});
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100, {"opus", "vp8", "relay", "e2ee"});

  auto chosen_for = [&](const strings& names) {
    std::string problem;
    auto needs = parse_features(names, problem);
    REQUIRE(needs.has_value());
    auto request = client_at(fx::berlin);
    request.features = *needs;
    return place(table, request, {}, {});
  };
  CHECK(chosen_for({}).chosen.node_id == "berlin");
  CHECK(chosen_for({"opus", "vp8"}).chosen.node_id == "berlin");
  CHECK(chosen_for({"relay"}).chosen.node_id == "berlin");
  CHECK(chosen_for({"h264"}).chosen.node_id == "frankfurt");
  CHECK(chosen_for({"vp9"}).chosen.node_id == "paris");
  CHECK(chosen_for({"av1", "recording"}).chosen.node_id == "paris");
  CHECK(chosen_for({"recording"}).chosen.node_id == "paris");
  CHECK(chosen_for({"e2ee"}).chosen.node_id == "london");
  CHECK(chosen_for({"e2ee", "opus", "relay"}).chosen.node_id == "london");
  // Alternates have the features too.
  CHECK(ids_of(chosen_for({"relay"}).alternates) == strings{"paris", "london"});

  check_failure(chosen_for({"h264", "relay"}), placement_failure::features,
                "no active media node has the features h264, relay");
  check_failure(chosen_for({"e2ee", "recording"}), placement_failure::features,
                "no active media node has the features recording, e2ee");
  check_failure(chosen_for({"vp9", "av1", "e2ee", "relay"}), placement_failure::features,
                "no active media node has the features vp9, av1, relay, e2ee");

  // A node with the features that is not active does not count.
  std::vector<node_event> events;
  REQUIRE(table.cordon("london", fx::t0, events) == table_error::none);
  check_failure(chosen_for({"e2ee"}), placement_failure::features,
                "no active media node has the features e2ee");
}

TEST_CASE("placement: the app's region and country policy") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);

  auto placed = [&](const app_policy& app, geo_point client = fx::berlin) {
    auto request = client_at(client);
    request.app = &app;
    return place(table, request, {}, {}, 5);
  };

  // Only France: the Paris node even for a client in Berlin.
  auto france = placed(app_with(strategy::balanced, {}, {"FR"}));
  CHECK(france.chosen.node_id == "paris");
  CHECK(france.chosen.rtt_ms == doctest::Approx(model(fx::berlin, fx::paris)));
  CHECK(france.alternates.empty());

  auto west = placed(app_with(strategy::balanced, {"eu-west"}));
  CHECK(west.chosen.node_id == "paris");
  CHECK(ids_of(west.alternates) == strings{"london"});

  CHECK(placed(app_with(strategy::balanced, {"eu-west"}, {"GB"})).chosen.node_id == "london");
  CHECK(placed(app_with(strategy::balanced, {"us-east"})).chosen.node_id == "new-york");
  CHECK(placed(app_with(strategy::balanced, {}, {"US", "GB"})).chosen.node_id == "london");
  CHECK(placed(app_with(strategy::balanced, {"eu-central"}), fx::new_york).chosen.node_id ==
        "frankfurt");

  check_failure(placed(app_with(strategy::balanced, {"ap-south"})),
                placement_failure::region_policy,
                "no active media node in the places app 'telemed' allows (regions: ap-south; "
                "countries: any)");
  check_failure(placed(app_with(strategy::balanced, {"eu-central"}, {"FR", "GB"})),
                placement_failure::region_policy,
                "no active media node in the places app 'telemed' allows (regions: "
                "eu-central; countries: FR, GB)");

  // The allowed node inactive: the policy is what stops placement.
  std::vector<node_event> events;
  REQUIRE(table.cordon("paris", fx::t0, events) == table_error::none);
  auto france_cordoned = placed(app_with(strategy::balanced, {}, {"FR"}));
  CHECK(france_cordoned.failure == placement_failure::region_policy);
}

TEST_CASE("placement: denied places, latency budget, priority, pinned rooms, fan-out, spread") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);
  auto placed = [&](const app_policy& app, geo_point client = fx::berlin,
                    const room_view& room = {}, bool spread = false) {
    auto request = client_at(client);
    request.app = &app;
    request.spread = spread;
    return place(table, request, room, {}, 5);
  };

  // Denied wins over allowed (empty allowed: any).
  auto no_germany = app_with(strategy::balanced);
  no_germany.denied_countries = {"DE"};
  CHECK(placed(no_germany).chosen.node_id == "paris");
  auto no_europe = app_with(strategy::balanced, {"eu-central", "eu-west", "us-east"});
  no_europe.denied_regions = {"eu-central", "eu-west"};
  CHECK(placed(no_europe).chosen.node_id == "new-york");
  no_europe.denied_regions.push_back("us-east");
  check_failure(placed(no_europe), placement_failure::region_policy,
                "no active media node in the places app 'telemed' allows (regions: eu-central, "
                "eu-west, us-east; countries: any; denied: eu-central, eu-west, us-east)");

  // Latency budget: the next region within it, or a refusal naming the nearest.
  auto budget = app_with(strategy::latency);
  budget.latency_budget_ms = 40;
  budget.denied_countries = {"DE"};
  auto within = placed(budget);
  CHECK(within.chosen.node_id == "paris");
  CHECK(within.chosen.rtt_ms <= 40);
  CHECK(within.alternates.empty()); // New York is far over the budget
  budget.denied_countries = {"DE", "FR"};
  auto refused = placed(budget);
  CHECK(refused.failure == placement_failure::latency_budget);
  CHECK(refused.reason == "no media node within app 'telemed' latency budget of 40 ms (the "
                          "nearest that could take the participant: " +
                            std::to_string(std::lround(model(fx::berlin, fx::new_york))) + " ms)");

  // Priority: Berlin at 80% load (below 85% high water, above 80% x 85% = 68%).
  fx::report(table, "berlin", {.participants = 80});
  auto low = app_with(strategy::latency);
  low.priority = chroom::allocation::priority_class::low;
  CHECK(placed(low).chosen.node_id == "paris");
  auto normal = app_with(strategy::latency);
  CHECK(placed(normal).chosen.node_id == "berlin");
  fx::report(table, "berlin", {.participants = 90});
  CHECK(placed(normal).chosen.node_id == "paris");
  auto high = app_with(strategy::latency);
  high.priority = chroom::allocation::priority_class::high;
  CHECK(placed(high).chosen.node_id == "berlin");
  fx::report(table, "berlin", {});

  // A room pinned to one node stays there even for a client far away; when that node
  // cannot take the participant, the room does not grow.
  auto pinned = app_with(strategy::latency);
  pinned.max_room_nodes = 1;
  auto far = placed(pinned, fx::new_york, room_on({"berlin"}));
  CHECK(far.chosen.node_id == "berlin");
  CHECK(far.joins_room_node);
  room_view avoiding = room_on({"berlin"});
  avoiding.avoid = {"berlin"};
  auto stuck = placed(pinned, fx::berlin, avoiding);
  CHECK(stuck.failure == placement_failure::room_pinned);
  auto unpinned = app_with(strategy::latency);
  CHECK(placed(unpinned, fx::new_york, room_on({"berlin"})).chosen.node_id == "new-york");

  // Fan-out: a part holding fan_out_after of the room's participants takes no more.
  auto fan = app_with(strategy::latency);
  fan.fan_out_after = 3; // room_on puts 3 participants on each part
  auto spilled = placed(fan, fx::berlin, room_on({"berlin"}));
  CHECK(spilled.chosen.node_id == "paris");
  CHECK(spilled.relay_to == std::optional<std::string>{"berlin"});

  // A hook's node list: only those, the first that fits preferred over the score.
  auto hooked_request = client_at(fx::berlin);
  auto plain_app = app_with(strategy::latency);
  hooked_request.app = &plain_app;
  hooked_request.allowed_nodes = {"new-york", "paris"};
  auto by_hook = place(table, hooked_request, {}, {}, 5);
  CHECK(by_hook.chosen.node_id == "new-york");
  CHECK(ids_of(by_hook.alternates) == strings{"paris"});
  hooked_request.allowed_nodes = {"tokyo-gone"};
  CHECK(place(table, hooked_request, {}, {}, 5).failure == placement_failure::hook_choice);

  // Relay depth: a new part links only to parts above the depth limit.
  room_view chain;
  chain.parts = {{"berlin", 3, 0}, {"paris", 3, 1}};
  auto deep = app_with(strategy::latency);
  CHECK(placed(deep, fx::new_york, chain).relay_to == std::optional<std::string>{"paris"});
  deep.max_relay_depth = 1;
  auto linked = placed(deep, fx::new_york, chain);
  CHECK(linked.chosen.node_id == "new-york");
  CHECK(linked.relay_to == std::optional<std::string>{"berlin"});
  chain.parts[0].depth = 1; // nothing may take another link: the room stays on its nodes
  CHECK(placed(deep, fx::new_york, chain).chosen.node_id == "paris");

  // Spread: a client a little nearer to another node leaves the room's node.
  auto plain = app_with(strategy::latency);
  const geo_point between{50.6, 7.5}; // a little nearer Paris than Berlin
  REQUIRE(model(between, fx::paris) < model(between, fx::berlin));
  REQUIRE(model(between, fx::berlin) - model(between, fx::paris) < 5);
  CHECK(placed(plain, between, room_on({"berlin"})).chosen.node_id == "berlin");
  CHECK(placed(plain, between, room_on({"berlin"}), true).chosen.node_id == "paris");
}

TEST_CASE("placement: failure kinds name the furthest filter some active node passed") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 10, {"opus", "e2ee"});
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 10, {"opus"});
  fx::add_node(table, "tokyo", fx::tokyo, "ap-northeast", "JP", 10, {"opus", "e2ee", "relay"});
  auto request = client_at(fx::berlin);

  SUBCASE("region: the allowed places have no active node") {
    auto app = app_with(strategy::balanced, {}, {"US"});
    request.app = &app;
    request.features.e2ee = true;
    CHECK(place(table, request, {}, {}).failure == placement_failure::region_policy);
  }
  SUBCASE("features: the allowed nodes lack them (the node that has them is not allowed)") {
    auto app = app_with(strategy::balanced, {}, {"DE", "FR"});
    request.app = &app;
    request.features.relay = true;
    check_failure(place(table, request, {}, {}), placement_failure::features,
                  "no active media node has the features relay");
  }
  SUBCASE("capacity: the only allowed node with the features is full") {
    auto app = app_with(strategy::balanced, {}, {"DE", "FR"});
    request.app = &app;
    request.features.e2ee = true;
    CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");
    fx::report(table, "berlin", {.participants = 10});
    check_failure(place(table, request, {}, {}), placement_failure::capacity,
                  "all 1 media nodes that fit are full or over their high-water mark (85%)");
    // Full by reservations alone (Stats idle) is a capacity failure too.
    fx::report(table, "berlin", {});
    fx::reserve(table, "berlin", 10);
    check_failure(place(table, request, {}, {}), placement_failure::capacity,
                  "all 1 media nodes that fit are full or over their high-water mark (85%)");
  }
  SUBCASE("capacity: more participants than any node has") {
    request.participants = 11;
    check_failure(place(table, request, {}, {}), placement_failure::capacity,
                  "all 3 media nodes that fit are full or over their high-water mark (85%)");
  }
}

// ---- RTT sources ---------------------------------------------------------------------------

TEST_CASE("placement: a measured probe wins over the distance model") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "tokyo", fx::tokyo, "ap-northeast", "JP", 100);

  // The model says Berlin 5 ms and Paris 18 ms; the client measured otherwise.
  auto result = place(table, client_at(fx::berlin, {{"berlin", 30}, {"paris", 8}}), {}, {});
  CHECK(result.chosen.node_id == "paris");
  CHECK(result.chosen.rtt_ms == doctest::Approx(8));
  CHECK(result.chosen.source == rtt_source::probe);
  REQUIRE(result.alternates.size() == 2);
  CHECK(result.alternates[0].node_id == "berlin");
  CHECK(result.alternates[0].rtt_ms == doctest::Approx(30));
  CHECK(result.alternates[0].source == rtt_source::probe);
  // Tokyo, unprobed: the model plus the client's access excess (min of 30 - 5 and
  // 8 - 18.16, which is negative: nothing).
  CHECK(result.alternates[1].node_id == "tokyo");
  CHECK(result.alternates[1].source == rtt_source::distance);
  CHECK(result.alternates[1].rtt_ms == doctest::Approx(model(fx::berlin, fx::tokyo)));

  // A probe may be slower than the model: it is still what counts.
  auto slow =
    estimate_rtt(table, record(table, "berlin"), client_at(fx::berlin, {{"berlin", 70}}), {});
  CHECK(slow.rtt_ms == doctest::Approx(70));
  CHECK(slow.source == rtt_source::probe);

  // Probes of unknown nodes are ignored.
  auto unknown = place(table, client_at(fx::berlin, {{"nowhere", 1}}), {}, {});
  CHECK(unknown.chosen.node_id == "berlin");
  CHECK(unknown.chosen.source == rtt_source::distance);
  CHECK(unknown.chosen.rtt_ms == doctest::Approx(5.0));
}

TEST_CASE("placement: a probed node joins the pool even beyond candidate_pool") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "tokyo", fx::tokyo, "ap-northeast", "JP", 100);
  placement_rules rules;
  rules.candidate_pool = 1;

  auto result = place(table, client_at(fx::berlin, {{"tokyo", 3}}), {}, rules, 5);
  CHECK(result.chosen.node_id == "tokyo");
  CHECK(result.chosen.source == rtt_source::probe);
  // The pool is Berlin (nearest) and Tokyo (probed): Paris was never looked at.
  CHECK(ids_of(result.alternates) == strings{"berlin"});

  // Without the probe, a pool of one.
  auto plain = place_at(table, fx::berlin, {}, rules, 5);
  CHECK(plain.chosen.node_id == "berlin");
  CHECK(plain.alternates.empty());

  // A probed node that does not fit is still left out.
  std::vector<node_event> events;
  REQUIRE(table.cordon("tokyo", fx::t0, events) == table_error::none);
  CHECK(place(table, client_at(fx::berlin, {{"tokyo", 3}}), {}, rules).chosen.node_id == "berlin");
}

TEST_CASE("placement: node matrix, a near probe plus the node's measured RTT") {
  // Client in Warsaw; it probed the Warsaw node. The Warsaw node measured Frankfurt.
  node_table table;
  fx::add_node(table, "warsaw", fx::warsaw, "eu-central", "PL", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  auto frankfurt_rtt = [&](std::vector<probe> probes) {
    return estimate_rtt(table, record(table, "frankfurt"), client_at(fx::warsaw, probes), {});
  };

  SUBCASE("measured by the probed node") {
    fx::report(table, "warsaw", {.peer_rtts = {{"frankfurt", 30}}});
    auto estimate = frankfurt_rtt({{"warsaw", 10}});
    CHECK(estimate.source == rtt_source::node_matrix);
    CHECK(estimate.rtt_ms == doctest::Approx(40));
    CHECK(estimate.node_id == "frankfurt");

    auto candidates = nearest_candidates(table, client_at(fx::warsaw, {{"warsaw", 10}}), {}, 5);
    REQUIRE(candidates.size() == 3);
    CHECK(ids_of(candidates) == strings{"warsaw", "berlin", "frankfurt"});
    CHECK(candidates[0].source == rtt_source::probe);
    CHECK(candidates[2].source == rtt_source::node_matrix);
    CHECK(candidates[2].rtt_ms == doctest::Approx(40));

    // 25 ms is near enough; 26 ms is not (then the model plus the access excess).
    CHECK(frankfurt_rtt({{"warsaw", 25}}).source == rtt_source::node_matrix);
    CHECK(frankfurt_rtt({{"warsaw", 25}}).rtt_ms == doctest::Approx(55));
    auto far_probe = frankfurt_rtt({{"warsaw", 26}});
    CHECK(far_probe.source == rtt_source::distance);
    CHECK(far_probe.rtt_ms == doctest::Approx(model(fx::warsaw, fx::frankfurt) + (26 - 5.0)));
  }
  SUBCASE("measured by the other node, towards the probed one") {
    fx::report(table, "frankfurt", {.peer_rtts = {{"warsaw", 33}}});
    auto estimate = frankfurt_rtt({{"warsaw", 10}});
    CHECK(estimate.source == rtt_source::node_matrix);
    CHECK(estimate.rtt_ms == doctest::Approx(43));
  }
  SUBCASE("the best of several near probes") {
    fx::report(table, "warsaw", {.peer_rtts = {{"frankfurt", 30}}});
    fx::report(table, "berlin", {.peer_rtts = {{"frankfurt", 12}}});
    auto estimate = frankfurt_rtt({{"warsaw", 10}, {"berlin", 14}});
    CHECK(estimate.source == rtt_source::node_matrix);
    CHECK(estimate.rtt_ms == doctest::Approx(26));
  }
  SUBCASE("a zero measurement means none") {
    fx::report(table, "warsaw", {.peer_rtts = {{"frankfurt", 0}}});
    auto estimate = frankfurt_rtt({{"warsaw", 10}});
    CHECK(estimate.source == rtt_source::distance);
    CHECK(estimate.rtt_ms == doctest::Approx(model(fx::warsaw, fx::frankfurt) + 5.0));
  }
  SUBCASE("matrix beats the model in the choice") {
    // By the model Frankfurt (18.35 ms from Warsaw) loses to Berlin (12.76); measured
    // through the Warsaw node it is 6 + 2 = 8 ms, and the Warsaw node is full.
    fx::report(table, "warsaw", {.participants = 100, .peer_rtts = {{"frankfurt", 2}}});
    auto result = place(table, client_at(fx::warsaw, {{"warsaw", 6}}), {}, {});
    CHECK(result.chosen.node_id == "frankfurt");
    CHECK(result.chosen.source == rtt_source::node_matrix);
    CHECK(result.chosen.rtt_ms == doctest::Approx(8));
  }
}

TEST_CASE("placement: a client on a slow access link pays its excess on estimates") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  auto london_rtt = [&](std::vector<probe> probes) {
    return estimate_rtt(table, record(table, "london"), client_at(fx::berlin, probes), {});
  };
  double berlin_model = model(fx::berlin, fx::berlin); // 5 ms
  double paris_model = model(fx::berlin, fx::paris);

  // Every probe 22 ms or more above the model: +22 ms on London's estimate.
  auto slow = london_rtt({{"berlin", berlin_model + 30}, {"paris", paris_model + 22}});
  CHECK(slow.source == rtt_source::distance);
  CHECK(slow.rtt_ms == doctest::Approx(model(fx::berlin, fx::london) + 22));

  // One probe faster than the model: no excess, and never a discount.
  auto mixed = london_rtt({{"berlin", berlin_model + 30}, {"paris", paris_model - 3}});
  CHECK(mixed.rtt_ms == doctest::Approx(model(fx::berlin, fx::london)));
  auto fast = london_rtt({{"berlin", 3}});
  CHECK(fast.rtt_ms == doctest::Approx(model(fx::berlin, fx::london)));
  // No probe: the model alone.
  CHECK(london_rtt({}).rtt_ms == doctest::Approx(model(fx::berlin, fx::london)));

  // In a placement, the unprobed alternates carry it.
  auto result = place(table, client_at(fx::berlin, {{"berlin", 45}}), {}, {}, 5);
  CHECK(result.chosen.node_id == "berlin");
  REQUIRE(result.alternates.size() == 2);
  CHECK(result.alternates[0].node_id == "paris");
  CHECK(result.alternates[0].rtt_ms == doctest::Approx(paris_model + 40));
  CHECK(result.alternates[1].rtt_ms == doctest::Approx(model(fx::berlin, fx::london) + 40));
}

// ---- strategies and health -----------------------------------------------------------------

TEST_CASE("placement: latency keeps the nearest node although it is loaded") {
  // Berlin 5 ms at 80% (0.81 after), Paris 18.16 ms idle: latency scores 5 + 8.1 against
  // 18.16 + 0.1; balanced scores 5 + 20.25 against 18.16 + 0.25.
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::report(table, "berlin", {.participants = 80});
  auto request = client_at(fx::berlin);

  auto latency = app_with(strategy::latency);
  request.app = &latency;
  auto fast = place(table, request, {}, {});
  CHECK(fast.chosen.node_id == "berlin");
  CHECK(fast.chosen.load_after == doctest::Approx(0.81));
  CHECK(fast.chosen.score == doctest::Approx(5.0 + 10 * 0.81));
  REQUIRE(fast.alternates.size() == 1);
  CHECK(fast.alternates[0].score == doctest::Approx(model(fx::berlin, fx::paris) + 10 * 0.01));

  auto balanced = app_with(strategy::balanced);
  request.app = &balanced;
  auto spread = place(table, request, {}, {});
  CHECK(spread.chosen.node_id == "paris");
  CHECK(spread.chosen.score == doctest::Approx(model(fx::berlin, fx::paris) + 25 * 0.01));
  CHECK(spread.alternates[0].score == doctest::Approx(5.0 + 25 * 0.81));

  // No app is balanced.
  request.app = nullptr;
  CHECK(place(table, request, {}, {}).chosen.node_id == "paris");

  // Latency between two near-equal idle nodes: the nearer one.
  fx::add_node(table, "potsdam", fx::potsdam, "eu-central", "DE", 100);
  fx::report(table, "berlin", {});
  request.app = &latency;
  CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");
  request.client = fx::potsdam;
  CHECK(place(table, request, {}, {}).chosen.node_id == "potsdam");
}

TEST_CASE("placement: balanced prefers a clearly less loaded node when RTTs are close") {
  // Berlin 5.00 ms and Potsdam 5.41 ms from a Berlin client.
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "potsdam", fx::potsdam, "eu-central", "DE", 100);
  auto request = client_at(fx::berlin);
  auto balanced = app_with(strategy::balanced);
  request.app = &balanced;

  CHECK(place(table, request, {}, {}).chosen.node_id == "berlin"); // both idle: nearer
  fx::report(table, "berlin", {.participants = 50});
  auto result = place(table, request, {}, {});
  CHECK(result.chosen.node_id == "potsdam");
  CHECK(result.chosen.score == doctest::Approx(model(fx::berlin, fx::potsdam) + 0.25));
  // A small load difference does not outweigh the RTT difference (0.41 ms < 25 * 0.01).
  fx::report(table, "berlin", {.participants = 1});
  CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");
}

TEST_CASE("placement: pack fills the more loaded node within pack_slack_ms") {
  // From a Berlin client: Berlin 5 ms at 40% (0.41 after), Frankfurt 11.35 ms at 60%.
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  fx::report(table, "berlin", {.participants = 40});
  fx::report(table, "frankfurt", {.participants = 60});
  auto pack = app_with(strategy::pack);
  auto request = client_at(fx::berlin);
  request.app = &pack;

  auto packed = place(table, request, {}, {});
  CHECK(packed.chosen.node_id == "frankfurt");
  // Within the slack the RTT term is the best RTT: 5 + 25 * (1 - 0.61).
  CHECK(packed.chosen.score == doctest::Approx(5.0 + 25 * 0.39));
  CHECK(packed.alternates[0].score == doctest::Approx(5.0 + 25 * 0.59));

  // Balanced, the same nodes: Berlin.
  auto balanced = app_with(strategy::balanced);
  request.app = &balanced;
  CHECK(place(table, request, {}, {}).chosen.node_id == "berlin");

  // A 2 ms slack: Frankfurt's 6.35 ms extra counts twice, and Berlin wins.
  request.app = &pack;
  placement_rules tight;
  tight.pack_slack_ms = 2;
  auto tight_result = place(table, request, {}, tight);
  CHECK(tight_result.chosen.node_id == "berlin");
  double extra = model(fx::berlin, fx::frankfurt) - 5.0;
  CHECK(tight_result.alternates[0].score == doctest::Approx(5.0 + 2 * extra + 25 * 0.39));
}

TEST_CASE("placement: pack does not jump to a far node for its load") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "madrid", fx::madrid, "eu-south", "ES", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);
  fx::report(table, "madrid", {.participants = 84});
  fx::report(table, "new-york", {.participants = 84});
  auto pack = app_with(strategy::pack);
  auto request = client_at(fx::berlin);
  request.app = &pack;

  auto result = place(table, request, {}, {}, 5);
  CHECK(result.chosen.node_id == "berlin");
  CHECK(result.chosen.score == doctest::Approx(5.0 + 25 * 0.99));
  // Madrid 28 ms beyond the best: 5 + 2 * 28.04 + 25 * 0.15.
  REQUIRE(result.alternates.size() == 2);
  CHECK(result.alternates[0].node_id == "madrid");
  CHECK(result.alternates[0].score ==
        doctest::Approx(5.0 + 2 * (model(fx::berlin, fx::madrid) - 5.0) + 25 * 0.15));
  CHECK(result.alternates[1].node_id == "new-york");
}

TEST_CASE("placement: packet loss and jitter are penalised") {
  // Berlin 5 ms, Frankfurt 11.35 ms from a Berlin client, both idle (0.01 after).
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  double frankfurt_rtt = model(fx::berlin, fx::frankfurt);

  CHECK(place_at(table, fx::berlin).chosen.node_id == "berlin");

  // 2% loss weighs like 20 ms.
  fx::report(table, "berlin", {.packet_loss = 0.02});
  auto lossy = place_at(table, fx::berlin);
  CHECK(lossy.chosen.node_id == "frankfurt");
  CHECK(lossy.chosen.score == doctest::Approx(frankfurt_rtt + 0.25));
  REQUIRE(lossy.alternates.size() == 1);
  CHECK(lossy.alternates[0].score == doctest::Approx(5.0 + 0.25 + 20));

  // 0.1% loss (1 ms) does not outweigh 6 ms.
  fx::report(table, "berlin", {.packet_loss = 0.001});
  CHECK(place_at(table, fx::berlin).chosen.node_id == "berlin");
  CHECK(place_at(table, fx::berlin).chosen.score == doctest::Approx(5.0 + 0.25 + 1));

  // 20 ms of jitter weighs like 10 ms.
  fx::report(table, "berlin", {.jitter_ms = 20});
  auto jittery = place_at(table, fx::berlin);
  CHECK(jittery.chosen.node_id == "frankfurt");
  CHECK(jittery.alternates[0].score == doctest::Approx(5.0 + 0.25 + 10));

  // The penalty applies under every strategy.
  for (auto chosen : {strategy::latency, strategy::pack}) {
    auto app = app_with(chosen);
    auto request = client_at(fx::berlin);
    request.app = &app;
    fx::report(table, "berlin", {.packet_loss = 0.05});
    CHECK(place(table, request, {}, {}).chosen.node_id == "frankfurt");
  }
}

// ---- rooms ---------------------------------------------------------------------------------

TEST_CASE("placement: a room keeps a near client on its node") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);

  // Paris client, room on Berlin: 18.16 ms is within a 40 ms slack of the best (Paris,
  // 5 ms). (The default slack, 5 ms, would extend the room: see the cascade cases.)
  placement_rules slack_40;
  slack_40.affinity_slack_ms = 40;
  auto result = place_at(table, fx::paris, room_on({"berlin"}), slack_40);
  CHECK(result.chosen.node_id == "berlin");
  CHECK(result.joins_room_node);
  CHECK_FALSE(result.relay_to.has_value());
  CHECK(result.chosen.rtt_ms == doctest::Approx(model(fx::paris, fx::berlin)));
  CHECK(result.chosen.score == doctest::Approx(model(fx::paris, fx::berlin) + 0.25));
  CHECK(ids_of(result.alternates) == strings{"paris", "london"});

  // With the default slack (5 ms) the Paris client is 13 ms better off in Paris: the room
  // extends there, linked to Berlin.
  auto cascaded = place_at(table, fx::paris, room_on({"berlin"}));
  CHECK(cascaded.chosen.node_id == "paris");
  CHECK_FALSE(cascaded.joins_room_node);
  CHECK(cascaded.relay_to == std::optional<std::string>{"berlin"});

  // A tighter slack: the room extends to Paris, linked to Berlin.
  placement_rules tight;
  tight.affinity_slack_ms = 10;
  auto extended = place_at(table, fx::paris, room_on({"berlin"}), tight);
  CHECK(extended.chosen.node_id == "paris");
  CHECK_FALSE(extended.joins_room_node);
  CHECK(extended.relay_to == "berlin");

  // A room on two nodes: the nearer part, no relay needed.
  auto two = place_at(table, fx::paris, room_on({"berlin", "paris"}));
  CHECK(two.chosen.node_id == "paris");
  CHECK(two.joins_room_node);
  CHECK_FALSE(two.relay_to.has_value());
  CHECK(ids_of(two.alternates) == strings{"london", "berlin"});
}

TEST_CASE("placement: a far client extends the room, linked to the nearest part") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);

  auto result = place_at(table, fx::new_york, room_on({"berlin"}));
  CHECK(result.chosen.node_id == "new-york");
  CHECK_FALSE(result.joins_room_node);
  CHECK(result.relay_to == "berlin");

  // Two parts: the relay goes to the part nearest the new node (Paris, by the model).
  auto two = place_at(table, fx::new_york, room_on({"berlin", "paris"}));
  CHECK(two.chosen.node_id == "new-york");
  CHECK_FALSE(two.joins_room_node);
  CHECK(two.relay_to == "paris");

  // Measured node-to-node RTTs win over the model, in either direction.
  SUBCASE("measured by the new node") {
    fx::report(table, "new-york", {.peer_rtts = {{"berlin", 70}}});
    CHECK(place_at(table, fx::new_york, room_on({"berlin", "paris"})).relay_to == "berlin");
  }
  SUBCASE("measured by the room node") {
    fx::report(table, "berlin", {.peer_rtts = {{"new-york", 70}}});
    CHECK(place_at(table, fx::new_york, room_on({"paris", "berlin"})).relay_to == "berlin");
  }

  // Affinity slack wide enough, the RTT cap (max_affinity_rtt_ms) still applies.
  placement_rules wide;
  wide.affinity_slack_ms = 200;
  auto kept = place_at(table, fx::new_york, room_on({"berlin"}), wide);
  CHECK(kept.chosen.node_id == "berlin"); // 100.78 ms, under the 150 ms cap
  CHECK(kept.joins_room_node);
  wide.max_affinity_rtt_ms = 80;
  auto capped = place_at(table, fx::new_york, room_on({"berlin"}), wide);
  CHECK(capped.chosen.node_id == "new-york");
  CHECK(capped.relay_to == "berlin");
}

TEST_CASE("placement: a full room node makes the room extend to the next node") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 10);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 10);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 10);

  SUBCASE("full by reservations") {
    fx::reserve(table, "berlin", 10);
  }
  SUBCASE("full by Stats") {
    fx::report(table, "berlin", {.participants = 10});
  }
  SUBCASE("over the high-water mark") {
    fx::report(table, "berlin", {.cpu_load = 0.95});
  }
  auto result = place_at(table, fx::berlin, room_on({"berlin"}));
  CHECK(result.chosen.node_id == "frankfurt");
  CHECK_FALSE(result.joins_room_node);
  CHECK(result.relay_to == "berlin");
  CHECK(ids_of(result.alternates) == strings{"paris"});

  // The room already on Berlin and Frankfurt: the client joins Frankfurt.
  auto two = place_at(table, fx::berlin, room_on({"berlin", "frankfurt"}));
  CHECK(two.chosen.node_id == "frankfurt");
  CHECK(two.joins_room_node);
  CHECK_FALSE(two.relay_to.has_value());
}

TEST_CASE("placement: room affinity respects the app's policy and features") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100, {"opus"});
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100, {"opus", "recording"});
  auto request = client_at(fx::berlin);

  auto france = app_with(strategy::balanced, {}, {"FR"});
  request.app = &france;
  auto result = place(table, request, room_on({"berlin"}), {});
  CHECK(result.chosen.node_id == "paris");
  CHECK_FALSE(result.joins_room_node);
  CHECK(result.relay_to == "berlin");

  request.app = nullptr;
  request.features.recording = true;
  auto recorded = place(table, request, room_on({"berlin"}), {});
  CHECK(recorded.chosen.node_id == "paris");
  CHECK(recorded.relay_to == "berlin");
}

// ---- alternates, candidates ----------------------------------------------------------------

TEST_CASE("placement: alternates are distinct from the chosen node, best first, at most N") {
  auto table = six_european();
  // Balanced, all idle: scores are RTT + 0.25; by RTT from Berlin.
  auto three = place_at(table, fx::berlin, {}, {}, 3);
  CHECK(three.chosen.node_id == "berlin");
  CHECK(ids_of(three.alternates) == strings{"potsdam", "frankfurt", "warsaw"});
  CHECK(three.alternates[0].score == doctest::Approx(model(fx::berlin, fx::potsdam) + 0.25));
  CHECK(three.alternates[2].rtt_ms == doctest::Approx(model(fx::berlin, fx::warsaw)));

  CHECK(ids_of(place_at(table, fx::berlin).alternates) == strings{"potsdam", "frankfurt"});
  CHECK(place_at(table, fx::berlin, {}, {}, 0).alternates.empty());

  auto all = place_at(table, fx::berlin, {}, {}, 10);
  CHECK(ids_of(all.alternates) == strings{"potsdam", "frankfurt", "warsaw", "paris", "london"});
  for (size_t i = 1; i < all.alternates.size(); ++i)
    CHECK(all.alternates[i - 1].score <= all.alternates[i].score);
  CHECK(all.chosen.score <= all.alternates[0].score);

  // Alternates come from the pool.
  placement_rules small;
  small.candidate_pool = 3;
  CHECK(ids_of(place_at(table, fx::berlin, {}, small, 10).alternates) ==
        strings{"potsdam", "frankfurt"});

  // With room affinity the room node is chosen and left out of the alternates.
  placement_rules slack_40;
  slack_40.affinity_slack_ms = 40;
  auto room = place_at(table, fx::berlin, room_on({"paris"}), slack_40, 3);
  CHECK(room.chosen.node_id == "paris");
  CHECK(room.joins_room_node);
  CHECK(ids_of(room.alternates) == strings{"berlin", "potsdam", "frankfurt"});

  // Loaded nodes move down the list by score.
  fx::report(table, "potsdam", {.participants = 60});
  CHECK(ids_of(place_at(table, fx::berlin, {}, {}, 3).alternates) ==
        strings{"frankfurt", "warsaw", "paris"});
}

TEST_CASE("placement: nearest_candidates is sorted by RTT and capped") {
  auto table = six_european();
  auto four = nearest_candidates(table, client_at(fx::berlin), {}, 4);
  CHECK(ids_of(four) == strings{"berlin", "potsdam", "frankfurt", "warsaw"});
  for (size_t i = 1; i < four.size(); ++i)
    CHECK(four[i - 1].rtt_ms <= four[i].rtt_ms);
  CHECK(four[3].rtt_ms == doctest::Approx(model(fx::berlin, fx::warsaw)));
  CHECK(four[0].source == rtt_source::distance);

  CHECK(nearest_candidates(table, client_at(fx::berlin), {}, 10).size() == 6);
  CHECK(nearest_candidates(table, client_at(fx::berlin), {}, 0).empty());
  CHECK(ids_of(nearest_candidates(table, client_at(fx::london), {}, 2)) ==
        strings{"london", "paris"});

  // The count wins over a smaller candidate_pool.
  placement_rules small;
  small.candidate_pool = 2;
  CHECK(nearest_candidates(table, client_at(fx::berlin), small, 4).size() == 4);

  // By RTT, not by score: a loaded node keeps its place.
  fx::report(table, "berlin", {.participants = 80});
  CHECK(ids_of(nearest_candidates(table, client_at(fx::berlin), {}, 2)) ==
        strings{"berlin", "potsdam"});
  // Probes reorder.
  auto probed = nearest_candidates(table, client_at(fx::berlin, {{"paris", 2}}), {}, 2);
  CHECK(ids_of(probed) == strings{"paris", "berlin"});
  CHECK(probed[0].source == rtt_source::probe);
  // Filters apply: a cordoned or overloaded node is not a candidate.
  std::vector<node_event> events;
  REQUIRE(table.cordon("potsdam", fx::t0, events) == table_error::none);
  fx::report(table, "frankfurt", {.cpu_load = 0.99});
  CHECK(ids_of(nearest_candidates(table, client_at(fx::berlin), {}, 3)) ==
        strings{"berlin", "warsaw", "paris"});
}

// ---- region centres and node RTTs ----------------------------------------------------------

TEST_CASE("placement: region_centre") {
  node_table table;
  CHECK_FALSE(region_centre(table, "").has_value());
  CHECK_FALSE(region_centre(table, "eu-west").has_value());

  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "frankfurt", fx::frankfurt, "eu-central", "DE", 100);
  fx::add_node(table, "warsaw", fx::warsaw, "eu-central", "PL", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  fx::add_node(table, "london", fx::london, "eu-west", "GB", 100);
  fx::add_node(table, "new-york", fx::new_york, "us-east", "US", 100);

  // Two nodes: the point halfway along the great circle between them.
  auto west = region_centre(table, "eu-west");
  REQUIRE(west.has_value());
  double half = great_circle_km(fx::paris, fx::london) / 2;
  CHECK(great_circle_km(*west, fx::paris) == doctest::Approx(half).epsilon(1e-6));
  CHECK(great_circle_km(*west, fx::london) == doctest::Approx(half).epsilon(1e-6));

  // One node: its place.
  auto east = region_centre(table, "us-east");
  REQUIRE(east.has_value());
  CHECK(great_circle_km(*east, fx::new_york) < 1e-6);

  // Unnamed: the region with the most active nodes (eu-central, 3), its centroid.
  auto busiest = region_centre(table, "");
  REQUIRE(busiest.has_value());
  auto central = region_centre(table, "eu-central");
  REQUIRE(central.has_value());
  CHECK(great_circle_km(*busiest, *central) < 1e-6);
  CHECK(busiest->latitude_deg > 50.11);
  CHECK(busiest->latitude_deg < 52.52);
  CHECK(busiest->longitude_deg > 8.68);
  CHECK(busiest->longitude_deg < 21.02);
  CHECK(busiest->latitude_deg == doctest::Approx(51.73).epsilon(0.001));
  CHECK(busiest->longitude_deg == doctest::Approx(14.28).epsilon(0.002));

  CHECK_FALSE(region_centre(table, "ap-south").has_value());

  // Only active nodes count, for the centre and for "most populated".
  std::vector<node_event> events;
  REQUIRE(table.cordon("new-york", fx::t0, events) == table_error::none);
  CHECK_FALSE(region_centre(table, "us-east").has_value());
  REQUIRE(table.cordon("berlin", fx::t0, events) == table_error::none);
  REQUIRE(table.cordon("warsaw", fx::t0, events) == table_error::none);
  auto only_frankfurt = region_centre(table, "eu-central");
  REQUIRE(only_frankfurt.has_value());
  CHECK(great_circle_km(*only_frankfurt, fx::frankfurt) < 1e-6);
  auto now_busiest = region_centre(table, "");
  REQUIRE(now_busiest.has_value());
  CHECK(great_circle_km(*now_busiest, *west) < 1e-6);

  REQUIRE(table.cordon("frankfurt", fx::t0, events) == table_error::none);
  REQUIRE(table.cordon("paris", fx::t0, events) == table_error::none);
  REQUIRE(table.cordon("london", fx::t0, events) == table_error::none);
  CHECK_FALSE(region_centre(table, "").has_value());
}

TEST_CASE("placement: region_centre across the antimeridian") {
  node_table table;
  fx::add_node(table, "fiji", {-18.0, 179.0}, "pacific", "FJ", 100);
  fx::add_node(table, "samoa", {-18.0, -179.0}, "pacific", "WS", 100);
  auto centre = region_centre(table, "pacific");
  REQUIRE(centre.has_value());
  CHECK(std::abs(centre->longitude_deg) == doctest::Approx(180.0));
  CHECK(centre->latitude_deg == doctest::Approx(-18.0).epsilon(0.001));
  CHECK(great_circle_km(*centre, {-18.0, 180.0}) < 1.0);
}

TEST_CASE("placement: node_rtt_ms prefers a measured value, in either direction") {
  node_table table;
  fx::add_node(table, "berlin", fx::berlin, "eu-central", "DE", 100);
  fx::add_node(table, "paris", fx::paris, "eu-west", "FR", 100);
  auto rtt = [&](const std::string& a, const std::string& b) {
    return node_rtt_ms(record(table, a), record(table, b), {});
  };
  double modelled = model(fx::berlin, fx::paris);

  CHECK(rtt("berlin", "paris") == doctest::Approx(modelled));
  CHECK(rtt("paris", "berlin") == doctest::Approx(modelled));

  fx::report(table, "berlin", {.peer_rtts = {{"paris", 33}}});
  CHECK(rtt("berlin", "paris") == doctest::Approx(33));
  CHECK(rtt("paris", "berlin") == doctest::Approx(33));

  // Both measured: each side's own first.
  fx::report(table, "paris", {.peer_rtts = {{"berlin", 44}}});
  CHECK(rtt("berlin", "paris") == doctest::Approx(33));
  CHECK(rtt("paris", "berlin") == doctest::Approx(44));

  // Only the other side measured.
  fx::report(table, "berlin", {.peer_rtts = {{"tokyo", 250}}});
  CHECK(rtt("berlin", "paris") == doctest::Approx(44));

  // Zero is "not measured"; measurements of other nodes do not count.
  fx::report(table, "paris", {.peer_rtts = {{"berlin", 0}, {"london", 9}}});
  CHECK(rtt("berlin", "paris") == doctest::Approx(modelled));
  CHECK(rtt("paris", "berlin") == doctest::Approx(modelled));

  // A custom fibre model is used for the estimate.
  chroom::allocation::fibre_model slow;
  slow.path_stretch = 3.0;
  CHECK(node_rtt_ms(record(table, "berlin"), record(table, "paris"), slow) ==
        doctest::Approx(estimated_rtt_ms(fx::berlin, fx::paris, slow)));
  CHECK(node_rtt_ms(record(table, "berlin"), record(table, "berlin"), {}) == doctest::Approx(5.0));
}
