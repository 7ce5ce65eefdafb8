// Tests of cascade planning (allocation/cascade.hpp): the relay tree of a room grows by
// linking each new part to the part placement chose, and is mended with the shortest links
// among the orphaned neighbours when a part leaves; it stays one tree (connected, no loop,
// links = nodes - 1) through a long seeded sequence of adds and removes.
#include "allocation/cascade.hpp"

#include "allocation/geo.hpp"
#include "placement_fixtures.hpp"

#include <algorithm>
#include <cmath>
#include <doctest/doctest.h>
#include <limits>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

namespace fx = chroom::placement_fixtures;
using chroom::allocation::relay_changes;
using chroom::allocation::relay_link;
using chroom::allocation::relay_tree;
using strings = std::vector<std::string>;
using links = std::vector<relay_link>;

/// Symmetric RTTs from a table of pairs; counts the calls.
struct rtt_table {
  std::map<std::pair<std::string, std::string>, double> values;
  mutable int calls = 0;

  void set(const std::string& a, const std::string& b, double rtt_ms) {
    values[{std::min(a, b), std::max(a, b)}] = rtt_ms;
  }
  relay_tree::rtt_function function() const {
    return [this](const std::string& a, const std::string& b) {
      ++calls;
      auto it = values.find({std::min(a, b), std::max(a, b)});
      REQUIRE(it != values.end());
      return it->second;
    };
  }
};

const relay_tree::rtt_function no_rtt_expected = [](const std::string& a, const std::string& b) {
  FAIL("no RTT should be needed, asked for " << a << " - " << b);
  return 0.0;
};

strings sorted(strings names) {
  std::sort(names.begin(), names.end());
  return names;
}

links sorted(links all) {
  std::sort(all.begin(), all.end(), [](const relay_link& x, const relay_link& y) {
    return std::tie(x.a, x.b) < std::tie(y.a, y.b);
  });
  return all;
}

/// Nodes reachable from the first node over links.
size_t reachable(const relay_tree& tree) {
  if (tree.nodes().empty())
    return 0;
  std::set<std::string> seen{tree.nodes().front()};
  std::queue<std::string> next;
  next.push(tree.nodes().front());
  while (!next.empty()) {
    auto at = next.front();
    next.pop();
    for (const auto& neighbour : tree.neighbours(at))
      if (seen.insert(neighbour).second)
        next.push(neighbour);
  }
  return seen.size();
}

/// One tree: every link between two distinct nodes of the tree, normalised (a < b), none
/// twice, links = nodes - 1 and everything reachable (so no loop either).
void check_tree(const relay_tree& tree) {
  const auto& nodes = tree.nodes();
  std::set<std::string> distinct(nodes.begin(), nodes.end());
  CHECK(distinct.size() == nodes.size());
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& link : tree.links()) {
    CHECK(link.a < link.b);
    CHECK(distinct.contains(link.a));
    CHECK(distinct.contains(link.b));
    CHECK(seen.insert({link.a, link.b}).second);
  }
  CHECK(tree.links().size() == (nodes.empty() ? 0 : nodes.size() - 1));
  CHECK(reachable(tree) == nodes.size());
}

/// Total RTT of a minimum spanning tree over `nodes` (Prim, O(n^2)), the reference for
/// the mending links.
double minimum_spanning_cost(const strings& nodes, const relay_tree::rtt_function& rtt) {
  if (nodes.size() < 2)
    return 0;
  std::vector<double> best(nodes.size(), std::numeric_limits<double>::infinity());
  std::vector<bool> in(nodes.size(), false);
  best[0] = 0;
  double total = 0;
  for (size_t round = 0; round < nodes.size(); ++round) {
    size_t pick = nodes.size();
    for (size_t i = 0; i < nodes.size(); ++i)
      if (!in[i] && (pick == nodes.size() || best[i] < best[pick]))
        pick = i;
    in[pick] = true;
    total += best[pick];
    for (size_t i = 0; i < nodes.size(); ++i)
      if (!in[i])
        best[i] = std::min(best[i], rtt(nodes[pick], nodes[i]));
  }
  return total;
}

} // namespace

TEST_CASE("relay_link: ends in order, touches and other") {
  relay_link link("paris", "berlin");
  CHECK(link.a == "berlin");
  CHECK(link.b == "paris");
  CHECK(link == relay_link("berlin", "paris"));
  CHECK(link.touches("paris"));
  CHECK(link.touches("berlin"));
  CHECK_FALSE(link.touches("tokyo"));
  CHECK(link.other("paris") == "berlin");
  CHECK(link.other("berlin") == "paris");
}

TEST_CASE("relay_tree: an empty tree") {
  relay_tree tree;
  CHECK(tree.nodes().empty());
  CHECK(tree.links().empty());
  CHECK_FALSE(tree.contains("berlin"));
  CHECK(tree.neighbours("berlin").empty());
  auto changes = tree.remove("berlin", no_rtt_expected);
  CHECK(changes.attach.empty());
  CHECK(changes.detach.empty());
  check_tree(tree);
}

TEST_CASE("relay_tree: add links to the given node, the first node has no link") {
  relay_tree tree;
  auto first = tree.add("berlin");
  CHECK(first.attach.empty());
  CHECK(first.detach.empty());
  CHECK(tree.nodes() == strings{"berlin"});
  CHECK(tree.links().empty());

  auto second = tree.add("paris", "berlin");
  CHECK(second.attach == links{relay_link("berlin", "paris")});
  CHECK(second.detach.empty());
  CHECK(tree.links() == links{relay_link("berlin", "paris")});

  // Linked to the node asked for, not to the first or the last one.
  tree.add("warsaw", "berlin");
  auto fourth = tree.add("london", "paris");
  CHECK(fourth.attach == links{relay_link("london", "paris")});
  CHECK(sorted(tree.neighbours("berlin")) == strings{"paris", "warsaw"});
  CHECK(sorted(tree.neighbours("paris")) == strings{"berlin", "london"});
  CHECK(tree.neighbours("london") == strings{"paris"});
  CHECK(tree.neighbours("warsaw") == strings{"berlin"});
  CHECK(tree.contains("london"));
  CHECK(sorted(tree.nodes()) == strings{"berlin", "london", "paris", "warsaw"});
  check_tree(tree);
}

TEST_CASE("relay_tree: the first node's link_to is ignored when it is not in the tree") {
  relay_tree tree;
  auto first = tree.add("berlin", "paris");
  CHECK(first.attach.empty());
  CHECK(tree.nodes() == strings{"berlin"});
  CHECK(tree.links().empty());
  check_tree(tree);
}

TEST_CASE("relay_tree: adding a node twice changes nothing") {
  relay_tree tree;
  tree.add("berlin");
  tree.add("paris", "berlin");
  tree.add("warsaw", "berlin");
  auto before = tree.links();

  auto again = tree.add("paris", "berlin");
  CHECK(again.attach.empty());
  CHECK(again.detach.empty());
  // Not even with another link_to: a part has one place in the tree.
  auto elsewhere = tree.add("paris", "warsaw");
  CHECK(elsewhere.attach.empty());
  auto root_again = tree.add("berlin");
  CHECK(root_again.attach.empty());

  CHECK(tree.nodes().size() == 3);
  CHECK(tree.links() == before);
  check_tree(tree);
}

TEST_CASE("relay_tree: removing a leaf detaches its one link and mends nothing") {
  relay_tree tree;
  tree.add("berlin");
  tree.add("paris", "berlin");
  tree.add("warsaw", "berlin");
  tree.add("london", "paris");

  auto changes = tree.remove("london", no_rtt_expected);
  CHECK(changes.detach == links{relay_link("london", "paris")});
  CHECK(changes.attach.empty());
  CHECK_FALSE(tree.contains("london"));
  CHECK(tree.neighbours("paris") == strings{"berlin"});
  check_tree(tree);

  // The root is a leaf too once it has one neighbour.
  tree.remove("warsaw", no_rtt_expected);
  auto root = tree.remove("berlin", no_rtt_expected);
  CHECK(root.detach == links{relay_link("berlin", "paris")});
  CHECK(root.attach.empty());
  CHECK(tree.nodes() == strings{"paris"});
  CHECK(tree.links().empty());
  check_tree(tree);

  // The last node goes without any change to relays.
  auto last = tree.remove("paris", no_rtt_expected);
  CHECK(last.detach.empty());
  CHECK(last.attach.empty());
  CHECK(tree.nodes().empty());
  check_tree(tree);

  // Removing a node that is not there changes nothing.
  auto unknown = tree.remove("tokyo", no_rtt_expected);
  CHECK(unknown.detach.empty());
  CHECK(unknown.attach.empty());
}

TEST_CASE("relay_tree: removing an inner node with 3 neighbours joins them by the 2 shortest "
          "links") {
  // hub - x, hub - y, hub - z; x - y 10 ms, y - z 15 ms, x - z 40 ms: the mending links are
  // x - y and y - z (the spanning tree of least RTT), not x - z.
  rtt_table rtt;
  rtt.set("x", "y", 10);
  rtt.set("y", "z", 15);
  rtt.set("x", "z", 40);
  for (strings order : {strings{"x", "y", "z"}, strings{"z", "y", "x"}, strings{"y", "z", "x"}}) {
    CAPTURE(order[0]);
    relay_tree tree;
    tree.add("hub");
    for (const auto& leaf : order)
      tree.add(leaf, "hub");
    auto changes = tree.remove("hub", rtt.function());
    CHECK(sorted(changes.detach) ==
          links{relay_link("hub", "x"), relay_link("hub", "y"), relay_link("hub", "z")});
    CHECK(sorted(changes.attach) == links{relay_link("x", "y"), relay_link("y", "z")});
    CHECK(sorted(tree.links()) == links{relay_link("x", "y"), relay_link("y", "z")});
    CHECK(sorted(tree.nodes()) == strings{"x", "y", "z"});
    check_tree(tree);
  }
}

TEST_CASE("relay_tree: mending keeps the subtrees below the removed node") {
  // berlin is inner, with neighbours paris (which has london below it), warsaw and
  // frankfurt (which has munich below it). After berlin leaves, the three pieces are joined
  // by the two shortest links among paris, warsaw and frankfurt, and london and munich keep
  // their links.
  rtt_table rtt;
  rtt.set("paris", "warsaw", 30);
  rtt.set("paris", "frankfurt", 9);
  rtt.set("warsaw", "frankfurt", 14);
  relay_tree tree;
  tree.add("berlin");
  tree.add("paris", "berlin");
  tree.add("london", "paris");
  tree.add("warsaw", "berlin");
  tree.add("frankfurt", "berlin");
  tree.add("munich", "frankfurt");

  auto changes = tree.remove("berlin", rtt.function());
  CHECK(sorted(changes.detach) == links{relay_link("berlin", "frankfurt"),
                                        relay_link("berlin", "paris"),
                                        relay_link("berlin", "warsaw")});
  CHECK(sorted(changes.attach) ==
        links{relay_link("frankfurt", "paris"), relay_link("frankfurt", "warsaw")});
  CHECK(sorted(tree.links()) ==
        links{relay_link("frankfurt", "munich"), relay_link("frankfurt", "paris"),
              relay_link("frankfurt", "warsaw"), relay_link("london", "paris")});
  // Only pairs of orphans were priced: 3 pairs, each at most twice by Prim's rounds.
  CHECK(rtt.calls >= 3);
  CHECK(rtt.calls <= 6);
  check_tree(tree);
}

TEST_CASE("relay_tree: the mending links span the orphans at least RTT (many neighbours)") {
  // A star of 12 nodes at real places, RTT by the distance model: the mending links must
  // cost what a minimum spanning tree over the 11 orphans costs.
  fx::seeded_random random(5);
  std::map<std::string, chroom::allocation::geo_point> at;
  relay_tree tree;
  tree.add("hub");
  at["hub"] = random.on_sphere();
  for (int i = 0; i < 11; ++i) {
    auto id = "leaf" + std::to_string(i);
    at[id] = random.on_sphere();
    tree.add(id, "hub");
  }
  relay_tree::rtt_function rtt = [&](const std::string& a, const std::string& b) {
    return chroom::allocation::estimated_rtt_ms(at.at(a), at.at(b));
  };
  auto orphans = tree.neighbours("hub");
  auto changes = tree.remove("hub", rtt);
  CHECK(changes.detach.size() == 11);
  REQUIRE(changes.attach.size() == 10);
  double cost = 0;
  for (const auto& link : changes.attach)
    cost += rtt(link.a, link.b);
  CHECK(cost == doctest::Approx(minimum_spanning_cost(orphans, rtt)));
  check_tree(tree);
}

TEST_CASE("relay_tree: 500 seeded random adds and removes keep one tree") {
  fx::seeded_random random(1234567);
  std::map<std::string, chroom::allocation::geo_point> at;
  relay_tree::rtt_function rtt = [&](const std::string& a, const std::string& b) {
    return chroom::allocation::estimated_rtt_ms(at.at(a), at.at(b));
  };
  relay_tree tree;
  std::set<std::string> model;
  int next_id = 0, adds = 0, removes = 0, mended = 0, stale_adds = 0;
  for (int step = 0; step < 500; ++step) {
    CAPTURE(step);
    // Grow more than shrink, so the tree gets big enough for deep mends.
    bool grow = model.empty() || random.chance(model.size() < 30 ? 0.65 : 0.45);
    if (grow) {
      auto id = "node" + std::to_string(next_id++);
      at[id] = random.on_sphere();
      std::string link_to;
      if (!model.empty()) {
        auto it = model.begin();
        std::advance(it, static_cast<long>(random.below(model.size())));
        link_to = *it;
      }
      // Now and then the part placement chose has left meanwhile.
      bool stale = !model.empty() && next_id > 2 && random.chance(0.1);
      if (stale)
        link_to = "node" + std::to_string(random.below(static_cast<size_t>(next_id - 1)));
      auto changes = tree.add(id, link_to, rtt);
      ++adds;
      CHECK(changes.detach.empty());
      if (model.empty()) {
        CHECK(changes.attach.empty());
      } else if (model.contains(link_to)) {
        CHECK(changes.attach == links{relay_link(id, link_to)});
      } else {
        ++stale_adds;
        REQUIRE(changes.attach.size() == 1);
        CHECK(changes.attach[0].touches(id));
        CHECK(model.contains(changes.attach[0].other(id)));
      }
      model.insert(id);
    } else {
      auto it = model.begin();
      std::advance(it, static_cast<long>(random.below(model.size())));
      auto id = *it;
      auto orphans = tree.neighbours(id);
      auto links_before = tree.links();
      auto changes = tree.remove(id, rtt);
      ++removes;
      model.erase(id);
      // Every link of the node detached, exactly those.
      CHECK(changes.detach.size() == orphans.size());
      for (const auto& link : changes.detach)
        CHECK(link.touches(id));
      // The orphans joined by orphans - 1 links among themselves, of least total RTT.
      CHECK(changes.attach.size() == (orphans.size() < 2 ? 0 : orphans.size() - 1));
      double cost = 0;
      for (const auto& link : changes.attach) {
        CHECK(std::find(orphans.begin(), orphans.end(), link.a) != orphans.end());
        CHECK(std::find(orphans.begin(), orphans.end(), link.b) != orphans.end());
        CHECK(std::find(tree.links().begin(), tree.links().end(), link) != tree.links().end());
        cost += rtt(link.a, link.b);
      }
      CHECK(cost == doctest::Approx(minimum_spanning_cost(orphans, rtt)));
      // Nothing else changed.
      CHECK(tree.links().size() ==
            links_before.size() - changes.detach.size() + changes.attach.size());
      if (orphans.size() >= 3)
        ++mended;
    }
    CHECK(std::set<std::string>(tree.nodes().begin(), tree.nodes().end()) == model);
    check_tree(tree);
  }
  // The sequence did exercise what it is meant to.
  CHECK(adds > 200);
  CHECK(removes > 100);
  CHECK(mended > 5);
  CHECK(stale_adds > 5);
}

TEST_CASE("relay_tree: a node is never linked to itself") {
  // Regression: add() appended the node before checking link_to, so add(node, node) once
  // passed the "link_to is in the tree" check and created a self link paris - paris. A bad
  // link_to is treated as an unknown one.
  relay_tree tree;
  tree.add("berlin");
  auto changes = tree.add("paris", "paris");
  CHECK(changes.attach == links{relay_link("berlin", "paris")});
  for (const auto& link : tree.links())
    CHECK(link.a != link.b);
  check_tree(tree);
}

TEST_CASE("relay_tree: a node whose link_to is not in the tree joins the nearest node") {
  // Regression: placement answers with the part to relay to while the room goes on; when
  // that part left meanwhile, the new part was added without a link and the room's media
  // was split in two (seen in test_cluster under load).
  rtt_table rtt;
  relay_tree tree;
  tree.add("berlin");
  tree.add("tokyo", "berlin");
  tree.add("sydney", "tokyo");
  rtt.set("paris", "berlin", 15);
  rtt.set("paris", "tokyo", 220);
  rtt.set("paris", "sydney", 280);
  rtt.set("seoul", "berlin", 230);
  rtt.set("seoul", "tokyo", 30);
  rtt.set("seoul", "sydney", 140);
  rtt.set("seoul", "paris", 240);

  auto gone = tree.add("paris", "warsaw", rtt.function());
  CHECK(gone.attach == links{relay_link("berlin", "paris")});
  auto none = tree.add("seoul", "", rtt.function());
  CHECK(none.attach == links{relay_link("seoul", "tokyo")});
  check_tree(tree);

  SUBCASE("a link_to in the tree is taken without asking for RTTs") {
    auto asked = rtt.calls;
    auto kept = tree.add("lima", "sydney", rtt.function());
    CHECK(kept.attach == links{relay_link("lima", "sydney")});
    CHECK(rtt.calls == asked);
  }
  SUBCASE("without RTTs, or with none known, the first node") {
    auto blind = tree.add("lima", "warsaw");
    CHECK(blind.attach == links{relay_link("berlin", "lima")});
    auto unknown = tree.add("quito", "warsaw", [](const std::string&, const std::string&) {
      return std::numeric_limits<double>::infinity();
    });
    CHECK(unknown.attach == links{relay_link("berlin", "quito")});
  }
  check_tree(tree);
}

TEST_CASE("relay_tree: mending works when RTTs are unknown (infinite or NaN)") {
  // Regression: Prim's rounds once took a pair only when cost < best, starting from
  // best = infinity; with every RTT infinite (an RTT function's natural answer for a node
  // without measurement or location) no pair was taken and each round linked the first
  // orphan to itself (attach = [x - x, x - x]), cutting y and z off.
  for (double unknown :
       {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    CAPTURE(unknown);
    relay_tree tree;
    tree.add("hub");
    tree.add("x", "hub");
    tree.add("y", "hub");
    tree.add("z", "hub");
    auto changes =
      tree.remove("hub", [unknown](const std::string&, const std::string&) { return unknown; });
    CHECK(changes.attach.size() == 2);
    for (const auto& link : changes.attach)
      CHECK(link.a != link.b);
    check_tree(tree);
  }

  // Some known: the known links are preferred.
  rtt_table rtt;
  rtt.set("x", "y", std::numeric_limits<double>::infinity());
  rtt.set("x", "z", 20);
  rtt.set("y", "z", 30);
  relay_tree tree;
  tree.add("hub");
  tree.add("x", "hub");
  tree.add("y", "hub");
  tree.add("z", "hub");
  auto changes = tree.remove("hub", rtt.function());
  CHECK(sorted(changes.attach) == links{relay_link("x", "z"), relay_link("y", "z")});
  check_tree(tree);
}
