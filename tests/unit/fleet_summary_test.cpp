// Tests of fleet_summary (actors/fleet_summary.hpp): the line a peer logs about its nodes.
#include "actors/fleet_summary.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using namespace std::chrono_literals;
using chroom::actors::fleet_summary;
using chroom::allocation::clock;
using chroom::allocation::node_table;
namespace mn = chroom::medianode::v1;

const clock::time_point t0 = clock::time_point{} + 1h;

/// Registers `count` nodes in `region` (ids region-0, region-1, ...), active when `active`.
void add_nodes(node_table& table, const std::string& region, int count, bool active = true,
               int first = 0) {
  for (int i = first; i < first + count; ++i) {
    mn::Register registration;
    registration.set_node_id(region.empty() ? "n-" + std::to_string(i)
                                            : region + "-" + std::to_string(i));
    registration.set_protocol_version("1.0");
    registration.mutable_location()->set_region(region);
    registration.mutable_capacity()->set_max_participants(100);
    auto session = static_cast<chroom::allocation::session_id>(table.size() + 1);
    REQUIRE(table.on_register(registration, session, t0).result ==
            chroom::allocation::register_result::outcome::accepted);
    if (active)
      table.on_stats(registration.node_id(), session, mn::Stats{}, t0);
  }
}

} // namespace

TEST_CASE("fleet summary: nothing yet") {
  node_table table;
  CHECK(fleet_summary(table) == "0 nodes active");
}

TEST_CASE("fleet summary: active nodes by region, most first, ties by name") {
  node_table table;
  add_nodes(table, "us-east", 2);
  add_nodes(table, "eu-central", 3);
  add_nodes(table, "ap-south", 2);
  add_nodes(table, "", 1);
  CHECK(fleet_summary(table) == "8 nodes active: eu-central 3, ap-south 2, us-east 2, no region 1");
}

TEST_CASE("fleet summary: the regions past the first six are summed up") {
  node_table table;
  const char* regions[] = {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"};
  int count = 10;
  for (const char* region : regions)
    add_nodes(table, region, count--);
  CHECK(fleet_summary(table) ==
        "52 nodes active: r1 10, r2 9, r3 8, r4 7, r5 6, r6 5 and 7 in 2 more regions");
}

TEST_CASE("fleet summary: the other states follow, only those that have nodes") {
  node_table table;
  add_nodes(table, "eu-west", 1);
  add_nodes(table, "eu-west", 2, false, 1);
  CHECK(fleet_summary(table) == "1 node active: eu-west 1; 2 joining");
  std::vector<chroom::allocation::node_event> events;
  REQUIRE(table.cordon("eu-west-0", t0, events) == chroom::allocation::table_error::none);
  CHECK(fleet_summary(table) == "0 nodes active; 2 joining, 1 cordoned");
  // Nodes that send no Stats turn suspect, then dead.
  table.sweep(t0 + 2s);
  CHECK(fleet_summary(table) == "0 nodes active; 3 suspect");
  table.sweep(t0 + 4s);
  CHECK(fleet_summary(table) == "0 nodes active; 3 dead");
}
