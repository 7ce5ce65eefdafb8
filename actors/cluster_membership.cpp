#include "actors/cluster_membership.hpp"

#include "actors/atoms.hpp"
#include "actors/exception_log.hpp"
#include "actors/send_later.hpp"
#include "chroom/cluster/v1/cluster.pb.h"
#include "cluster/ring.hpp"
#include "observability/metrics.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <set>

namespace chroom::actors {

namespace {

namespace cv1 = chroom::cluster::v1;
namespace adm = chroom::admin::v1;
using steady = std::chrono::steady_clock;

/// How often unreachable seeds and dead members are tried again.
constexpr auto probe_interval = std::chrono::seconds{1};
/// How long a connection attempt or a hello may take.
constexpr auto connect_timeout = std::chrono::seconds{3};

struct member_record {
  cv1::Member member;
  adm::PeerState state = adm::PEER_STATE_UNSPECIFIED;
  steady::time_point last_heard{};
  caf::actor membership;
  caf::actor allocation_service;
  caf::actor registry;
  caf::actor app_directory;
};

struct membership_state {
  cluster_settings settings;
  cv1::Member self_member;
  /// Every peer heard of, by peer_id (itself excluded).
  std::map<std::string, member_record> members;
  /// Addresses being connected to.
  std::set<std::string> connecting;
  std::vector<caf::actor> subscribers;
  /// The live set last published: (peer_id, incarnation).
  std::vector<std::pair<std::string, uint64_t>> published;
  bool leaving = false;
  /// Waiting for the first member (join_wait_atom).
  std::vector<caf::response_promise> join_waiters;
};

using membership_actor = caf::stateful_actor<membership_state>;

std::string serialized(const google::protobuf::Message& message) {
  std::string out;
  message.SerializeToString(&out);
  return out;
}

cv1::Hello hello_of(membership_actor* self) {
  auto& st = self->state;
  cv1::Hello hello;
  *hello.mutable_member() = st.self_member;
  for (const auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE)
      *hello.add_known() = record.member;
  return hello;
}

cluster_view view_of(membership_actor* self) {
  auto& st = self->state;
  cluster_view view;
  view.self_id = st.settings.peer_id;
  view.self_incarnation = st.settings.incarnation;
  view.replication_factor = st.settings.replication_factor;
  if (!st.leaving)
    view.live.push_back({st.settings.peer_id, st.settings.incarnation,
                         st.settings.allocation_service, st.settings.registry,
                         st.settings.app_directory});
  for (const auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE)
      view.live.push_back({id, record.member.incarnation(), record.allocation_service,
                           record.registry, record.app_directory});
  std::sort(view.live.begin(), view.live.end(),
            [](const auto& a, const auto& b) { return a.peer_id < b.peer_id; });
  return view;
}

/// Tells the subscribers when the live set changed.
void publish_if_changed(membership_actor* self) {
  auto& st = self->state;
  auto view = view_of(self);
  std::vector<std::pair<std::string, uint64_t>> live;
  for (const auto& peer : view.live)
    live.emplace_back(peer.peer_id, peer.incarnation);
  if (live == st.published)
    return;
  st.published = std::move(live);
  std::vector<std::string> names;
  for (const auto& peer : view.live)
    names.push_back(peer.peer_id);
  spdlog::info("cluster: {} live peer(s): {}", names.size(), fmt::join(names, ", "));
  for (const auto& subscriber : st.subscribers)
    self->send(subscriber, cluster_view_atom::value, view);
}

void mark_dead(membership_actor* self, member_record& record, const std::string& why) {
  if (record.state != adm::PEER_STATE_ALIVE)
    return;
  spdlog::warn("cluster: peer {} (incarnation {}) is dead: {}", record.member.peer_id(),
               record.member.incarnation(), why);
  record.state = adm::PEER_STATE_DEAD;
  observability::metrics().peer_failures.Increment();
  if (record.membership)
    self->demonitor(record.membership);
  record.membership = nullptr;
  record.allocation_service = nullptr;
  record.registry = nullptr;
  record.app_directory = nullptr;
}

/// A member to say hello to: not alive, and not a run that said goodbye.
bool awaits_hello(const member_record& record) {
  return record.state != adm::PEER_STATE_ALIVE && record.state != adm::PEER_STATE_LEFT;
}

/// Records members another peer knows: new ones are connected to at the next probe.
void learn(membership_actor* self, const google::protobuf::RepeatedPtrField<cv1::Member>& known) {
  auto& st = self->state;
  for (const auto& member : known) {
    if (member.peer_id() == st.settings.peer_id || member.peer_id().empty())
      continue;
    auto& record = st.members[member.peer_id()];
    if (record.member.peer_id().empty() || member.incarnation() > record.member.incarnation()) {
      if (record.state == adm::PEER_STATE_ALIVE)
        mark_dead(self, record, "a newer run of it exists");
      // Whatever the previous run did (died, left), the new run is not known to be alive
      // yet: the next probe connects to it and its own hello is welcome.
      record.state = adm::PEER_STATE_UNSPECIFIED;
      record.member = member;
    }
  }
}

/// A hello (sent or answered) from `member`: it is alive with these actors. Returns why
/// the hello is refused, empty when it was welcome.
std::string welcome(membership_actor* self, const cv1::Hello& hello, const caf::actor& membership,
                    const caf::actor& allocation, const caf::actor& registry,
                    const caf::actor& app_directory) {
  auto& st = self->state;
  const auto& member = hello.member();
  if (member.peer_id().empty() || !membership)
    return "a hello without a peer id or membership actor";
  if (member.peer_id() == st.settings.peer_id)
    return "a hello from a peer with this peer's id (" + member.peer_id() + ")";
  auto& record = st.members[member.peer_id()];
  if (!record.member.peer_id().empty() && member.incarnation() < record.member.incarnation())
    return "incarnation " + std::to_string(member.incarnation()) + " of " + member.peer_id() +
           " is older than the known " + std::to_string(record.member.incarnation());
  if (record.state == adm::PEER_STATE_LEFT && member.incarnation() == record.member.incarnation())
    return "incarnation " + std::to_string(member.incarnation()) + " of " + member.peer_id() +
           " left the cluster; only a new run of it joins again";
  bool fresh =
    record.state != adm::PEER_STATE_ALIVE || record.member.incarnation() != member.incarnation();
  if (record.membership && record.membership != membership)
    self->demonitor(record.membership);
  record.member = member;
  record.membership = membership;
  record.allocation_service = allocation;
  record.registry = registry;
  record.app_directory = app_directory;
  record.last_heard = steady::now();
  record.state = adm::PEER_STATE_ALIVE;
  self->monitor(membership);
  if (fresh)
    spdlog::info("cluster: peer {} (incarnation {}) at {} joined", member.peer_id(),
                 member.incarnation(), member.cluster_address());
  learn(self, hello.known());
  // The view first: the registry and the allocation service know the cluster before the
  // peer reports SERVING.
  publish_if_changed(self);
  for (auto& waiter : st.join_waiters)
    waiter.deliver(true);
  st.join_waiters.clear();
  return {};
}

void say_hello(membership_actor* self, const caf::actor& remote, const std::string& address) {
  auto& st = self->state;
  self
    ->request(remote, connect_timeout, hello_atom::value, serialized(hello_of(self)),
              caf::actor_cast<caf::actor>(self), st.settings.allocation_service,
              st.settings.registry, st.settings.app_directory)
    .then(
      [self, address](const std::string& bytes, const caf::actor& membership,
                      const caf::actor& allocation, const caf::actor& registry,
                      const caf::actor& app_directory) {
        self->state.connecting.erase(address);
        cv1::Hello hello;
        if (!hello.ParseFromString(bytes)) {
          spdlog::warn("cluster: {} answered hello with a malformed message", address);
          return;
        }
        if (auto refused = welcome(self, hello, membership, allocation, registry, app_directory);
            !refused.empty())
          spdlog::warn("cluster: the answer to hello from {} is refused: {}", address, refused);
      },
      [self, address](caf::error& err) {
        self->state.connecting.erase(address);
        spdlog::debug("cluster: hello to {} failed: {}", address, self->system().render(err));
      });
}

void connect_to(membership_actor* self, const cluster::peer_address& address) {
  auto& st = self->state;
  auto text = address.to_string();
  if (text == st.settings.cluster_address || !st.connecting.insert(text).second)
    return;
  auto middleman = st.settings.tls ? self->system().openssl_manager().actor_handle()
                                   : self->system().middleman().actor_handle();
  self->request(middleman, connect_timeout, caf::connect_atom::value, address.host, address.port)
    .then(
      [self, text](const caf::node_id&, caf::strong_actor_ptr& remote,
                   const std::set<std::string>&) {
        if (!remote) {
          self->state.connecting.erase(text);
          spdlog::debug("cluster: nothing published at {}", text);
          return;
        }
        say_hello(self, caf::actor_cast<caf::actor>(remote), text);
      },
      [self, text](caf::error& err) {
        self->state.connecting.erase(text);
        spdlog::debug("cluster: cannot reach {}: {}", text, self->system().render(err));
      });
}

/// Connects to seeds and members that are not alive (a restart, a healed partition).
void probe(membership_actor* self) {
  auto& st = self->state;
  if (st.leaving)
    return;
  std::set<std::string> alive_addresses;
  for (const auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE)
      alive_addresses.insert(record.member.cluster_address());
  for (const auto& seed : st.settings.seeds)
    if (!alive_addresses.contains(seed.to_string()))
      connect_to(self, seed);
  for (const auto& [id, record] : st.members) {
    if (!awaits_hello(record))
      continue;
    std::string problem;
    if (auto address = cluster::parse_peer_address(record.member.cluster_address(), problem);
        address && !alive_addresses.contains(address->to_string()))
      connect_to(self, *address);
  }
}

void heartbeat(membership_actor* self) {
  auto& st = self->state;
  auto now = steady::now();
  for (auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE &&
        now - record.last_heard > st.settings.failure_timeout)
      mark_dead(self, record,
                "not heard from for " + std::to_string(st.settings.failure_timeout.count()) +
                  " ms");
  publish_if_changed(self);
  if (st.leaving)
    return;
  cv1::Heartbeat beat;
  beat.set_incarnation(st.settings.incarnation);
  for (const auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE)
      *beat.add_known() = record.member;
  auto bytes = serialized(beat);
  for (const auto& [id, record] : st.members)
    if (record.state == adm::PEER_STATE_ALIVE && record.membership)
      self->send(record.membership, heartbeat_atom::value, st.settings.peer_id,
                 st.settings.incarnation, bytes);
}

caf::behavior membership(membership_actor* self, cluster_settings settings) {
  log_exceptions(self, "cluster membership");
  auto& st = self->state;
  st.settings = std::move(settings);
  st.self_member.set_peer_id(st.settings.peer_id);
  st.self_member.set_incarnation(st.settings.incarnation);
  st.self_member.set_cluster_address(st.settings.cluster_address);
  st.self_member.set_grpc_address(st.settings.grpc_address);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.subscribers.erase(
      std::remove_if(st.subscribers.begin(), st.subscribers.end(),
                     [&](const caf::actor& a) { return a.address() == msg.source; }),
      st.subscribers.end());
    for (auto& [id, record] : st.members)
      if (record.membership && record.membership.address() == msg.source) {
        mark_dead(self, record, "connection lost (" + self->system().render(msg.reason) + ")");
        publish_if_changed(self);
        return;
      }
  });
  if (st.settings.listen.port != 0) {
    send_self(self, probe_atom::value);
    send_later(self, st.settings.heartbeat_interval, heartbeat_atom::value);
  }
  return {
    [self](hello_atom, const std::string& bytes, const caf::actor& membership,
           const caf::actor& allocation, const caf::actor& registry,
           const caf::actor& app_directory)
      -> caf::result<std::string, caf::actor, caf::actor, caf::actor, caf::actor> {
      auto& st = self->state;
      cv1::Hello hello;
      if (!hello.ParseFromString(bytes))
        return caf::make_error(caf::sec::invalid_argument, "malformed Hello");
      if (st.leaving) // a peer on its way out takes no new members
        return caf::make_error(caf::sec::request_receiver_down, "this peer is leaving");
      // A refused hello is an error: the sender must not count this peer as its member
      // while this peer does not count it as one.
      if (auto refused = welcome(self, hello, membership, allocation, registry, app_directory);
          !refused.empty())
        return caf::make_error(caf::sec::invalid_argument, std::move(refused));
      return {serialized(hello_of(self)), caf::actor_cast<caf::actor>(self),
              st.settings.allocation_service, st.settings.registry, st.settings.app_directory};
    },
    [self](heartbeat_atom, const std::string& peer_id, uint64_t incarnation,
           const std::string& bytes) {
      auto& st = self->state;
      auto it = st.members.find(peer_id);
      if (it == st.members.end() || it->second.member.incarnation() != incarnation || st.leaving)
        return;
      auto& record = it->second;
      record.last_heard = steady::now();
      if (awaits_hello(record) && record.membership == nullptr) {
        // A partition healed over a connection that survived it, or a new run of the member
        // heard of through another peer: hello to get its actors.
        std::string problem;
        if (auto address = cluster::parse_peer_address(record.member.cluster_address(), problem))
          connect_to(self, *address);
      }
      cv1::Heartbeat beat;
      if (beat.ParseFromString(bytes))
        learn(self, beat.known());
    },
    [self](heartbeat_atom) {
      heartbeat(self);
      send_later(self, self->state.settings.heartbeat_interval, heartbeat_atom::value);
    },
    [self](probe_atom) {
      probe(self);
      send_later(self, probe_interval, probe_atom::value);
    },
    [self](leave_atom, const std::string& peer_id, uint64_t incarnation) {
      auto& st = self->state;
      auto it = st.members.find(peer_id);
      if (it == st.members.end() || it->second.member.incarnation() != incarnation)
        return;
      spdlog::info("cluster: peer {} left", peer_id);
      mark_dead(self, it->second, "left");
      it->second.state = adm::PEER_STATE_LEFT;
      publish_if_changed(self);
    },
    [self](leave_atom) {
      auto& st = self->state;
      st.leaving = true;
      for (const auto& [id, record] : st.members)
        if (record.state == adm::PEER_STATE_ALIVE && record.membership)
          self->send(record.membership, leave_atom::value, st.settings.peer_id,
                     st.settings.incarnation);
      return true;
    },
    [self](join_wait_atom) -> caf::result<bool> {
      auto& st = self->state;
      bool has_other_seed =
        std::any_of(st.settings.seeds.begin(), st.settings.seeds.end(), [&](const auto& seed) {
          return seed.to_string() != st.settings.cluster_address;
        });
      bool has_member = std::any_of(st.members.begin(), st.members.end(), [](const auto& m) {
        return m.second.state == adm::PEER_STATE_ALIVE;
      });
      if (st.settings.listen.port == 0 || !has_other_seed || has_member)
        return true;
      st.join_waiters.push_back(self->make_response_promise());
      send_later(self, st.settings.join_timeout, join_wait_atom::value, false);
      return st.join_waiters.back();
    },
    [self](join_wait_atom, bool) {
      for (auto& waiter : self->state.join_waiters)
        waiter.deliver(false);
      self->state.join_waiters.clear();
    },
    [self](subscribe_atom, const caf::actor& subscriber) {
      auto& st = self->state;
      st.subscribers.push_back(subscriber);
      self->monitor(subscriber);
      self->send(subscriber, cluster_view_atom::value, view_of(self));
    },
    [self](get_cluster_atom) {
      auto& st = self->state;
      adm::GetClusterResponse response;
      response.set_peer_id(st.settings.peer_id);
      response.set_replication_factor(st.settings.replication_factor);
      auto now = steady::now();
      auto add = [&](const cv1::Member& member, adm::PeerState state, int64_t ago, bool is_self) {
        auto* peer = response.add_peers();
        peer->set_peer_id(member.peer_id());
        peer->set_incarnation(member.incarnation());
        peer->set_cluster_address(member.cluster_address());
        peer->set_grpc_address(member.grpc_address());
        peer->set_state(state);
        peer->set_last_heard_ms_ago(ago);
        peer->set_self(is_self);
      };
      bool self_added = false;
      for (const auto& [id, record] : st.members) {
        if (!self_added && st.settings.peer_id < id) {
          add(st.self_member, adm::PEER_STATE_ALIVE, 0, true);
          self_added = true;
        }
        auto ago =
          record.last_heard == steady::time_point{}
            ? -1
            : std::chrono::duration_cast<std::chrono::milliseconds>(now - record.last_heard)
                .count();
        add(record.member,
            record.state == adm::PEER_STATE_UNSPECIFIED ? adm::PEER_STATE_DEAD : record.state, ago,
            false);
      }
      if (!self_added)
        add(st.self_member, adm::PEER_STATE_ALIVE, 0, true);
      return response;
    },
  };
}

} // namespace

const peer_handle* cluster_view::find(std::string_view peer_id) const {
  for (const auto& peer : live)
    if (peer.peer_id == peer_id)
      return &peer;
  return nullptr;
}

std::vector<std::string> cluster_view::live_ids() const {
  std::vector<std::string> ids;
  ids.reserve(live.size());
  for (const auto& peer : live)
    ids.push_back(peer.peer_id);
  return ids;
}

std::vector<const peer_handle*> cluster_view::holders_of(std::string_view key) const {
  std::vector<const peer_handle*> out;
  if (live.size() == 1) { // one peer (the common single-peer case): no hashing
    out.push_back(&live.front());
    return out;
  }
  for (const auto& id : cluster::owners_of(key, live_ids(), replication_factor))
    out.push_back(find(id));
  return out;
}

std::string cluster_view::self_writer() const {
  return self_id + "@" + std::to_string(self_incarnation);
}

caf::actor spawn_cluster_membership(caf::actor_system& system, cluster_settings settings) {
  auto listen = settings.listen;
  auto tls = settings.tls;
  auto actor = system.spawn(membership, std::move(settings));
  if (listen.port != 0) {
    auto published = tls
                       ? caf::openssl::publish(actor, listen.port, listen.host.c_str(), true)
                       : system.middleman().publish(actor, listen.port, listen.host.c_str(), true);
    if (!published) {
      caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
      throw std::runtime_error("cannot listen for peers on " + listen.to_string() + ": " +
                               system.render(published.error()));
    }
  }
  return actor;
}

} // namespace chroom::actors
