#include "actors/admin_service.hpp"

#include "actors/allocation_service.hpp"
#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/proto_messages.hpp"
#include "actors/room.hpp"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <deque>

namespace chroom::actors {

namespace {

using namespace transport;
using namespace chroom::admin::v1;

/// How long an admin call waits for the registry.
constexpr auto registry_timeout = std::chrono::seconds{5};

/// Events a WatchNodes client may leave unread before it is disconnected: a watcher that
/// does not keep up is told so instead of making the peer buffer without bound.
constexpr size_t max_watch_backlog = 100'000;

grpc_status unauthorized() {
  return make_status(grpc_code::unauthenticated,
                     "AdminService needs an admin token: metadata 'authorization: Bearer <token>' "
                     "with one of the peer's admin.tokens (chroomctl: --token or "
                     "CHROOM_ADMIN_TOKEN)");
}

// --- WatchNodes: one actor per call ---------------------------------------------------

struct watcher_state {
  call_stream stream;
  std::deque<NodeEvent> backlog;
};

using watcher_actor = caf::stateful_actor<watcher_state>;

void pump(watcher_actor* self) {
  auto& st = self->state;
  while (!st.backlog.empty() && st.stream.send(self, st.backlog.front()))
    st.backlog.pop_front();
}

/// Without a registry (the caller has no admin token) the call ends UNAUTHENTICATED.
caf::behavior node_watcher(watcher_actor* self, call_context context, caf::actor registry) {
  self->state.stream = call_stream{std::move(context)};
  if (!registry) {
    self->state.stream.end(self, unauthorized());
    self->quit();
    return {};
  }
  self->monitor(self->state.stream.context().gateway);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  self->send(registry, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  return {
    [self](node_event_atom, NodeEvent& event) {
      auto& st = self->state;
      if (st.backlog.size() >= max_watch_backlog) {
        st.stream.end(
          self, make_status(grpc_code::resource_exhausted, "WatchNodes client reads too slowly"));
        self->quit();
        return;
      }
      st.backlog.push_back(std::move(event));
      pump(self);
    },
    [self](call_data_atom, int32_t, const std::string& bytes) {
      self->state.stream.ack(self, bytes.size());
    },
    [self](call_close_atom, int32_t) {},
    [self](call_credit_atom, int32_t, uint32_t credit) {
      self->state.stream.add_credit(credit);
      pump(self);
    },
    [self](call_cancel_atom, int32_t) { self->quit(); },
  };
}

// --- the service ------------------------------------------------------------------------

using admin_actor = caf::event_based_actor;

/// Sends one answer for a call whose result comes from the registry later.
template <class Response>
void answer_node(admin_actor* self, const call_context& call, grpc_status& status, NodeInfo& info) {
  unary_replies replies{self};
  if (!status.is_ok()) {
    replies.fail(call, std::move(status));
    return;
  }
  Response response;
  *response.mutable_node() = std::move(info);
  replies.reply(call, response);
}

template <class Response, class... Ts>
void ask_node(admin_actor* self, const caf::actor& registry, const call_context& call, Ts&&... xs) {
  self->request(registry, registry_timeout, std::forward<Ts>(xs)...)
    .then([self, call](grpc_status& status,
                       NodeInfo& info) { answer_node<Response>(self, call, status, info); },
          [self, call](caf::error& err) {
            unary_replies replies{self};
            replies.fail(
              call, make_status(grpc_code::unavailable, "registry: " + self->system().render(err)));
          });
}

struct admin_actors {
  caf::actor registry;
  caf::actor membership;
  caf::actor allocation_service;
  caf::actor app_directory;
  std::vector<std::string> tokens;
};

/// AdminService methods the app directory answers.
constexpr std::string_view app_methods[] = {
  "CreateApp",    "UpdateApp",    "GetApp",          "ListApps", "DeleteApp",        "ReloadApps",
  "RotateAppKey", "DeleteAppKey", "ListAuditEvents", "GetUsage", "ExportUsageReport"};

/// GetCluster: the members from the membership actor, room counts from the allocation
/// service.
void get_cluster(admin_actor* self, const admin_actors& actors, const call_context& context) {
  auto fail = [self, context](const std::string& who, const caf::error& err) {
    unary_replies{self}.fail(
      context, make_status(grpc_code::unavailable, who + ": " + self->system().render(err)));
  };
  self->request(actors.membership, registry_timeout, get_cluster_atom::value)
    .then(
      [self, context, fail, service = actors.allocation_service](GetClusterResponse& response) {
        self->request(service, registry_timeout, get_cluster_atom::value)
          .then(
            [self, context, response](uint32_t owned, uint32_t replicas) mutable {
              response.set_rooms_owned(owned);
              response.set_room_replicas(replicas);
              unary_replies{self}.reply(context, response);
            },
            [fail](caf::error& err) { fail("allocation service", err); });
      },
      [fail](caf::error& err) { fail("membership", err); });
}

/// ListRooms: the allocation service gathers every peer's rooms; sorted and paged here.
void list_rooms(admin_actor* self, const admin_actors& actors, const call_context& context,
                ListRoomsRequest request) {
  self
    ->request(actors.allocation_service, registry_timeout * 2, list_rooms_atom::value,
              request.app_id(), request.node_id())
    .then(
      [self, context, request](std::vector<std::string>& serialized) {
        std::vector<RoomInfo> rooms(serialized.size());
        for (size_t i = 0; i < serialized.size(); ++i)
          rooms[i].ParseFromString(serialized[i]);
        // (app_id, room_id): as a pair, not as the "app/room" string, whose order differs
        // when one app id is a prefix of another ("a-b/x" < "a/z").
        auto key = [](const RoomInfo& info) {
          return std::make_pair(std::string_view{info.room().app_id()},
                                std::string_view{info.room().room_id()});
        };
        std::sort(rooms.begin(), rooms.end(),
                  [&](const RoomInfo& a, const RoomInfo& b) { return key(a) < key(b); });
        ListRoomsResponse response;
        response.set_total_size(static_cast<uint32_t>(rooms.size()));
        auto page_size = request.page_size() == 0 ? 1000u : request.page_size();
        // The token is the last key of the previous page ("app/room"): stable while rooms
        // come and go between pages.
        const auto& token = request.page_token();
        auto after = split_node_room_id(token).value_or(
          std::pair{std::string_view{token}, std::string_view{}});
        auto it = rooms.begin();
        if (!token.empty())
          it = std::find_if(rooms.begin(), rooms.end(),
                            [&](const RoomInfo& info) { return key(info) > after; });
        for (; it != rooms.end() && static_cast<uint32_t>(response.rooms_size()) < page_size; ++it)
          *response.add_rooms() = std::move(*it);
        if (it != rooms.end() && response.rooms_size() > 0) {
          const auto& last = response.rooms(response.rooms_size() - 1).room();
          response.set_next_page_token(node_room_id(last.app_id(), last.room_id()));
        }
        unary_replies{self}.reply(context, response);
      },
      [self, context](caf::error& err) {
        unary_replies{self}.fail(
          context,
          make_status(grpc_code::unavailable, "allocation service: " + self->system().render(err)));
      });
}

/// GetRoom and MigrateRoom: the allocation service finds the room's owner; the answer is
/// the Response message's bytes.
template <class Response, class... Ts>
void ask_room_owner(admin_actor* self, const admin_actors& actors, const call_context& context,
                    std::chrono::seconds timeout, Ts&&... xs) {
  self->request(actors.allocation_service, timeout, std::forward<Ts>(xs)..., uint32_t{0})
    .then(
      [self, context](grpc_status& status, std::string& bytes) {
        unary_replies replies{self};
        if (!status.is_ok())
          return replies.fail(context, std::move(status));
        Response response;
        if constexpr (std::is_same_v<Response, GetRoomResponse>)
          response.mutable_room()->ParseFromString(bytes);
        else
          response.ParseFromString(bytes);
        replies.reply(context, response);
      },
      [self, context](caf::error& err) {
        unary_replies{self}.fail(
          context,
          make_status(grpc_code::unavailable, "allocation service: " + self->system().render(err)));
      });
}

/// INVALID_ARGUMENT when app_id or room_id is missing or malformed.
bool has_room_key(unary_replies& replies, const call_context& context, const std::string& app_id,
                  const std::string& room_id) {
  auto refused = room_key_refusal(app_id, room_id);
  if (!refused)
    return true;
  replies.fail(context, std::move(*refused));
  return false;
}

void handle(admin_actor* self, const admin_actors& actors, unary_replies& replies,
            unary_call& call) {
  const auto& registry = actors.registry;
  const auto& path = call.context.path;
  auto method = path.substr(path.rfind('/') + 1);
  if (!admin_authorized(actors.tokens, call.context.metadata_value("authorization"))) {
    replies.fail(call.context, unauthorized());
    return;
  }
  if (std::find(std::begin(app_methods), std::end(app_methods), method) != std::end(app_methods)) {
    self->send(actors.app_directory, call_unary_atom::value,
               std::vector<unary_call>{std::move(call)});
    return;
  }
  if (method == "GetCluster") {
    GetClusterRequest request;
    if (replies.parse(call, request))
      get_cluster(self, actors, call.context);
    return;
  }
  if (method == "ListRooms") {
    ListRoomsRequest request;
    if (replies.parse(call, request))
      list_rooms(self, actors, call.context, std::move(request));
    return;
  }
  if (method == "GetRoom") {
    GetRoomRequest request;
    if (replies.parse(call, request) &&
        has_room_key(replies, call.context, request.app_id(), request.room_id()))
      ask_room_owner<GetRoomResponse>(self, actors, call.context, registry_timeout * 2,
                                      admin_room_atom::value, request.app_id(), request.room_id());
    return;
  }
  if (method == "MigrateRoom") {
    MigrateRoomRequest request;
    if (!replies.parse(call, request) ||
        !has_room_key(replies, call.context, request.app_id(), request.room_id()))
      return;
    auto migrate = [self, actors, context = call.context, request] {
      // Moving a room waits for placements and the nodes' answers.
      ask_room_owner<MigrateRoomResponse>(self, actors, context, std::chrono::seconds{30},
                                          migrate_atom::value, request.app_id(), request.room_id(),
                                          request.to_node_id(), request.from_node_id());
    };
    if (request.to_node_id().empty())
      return migrate();
    // A target must be a node that takes rooms: say so rather than fail every move.
    self->request(registry, registry_timeout, get_node_atom::value, request.to_node_id())
      .then(
        [self, context = call.context, migrate](grpc_status& status, NodeInfo& node) {
          if (!status.is_ok())
            return unary_replies{self}.fail(context, std::move(status));
          if (node.state() != NODE_STATE_ACTIVE)
            return unary_replies{self}.fail(
              context, make_status(grpc_code::failed_precondition,
                                   "node '" + node.node_id() + "' is " +
                                     NodeState_Name(node.state()) + ": it takes no rooms"));
          migrate();
        },
        [self, context = call.context](caf::error& err) {
          unary_replies{self}.fail(context, make_status(grpc_code::unavailable,
                                                        "registry: " + self->system().render(err)));
        });
    return;
  }
  if (method == "ListNodes") {
    ListNodesRequest request;
    if (!replies.parse(call, request))
      return;
    self->request(registry, registry_timeout, list_nodes_atom::value, std::move(request))
      .then(
        [self, context = call.context](ListNodesResponse& response) {
          unary_replies later{self};
          later.reply(context, response);
        },
        [self, context = call.context](caf::error& err) {
          unary_replies later{self};
          later.fail(context, make_status(grpc_code::unavailable,
                                          "registry: " + self->system().render(err)));
        });
    return;
  }
  auto node_id_of = [&](auto& request) -> bool {
    if (!replies.parse(call, request))
      return false;
    if (request.node_id().empty()) {
      replies.fail(call.context, make_status(grpc_code::invalid_argument, "node_id is required"));
      return false;
    }
    return true;
  };
  if (method == "GetNode") {
    GetNodeRequest request;
    if (node_id_of(request))
      ask_node<GetNodeResponse>(self, registry, call.context, get_node_atom::value,
                                request.node_id());
  } else if (method == "DrainNode") {
    DrainNodeRequest request;
    if (node_id_of(request))
      ask_node<DrainNodeResponse>(self, registry, call.context, drain_atom::value,
                                  request.node_id(), request.deadline_ms());
  } else if (method == "CordonNode") {
    CordonNodeRequest request;
    if (node_id_of(request))
      ask_node<CordonNodeResponse>(self, registry, call.context, cordon_atom::value,
                                   request.node_id());
  } else if (method == "UncordonNode") {
    UncordonNodeRequest request;
    if (node_id_of(request))
      ask_node<UncordonNodeResponse>(self, registry, call.context, uncordon_atom::value,
                                     request.node_id());
  } else {
    replies.fail(call.context, make_status(grpc_code::unimplemented, "unknown method " + path));
  }
}

caf::behavior admin_service(admin_actor* self, admin_actors actors) {
  return {
    [self, actors](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch)
        handle(self, actors, replies, call);
    },
    [self, actors](call_open_atom, const call_context& call) -> caf::actor {
      bool authorized = admin_authorized(actors.tokens, call.metadata_value("authorization"));
      return self->spawn(node_watcher, call, authorized ? actors.registry : caf::actor{});
    },
    [](call_cancel_atom, int32_t) {
      // A unary call waiting for the registry was cancelled; its answer is dropped by
      // the gateway.
    },
  };
}

} // namespace

caf::actor spawn_admin_service(caf::actor_system& system, caf::actor registry,
                               caf::actor membership, caf::actor allocation_service,
                               caf::actor app_directory, std::vector<std::string> tokens) {
  return system.spawn(admin_service, admin_actors{std::move(registry), std::move(membership),
                                                  std::move(allocation_service),
                                                  std::move(app_directory), std::move(tokens)});
}

bool admin_authorized(const std::vector<std::string>& tokens, std::string_view authorization) {
  if (tokens.empty())
    return true;
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
    return false;
  auto presented = authorization.substr(scheme.size());
  bool match = false;
  for (const auto& token : tokens)
    // Every token is compared, each in constant time: the answer's timing tells nothing.
    match |= token.size() == presented.size() &&
             CRYPTO_memcmp(token.data(), presented.data(), token.size()) == 0;
  return match;
}

} // namespace chroom::actors
