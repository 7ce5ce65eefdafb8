// A room's key among all apps: "app_id/room_id" (actors/room.hpp) and what may name a room
// (actors/allocation_service.hpp).

#include "actors/allocation_service.hpp"
#include "actors/room.hpp"

#include <doctest/doctest.h>

using namespace chroom::actors;

TEST_CASE("node_room_id and split_node_room_id are each other's inverse") {
  auto key = node_room_id("pg-x", "a.b_c");
  CHECK(key == "pg-x/a.b_c");
  auto split = split_node_room_id(key);
  REQUIRE(split);
  CHECK(split->first == "pg-x");
  CHECK(split->second == "a.b_c");
  // Split at the first '/': app ids have none, a media node's foreign room id may.
  auto nested = split_node_room_id("app/room/part");
  REQUIRE(nested);
  CHECK(nested->first == "app");
  CHECK(nested->second == "room/part");
  auto empty_app = split_node_room_id("/room");
  REQUIRE(empty_app);
  CHECK(empty_app->first.empty());
  CHECK_FALSE(split_node_room_id("no-slash"));
  CHECK_FALSE(split_node_room_id(""));
}

TEST_CASE("room_key_problem names the field and what is wrong with it") {
  CHECK(room_key_problem("default", "room-1.a_b").empty());
  CHECK(room_key_problem("", "room") == "app_id is required");
  CHECK(room_key_problem("default", "") == "room_id is required");
  CHECK(room_key_problem("default", std::string(129, 'x')) ==
        "room_id is longer than 128 characters");
  CHECK(room_key_problem(std::string(65, 'a'), "room") == "app_id is longer than 64 characters");
  CHECK(room_key_problem("default", "a room!").starts_with("room_id may hold only"));
  CHECK(room_key_problem("app/x", "room").starts_with("app_id may hold only"));
}
