// Checks of what media nodes send, and node credentials.

#include "allocation/node_messages.hpp"
#include "transport/node_credentials.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

namespace {

using chroom::allocation::is_valid_node_id;
using chroom::allocation::is_valid_room_id;
using chroom::allocation::parse_protocol_version;
using chroom::allocation::validate_register;
using chroom::allocation::validate_stats;
using chroom::transport::node_credentials;
namespace mn = chroom::medianode::v1;

mn::Register valid_register() {
  mn::Register message;
  message.set_node_id("eu-west.node_1");
  message.set_protocol_version("1.0");
  auto* endpoint = message.add_endpoints();
  endpoint->set_host("203.0.113.7");
  endpoint->set_port(3478);
  endpoint->set_transport(mn::Endpoint::TRANSPORT_UDP);
  message.mutable_location()->set_latitude(52.52);
  message.mutable_location()->set_longitude(13.405);
  message.mutable_location()->set_region("eu-central");
  message.mutable_location()->set_country("DE");
  message.mutable_capacity()->set_max_participants(500);
  message.mutable_capacity()->set_upload_mbps(1000);
  message.mutable_capacity()->set_download_mbps(1000);
  message.mutable_capacity()->set_cpu_cores(8);
  return message;
}

} // namespace

TEST_CASE("protocol versions are major.minor") {
  auto version = parse_protocol_version("1.0");
  REQUIRE(version);
  CHECK(version->major == 1);
  CHECK(version->minor == 0);
  CHECK(parse_protocol_version("12.345")->minor == 345);
  for (const char* bad : {"", "1", "1.", ".1", "1.0.0", "a.b", "1.-1", "99999999999.0", " 1.0"})
    CHECK_FALSE(parse_protocol_version(bad));
}

TEST_CASE("node ids") {
  CHECK(is_valid_node_id("a"));
  CHECK(is_valid_node_id("eu-west.node_01"));
  CHECK(is_valid_node_id(std::string(128, 'x')));
  CHECK_FALSE(is_valid_node_id(""));
  CHECK_FALSE(is_valid_node_id(std::string(129, 'x')));
  CHECK_FALSE(is_valid_node_id("Node1"));
  CHECK_FALSE(is_valid_node_id("node 1"));
  CHECK_FALSE(is_valid_node_id("node/1"));
}

TEST_CASE("room ids are what the orchestrator gives nodes: app/room") {
  CHECK(is_valid_room_id("default/Room-1.b_c"));
  CHECK(is_valid_room_id(std::string(64, 'a') + "/" + std::string(128, 'B')));
  CHECK_FALSE(is_valid_room_id(""));
  CHECK_FALSE(is_valid_room_id("No Such"));
  CHECK_FALSE(is_valid_room_id(std::string(257, 'a')));
  auto message = valid_register();
  auto* hosted = message.add_rooms();
  hosted->set_room_id("default/Room-1");
  hosted->set_participants(3);
  CHECK(validate_register(message).empty());
}

TEST_CASE("a valid Register passes") {
  CHECK(validate_register(valid_register()) == "");
}

TEST_CASE("absurd Register values are named") {
  struct bad_case {
    const char* field;
    void (*spoil)(mn::Register&);
  };
  const bad_case cases[] = {
    {"node_id", [](mn::Register& m) { m.set_node_id("Bad Id"); }},
    {"endpoints", [](mn::Register& m) { m.clear_endpoints(); }},
    {"endpoints[0].port", [](mn::Register& m) { m.mutable_endpoints(0)->set_port(70000); }},
    {"endpoints[0].host", [](mn::Register& m) { m.mutable_endpoints(0)->clear_host(); }},
    {"location.latitude", [](mn::Register& m) { m.mutable_location()->set_latitude(123); }},
    {"location.longitude", [](mn::Register& m) { m.mutable_location()->set_longitude(-200); }},
    {"location.latitude",
     [](mn::Register& m) { m.mutable_location()->set_latitude(std::nan("")); }},
    {"location.country", [](mn::Register& m) { m.mutable_location()->set_country("Germany"); }},
    {"capacity.max_participants",
     [](mn::Register& m) { m.mutable_capacity()->set_max_participants(0); }},
    {"capacity.upload_mbps", [](mn::Register& m) { m.mutable_capacity()->set_upload_mbps(-5); }},
    {"capacity.download_mbps",
     [](mn::Register& m) {
       m.mutable_capacity()->set_download_mbps(std::numeric_limits<double>::infinity());
     }},
    {"capacity.cpu_cores", [](mn::Register& m) { m.mutable_capacity()->set_cpu_cores(0); }},
    {"rooms[0].room_id", [](mn::Register& m) { m.add_rooms()->set_room_id("No Such"); }},
  };
  for (const auto& c : cases) {
    auto message = valid_register();
    c.spoil(message);
    auto problem = validate_register(message);
    CAPTURE(c.field);
    CAPTURE(problem);
    CHECK(problem.rfind(c.field, 0) == 0);
  }
}

TEST_CASE("absurd Stats values are named") {
  CHECK(validate_stats(mn::Stats{}) == "");
  mn::Stats stats;
  stats.set_cpu_load(std::nan(""));
  CHECK(validate_stats(stats).rfind("cpu_load", 0) == 0);
  stats = {};
  stats.set_packet_loss(1.5);
  CHECK(validate_stats(stats).rfind("packet_loss", 0) == 0);
  stats = {};
  stats.set_bandwidth_out_mbps(-1);
  CHECK(validate_stats(stats).rfind("bandwidth_out_mbps", 0) == 0);
  stats = {};
  stats.add_peer_rtts()->set_rtt_ms(-3);
  CHECK(validate_stats(stats).rfind("peer_rtts[0].rtt_ms", 0) == 0);
}

TEST_CASE("derived node secrets are HMAC-SHA256 in lowercase hex") {
  // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
  CHECK(node_credentials::derive_secret("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("credentials: listed secrets first, then the derivation key") {
  node_credentials credentials{{{"listed", "a-listed-secret-1234"}}, "the-derivation-key"};
  CHECK(credentials.verify("listed", "a-listed-secret-1234"));
  CHECK_FALSE(
    credentials.verify("listed", node_credentials::derive_secret("the-derivation-key", "listed")));
  CHECK(
    credentials.verify("other", node_credentials::derive_secret("the-derivation-key", "other")));
  CHECK_FALSE(credentials.verify("other", "wrong"));
  CHECK_FALSE(credentials.verify("other", ""));
  CHECK(credentials.knows("anyone"));

  node_credentials listed_only{{{"listed", "a-listed-secret-1234"}}, ""};
  CHECK_FALSE(listed_only.knows("other"));
  CHECK_FALSE(listed_only.verify("other", "a-listed-secret-1234"));
}
