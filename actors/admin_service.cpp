#include "actors/admin_service.hpp"

#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/proto_messages.hpp"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>

#include <algorithm>
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

caf::behavior node_watcher(watcher_actor* self, call_context context, caf::actor registry) {
  self->state.stream = call_stream{std::move(context)};
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
};

/// AdminService methods the app directory answers.
constexpr std::string_view app_methods[] = {"CreateApp",    "UpdateApp",   "GetApp",
                                            "ListApps",     "DeleteApp",   "ReloadApps",
                                            "RotateAppKey", "DeleteAppKey", "ListAuditEvents",
                                            "GetUsage", "ExportUsageReport"};

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

void handle(admin_actor* self, const admin_actors& actors, unary_replies& replies,
            unary_call& call) {
  const auto& registry = actors.registry;
  const auto& path = call.context.path;
  auto method = path.substr(path.rfind('/') + 1);
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
      return self->spawn(node_watcher, call, actors.registry);
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
                               caf::actor app_directory) {
  return system.spawn(admin_service,
                      admin_actors{std::move(registry), std::move(membership),
                                   std::move(allocation_service), std::move(app_directory)});
}

} // namespace chroom::actors
