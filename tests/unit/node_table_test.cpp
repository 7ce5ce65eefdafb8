// Tests of the node table (allocation/node_table.hpp): every lifecycle transition with
// explicit times, stream replacement, room reconciliation, operator actions, reservations,
// the admin view, and one sweep over 10,000 nodes.
#include "allocation/node_table.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <string>
#include <vector>

namespace chroom::admin::v1 {
// doctest prints enums as numbers; found by argument-dependent lookup, this shows
// "NODE_STATE_SUSPECT" instead of "5" when a check fails.
inline doctest::String toString(NodeState state) {
  return NodeState_Name(state).c_str();
}
} // namespace chroom::admin::v1

namespace {

namespace admin = chroom::admin::v1;
namespace mn = chroom::medianode::v1;
using namespace std::chrono_literals;
using chroom::allocation::clock;
using chroom::allocation::liveness_rules;
using chroom::allocation::node_event;
using chroom::allocation::node_record;
using chroom::allocation::node_table;
using chroom::allocation::register_result;
using chroom::allocation::session_id;
using chroom::allocation::table_error;
using strings = std::vector<std::string>;

constexpr auto joining = admin::NODE_STATE_JOINING;
constexpr auto active = admin::NODE_STATE_ACTIVE;
constexpr auto draining = admin::NODE_STATE_DRAINING;
constexpr auto cordoned = admin::NODE_STATE_CORDONED;
constexpr auto suspect = admin::NODE_STATE_SUSPECT;
constexpr auto dead = admin::NODE_STATE_DEAD;
constexpr auto gone = admin::NODE_STATE_GONE;
constexpr auto unspecified = admin::NODE_STATE_UNSPECIFIED;

// An arbitrary origin: steady time has no meaning of its own.
const clock::time_point t0 = clock::time_point{} + 1h;

mn::Register registration_of(const std::string& node_id, uint32_t max_participants,
                             const strings& rooms = {}) {
  mn::Register reg;
  reg.set_node_id(node_id);
  reg.set_protocol_version("1.0");
  reg.set_software_version("chroom-sfu 2.4.1");
  auto* endpoint = reg.add_endpoints();
  endpoint->set_host(node_id + ".example.net");
  endpoint->set_port(3478);
  endpoint->set_transport(mn::Endpoint::TRANSPORT_UDP);
  reg.mutable_location()->set_latitude(50.11);
  reg.mutable_location()->set_longitude(8.68);
  reg.mutable_location()->set_region("eu-central");
  reg.mutable_location()->set_country("DE");
  reg.mutable_capacity()->set_max_participants(max_participants);
  reg.mutable_capacity()->set_upload_mbps(1000);
  reg.mutable_capacity()->set_cpu_cores(8);
  reg.mutable_features()->add_codecs("opus");
  reg.mutable_features()->add_codecs("vp8");
  reg.mutable_features()->set_relay(true);
  for (const auto& room : rooms) {
    auto* hosted = reg.add_rooms();
    hosted->set_room_id(room);
    hosted->set_participants(1);
  }
  return reg;
}

register_result register_node(node_table& table, const std::string& node_id,
                              uint32_t max_participants, clock::time_point now,
                              session_id session = 1, const strings& rooms = {}) {
  return table.on_register(registration_of(node_id, max_participants, rooms), session, now);
}

std::vector<node_event> send_stats(node_table& table, const std::string& node_id,
                                   clock::time_point now, uint32_t participants = 0,
                                   session_id session = 1) {
  mn::Stats stats;
  stats.set_participants(participants);
  stats.set_cpu_load(0.25);
  return table.on_stats(node_id, session, stats, now);
}

// A node registered on session 1 at `now`, active by Stats at the same instant, hosting
// `rooms`.
void add_active_node(node_table& table, const std::string& node_id, uint32_t max_participants,
                     clock::time_point now, const strings& rooms = {}) {
  REQUIRE(register_node(table, node_id, max_participants, now).result ==
          register_result::outcome::accepted);
  send_stats(table, node_id, now);
  for (const auto& room : rooms)
    REQUIRE(table.add_room(node_id, room) == table_error::none);
  REQUIRE(table.find(node_id)->state == active);
}

const node_record& record_of(const node_table& table, const std::string& node_id) {
  const auto* record = table.find(node_id);
  REQUIRE(record != nullptr);
  return *record;
}

admin::NodeState state_of(const node_table& table, const std::string& node_id) {
  return record_of(table, node_id).state;
}

strings rooms_of(const node_table& table, const std::string& node_id) {
  const auto& rooms = record_of(table, node_id).rooms;
  return {rooms.begin(), rooms.end()};
}

void check_event(const node_event& event, const std::string& node_id, admin::NodeState state,
                 admin::NodeState previous_state, clock::time_point at, const std::string& reason,
                 const strings& lost_rooms = {}) {
  CHECK(event.node_id == node_id);
  CHECK(event.state == state);
  CHECK(event.previous_state == previous_state);
  CHECK(event.at == at);
  CHECK(event.reason == reason);
  CHECK(event.lost_rooms == lost_rooms);
}

} // namespace

TEST_CASE("node_table: a new node joins, then turns active with its first Stats") {
  node_table table;
  auto result = register_node(table, "n1", 100, t0, 7);
  CHECK(result.result == register_result::outcome::accepted);
  CHECK_FALSE(result.replaced_session);
  CHECK(result.close_rooms.empty());
  REQUIRE(result.events.size() == 1);
  check_event(result.events[0], "n1", joining, unspecified, t0, "registered");

  const auto& node = record_of(table, "n1");
  CHECK(node.state == joining);
  CHECK(node.session == 7);
  CHECK(node.registration.node_id() == "n1");
  CHECK(node.connected_at == t0);
  CHECK(node.last_seen == t0);
  CHECK(node.registrations == 1);
  CHECK(node.connected);
  CHECK_FALSE(node.has_stats);
  CHECK_FALSE(node.accepts_work());
  CHECK(table.size() == 1);

  auto events = send_stats(table, "n1", t0 + 100ms, 12, 7);
  REQUIRE(events.size() == 1);
  check_event(events[0], "n1", active, joining, t0 + 100ms, "first stats");
  CHECK(node.state == active);
  CHECK(node.has_stats);
  CHECK(node.last_stats.participants() == 12);
  CHECK(node.last_seen == t0 + 100ms);
  CHECK(node.accepts_work());

  // Later Stats change no state.
  CHECK(send_stats(table, "n1", t0 + 200ms, 13, 7).empty());
  CHECK(node.last_stats.participants() == 13);
}

TEST_CASE("node_table: silence makes a node suspect at suspect_after, dead at dead_after") {
  node_table table;
  add_active_node(table, "n1", 100, t0, {"r2", "r1"});

  CHECK(table.sweep(t0 + 1499ms).empty());
  CHECK(state_of(table, "n1") == active);

  auto events = table.sweep(t0 + 1500ms);
  REQUIRE(events.size() == 1);
  check_event(events[0], "n1", suspect, active, t0 + 1500ms, "no stats for 1500 ms");
  CHECK(state_of(table, "n1") == suspect);
  CHECK(record_of(table, "n1").previous_state == active);
  // Suspect keeps its rooms: they are only lost when it dies.
  CHECK(rooms_of(table, "n1") == strings{"r1", "r2"});

  CHECK(table.sweep(t0 + 2999ms).empty());
  events = table.sweep(t0 + 3000ms);
  REQUIRE(events.size() == 1);
  check_event(events[0], "n1", dead, suspect, t0 + 3000ms, "no stats for 3000 ms", {"r1", "r2"});
  const auto& node = record_of(table, "n1");
  CHECK(node.state == dead);
  CHECK(node.previous_state == active); // an operator still sees what it was
  CHECK(node.rooms.empty());
  CHECK(node.ended_at == t0 + 3000ms);
  CHECK(table.sweep(t0 + 4000ms).empty());
}

TEST_CASE("node_table: Stats keep a node active and are counted from the latest one") {
  node_table table;
  add_active_node(table, "n1", 100, t0);
  CHECK(send_stats(table, "n1", t0 + 1000ms).empty());
  CHECK(table.sweep(t0 + 1500ms).empty());
  CHECK(table.sweep(t0 + 2499ms).empty());
  CHECK(state_of(table, "n1") == active);
  auto events = table.sweep(t0 + 2500ms);
  REQUIRE(events.size() == 1);
  CHECK(events[0].state == suspect);
}

TEST_CASE("node_table: a node not swept for long goes through suspect to dead at once") {
  node_table table;
  add_active_node(table, "n1", 100, t0, {"r1"});
  auto events = table.sweep(t0 + 5000ms);
  REQUIRE(events.size() == 2);
  check_event(events[0], "n1", suspect, active, t0 + 5000ms, "no stats for 5000 ms");
  check_event(events[1], "n1", dead, suspect, t0 + 5000ms, "no stats for 5000 ms", {"r1"});
}

TEST_CASE("node_table: Stats bring a suspect node back to the state it had") {
  node_table table;

  SUBCASE("active") {
    add_active_node(table, "n1", 100, t0);
    REQUIRE(table.sweep(t0 + 1500ms).size() == 1);
    auto events = send_stats(table, "n1", t0 + 2000ms);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", active, suspect, t0 + 2000ms, "stats again");
    CHECK(record_of(table, "n1").previous_state == unspecified);
    // Counted from the new Stats.
    CHECK(table.sweep(t0 + 3400ms).empty());
    CHECK(state_of(table, "n1") == active);
  }
  SUBCASE("draining") {
    add_active_node(table, "n1", 100, t0, {"r1"});
    std::vector<node_event> events;
    REQUIRE(table.drain("n1", 0ms, t0, events) == table_error::none);
    REQUIRE(table.sweep(t0 + 1500ms).size() == 1);
    events = send_stats(table, "n1", t0 + 2000ms);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", draining, suspect, t0 + 2000ms, "stats again");
  }
  SUBCASE("joining: its first Stats make it active") {
    register_node(table, "n1", 100, t0);
    auto events = table.sweep(t0 + 1500ms);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", suspect, joining, t0 + 1500ms, "no stats for 1500 ms");
    events = send_stats(table, "n1", t0 + 1600ms);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", active, suspect, t0 + 1600ms, "stats again");
  }
}

TEST_CASE("node_table: a closed stream makes the node suspect at once; re-registering "
          "restores its state") {
  node_table table;
  add_active_node(table, "n1", 100, t0, {"r1"});

  auto events = table.on_stream_closed("n1", 1, t0 + 500ms);
  REQUIRE(events.size() == 1);
  check_event(events[0], "n1", suspect, active, t0 + 500ms, "stream closed");
  CHECK_FALSE(record_of(table, "n1").connected);
  CHECK(record_of(table, "n1").previous_state == active);

  // Nothing can arrive on a closed stream; a late message in the mailbox is ignored.
  CHECK(send_stats(table, "n1", t0 + 600ms).empty());
  CHECK(state_of(table, "n1") == suspect);
  CHECK(record_of(table, "n1").last_seen == t0);

  SUBCASE("it reconnects in time") {
    auto result = register_node(table, "n1", 100, t0 + 1000ms, 2, {"r1"});
    CHECK(result.result == register_result::outcome::accepted);
    CHECK_FALSE(result.replaced_session); // the old stream is already closed
    CHECK(result.close_rooms.empty());
    REQUIRE(result.events.size() == 1);
    check_event(result.events[0], "n1", active, suspect, t0 + 1000ms, "reconnected");
    const auto& node = record_of(table, "n1");
    CHECK(node.state == active);
    CHECK(node.previous_state == unspecified);
    CHECK(node.connected);
    CHECK(node.session == 2);
    CHECK(node.registrations == 2);
    CHECK(node.rooms == std::set<std::string>{"r1"});
    CHECK(node.connected_at == t0 + 1000ms);
    CHECK(node.last_seen == t0 + 1000ms);
    CHECK(node.has_stats); // it reported before: no reason to call it joining
  }
  SUBCASE("it dies at dead_after from its last Stats, not from the close") {
    CHECK(table.sweep(t0 + 2999ms).empty());
    events = table.sweep(t0 + 3000ms);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", dead, suspect, t0 + 3000ms, "no stats for 3000 ms", {"r1"});
  }
}

TEST_CASE("node_table: re-registering a suspect node restores draining, cordoned, joining") {
  node_table table;
  std::vector<node_event> events;
  add_active_node(table, "drainer", 100, t0, {"r1"});
  REQUIRE(table.drain("drainer", 0ms, t0, events) == table_error::none);
  add_active_node(table, "cordoned", 100, t0);
  REQUIRE(table.cordon("cordoned", t0, events) == table_error::none);
  register_node(table, "joiner", 100, t0);

  for (const auto* id : {"drainer", "cordoned", "joiner"})
    REQUIRE(table.on_stream_closed(id, 1, t0 + 100ms).size() == 1);

  auto drainer = register_node(table, "drainer", 100, t0 + 200ms, 2, {"r1"});
  REQUIRE(drainer.events.size() == 1);
  check_event(drainer.events[0], "drainer", draining, suspect, t0 + 200ms, "reconnected");
  CHECK(record_of(table, "drainer").drain_deadline == t0 + 600'000ms);

  auto cordoned_again = register_node(table, "cordoned", 100, t0 + 200ms, 2);
  REQUIRE(cordoned_again.events.size() == 1);
  check_event(cordoned_again.events[0], "cordoned", cordoned, suspect, t0 + 200ms, "reconnected");

  auto joiner = register_node(table, "joiner", 100, t0 + 200ms, 2);
  REQUIRE(joiner.events.size() == 1);
  check_event(joiner.events[0], "joiner", joining, suspect, t0 + 200ms, "reconnected");
}

TEST_CASE("node_table: only the current session's close and Stats count") {
  node_table table;
  add_active_node(table, "n1", 100, t0);
  CHECK(table.on_stream_closed("n1", 99, t0 + 100ms).empty());
  CHECK(send_stats(table, "n1", t0 + 100ms, 50, 99).empty());
  const auto& node = record_of(table, "n1");
  CHECK(node.state == active);
  CHECK(node.connected);
  CHECK(node.last_seen == t0);
  CHECK(node.last_stats.participants() == 0);
  // Unknown nodes are ignored too.
  CHECK(table.on_stream_closed("nobody", 1, t0).empty());
  CHECK(send_stats(table, "nobody", t0).empty());
}

TEST_CASE("node_table: a newer stream replaces the attached one") {
  node_table table;
  add_active_node(table, "n1", 100, t0, {"r1"});

  auto result = register_node(table, "n1", 100, t0 + 100ms, 2, {"r1"});
  CHECK(result.result == register_result::outcome::accepted);
  REQUIRE(result.replaced_session);
  CHECK(*result.replaced_session == 1);
  REQUIRE(result.events.size() == 1);
  check_event(result.events[0], "n1", active, active, t0 + 100ms, "replaced by a newer stream");
  const auto& node = record_of(table, "n1");
  CHECK(node.state == active);
  CHECK(node.session == 2);
  CHECK(node.registrations == 2);

  // The replaced stream's last words and its close change nothing.
  CHECK(send_stats(table, "n1", t0 + 200ms, 40, 1).empty());
  CHECK(node.last_stats.participants() == 0);
  CHECK(table.on_stream_closed("n1", 1, t0 + 200ms).empty());
  CHECK(node.state == active);
  CHECK(node.connected);
  // The new one's do.
  CHECK(send_stats(table, "n1", t0 + 300ms, 40, 2).empty());
  CHECK(node.last_stats.participants() == 40);
}

TEST_CASE("node_table: a silent node still attached that reconnects is replaced and restored") {
  node_table table;
  add_active_node(table, "n1", 100, t0);
  REQUIRE(table.sweep(t0 + 1500ms).size() == 1);
  REQUIRE(record_of(table, "n1").connected);

  auto result = register_node(table, "n1", 100, t0 + 1600ms, 2);
  REQUIRE(result.replaced_session);
  CHECK(*result.replaced_session == 1);
  REQUIRE(result.events.size() == 2);
  check_event(result.events[0], "n1", suspect, suspect, t0 + 1600ms, "replaced by a newer stream");
  check_event(result.events[1], "n1", active, suspect, t0 + 1600ms, "reconnected");
}

TEST_CASE("node_table: table_full refuses new nodes, dead ones counting until forgotten") {
  liveness_rules rules;
  rules.max_nodes = 2;
  rules.forget_after = 10s;
  node_table table(rules);
  add_active_node(table, "n1", 100, t0);
  add_active_node(table, "n2", 100, t0 + 2000ms);

  auto refused = register_node(table, "n3", 100, t0);
  CHECK(refused.result == register_result::outcome::table_full);
  CHECK(refused.events.empty());
  CHECK(refused.close_rooms.empty());
  CHECK(table.find("n3") == nullptr);
  CHECK(table.size() == 2);

  // A known node is not new: it may always register again.
  CHECK(register_node(table, "n1", 100, t0 + 100ms, 2).result ==
        register_result::outcome::accepted);

  table.sweep(t0 + 3100ms);
  REQUIRE(state_of(table, "n1") == dead);
  CHECK(register_node(table, "n3", 100, t0 + 3100ms).result ==
        register_result::outcome::table_full);

  table.sweep(t0 + 3100ms + 10s);
  CHECK(table.find("n1") == nullptr);
  CHECK(register_node(table, "n3", 100, t0 + 3100ms + 10s).result ==
        register_result::outcome::accepted);
}

TEST_CASE("node_table: registration reconciles rooms") {
  node_table table;

  SUBCASE("a new node closes every room it lists") {
    auto result = register_node(table, "n1", 100, t0, 1, {"r2", "r1", "r2"});
    CHECK(result.close_rooms == strings{"r1", "r2"});
    CHECK(rooms_of(table, "n1").empty());
  }
  SUBCASE("a known node: kept, closed, lost") {
    add_active_node(table, "n1", 100, t0, {"kept", "lost-a", "lost-b"});
    REQUIRE(table.on_stream_closed("n1", 1, t0 + 100ms).size() == 1);
    auto result = register_node(table, "n1", 100, t0 + 200ms, 2, {"kept", "orphan"});
    CHECK(result.close_rooms == strings{"orphan"});
    REQUIRE(result.events.size() == 2);
    check_event(result.events[0], "n1", active, suspect, t0 + 200ms, "reconnected");
    check_event(result.events[1], "n1", active, active, t0 + 200ms,
                "node no longer hosts these rooms", {"lost-a", "lost-b"});
    CHECK(rooms_of(table, "n1") == strings{"kept"});
  }
  SUBCASE("a draining node that lost its last rooms is gone") {
    add_active_node(table, "n1", 100, t0, {"r1"});
    std::vector<node_event> events;
    REQUIRE(table.drain("n1", 0ms, t0, events) == table_error::none);
    auto result = register_node(table, "n1", 100, t0 + 100ms, 2);
    REQUIRE(result.events.size() == 3);
    check_event(result.events[1], "n1", draining, draining, t0 + 100ms,
                "node no longer hosts these rooms", {"r1"});
    check_event(result.events[2], "n1", gone, draining, t0 + 100ms, "drained");
    CHECK(record_of(table, "n1").ended_at == t0 + 100ms);
  }
}

TEST_CASE("node_table: a dead node that registers again starts over as joining") {
  node_table table;
  add_active_node(table, "n1", 100, t0, {"r1"});
  REQUIRE(table.sweep(t0 + 3000ms).size() == 2);
  REQUIRE(state_of(table, "n1") == dead);

  auto result = register_node(table, "n1", 100, t0 + 4000ms, 2, {"r1"});
  CHECK(result.result == register_result::outcome::accepted);
  CHECK_FALSE(result.replaced_session);
  CHECK(result.close_rooms == strings{"r1"}); // reported lost and re-placed meanwhile
  REQUIRE(result.events.size() == 1);
  check_event(result.events[0], "n1", joining, dead, t0 + 4000ms, "registered again");
  const auto& node = record_of(table, "n1");
  CHECK(node.state == joining);
  CHECK(node.previous_state == unspecified);
  CHECK(node.rooms.empty());
  CHECK_FALSE(node.has_stats);
  CHECK(node.registrations == 2);
  CHECK(node.connected);

  auto events = send_stats(table, "n1", t0 + 4100ms, 0, 2);
  REQUIRE(events.size() == 1);
  check_event(events[0], "n1", active, joining, t0 + 4100ms, "first stats");
}

TEST_CASE("node_table: drain") {
  node_table table;
  std::vector<node_event> events;

  SUBCASE("with rooms: gone when the last one ends") {
    add_active_node(table, "n1", 100, t0, {"r1", "r2"});
    CHECK(table.drain("n1", 0ms, t0 + 100ms, events) == table_error::none);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", draining, active, t0 + 100ms, "drain requested");
    CHECK(record_of(table, "n1").drain_deadline == t0 + 100ms + 600'000ms);
    CHECK_FALSE(record_of(table, "n1").accepts_work());

    events.clear();
    CHECK(table.remove_room("n1", "r1", t0 + 200ms, events) == table_error::none);
    CHECK(events.empty());
    CHECK(state_of(table, "n1") == draining);
    CHECK(table.remove_room("n1", "r2", t0 + 300ms, events) == table_error::none);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", gone, draining, t0 + 300ms, "drained");
    CHECK(record_of(table, "n1").ended_at == t0 + 300ms);
  }
  SUBCASE("without rooms: gone at once") {
    add_active_node(table, "n1", 100, t0);
    CHECK(table.drain("n1", 0ms, t0 + 100ms, events) == table_error::none);
    REQUIRE(events.size() == 2);
    check_event(events[0], "n1", draining, active, t0 + 100ms, "drain requested");
    check_event(events[1], "n1", gone, draining, t0 + 100ms, "drained");
    CHECK(record_of(table, "n1").ended_at == t0 + 100ms);
  }
  SUBCASE("the deadline passes: gone, remaining rooms lost") {
    add_active_node(table, "n1", 100, t0, {"r1", "r2"});
    CHECK(table.drain("n1", 1000ms, t0, events) == table_error::none);
    CHECK(record_of(table, "n1").drain_deadline == t0 + 1000ms);
    send_stats(table, "n1", t0 + 900ms);
    CHECK(table.sweep(t0 + 999ms).empty());
    auto swept = table.sweep(t0 + 1000ms);
    REQUIRE(swept.size() == 1);
    check_event(swept[0], "n1", gone, draining, t0 + 1000ms, "drain deadline passed", {"r1", "r2"});
    CHECK(record_of(table, "n1").rooms.empty());
  }
  SUBCASE("draining again sets a new deadline") {
    add_active_node(table, "n1", 100, t0, {"r1"});
    CHECK(table.drain("n1", 1000ms, t0, events) == table_error::none);
    CHECK(table.drain("n1", 5000ms, t0 + 500ms, events) == table_error::none);
    CHECK(events.size() == 1);
    CHECK(record_of(table, "n1").drain_deadline == t0 + 5500ms);
  }
  SUBCASE("a joining node can be drained") {
    register_node(table, "n1", 100, t0);
    REQUIRE(table.add_room("n1", "r1") == table_error::none);
    CHECK(table.drain("n1", 0ms, t0, events) == table_error::none);
    CHECK(state_of(table, "n1") == draining);
    // Its first Stats leave it draining.
    CHECK(send_stats(table, "n1", t0 + 100ms).empty());
    CHECK(state_of(table, "n1") == draining);
  }
  SUBCASE("errors") {
    CHECK(table.drain("nobody", 0ms, t0, events) == table_error::unknown_node);
    add_active_node(table, "n1", 100, t0);
    table.sweep(t0 + 3000ms);
    REQUIRE(state_of(table, "n1") == dead);
    events.clear();
    CHECK(table.drain("n1", 0ms, t0 + 3000ms, events) == table_error::not_running);
    add_active_node(table, "n2", 100, t0 + 3000ms);
    REQUIRE(table.drain("n2", 0ms, t0 + 3000ms, events) == table_error::none);
    REQUIRE(state_of(table, "n2") == gone);
    CHECK(table.drain("n2", 0ms, t0 + 3000ms, events) == table_error::not_running);
    CHECK(events.size() == 2);
  }
}

TEST_CASE("node_table: a suspect node keeps its drain") {
  node_table table;
  std::vector<node_event> events;
  add_active_node(table, "n1", 100, t0, {"r1", "r2"});

  SUBCASE("draining, then suspect, then past the deadline: gone") {
    REQUIRE(table.drain("n1", 2000ms, t0, events) == table_error::none);
    REQUIRE(table.on_stream_closed("n1", 1, t0 + 100ms).size() == 1);
    CHECK(record_of(table, "n1").previous_state == draining);
    CHECK(table.sweep(t0 + 1999ms).empty());
    auto swept = table.sweep(t0 + 2000ms);
    REQUIRE(swept.size() == 1);
    check_event(swept[0], "n1", gone, suspect, t0 + 2000ms, "drain deadline passed", {"r1", "r2"});
  }
  SUBCASE("suspect, then drained: it returns draining") {
    REQUIRE(table.on_stream_closed("n1", 1, t0 + 100ms).size() == 1);
    CHECK(table.drain("n1", 0ms, t0 + 200ms, events) == table_error::none);
    CHECK(events.empty()); // still suspect: the change shows when it returns
    CHECK(state_of(table, "n1") == suspect);
    CHECK(record_of(table, "n1").previous_state == draining);
    CHECK(record_of(table, "n1").drain_deadline == t0 + 200ms + 600'000ms);
    auto result = register_node(table, "n1", 100, t0 + 300ms, 2, {"r1", "r2"});
    REQUIRE(result.events.size() == 1);
    check_event(result.events[0], "n1", draining, suspect, t0 + 300ms, "reconnected");
  }
  SUBCASE("suspect while draining, its last room closed: gone") {
    REQUIRE(table.drain("n1", 0ms, t0, events) == table_error::none);
    REQUIRE(table.sweep(t0 + 1500ms).size() == 1);
    events.clear();
    CHECK(table.remove_room("n1", "r1", t0 + 1600ms, events) == table_error::none);
    CHECK(table.remove_room("n1", "r2", t0 + 1600ms, events) == table_error::none);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", gone, suspect, t0 + 1600ms, "drained");
  }
}

TEST_CASE("node_table: cordon and uncordon") {
  node_table table;
  std::vector<node_event> events;

  SUBCASE("active -> cordoned -> active") {
    add_active_node(table, "n1", 100, t0, {"r1"});
    CHECK(table.cordon("n1", t0 + 100ms, events) == table_error::none);
    REQUIRE(events.size() == 1);
    check_event(events[0], "n1", cordoned, active, t0 + 100ms, "cordoned by operator");
    CHECK_FALSE(record_of(table, "n1").accepts_work());
    CHECK(rooms_of(table, "n1") == strings{"r1"}); // its rooms go on
    // Stats and a second cordon change nothing.
    CHECK(send_stats(table, "n1", t0 + 150ms).empty());
    CHECK(table.cordon("n1", t0 + 150ms, events) == table_error::none);
    CHECK(events.size() == 1);

    CHECK(table.uncordon("n1", t0 + 200ms, events) == table_error::none);
    REQUIRE(events.size() == 2);
    check_event(events[1], "n1", active, cordoned, t0 + 200ms, "uncordoned by operator");
    CHECK(record_of(table, "n1").accepts_work());
    // Uncordoning an active node is a no-op.
    CHECK(table.uncordon("n1", t0 + 300ms, events) == table_error::none);
    CHECK(events.size() == 2);
  }
  SUBCASE("a joining node returns to joining, or to active once it reported") {
    register_node(table, "n1", 100, t0);
    CHECK(table.cordon("n1", t0, events) == table_error::none);
    CHECK(state_of(table, "n1") == cordoned);
    CHECK(table.uncordon("n1", t0 + 100ms, events) == table_error::none);
    CHECK(state_of(table, "n1") == joining);

    CHECK(table.cordon("n1", t0 + 200ms, events) == table_error::none);
    CHECK(send_stats(table, "n1", t0 + 300ms).empty()); // first Stats: still cordoned
    CHECK(state_of(table, "n1") == cordoned);
    CHECK(table.uncordon("n1", t0 + 400ms, events) == table_error::none);
    CHECK(state_of(table, "n1") == active);
  }
  SUBCASE("a draining node stays draining") {
    add_active_node(table, "n1", 100, t0, {"r1"});
    REQUIRE(table.drain("n1", 0ms, t0, events) == table_error::none);
    CHECK(table.cordon("n1", t0 + 100ms, events) == table_error::none);
    CHECK(table.uncordon("n1", t0 + 200ms, events) == table_error::none);
    CHECK(events.size() == 1);
    CHECK(state_of(table, "n1") == draining);
  }
  SUBCASE("a suspect node is cordoned or uncordoned for when it returns") {
    add_active_node(table, "n1", 100, t0);
    REQUIRE(table.on_stream_closed("n1", 1, t0 + 100ms).size() == 1);
    CHECK(table.cordon("n1", t0 + 200ms, events) == table_error::none);
    CHECK(events.empty());
    CHECK(state_of(table, "n1") == suspect);
    CHECK(record_of(table, "n1").previous_state == cordoned);
    auto result = register_node(table, "n1", 100, t0 + 300ms, 2);
    REQUIRE(result.events.size() == 1);
    CHECK(result.events[0].state == cordoned);

    REQUIRE(table.on_stream_closed("n1", 2, t0 + 400ms).size() == 1);
    CHECK(table.uncordon("n1", t0 + 500ms, events) == table_error::none);
    CHECK(record_of(table, "n1").previous_state == active);
    auto back = register_node(table, "n1", 100, t0 + 600ms, 3);
    REQUIRE(back.events.size() == 1);
    CHECK(back.events[0].state == active);
  }
  SUBCASE("errors") {
    CHECK(table.cordon("nobody", t0, events) == table_error::unknown_node);
    CHECK(table.uncordon("nobody", t0, events) == table_error::unknown_node);
    add_active_node(table, "n1", 100, t0);
    table.sweep(t0 + 3000ms);
    REQUIRE(state_of(table, "n1") == dead);
    CHECK(table.cordon("n1", t0 + 3000ms, events) == table_error::not_running);
    CHECK(table.uncordon("n1", t0 + 3000ms, events) == table_error::not_running);
  }
}

TEST_CASE("node_table: room bookkeeping") {
  node_table table;
  std::vector<node_event> events;
  CHECK(table.add_room("nobody", "r1") == table_error::unknown_node);
  CHECK(table.remove_room("nobody", "r1", t0, events) == table_error::unknown_node);

  add_active_node(table, "n1", 100, t0);
  CHECK(table.add_room("n1", "r1") == table_error::none);
  CHECK(table.add_room("n1", "r1") == table_error::none); // PrepareRoom is idempotent
  CHECK(rooms_of(table, "n1") == strings{"r1"});
  CHECK(table.remove_room("n1", "unknown", t0, events) == table_error::none);
  CHECK(table.remove_room("n1", "r1", t0, events) == table_error::none);
  CHECK(rooms_of(table, "n1").empty());
  CHECK(events.empty()); // an active node with no room is just idle

  table.sweep(t0 + 3000ms);
  REQUIRE(state_of(table, "n1") == dead);
  CHECK(table.add_room("n1", "r2") == table_error::not_running);
  CHECK(table.remove_room("n1", "r2", t0 + 3000ms, events) == table_error::not_running);
}

TEST_CASE("node_table: reservations") {
  node_table table;
  add_active_node(table, "n1", 100, t0);
  send_stats(table, "n1", t0, 20);
  const auto& node = record_of(table, "n1");
  CHECK(node.available_participants() == 80);
  table_error error = table_error::none;

  SUBCASE("reserve up to capacity, then no_capacity; release gives back") {
    auto first = table.reserve("n1", 50, 5s, t0, error);
    CHECK(error == table_error::none);
    CHECK(first != 0);
    auto second = table.reserve("n1", 30, 5s, t0, error);
    CHECK(error == table_error::none);
    CHECK(second != 0);
    CHECK(second != first);
    CHECK(node.reserved_participants() == 80);
    CHECK(node.available_participants() == 0);

    CHECK(table.reserve("n1", 1, 5s, t0, error) == 0);
    CHECK(error == table_error::no_capacity);

    CHECK(table.release("n1", second) == table_error::none);
    CHECK(node.available_participants() == 30);
    CHECK(table.release("n1", second) == table_error::unknown_reservation);
    CHECK(table.release("nobody", first) == table_error::unknown_node);
    CHECK(table.reserve("n1", 30, 5s, t0, error) != 0);
    CHECK(error == table_error::none);
  }
  SUBCASE("unconfirmed reservations expire") {
    auto id = table.reserve("n1", 10, 500ms, t0, error);
    REQUIRE(id != 0);
    CHECK(node.reservations.front().expires_at == t0 + 500ms);
    table.sweep(t0 + 499ms);
    CHECK(node.reserved_participants() == 10);
    // Stats do not end an unconfirmed reservation: the participants are not there yet.
    send_stats(table, "n1", t0 + 400ms, 20);
    CHECK(node.reserved_participants() == 10);
    table.sweep(t0 + 500ms);
    CHECK(node.reserved_participants() == 0);
    CHECK(node.available_participants() == 80);
    CHECK(table.confirm("n1", id, t0 + 600ms) == table_error::unknown_reservation);
  }
  SUBCASE("a confirmed reservation ends with the next Stats, not with its ttl") {
    auto id = table.reserve("n1", 10, 500ms, t0, error);
    REQUIRE(id != 0);
    CHECK(table.confirm("n1", id, t0 + 100ms) == table_error::none);
    REQUIRE(node.reservations.front().confirmed_at == t0 + 100ms);
    table.sweep(t0 + 600ms);
    CHECK(node.reserved_participants() == 10);
    CHECK(node.available_participants() == 70);
    send_stats(table, "n1", t0 + 1000ms, 30);
    CHECK(node.reservations.empty());
    CHECK(node.available_participants() == 70); // now counted by the node itself
  }
  SUBCASE("confirm errors") {
    CHECK(table.confirm("nobody", 1, t0) == table_error::unknown_node);
    CHECK(table.confirm("n1", 12345, t0) == table_error::unknown_reservation);
  }
  SUBCASE("a node that does not accept work gets none") {
    CHECK(table.reserve("nobody", 1, 5s, t0, error) == 0);
    CHECK(error == table_error::unknown_node);

    register_node(table, "joiner", 100, t0);
    CHECK(table.reserve("joiner", 1, 5s, t0, error) == 0);
    CHECK(error == table_error::not_running);

    std::vector<node_event> events;
    add_active_node(table, "cordoned", 100, t0);
    REQUIRE(table.cordon("cordoned", t0, events) == table_error::none);
    error = table_error::none;
    CHECK(table.reserve("cordoned", 1, 5s, t0, error) == 0);
    CHECK(error == table_error::not_running);

    REQUIRE(table.on_stream_closed("n1", 1, t0 + 100ms).size() == 1);
    error = table_error::none;
    CHECK(table.reserve("n1", 1, 5s, t0 + 100ms, error) == 0);
    CHECK(error == table_error::not_running);
  }
  SUBCASE("a node's death drops its reservations") {
    REQUIRE(table.reserve("n1", 10, 10s, t0, error) != 0);
    table.sweep(t0 + 3000ms);
    REQUIRE(state_of(table, "n1") == dead);
    CHECK(node.reservations.empty());
  }
}

TEST_CASE("node_table: dead and gone nodes are forgotten after forget_after") {
  liveness_rules rules;
  rules.forget_after = 10s;
  node_table table(rules);
  std::vector<node_event> events;
  add_active_node(table, "dies", 100, t0);
  add_active_node(table, "leaves", 100, t0);
  REQUIRE(table.drain("leaves", 0ms, t0 + 1000ms, events) == table_error::none);
  send_stats(table, "leaves", t0 + 1000ms);

  table.sweep(t0 + 3000ms);
  REQUIRE(state_of(table, "dies") == dead);
  REQUIRE(state_of(table, "leaves") == gone);

  CHECK(table.sweep(t0 + 1000ms + 10s - 1ms).empty());
  CHECK(table.size() == 2);
  CHECK(table.sweep(t0 + 1000ms + 10s).empty()); // forgetting is silent
  CHECK(table.find("leaves") == nullptr);
  CHECK(table.find("dies") != nullptr);
  CHECK(table.sweep(t0 + 3000ms + 10s).empty());
  CHECK(table.size() == 0);
}

TEST_CASE("node_table: to_info") {
  auto unix_ms = [](std::chrono::system_clock::time_point at) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
  };
  node_table table;
  std::vector<node_event> events;
  add_active_node(table, "n1", 100, t0, {"r-b", "r-a"});
  auto before_register = std::chrono::system_clock::now();
  register_node(table, "n1", 100, t0 + 1000ms, 2, {"r-b", "r-a"});
  auto after_register = std::chrono::system_clock::now();
  send_stats(table, "n1", t0 + 1500ms, 20, 2);
  table_error error = table_error::none;
  REQUIRE(table.reserve("n1", 5, 5s, t0 + 1500ms, error) != 0);
  auto before_drain = std::chrono::system_clock::now();
  REQUIRE(table.drain("n1", 60s, t0 + 1600ms, events) == table_error::none);
  auto after_drain = std::chrono::system_clock::now();

  auto now = t0 + 2000ms;
  auto info = node_table::to_info(record_of(table, "n1"), now);

  CHECK(info.node_id() == "n1");
  CHECK(info.state() == draining);
  CHECK(info.previous_state() == unspecified);
  CHECK(info.software_version() == "chroom-sfu 2.4.1");
  CHECK(info.protocol_version() == "1.0");
  REQUIRE(info.endpoints_size() == 1);
  CHECK(info.endpoints(0).host() == "n1.example.net");
  CHECK(info.location().region() == "eu-central");
  CHECK(info.location().country() == "DE");
  CHECK(info.capacity().max_participants() == 100);
  CHECK(info.features().relay());
  CHECK(info.features().codecs_size() == 2);
  CHECK(info.load().last_stats().participants() == 20);
  CHECK(info.load().reserved_participants() == 5);
  CHECK(info.load().available_participants() == 75);
  REQUIRE(info.room_ids_size() == 2);
  CHECK(info.room_ids(0) == "r-a");
  CHECK(info.room_ids(1) == "r-b");
  // Wall times are read once, when the node (re)connected and when the drain started, so
  // every read reports the same value.
  CHECK(info.connected_at_unix_ms() >= unix_ms(before_register));
  CHECK(info.connected_at_unix_ms() <= unix_ms(after_register));
  CHECK(info.drain_deadline_unix_ms() >= unix_ms(before_drain) + 60'000);
  CHECK(info.drain_deadline_unix_ms() <= unix_ms(after_drain) + 60'000);
  CHECK(node_table::to_info(record_of(table, "n1"), now + 5ms).connected_at_unix_ms() ==
        info.connected_at_unix_ms());
  CHECK(info.last_seen_ms_ago() == 500);
  CHECK(info.registrations() == 2);

  SUBCASE("a node without Stats has no load report and no drain deadline") {
    register_node(table, "fresh", 40, t0);
    auto fresh = node_table::to_info(record_of(table, "fresh"), t0 + 250ms);
    CHECK(fresh.state() == joining);
    CHECK_FALSE(fresh.load().has_last_stats());
    CHECK(fresh.load().available_participants() == 40);
    CHECK(fresh.drain_deadline_unix_ms() == 0);
    CHECK(fresh.last_seen_ms_ago() == 250);
    CHECK(fresh.registrations() == 1);
  }
  SUBCASE("a dead node shows what it was") {
    table.sweep(t0 + 5000ms);
    auto died = node_table::to_info(record_of(table, "n1"), t0 + 5000ms);
    CHECK(died.state() == dead);
    CHECK(died.previous_state() == draining);
    CHECK(died.room_ids_size() == 0);
    CHECK(died.drain_deadline_unix_ms() == 0);
  }
}

TEST_CASE("node_table: 10,000 nodes registered and swept") {
  constexpr int count = 10'000;
  node_table table;
  auto id = [](int i) { return "node-" + std::to_string(i); };
  for (int i = 0; i < count; ++i) {
    REQUIRE(register_node(table, id(i), 100, t0).result == register_result::outcome::accepted);
    send_stats(table, id(i), t0);
    // One room on every tenth node, all of them odd ones: the ones that die.
    if (i % 10 == 1)
      REQUIRE(table.add_room(id(i), "room-" + std::to_string(i)) == table_error::none);
  }
  REQUIRE(table.size() == count);

  // Even nodes keep reporting; odd ones fall silent.
  auto report_even = [&](clock::time_point now) {
    for (int i = 0; i < count; i += 2)
      send_stats(table, id(i), now);
  };
  report_even(t0 + 1000ms);
  auto events = table.sweep(t0 + 1500ms);
  CHECK(events.size() == count / 2);
  CHECK(std::all_of(events.begin(), events.end(), [](const node_event& event) {
    return event.state == suspect && event.reason == "no stats for 1500 ms";
  }));

  report_even(t0 + 2000ms);
  events = table.sweep(t0 + 3000ms);
  CHECK(events.size() == count / 2);
  size_t lost = 0;
  for (const auto& event : events)
    lost += event.lost_rooms.size();
  CHECK(std::all_of(events.begin(), events.end(),
                    [](const node_event& event) { return event.state == dead; }));
  CHECK(lost == count / 10);

  int running = 0;
  int ended = 0;
  for (const auto& [node_id, node] : table.nodes()) {
    running += node.state == active ? 1 : 0;
    ended += node.state == dead ? 1 : 0;
  }
  CHECK(running == count / 2);
  CHECK(ended == count / 2);

  // The dead are forgotten without a word; the reporting half stays.
  auto forget_at = t0 + 3000ms + table.rules().forget_after;
  report_even(forget_at);
  CHECK(table.sweep(forget_at).empty());
  CHECK(table.size() == count / 2);
  CHECK(table.find(id(0)) != nullptr);
  CHECK(table.find(id(1)) == nullptr);
}
