// The membership actor's rules for who is a member, driven by the messages other peers send
// (in process: the actor is not published, so no timer or connection interferes).

#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "chroom/cluster/v1/cluster.pb.h"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <algorithm>

using namespace chroom;
using namespace chroom::actors;
namespace cv1 = chroom::cluster::v1;
namespace adm = chroom::admin::v1;

namespace {

constexpr auto reply_timeout = std::chrono::seconds{5};

cv1::Member member(const std::string& peer_id, uint64_t incarnation) {
  cv1::Member out;
  out.set_peer_id(peer_id);
  out.set_incarnation(incarnation);
  out.set_cluster_address("127.0.0.1:" + std::to_string(7100 + peer_id.back() - '0'));
  out.set_grpc_address("127.0.0.1:" + std::to_string(7400 + peer_id.back() - '0'));
  return out;
}

struct membership_fixture {
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  caf::actor membership;
  /// Stands in for the other peers' actors: takes every message and answers none.
  caf::actor remote_peer;
  spdlog::level::level_enum previous_log_level;

  membership_fixture() {
    previous_log_level = spdlog::get_level();
    spdlog::set_level(spdlog::level::err); // joins and deaths are the subject, not news
    config.load<caf::io::middleman>();
    system = std::make_unique<caf::actor_system>(config);
    cluster_settings settings;
    settings.peer_id = "peer-2";
    settings.incarnation = 500;
    settings.cluster_address = "127.0.0.1:7102";
    membership = spawn_cluster_membership(*system, settings);
    // (CAF 0.17's spawn of a function without arguments dereferences a null pointer to its
    // empty argument tuple; UBSan objects.)
    remote_peer = system->spawn(
      [](caf::event_based_actor* self, int) -> caf::behavior {
        self->set_default_handler(caf::drop);
        return {[](int) {}};
      },
      0);
  }

  ~membership_fixture() {
    caf::anon_send_exit(membership, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(remote_peer, caf::exit_reason::user_shutdown);
    spdlog::set_level(previous_log_level);
  }

  /// Says hello as `who`; returns the refusal, empty when welcome.
  std::string hello(const cv1::Member& who, const std::vector<cv1::Member>& known = {}) {
    cv1::Hello message;
    *message.mutable_member() = who;
    for (const auto& k : known)
      *message.add_known() = k;
    caf::scoped_actor caller{*system};
    std::string refusal = "no answer";
    caller
      ->request(membership, reply_timeout, hello_atom::value, message.SerializeAsString(),
                remote_peer, remote_peer, remote_peer, remote_peer)
      .receive(
        [&](const std::string& answer, const caf::actor&, const caf::actor&, const caf::actor&,
            const caf::actor&) {
          cv1::Hello parsed;
          refusal = parsed.ParseFromString(answer) ? "" : "malformed answer";
        },
        [&](caf::error& err) {
          refusal = system->render(err);
          if (refusal.empty())
            refusal = "error";
        });
    return refusal;
  }

  void heartbeat(const cv1::Member& from, const std::vector<cv1::Member>& known) {
    cv1::Heartbeat beat;
    beat.set_incarnation(from.incarnation());
    for (const auto& k : known)
      *beat.add_known() = k;
    caf::anon_send(membership, heartbeat_atom::value, from.peer_id(), from.incarnation(),
                   beat.SerializeAsString());
  }

  void leave(const cv1::Member& who) {
    caf::anon_send(membership, leave_atom::value, who.peer_id(), who.incarnation());
  }

  /// The members as GetCluster reports them: peer_id -> (incarnation, state).
  std::map<std::string, std::pair<uint64_t, adm::PeerState>> members() {
    caf::scoped_actor caller{*system};
    std::map<std::string, std::pair<uint64_t, adm::PeerState>> out;
    caller->request(membership, reply_timeout, get_cluster_atom::value)
      .receive(
        [&](const adm::GetClusterResponse& response) {
          for (const auto& peer : response.peers())
            out[peer.peer_id()] = {peer.incarnation(), peer.state()};
        },
        [&](caf::error& err) { FAIL("GetCluster failed: " << system->render(err)); });
    return out;
  }
};

} // namespace

TEST_CASE("membership: a member that left joins again with a new run, however it is heard of") {
  membership_fixture f;
  auto peer0 = member("peer-0", 100);
  auto peer1_first = member("peer-1", 200);
  auto peer1_second = member("peer-1", 300);
  REQUIRE(f.hello(peer0).empty());
  REQUIRE(f.hello(peer1_first).empty());
  CHECK(f.members()["peer-1"] == std::pair{uint64_t{200}, adm::PEER_STATE_ALIVE});

  f.leave(peer1_first);
  CHECK(f.members()["peer-1"] == std::pair{uint64_t{200}, adm::PEER_STATE_LEFT});
  CHECK(f.hello(peer1_first).find("left the cluster") != std::string::npos);

  SUBCASE("the new run's hello comes first") {
    CHECK(f.hello(peer1_second).empty());
  }
  SUBCASE("another member tells of the new run before its hello comes") {
    // The race that once kept a restarted peer out: the new incarnation learned from a
    // heartbeat while its previous run was LEFT made its hello look like the old run's.
    f.heartbeat(peer0, {peer1_second});
    auto learned = f.members()["peer-1"];
    CHECK(learned.first == 300);
    CHECK(learned.second != adm::PEER_STATE_ALIVE);
    CHECK(learned.second != adm::PEER_STATE_LEFT);
    CHECK(f.hello(peer1_second).empty());
  }
  SUBCASE("a member's hello tells of the new run") {
    CHECK(f.hello(peer0, {peer1_second}).empty());
    CHECK(f.hello(peer1_second).empty());
  }
  CHECK(f.members()["peer-1"] == std::pair{uint64_t{300}, adm::PEER_STATE_ALIVE});
  // The old run, heard late, is refused and changes nothing.
  CHECK(f.hello(peer1_first).find("older than the known 300") != std::string::npos);
  CHECK(f.members()["peer-1"] == std::pair{uint64_t{300}, adm::PEER_STATE_ALIVE});
}

TEST_CASE("membership: hellos without an id or under this peer's own id are refused") {
  membership_fixture f;
  CHECK(f.hello(member("peer-2", 900)).find("this peer's id") != std::string::npos);
  CHECK_FALSE(f.hello(cv1::Member{}).empty());
  auto seen = f.members();
  CHECK(seen.size() == 1);
  CHECK(seen.contains("peer-2"));
}

TEST_CASE("membership: a newer run heard of replaces a live member's older run") {
  membership_fixture f;
  auto peer0 = member("peer-0", 100);
  REQUIRE(f.hello(peer0).empty());
  REQUIRE(f.hello(member("peer-1", 200)).empty());
  f.heartbeat(peer0, {member("peer-1", 250)});
  auto replaced = f.members()["peer-1"];
  CHECK(replaced.first == 250);
  CHECK(replaced.second == adm::PEER_STATE_DEAD);
  CHECK(f.hello(member("peer-1", 250)).empty());
  CHECK(f.members()["peer-1"] == std::pair{uint64_t{250}, adm::PEER_STATE_ALIVE});
}
