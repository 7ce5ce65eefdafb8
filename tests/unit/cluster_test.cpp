#include "cluster/peer_address.hpp"
#include "cluster/ring.hpp"
#include "cluster/room_state.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>

using namespace chroom::cluster;

TEST_CASE("peer addresses parse host:port and [v6]:port and reject the rest") {
  std::string problem;
  auto plain = parse_peer_address("10.0.0.1:7000", problem);
  REQUIRE(plain);
  CHECK(plain->host == "10.0.0.1");
  CHECK(plain->port == 7000);
  CHECK(plain->to_string() == "10.0.0.1:7000");
  auto v6 = parse_peer_address("[::1]:7001", problem);
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->to_string() == "[::1]:7001");
  auto named = parse_peer_address("peer-0.chroom.default.svc:7100", problem);
  REQUIRE(named);
  CHECK(named->host == "peer-0.chroom.default.svc");
  for (const char* bad : {"", "host", "host:", ":7000", "host:0", "host:65536", "host:70x",
                          "::1:7000", "a b:7000", "host:-1"}) {
    problem.clear();
    CHECK_MESSAGE(!parse_peer_address(bad, problem), bad);
    CHECK_MESSAGE(problem.find("is not host:port") != std::string::npos, bad);
  }
}

TEST_CASE("rendezvous ownership is stable, balanced and moves little when peers change") {
  std::vector<std::string> three{"peer-a", "peer-b", "peer-c"};
  std::vector<std::string> shuffled{"peer-c", "peer-a", "peer-b"};
  std::map<std::string, int> owned;
  constexpr int rooms = 30'000;
  int moved_on_join = 0;
  int moved_on_leave = 0;
  auto four = three;
  four.push_back("peer-d");
  std::vector<std::string> without_b{"peer-a", "peer-c"};
  for (int i = 0; i < rooms; ++i) {
    auto key = "app/room-" + std::to_string(i);
    auto owners = owners_of(key, three, 2);
    REQUIRE(owners.size() == 2);
    CHECK(owners[0] != owners[1]);
    CHECK(owners == owners_of(key, shuffled, 2)); // order of the member list is irrelevant
    ++owned[owners[0]];
    auto with_d = owners_of(key, four, 1)[0];
    if (with_d != owners[0]) {
      ++moved_on_join;
      CHECK(with_d == "peer-d"); // a joining peer only takes rooms, never shuffles others
    }
    auto after = owners_of(key, without_b, 1)[0];
    if (owners[0] != "peer-b")
      CHECK(after == owners[0]); // only the leaving peer's rooms move
    else {
      ++moved_on_leave;
      CHECK(after == owners[1]); // ... to their first replica, which holds their state
    }
  }
  for (const auto& [peer, count] : owned)
    CHECK_MESSAGE(std::abs(count - rooms / 3) < rooms / 30, peer << " owns " << count);
  CHECK(std::abs(moved_on_join - rooms / 4) < rooms / 40);
  CHECK(moved_on_leave == owned["peer-b"]);
  CHECK(owners_of("x", {}, 2).empty());
  CHECK(owners_of("x", {"only"}, 3) == std::vector<std::string>{"only"});
}

namespace {

chroom::cluster::v1::MemberState* add_member(RoomState& room, const std::string& client,
                                             const std::string& node) {
  auto* m = room.add_members();
  m->set_client_id(client);
  m->set_node_id(node);
  m->set_lease_id("lease-" + client);
  return m;
}

void add_part(RoomState& room, const std::string& node, double lat, double lon) {
  auto* p = room.add_parts();
  p->set_node_id(node);
  p->set_latitude(lat);
  p->set_longitude(lon);
}

void add_link(RoomState& room, const std::string& a, const std::string& b) {
  auto* l = room.add_links();
  l->set_a(a);
  l->set_b(b);
}

} // namespace

TEST_CASE("room versions order states of one writer and detect divergence") {
  RoomState a;
  count_change(a, "p1@1");
  RoomState b = a;
  CHECK(compare_versions(a, b) == version_order::same);
  count_change(b, "p1@1");
  CHECK(compare_versions(b, a) == version_order::newer);
  CHECK(compare_versions(a, b) == version_order::older);
  // A replica took over (another writer) from b: it supersedes b and a.
  RoomState c = b;
  count_change(c, "p2@5");
  CHECK(compare_versions(c, b) == version_order::newer);
  CHECK(compare_versions(c, a) == version_order::newer);
  // Meanwhile b's writer went on alone (a partition): c and d diverged.
  RoomState d = b;
  count_change(d, "p1@1");
  CHECK(compare_versions(c, d) == version_order::concurrent);
  CHECK(compare_versions(d, c) == version_order::concurrent);
  CHECK(total_changes(d) == 3);
}

TEST_CASE("merging keeps the newer state, or unions diverged ones into one relay tree") {
  RoomState base;
  base.set_app_id("app");
  base.set_room_id("r");
  count_change(base, "p1@1");
  add_part(base, "berlin", 52.5, 13.4);
  add_member(base, "alice", "berlin");

  RoomState newer = base;
  count_change(newer, "p1@1");
  add_member(newer, "bob", "berlin");
  CHECK(merge_rooms(base, newer).members_size() == 2);
  CHECK(merge_rooms(newer, base).members_size() == 2);
  // The older state's members are not resurrected into the newer one.
  RoomState left = newer;
  count_change(left, "p1@1");
  left.mutable_members()->RemoveLast();
  CHECK(merge_rooms(newer, left).members_size() == 1);

  // Split: one side placed carol on paris, the other dave on tokyo and madrid.
  RoomState side_a = base;
  count_change(side_a, "p1@1");
  add_part(side_a, "paris", 48.9, 2.35);
  add_link(side_a, "berlin", "paris");
  add_member(side_a, "carol", "paris");
  RoomState side_b = base;
  count_change(side_b, "p2@7");
  add_part(side_b, "tokyo", 35.7, 139.7);
  add_part(side_b, "madrid", 40.4, -3.7);
  add_link(side_b, "berlin", "tokyo");
  add_link(side_b, "madrid", "tokyo"); // a long way round: kept, it is a tree link
  add_member(side_b, "dave", "tokyo");
  add_member(side_b, "erin", "madrid");
  add_member(side_b, "carol", "madrid"); // carol on both sides: side a's entry wins
  auto merged = merge_rooms(side_a, side_b);
  CHECK(merged.members_size() == 4); // alice, carol, dave, erin
  for (const auto& m : merged.members())
    if (m.client_id() == "carol")
      CHECK(m.node_id() == "paris");
  CHECK(merged.parts_size() == 4);
  CHECK(links_form_tree(merged));
  CHECK(compare_versions(merged, side_a) == version_order::newer);
  CHECK(compare_versions(merged, side_b) == version_order::newer);

  // Two sides that each created the room on their own nodes: a relay joins them.
  RoomState lone_a, lone_b;
  count_change(lone_a, "p1@1");
  count_change(lone_b, "p3@2");
  add_part(lone_a, "berlin", 52.5, 13.4);
  add_part(lone_b, "tokyo", 35.7, 139.7);
  add_part(lone_b, "warsaw", 52.2, 21.0);
  add_link(lone_b, "tokyo", "warsaw");
  auto joined = merge_rooms(lone_a, lone_b);
  REQUIRE(links_form_tree(joined));
  bool berlin_warsaw = false; // the nearest pair across the two sides
  for (const auto& link : joined.links())
    berlin_warsaw |= (link.a() == "berlin" && link.b() == "warsaw");
  CHECK(berlin_warsaw);

  // Loops from both sides' links are cut.
  RoomState loop_a = lone_a, loop_b = lone_b;
  add_part(loop_a, "warsaw", 52.2, 21.0);
  add_part(loop_a, "tokyo", 35.7, 139.7);
  add_link(loop_a, "berlin", "warsaw");
  add_link(loop_a, "berlin", "tokyo");
  add_part(loop_b, "berlin", 52.5, 13.4);
  add_link(loop_b, "berlin", "warsaw");
  CHECK(links_form_tree(merge_rooms(loop_a, loop_b)));
}

TEST_CASE("random divergent histories always merge into a tree holding every member") {
  std::mt19937 random{7};
  for (int round = 0; round < 200; ++round) {
    RoomState sides[2];
    std::set<std::string> clients;
    for (int s = 0; s < 2; ++s) {
      count_change(sides[s], s == 0 ? "a@1" : "b@1");
      int parts = 1 + static_cast<int>(random() % 5);
      for (int p = 0; p < parts; ++p) {
        auto node = "n" + std::to_string(random() % 8);
        bool known = false;
        for (const auto& part : sides[s].parts())
          known |= part.node_id() == node;
        if (known)
          continue;
        add_part(sides[s], node, static_cast<double>(random() % 180) - 90,
                 static_cast<double>(random() % 360) - 180);
        if (sides[s].parts_size() > 1) {
          auto earlier =
            static_cast<int>(random() % static_cast<unsigned>(sides[s].parts_size() - 1));
          add_link(sides[s], sides[s].parts(earlier).node_id(), node);
        }
        auto client = "c" + std::to_string(random() % 20);
        clients.insert(client);
        add_member(sides[s], client, node);
      }
    }
    auto merged = merge_rooms(sides[0], sides[1]);
    CHECK(links_form_tree(merged));
    CHECK(static_cast<size_t>(merged.members_size()) == clients.size());
  }
}
