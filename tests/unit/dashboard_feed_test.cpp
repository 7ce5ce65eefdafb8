#include "daemon/dashboard_feed.hpp"

#include <doctest/doctest.h>

#include <map>

using chroom::daemon::dashboard_feed;
using json = nlohmann::json;

namespace {

json node(const std::string& id, double load, const std::string& state = "active") {
  return {{"node_id", id}, {"state", state}, {"load", load}, {"participants", 0}};
}

json room(const std::string& app, const std::string& id, int participants) {
  return {{"app_id", app}, {"room_id", id}, {"participants", participants}};
}

json snapshot(json nodes, json rooms, int64_t at) {
  return {{"peer_id", "p1"},
          {"at_unix_ms", at},
          {"nodes", std::move(nodes)},
          {"rooms", std::move(rooms)},
          {"rooms_total", 1}};
}

/// What a page does with the feed (dashboard/src/model.js): a full snapshot, then deltas.
struct page_copy {
  uint64_t seq = 0;
  std::map<uint32_t, json> nodes;
  std::map<std::string, json> rooms;
  json aggregates = json::object();

  void reset(const json& s) {
    seq = s["seq"];
    nodes.clear();
    rooms.clear();
    for (const auto& n : s["nodes"])
      nodes[n["slot"]] = n;
    for (const auto& r : s["rooms"])
      rooms[json::array({r["app_id"], r["room_id"]}).dump()] = r;
    aggregates = json::object();
    for (const auto& [k, v] : s.items())
      if (k != "nodes" && k != "rooms" && k != "seq")
        aggregates[k] = v;
  }

  void apply(const json& d) {
    REQUIRE(d["base_seq"] == seq);
    for (const auto& slot : d["nodes_removed"])
      REQUIRE(nodes.erase(slot) == 1);
    for (const auto& n : d["nodes_added"])
      REQUIRE(nodes.emplace(n["slot"], n).second);
    for (const auto& [field, list] : d["node_changes"].items()) {
      REQUIRE(list.size() % 2 == 0);
      for (size_t i = 0; i < list.size(); i += 2)
        nodes.at(list[i])[field] = list[i + 1];
    }
    for (const auto& key : d["rooms_removed"])
      REQUIRE(rooms.erase(key.dump()) == 1);
    for (const auto& r : d["rooms_upserted"])
      rooms[json::array({r["app_id"], r["room_id"]}).dump()] = r;
    for (const auto& [k, v] : d.items())
      if (k != "seq" && k != "base_seq" && !k.starts_with("node") && !k.starts_with("rooms_u") &&
          !k.starts_with("rooms_r"))
        aggregates[k] = v;
    seq = d["seq"];
  }

  /// Equal to the feed's own full snapshot.
  void check_equals(const dashboard_feed& feed) const {
    page_copy fresh;
    fresh.reset(json::parse(*feed.snapshot_text()));
    CHECK(seq == fresh.seq);
    CHECK(nodes == fresh.nodes);
    CHECK(rooms == fresh.rooms);
    CHECK(aggregates == fresh.aggregates);
  }
};

} // namespace

TEST_CASE("dashboard feed: a page built from one snapshot and deltas equals a fresh snapshot") {
  dashboard_feed feed;
  CHECK(feed.seq() == 0);
  CHECK(feed.snapshot_text() == nullptr);
  CHECK_FALSE(feed.deltas_since(0).complete);

  feed.advance(snapshot(json::array({node("a", 0.1), node("b", 0.2), node("c", 0.3)}),
                        json::array({room("app/x", "r", 2), room("app", "x/r", 3)}), 1000));
  page_copy page;
  page.reset(json::parse(*feed.snapshot_text()));
  CHECK(page.seq == 1);
  CHECK(page.nodes.size() == 3);
  CHECK(page.rooms.size() == 2); // 'app/x'+'r' and 'app'+'x/r' are two rooms
  auto up_to_date = feed.deltas_since(1);
  CHECK(up_to_date.complete);
  CHECK(up_to_date.deltas.empty());

  SUBCASE("a load moves, a node leaves, another joins, a room changes and one ends") {
    feed.advance(snapshot(json::array({node("a", 0.15), node("c", 0.3, "suspect"), node("d", 0)}),
                          json::array({room("app/x", "r", 4)}), 2000));
    auto catch_up = feed.deltas_since(1);
    REQUIRE(catch_up.complete);
    REQUIRE(catch_up.deltas.size() == 1);
    auto delta = json::parse(*catch_up.deltas[0]);
    CHECK(delta["seq"] == 2);
    CHECK(delta["at_unix_ms"] == 2000);
    // Only what changed: a's load and c's state, by slot; b removed; d whole.
    CHECK(delta["node_changes"].size() == 2);
    CHECK(delta["node_changes"]["load"].size() == 2);
    CHECK(delta["node_changes"]["state"] == json::array({page.nodes.rbegin()->first, "suspect"}));
    CHECK(delta["nodes_removed"].size() == 1);
    REQUIRE(delta["nodes_added"].size() == 1);
    CHECK(delta["nodes_added"][0]["node_id"] == "d");
    CHECK(delta["rooms_upserted"].size() == 1);
    CHECK(delta["rooms_removed"] == json::array({json::array({"app", "x/r"})}));
    page.apply(delta);
    page.check_equals(feed);
    // d took no slot that b left in the same delta: b's slot is free only for later ones.
    CHECK(delta["nodes_added"][0]["slot"] != delta["nodes_removed"][0]);

    feed.advance(snapshot(
      json::array({node("a", 0.15), node("c", 0.3, "suspect"), node("d", 0), node("e", 0)}),
      json::array({room("app/x", "r", 4)}), 3000));
    auto next = json::parse(*feed.deltas_since(2).deltas.at(0));
    CHECK(next["node_changes"].empty());
    CHECK(next["rooms_upserted"].empty());
    CHECK(next["nodes_added"][0]["slot"] == delta["nodes_removed"][0]); // reused now
    page.apply(next);
    page.check_equals(feed);
  }

  SUBCASE("a viewer further behind than the kept deltas gets the full snapshot") {
    for (int i = 0; i < static_cast<int>(dashboard_feed::retained_deltas) + 2; ++i)
      feed.advance(
        snapshot(json::array({node("a", 0.01 * i), node("b", 0.2)}), json::array(), 2000 + i));
    CHECK_FALSE(feed.deltas_since(1).complete);
    CHECK_FALSE(feed.deltas_since(feed.seq() + 1).complete);
    auto catch_up = feed.deltas_since(feed.seq() - 3);
    REQUIRE(catch_up.complete);
    CHECK(catch_up.deltas.size() == 3);
    // The oldest kept delta still brings its base up to date, one after the other.
    auto oldest = feed.seq() - dashboard_feed::retained_deltas;
    auto all = feed.deltas_since(oldest);
    REQUIRE(all.complete);
    CHECK(all.deltas.size() == dashboard_feed::retained_deltas);
    for (size_t i = 0; i + 1 < all.deltas.size(); ++i)
      CHECK(json::parse(*all.deltas[i + 1])["base_seq"] == json::parse(*all.deltas[i])["seq"]);
  }
}
