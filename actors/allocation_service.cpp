#include "actors/allocation_service.hpp"

#include "actors/allocation_messages.hpp"
#include "actors/allocation_metrics.hpp"
#include "actors/app_policy.hpp"
#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/exception_log.hpp"
#include "actors/send_later.hpp"
#include "allocation/lease_wheel.hpp"
#include "apps/rate_limiter.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/apps/v1/usage.pb.h"
#include "cluster/room_state.hpp"
#include "observability/metrics.hpp"
#include "observability/request_id.hpp"
#include "transport/call_protocol.hpp"
#include "transport/status_details.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <variant>

namespace chroom::actors {

namespace {

using steady = std::chrono::steady_clock;

using namespace transport;
namespace av1 = chroom::allocation::v1;
namespace cv1 = chroom::cluster::v1;

/// Request metadata of a call one peer sent on to another, once per hop. While
/// membership changes, views differ for a moment: a peer that got a call for a room it
/// does not own sends it on to the owner it sees, but a call is not sent on more than
/// max_forward_hops times (it must not bounce between peers that disagree).
constexpr std::string_view forwarded_by_key = "chroom-forwarded-by";
constexpr long max_forward_hops = 2;
/// How long a leaving peer waits for its rooms to reach their new owners.
constexpr auto leave_timeout = std::chrono::seconds{5};
/// A room state sent to a peer that does not own it goes on this many times at most
/// (views that disagree must not bounce it around).
constexpr uint32_t max_absorb_hops = 2;
/// How long a forwarded call is kept to be routed again should its owner die: a death is
/// noticed within the failure timeout (1.5 s by default), a dropped connection at once.
constexpr auto forward_memory = std::chrono::seconds{3};

/// How long a call waits for the registry, a room or a session.
constexpr auto answer_timeout = std::chrono::seconds{10};

// Request limits (each named in the .proto's comments).
constexpr size_t max_app_id = 64;
constexpr size_t max_room_id = 128;
constexpr size_t max_client_id = 128;
constexpr int max_probes = 32;
constexpr int max_features = 16;
constexpr double max_probe_rtt_ms = 60'000;
constexpr uint32_t max_expected_kbps = 1'000'000;
constexpr uint32_t default_candidates = 5;
constexpr uint32_t max_candidates = 32;
/// Room updates a WatchRoom client may leave unread before it is disconnected.
constexpr size_t max_watch_backlog = 10'000;

constexpr std::string_view roles[] = {"host", "presenter", "participant", "viewer"};

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_client_char(char c) {
  return is_id_char(c) || c == '@';
}

/// Why `value` is not a valid id (empty when it is).
std::string id_problem(std::string_view field, std::string_view value, size_t max_length,
                       bool (*allowed)(char), std::string_view alphabet) {
  if (value.empty())
    return std::string{field} + " is required";
  if (value.size() > max_length)
    return std::string{field} + " is longer than " + std::to_string(max_length) + " characters";
  if (!std::all_of(value.begin(), value.end(), allowed))
    return std::string{field} + " may hold only " + std::string{alphabet};
  return {};
}

constexpr std::string_view id_alphabet = "A-Z a-z 0-9 . _ -";

/// INVALID_ARGUMENT for one invalid request field (`field` as protobuf JSON names it), the
/// details saying which (docs/errors.md: INVALID_FIELD).
grpc_status invalid_field(std::string field, std::string problem) {
  return transport::invalid_fields(problem, "INVALID_FIELD", {{std::move(field), problem}});
}

} // namespace

std::optional<grpc_status> room_key_refusal(std::string_view app_id, std::string_view room_id) {
  if (auto problem = id_problem("app_id", app_id, max_app_id, is_id_char, id_alphabet);
      !problem.empty())
    return invalid_field("app_id", std::move(problem));
  if (auto problem = id_problem("room_id", room_id, max_room_id, is_id_char, id_alphabet);
      !problem.empty())
    return invalid_field("room_id", std::move(problem));
  return std::nullopt;
}

std::string room_key_problem(std::string_view app_id, std::string_view room_id) {
  auto refused = room_key_refusal(app_id, room_id);
  return refused ? refused->message : std::string{};
}

namespace {

std::string location_problem(const av1::ClientLocation& location) {
  if (location.has_point()) {
    if (!std::isfinite(location.latitude()) || std::abs(location.latitude()) > 90)
      return "location.latitude must be within -90..90";
    if (!std::isfinite(location.longitude()) || std::abs(location.longitude()) > 180)
      return "location.longitude must be within -180..180";
  }
  if (!location.ip().empty() && !allocation::ip_locator::valid_ip(location.ip()))
    return "location.ip '" + location.ip().substr(0, 64) + "' is not an IPv4 or IPv6 address";
  return {};
}

std::string features_problem(const google::protobuf::RepeatedPtrField<std::string>& names,
                             allocation::feature_needs& needs) {
  if (names.size() > max_features)
    return "at most " + std::to_string(max_features) + " required_features";
  std::string problem;
  auto parsed = allocation::parse_features({names.begin(), names.end()}, problem);
  if (!parsed)
    return "required_features: " + problem;
  needs = std::move(*parsed);
  return {};
}

/// Where a client is placed, and what to tell it about that.
struct client_position {
  allocation::geo_point point;
  bool at_fallback = false;
  std::string warning;
};

client_position locate(const av1::ClientLocation& location, const allocation::ip_locator* locator) {
  client_position out;
  if (location.has_point()) {
    out.point = {location.latitude(), location.longitude()};
    return out;
  }
  if (!location.ip().empty() && locator != nullptr) {
    if (auto found = locator->locate(location.ip())) {
      out.point = found->point;
      return out;
    }
  }
  out.at_fallback = true;
  out.warning =
    location.ip().empty()
      ? "no client location given: placed as if in this peer's region"
      : "no location known for IP " + location.ip() + ": placed as if in this peer's region";
  return out;
}

// --- allocation_request: one per Allocate ---------------------------------------------

struct request_state {
  call_context call;
  /// The request as it came: routed again when the room moved to another peer.
  std::string request_bytes;
  allocation_ask ask;
  std::string app_id;
  std::string room_id;
  caf::actor service;
  bool retried = false;
  /// When the call reached the service (allocation latency).
  steady::time_point started;
  /// The room as it was before this client (for the app's hook).
  uint32_t room_participants = 0;
  std::vector<std::string> room_roles;
};

/// Threads delivering webhooks (HTTP requests wait on the network, not the CPU).
constexpr size_t webhook_threads = 2;
/// Nodes offered to a before_allocation hook.
constexpr uint32_t hook_candidates = 8;
/// A hook's own time budget is at most 10 s (apps/app_spec): this covers it and the queue.
constexpr auto hook_timeout = std::chrono::seconds{15};

using request_actor = caf::stateful_actor<request_state>;

/// Fails the call and ends the request.
void fail_request(request_actor* self, grpc_status status) {
  auto& st = self->state;
  count_allocation(st.call, st.app_id, status.code, st.started);
  unary_replies{self}.fail(st.call, std::move(status));
  self->quit();
}

void ask_room(request_actor* self, const caf::actor& room) {
  // No timeout: the room always answers, and a room that died fails the request at once
  // (a timer per request would cost CAF's clock a lock and a tree insert each).
  self->request(room, caf::infinite, allocate_atom::value, self->state.ask)
    .then(
      [self](allocation_reply& reply) {
        auto& st = self->state;
        if (reply.status.code == grpc_code::unavailable &&
            reply.status.message == room_moved_message) {
          self->send(st.service, call_unary_atom::value,
                     std::vector<unary_call>{{std::move(st.call), std::move(st.request_bytes)}});
          self->quit();
          return;
        }
        if (!reply.status.is_ok())
          return fail_request(self, std::move(reply.status));
        count_allocation(st.call, st.app_id, grpc_code::ok, st.started);
        unary_replies replies{self};
        replies.reply(st.call, reply.response, std::move(reply.headers));
        replies.flush();
        self->quit();
      },
      [self](caf::error& err) {
        auto& st = self->state;
        if (!st.retried && err.category() == caf::atom("exit")) {
          // The room quit (idle) as this request reached it: get a fresh one.
          st.retried = true;
          self->request(st.service, answer_timeout, room_for_atom::value, st.app_id, st.room_id)
            .then(
              [self](grpc_status& status, caf::actor& room) {
                if (!status.is_ok())
                  return fail_request(self, std::move(status));
                ask_room(self, room);
              },
              [self](caf::error& again) {
                fail_request(self,
                             make_status(grpc_code::unavailable,
                                         "allocation service: " + self->system().render(again)));
              });
          return;
        }
        fail_request(self,
                     make_status(grpc_code::unavailable, "room: " + self->system().render(err)));
      });
}

/// A role the app does not use: PERMISSION_DENIED.
std::optional<grpc_status> role_refusal(const apps::app_definition& app, const std::string& role) {
  if (const auto* rules = app.role(role); rules != nullptr && rules->allowed)
    return std::nullopt;
  return transport::with_error_info(
    make_status(grpc_code::permission_denied,
                "app '" + app.config.app_id() + "' has no role '" + role + "'"),
    "ROLE_NOT_ALLOWED", {{"app_id", app.config.app_id()}, {"policy", "roles"}, {"role", role}});
}

/// Applies what the app's before_allocation hook decided, then asks the room.
void apply_hook(request_actor* self, const caf::actor& room, apps::allocation_hook_result& result) {
  auto& st = self->state;
  if (result.deny)
    return fail_request(
      self, transport::with_error_info(
              make_status(grpc_code::permission_denied,
                          "denied by app '" + st.app_id + "': " + result.deny_reason),
              "DENIED_BY_HOOK", {{"app_id", st.app_id}, {"policy", "before_allocation"}}));
  if (result.role) {
    st.ask.role = *result.role;
    st.ask.request.set_role(*result.role);
  }
  if (st.ask.app)
    if (auto refused = role_refusal(*st.ask.app, st.ask.role))
      return fail_request(self, std::move(*refused));
  if (result.nodes)
    st.ask.query.request.allowed_nodes = std::move(*result.nodes);
  ask_room(self, room);
}

/// Runs the app's before_allocation hook on the nodes that could take the client, then
/// asks the room.
void run_hook(request_actor* self, const caf::actor& room, const caf::actor& registry) {
  auto& st = self->state;
  candidates_query query;
  query.query = st.ask.query;
  query.count = hook_candidates;
  self->request(registry, answer_timeout, candidates_atom::value, std::move(query))
    .then(
      [self, room](candidates_answer& answer) {
        auto& st = self->state;
        apps::allocation_hook_input input;
        const auto& request = st.ask.request;
        input.app_id = st.app_id;
        input.room_id = st.room_id;
        input.client_id = st.ask.client_id;
        input.role = request.role();
        input.required_features = {request.required_features().begin(),
                                   request.required_features().end()};
        input.client_country = st.ask.client_country;
        input.has_point = request.location().has_point();
        input.latitude = request.location().latitude();
        input.longitude = request.location().longitude();
        input.room_participants = st.room_participants;
        input.room_roles = st.room_roles;
        for (size_t i = 0; i < answer.candidates.size(); ++i) {
          const auto& choice = answer.candidates[i];
          input.candidates.push_back({choice.node_id(), choice.region(), choice.country(),
                                      choice.estimated_rtt_ms(),
                                      i < answer.load_after.size() ? answer.load_after[i] : 0.0});
        }
        self->request(st.ask.hook, hook_timeout, hook_atom::value, std::move(input))
          .then(
            [self, room](grpc_status& status, apps::allocation_hook_result& result) {
              if (!status.is_ok())
                return fail_request(self, std::move(status));
              apply_hook(self, room, result);
            },
            [self](caf::error& err) {
              fail_request(self, make_status(grpc_code::unavailable,
                                             "app hook: " + self->system().render(err)));
            });
      },
      [self](caf::error& err) {
        fail_request(
          self, make_status(grpc_code::unavailable, "registry: " + self->system().render(err)));
      });
}

caf::behavior allocation_request(request_actor* self, call_context call, std::string request_bytes,
                                 allocation_ask ask, std::string app_id, std::string room_id,
                                 caf::actor room, caf::actor service, caf::actor registry,
                                 steady::time_point started) {
  auto& st = self->state;
  st.started = started;
  st.call = std::move(call);
  st.request_bytes = std::move(request_bytes);
  st.ask = std::move(ask);
  st.app_id = std::move(app_id);
  st.room_id = std::move(room_id);
  st.service = std::move(service);
  if (st.ask.hook) {
    // The room tells who is in it, for the hook.
    self->request(room, answer_timeout, get_room_atom::value)
      .then(
        [self, room, registry](grpc_status&, av1::Room& current) {
          auto& st = self->state;
          st.room_participants = current.participants();
          for (const auto& member : current.members())
            st.room_roles.push_back(member.role());
          run_hook(self, room, registry);
        },
        [self, room, registry](caf::error&) { run_hook(self, room, registry); });
  } else {
    ask_room(self, room);
  }
  return {
    [](call_cancel_atom, int32_t) {},
  };
}

// --- WatchRoom: one actor per call ----------------------------------------------------

struct watcher_state {
  call_stream stream;
  caf::actor service;
  bool subscribed = false;
  std::string app_id;
  std::string room_id;
  /// The room watched (on this peer or its owner).
  caf::actor_addr room;
  /// Times the room went away (its owner died or handed it off) and was looked up again.
  int resubscriptions = 0;
  std::deque<av1::RoomUpdate> backlog;
};

/// A watch follows its room through this many owner changes in a row before it gives up.
constexpr int max_resubscriptions = 10;
constexpr auto resubscribe_delay = std::chrono::milliseconds{300};

using watcher_actor = caf::stateful_actor<watcher_state>;

void pump(watcher_actor* self) {
  auto& st = self->state;
  while (!st.backlog.empty() && st.stream.send(self, st.backlog.front()))
    st.backlog.pop_front();
}

void end_watch(watcher_actor* self, grpc_status status) {
  self->state.stream.end(self, std::move(status));
  self->quit();
}

/// Asks the service (which asks the owner) for the room and subscribes to it.
void subscribe(watcher_actor* self) {
  auto& st = self->state;
  self
    ->request(st.service, answer_timeout, room_for_atom::value, st.app_id, st.room_id,
              st.stream.context().request_metadata)
    .then(
      [self](grpc_status& status, caf::actor& room) {
        if (!status.is_ok()) {
          end_watch(self, std::move(status));
          return;
        }
        self->state.room = room.address();
        self->monitor(room);
        self->send(room, watch_room_atom::value, caf::actor_cast<caf::actor>(self));
      },
      [self](caf::error& err) {
        end_watch(self, make_status(grpc_code::unavailable,
                                    "allocation service: " + self->system().render(err)));
      });
}

caf::behavior room_watcher(watcher_actor* self, call_context call, caf::actor service) {
  auto& st = self->state;
  st.stream = call_stream{std::move(call)};
  st.service = std::move(service);
  self->monitor(st.stream.context().gateway);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (msg.source == st.stream.context().gateway.address()) {
      self->quit();
      return;
    }
    if (msg.source != st.room)
      return;
    // The room quit here (idle, handed off) or its peer died: the owner now has it.
    if (++st.resubscriptions > max_resubscriptions) {
      end_watch(self, make_status(grpc_code::unavailable, "the room's owner went away"));
      return;
    }
    send_later(self, resubscribe_delay, watch_room_atom::value);
  });
  return {
    [self](call_data_atom, int32_t, const std::string& bytes) {
      auto& st = self->state;
      st.stream.ack(self, bytes.size());
      if (st.subscribed)
        return; // server streaming takes one request
      av1::WatchRoomRequest request;
      if (!request.ParseFromString(bytes)) {
        end_watch(self,
                  make_status(grpc_code::invalid_argument,
                              "request is not a valid chroom.allocation.v1.WatchRoomRequest"));
        return;
      }
      if (auto refused = room_key_refusal(request.app_id(), request.room_id())) {
        end_watch(self, std::move(*refused));
        return;
      }
      st.subscribed = true;
      st.app_id = request.app_id();
      st.room_id = request.room_id();
      subscribe(self);
    },
    [self](watch_room_atom) { subscribe(self); },
    [self](room_update_atom, const std::string& bytes) {
      auto& st = self->state;
      av1::RoomUpdate update;
      if (!update.ParseFromString(bytes))
        return;
      if (update.reason() == "current state")
        st.resubscriptions = 0;
      if (st.backlog.size() >= max_watch_backlog) {
        end_watch(self,
                  make_status(grpc_code::resource_exhausted, "WatchRoom client reads too slowly"));
        return;
      }
      st.backlog.push_back(std::move(update));
      pump(self);
    },
    [](call_close_atom, int32_t) {},
    [self](call_credit_atom, int32_t, uint32_t credit) {
      self->state.stream.add_credit(credit);
      pump(self);
    },
    [self](call_cancel_atom, int32_t) { self->quit(); },
  };
}

// --- the service ----------------------------------------------------------------------

/// The catalog as the room actors read it (from their own threads, when they take a room
/// over): the service swaps it, the rooms take a copy of the pointer.
class catalog_holder {
public:
  std::shared_ptr<const apps::app_catalog> get() const {
    std::lock_guard lock{mutex_};
    return catalog_;
  }
  void set(std::shared_ptr<const apps::app_catalog> catalog) {
    std::lock_guard lock{mutex_};
    catalog_ = std::move(catalog);
  }
  caf::actor policy(const std::string& app_id) const {
    std::lock_guard lock{mutex_};
    auto it = policies_.find(app_id);
    return it == policies_.end() ? caf::actor{} : it->second;
  }
  void set_policies(std::map<std::string, caf::actor> policies) {
    std::lock_guard lock{mutex_};
    policies_ = std::move(policies);
  }

private:
  mutable std::mutex mutex_;
  std::shared_ptr<const apps::app_catalog> catalog_;
  std::map<std::string, caf::actor> policies_;
};

struct service_state {
  allocation_service_settings settings;
  /// The apps as the app directory last published them.
  std::shared_ptr<const apps::app_catalog> catalog;
  std::shared_ptr<catalog_holder> shared_catalog;
  /// One app_policy per app, and the definition it runs.
  std::map<std::string, caf::actor> policies;
  std::map<std::string, std::shared_ptr<const apps::app_definition>> policy_apps;
  /// Apps whose hooks define before_allocation (their policies say so once loaded).
  std::set<std::string> before_allocation_hooks;
  /// Delivers every app's webhooks (its own threads).
  std::shared_ptr<apps::webhook_dispatcher> webhooks;
  std::shared_ptr<const room_settings> room_settings_;
  /// node_room_id ("app/room") -> room actor, and back.
  std::unordered_map<std::string, caf::actor> rooms;
  struct room_record {
    std::string key;
    /// Calls handed to the room whole (direct_allocation): an idle room may go only once
    /// it has seen them all.
    uint64_t direct_asks = 0;
  };
  std::unordered_map<caf::actor_addr, room_record> room_of;
  std::unordered_map<std::string, caf::actor> leases;
  std::unordered_map<caf::actor_addr, std::string> lease_of;
  /// When each lease ends unless renewed (one sweep timer for all of them).
  allocation::lease_wheel expiry{std::chrono::milliseconds{100}};
  steady::duration sweep_interval{};

  // Cluster.
  cluster_view view;
  /// Rooms this peer keeps a replica of, by key ("app/room").
  std::unordered_map<std::string, cv1::RoomState> replicas;
  /// Calls for rooms owned elsewhere, collected per owner while a batch is handled.
  batches_by_actor<unary_call> outbox;
  /// Calls forwarded lately, kept for a while: if their owner dies before it answered,
  /// they are routed again (a gateway ignores a second answer to a call: live_call).
  struct forwarded_call {
    std::string owner;
    steady::time_point at;
    unary_call call;
  };
  std::deque<forwarded_call> recent_forwards;
  /// Allocate calls per app that entered the cluster here (quotas.allocations_per_second,
  /// this peer's share).
  std::unordered_map<std::string, apps::token_bucket> allocation_buckets;
  /// Rooms and participants of apps with quotas on the other peers (their last counts),
  /// by peer_id, then app_id.
  std::map<std::string, std::map<std::string, cv1::AppCount, std::less<>>, std::less<>>
    remote_counts;
  /// When leases were last counted for usage metering.
  steady::time_point last_usage_sample{};
  /// Shutting down: rooms are handed off, every call goes to the new owners.
  bool leaving = false;
  caf::response_promise leave_done;
  size_t handoffs_pending = 0;
};

using service_actor = caf::stateful_actor<service_state>;

const apps::app_definition* find_app(service_actor* self, const std::string& app_id) {
  return self->state.catalog->find(app_id);
}

grpc_status unknown_app(const std::string& app_id) {
  return make_status(grpc_code::not_found, "unknown app '" + app_id + "'");
}

/// Starts, updates and stops app_policy actors to match the catalog.
void sync_policies(service_actor* self) {
  auto& st = self->state;
  for (auto it = st.policies.begin(); it != st.policies.end();) {
    if (st.catalog->find(it->first) == nullptr) {
      self->send_exit(it->second, caf::exit_reason::user_shutdown);
      st.policy_apps.erase(it->first);
      st.before_allocation_hooks.erase(it->first);
      it = st.policies.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [app_id, app] : st.catalog->apps()) {
    auto running = st.policies.find(app_id);
    if (running != st.policies.end()) {
      auto& previous = st.policy_apps[app_id];
      if (previous == app)
        continue;
      // Hooks run on a thread of their own: an app that gains or loses its script gets a
      // new policy actor.
      if (previous->hook_script.empty() == app->hook_script.empty()) {
        self->send(running->second, app_definition_atom::value, app);
        if (app->hook_script != previous->hook_script && !app->hook_script.empty())
          st.before_allocation_hooks.insert(app_id); // until the new script says otherwise
        previous = app;
        continue;
      }
      self->send_exit(running->second, caf::exit_reason::user_shutdown);
      st.before_allocation_hooks.erase(app_id);
    }
    app_policy_settings settings;
    settings.app = app;
    settings.webhooks = st.webhooks;
    settings.app_directory = st.settings.app_directory;
    settings.service = caf::actor_cast<caf::actor>(self);
    settings.peer_id = st.settings.peer_id;
    st.policies[app_id] = spawn_app_policy(self->system(), std::move(settings));
    st.policy_apps[app_id] = app;
    // Until the policy has loaded the script and said which points it defines, every
    // Allocate of the app asks it (it answers "no change" for a point it lacks): no call
    // slips past a hook that was just added.
    if (!app->hook_script.empty())
      st.before_allocation_hooks.insert(app_id);
  }
  st.shared_catalog->set_policies(st.policies);
}

/// The call's credentials allow it to act for `app` in `room_id` (any room when empty);
/// otherwise the status to fail it with.
std::optional<grpc_status> refusal(service_actor* self, const apps::app_definition& app,
                                   std::string_view room_id, const call_context& call) {
  auto result = apps::authenticate(*self->state.catalog, app, room_id, call.request_metadata,
                                   std::chrono::system_clock::now());
  switch (result.outcome) {
    case apps::auth_outcome::ok:
      return std::nullopt;
    case apps::auth_outcome::unauthenticated:
      return make_status(grpc_code::unauthenticated, std::move(result.message));
    case apps::auth_outcome::permission_denied:
      return make_status(grpc_code::permission_denied, std::move(result.message));
  }
  return make_status(grpc_code::internal, "authentication");
}

/// The app a call names when the call may act for it; otherwise why not (malformed id:
/// INVALID_ARGUMENT, unknown app: NOT_FOUND, credentials: UNAUTHENTICATED or
/// PERMISSION_DENIED).
std::variant<std::shared_ptr<const apps::app_definition>, grpc_status>
app_or_refusal(service_actor* self, const call_context& call, const std::string& app_id,
               std::string_view room_id = {}) {
  if (auto problem = id_problem("app_id", app_id, max_app_id, is_id_char, id_alphabet);
      !problem.empty())
    return invalid_field("app_id", std::move(problem));
  auto app = self->state.catalog->shared(app_id);
  if (!app)
    return unknown_app(app_id);
  if (auto refused = refusal(self, *app, room_id, call))
    return std::move(*refused);
  return app;
}

/// app_or_refusal, the refusal sent as the call's answer (then null).
std::shared_ptr<const apps::app_definition> app_of_call(service_actor* self, unary_replies& replies,
                                                        const call_context& call,
                                                        const std::string& app_id,
                                                        std::string_view room_id = {}) {
  auto found = app_or_refusal(self, call, app_id, room_id);
  if (auto* refused = std::get_if<grpc_status>(&found)) {
    replies.fail(call, std::move(*refused));
    return nullptr;
  }
  return std::get<0>(std::move(found));
}

/// Adds the needs of `more` to `needs`.
void merge_features(allocation::feature_needs& needs, const allocation::feature_needs& more) {
  needs.relay = needs.relay || more.relay;
  needs.recording = needs.recording || more.recording;
  needs.e2ee = needs.e2ee || more.e2ee;
  for (const auto& codec : more.codecs)
    if (std::find(needs.codecs.begin(), needs.codecs.end(), codec) == needs.codecs.end())
      needs.codecs.push_back(codec);
}

/// Where and for which app a client is placed (Allocate, Candidates); the warning, if any,
/// goes back to the client.
place_query query_for(service_actor* self, const av1::ClientLocation& location,
                      std::shared_ptr<const apps::app_definition> app, std::string& warning) {
  auto position = locate(location, self->state.settings.locator.get());
  place_query query;
  query.request.client = position.point;
  query.at_fallback = position.at_fallback;
  query.request.app = &app->placement;
  merge_features(query.request.features, app->required_features);
  query.app = std::shared_ptr<const allocation::app_policy>(app, &app->placement);
  warning = std::move(position.warning);
  return query;
}

// --- the cluster ----------------------------------------------------------------------

/// The live peer that owns `key` when it is not this one (or this one is leaving).
const peer_handle* remote_owner(service_actor* self, std::string_view key) {
  auto& st = self->state;
  if (st.view.live.empty())
    return nullptr;
  auto holders = st.view.holders_of(key);
  if (holders.empty() || holders.front()->peer_id == st.view.self_id)
    return nullptr;
  return holders.front();
}

/// Sends `call` on to the owner of `key` when that is another peer; true if it did. The
/// owner answers the call's gateway directly.
bool forward(service_actor* self, unary_call& call, std::string_view key) {
  auto& st = self->state;
  auto hops =
    std::count_if(call.context.request_metadata.begin(), call.context.request_metadata.end(),
                  [](const auto& entry) { return entry.first == forwarded_by_key; });
  if (hops >= max_forward_hops)
    return false;
  const auto* owner = remote_owner(self, key);
  if (owner == nullptr || !owner->allocation_service)
    return false;
  spdlog::debug("{} for {}: forwarded to peer {}", call.context.path, key, owner->peer_id);
  call.context.request_metadata.emplace_back(std::string{forwarded_by_key}, st.settings.peer_id);
  call.context.deadline_ns = 0; // steady clocks differ between machines; the gateway enforces it
  auto now = steady::now();
  while (!st.recent_forwards.empty() && now - st.recent_forwards.front().at > forward_memory)
    st.recent_forwards.pop_front();
  st.recent_forwards.push_back({owner->peer_id, now, call});
  batch_for(st.outbox, owner->allocation_service).push_back(std::move(call));
  return true;
}

void handle(service_actor* self, unary_replies& replies, unary_call& call);
void flush_outbox(service_actor* self);

/// Routes again the calls lately forwarded to peers that are no longer alive: the owner
/// may have died with them unanswered.
void reroute_orphaned_forwards(service_actor* self) {
  auto& st = self->state;
  std::vector<unary_call> orphans;
  std::erase_if(st.recent_forwards, [&](auto& forwarded) {
    if (st.view.find(forwarded.owner) != nullptr)
      return false;
    auto& metadata = forwarded.call.context.request_metadata;
    // This peer's own hop comes off: the call is as it was when it arrived here.
    for (auto it = metadata.rbegin(); it != metadata.rend(); ++it)
      if (it->first == forwarded_by_key && it->second == st.settings.peer_id) {
        metadata.erase(std::next(it).base());
        break;
      }
    orphans.push_back(std::move(forwarded.call));
    return true;
  });
  if (orphans.empty())
    return;
  spdlog::info("allocation: routing {} call(s) again: the peer they went to is gone",
               orphans.size());
  unary_replies replies{self};
  for (auto& call : orphans)
    handle(self, replies, call);
  flush_outbox(self);
}

void flush_outbox(service_actor* self) {
  for (auto& [owner, calls] : self->state.outbox)
    self->send(owner, call_unary_atom::value, std::move(calls));
  self->state.outbox.clear();
}

/// The room key a lease id names: lease ids are "app/room/random".
std::string_view room_key_of_lease(std::string_view lease_id) {
  auto slash = lease_id.rfind('/');
  return slash == std::string_view::npos ? std::string_view{} : lease_id.substr(0, slash);
}

/// Tells a room which peers replicate it.
void send_replicas(service_actor* self, const std::string& key, const caf::actor& room) {
  auto& st = self->state;
  std::vector<caf::actor> replicas;
  if (!st.view.live.empty()) {
    auto holders = st.view.holders_of(key);
    for (size_t i = 1; i < holders.size(); ++i)
      if (holders[i]->allocation_service)
        replicas.push_back(holders[i]->allocation_service);
  }
  self->send(room, cluster_view_atom::value, std::move(replicas), st.view.self_writer());
}

void track_room(service_actor* self, const std::string& key, const caf::actor& room) {
  auto& st = self->state;
  self->monitor(room);
  st.rooms[key] = room;
  st.room_of[room.address()] = {key, 0};
  send_replicas(self, key, room);
}

/// Runs the room from `state` here (this peer owns it now).
void take_over(service_actor* self, const std::string& key, cv1::RoomState state) {
  auto& st = self->state;
  if (auto it = st.rooms.find(key); it != st.rooms.end()) {
    self->request(it->second, caf::infinite, absorb_atom::value, std::move(state))
      .then([](bool) {}, [](caf::error&) {});
    return;
  }
  if (state.closed())
    return;
  auto room = spawn_restored_room(self->system(), std::move(state), st.room_settings_);
  track_room(self, key, room);
  observability::metrics().room_failovers.Increment();
}

/// Membership changed (or this peer leaves): rooms owned elsewhere now are handed off,
/// replicas of rooms this peer owns now are taken over, and replicas no longer held here
/// go to their owner (it may lack them: a partition, a dead replica).
void rebalance(service_actor* self) {
  auto& st = self->state;
  for (const auto& [key, room] : st.rooms) {
    if (const auto* owner = remote_owner(self, key); owner && owner->allocation_service) {
      ++st.handoffs_pending;
      self->send(room, handoff_atom::value, owner->allocation_service);
    } else {
      send_replicas(self, key, room);
    }
  }
  for (auto it = st.replicas.begin(); it != st.replicas.end();) {
    auto holders = st.view.holders_of(it->first);
    bool owner_here = !holders.empty() && holders.front()->peer_id == st.view.self_id;
    bool replica_here = std::any_of(holders.begin(), holders.end(),
                                    [&](const auto* h) { return h->peer_id == st.view.self_id; });
    if (owner_here) {
      spdlog::info("allocation: taking over room {} ({} members)", it->first,
                   it->second.members_size());
      take_over(self, it->first, std::move(it->second));
      it = st.replicas.erase(it);
    } else if (!replica_here && !holders.empty() && holders.front()->allocation_service) {
      auto key = it->first;
      self
        ->request(holders.front()->allocation_service, answer_timeout, absorb_atom::value, key,
                  it->second.SerializeAsString(), uint32_t{0})
        .then([](bool) {},
              [self, key](caf::error& err) {
                spdlog::warn("allocation: room {} did not reach its owner: {}", key,
                             self->system().render(err));
              });
      it = st.replicas.erase(it);
    } else {
      ++it;
    }
  }
}

void handoff_finished(service_actor* self) {
  auto& st = self->state;
  if (st.handoffs_pending > 0)
    --st.handoffs_pending;
  if (st.leaving && st.handoffs_pending == 0 && st.leave_done.pending())
    st.leave_done.deliver(true);
}

/// The placement query of an Allocate request that passed validation, or of a member's
/// request in a room taken over from another peer.
place_query query_of_request(std::shared_ptr<const apps::app_definition> app,
                             const allocation::ip_locator* locator,
                             const av1::AllocateRequest& request, std::string& warning) {
  auto position = locate(request.location(), locator);
  place_query query;
  query.request.client = position.point;
  query.at_fallback = position.at_fallback;
  warning = std::move(position.warning);
  for (const auto& probe : request.probes())
    query.request.probes.push_back({probe.node_id(), probe.rtt_ms()});
  std::string problem;
  if (auto needs = allocation::parse_features(
        {request.required_features().begin(), request.required_features().end()}, problem))
    query.request.features = std::move(*needs);
  merge_features(query.request.features, app->required_features);
  const auto* role = app->role(request.role().empty() ? "participant" : request.role());
  query.request.spread = role != nullptr && role->spread;
  query.request.app = &app->placement;
  query.app = std::shared_ptr<const allocation::app_policy>(app, &app->placement);
  return query;
}

caf::actor room_for(service_actor* self, const std::string& app_id, const std::string& room_id) {
  auto& st = self->state;
  auto key = node_room_id(app_id, room_id);
  if (auto it = st.rooms.find(key); it != st.rooms.end())
    return it->second;
  if (auto it = st.replicas.find(key); it != st.replicas.end() && !it->second.closed()) {
    // This peer owns the room now and holds its state (the view changed, or the state
    // arrived before the news that made this peer the owner).
    auto state = std::move(it->second);
    st.replicas.erase(it);
    take_over(self, key, std::move(state));
    return st.rooms.at(key);
  }
  auto room = spawn_room(self->system(), app_id, room_id, st.room_settings_);
  track_room(self, key, room);
  return room;
}

/// Sets the lease's expiry lease_ttl from now.
void renew(service_actor* self, const std::string& lease_id) {
  auto& st = self->state;
  auto ttl = st.room_settings_->lease_ttl;
  if (auto slash = lease_id.find('/'); slash != std::string::npos)
    if (const auto* app = st.catalog->find(std::string_view{lease_id}.substr(0, slash));
        app != nullptr && app->lease_ttl.count() > 0)
      ttl = app->lease_ttl;
  st.expiry.renew(lease_id, steady::now() + ttl);
}

/// Ends the leases whose time is up: their sessions tell their rooms.
void sweep_leases(service_actor* self) {
  auto& st = self->state;
  for (const auto& lease_id : st.expiry.expire(steady::now())) {
    auto it = st.leases.find(lease_id);
    if (it == st.leases.end())
      continue;
    self->send(it->second, timeout_atom::value);
    st.lease_of.erase(it->second.address());
    st.leases.erase(it);
  }
}

/// Forgets a lease that ended otherwise (released, its session gone).
void forget_lease(service_state& st, const std::string& lease_id) {
  if (auto it = st.leases.find(lease_id); it != st.leases.end()) {
    st.lease_of.erase(it->second.address());
    st.leases.erase(it);
  }
  st.expiry.forget(lease_id);
}

/// Renews and returns the lease's session, or nothing for an unknown lease.
caf::actor find_lease(service_actor* self, const std::string& lease_id, bool renew_it) {
  auto it = self->state.leases.find(lease_id);
  if (it == self->state.leases.end())
    return {};
  if (renew_it)
    renew(self, lease_id);
  return it->second;
}

grpc_status unknown_lease(const std::string& lease_id) {
  return make_status(grpc_code::not_found,
                     "unknown, released or expired lease '" + lease_id.substr(0, 64) + "'");
}

// --- quotas ------------------------------------------------------------------------------

/// How often held leases are counted as participant-minutes: the error per lease is at
/// most this much at its start and end.
constexpr auto usage_sample_interval = std::chrono::seconds{5};

/// How often a peer sends its counts of rooms and participants of apps with quotas: the
/// cluster-wide totals lag by about this much (a quota may be overrun by what the other
/// peers admit meanwhile).
constexpr auto counts_interval = std::chrono::milliseconds{500};

bool has_count_quotas(const apps::app_definition& app) {
  return app.config.quotas().max_rooms() > 0 || app.config.quotas().max_participants() > 0;
}

/// Rooms this peer owns, and their leases, of `app_id`.
cv1::AppCount local_count(const service_state& st, const std::string& app_id) {
  cv1::AppCount count;
  count.set_app_id(app_id);
  const std::string prefix = app_id + "/";
  for (const auto& [key, room] : st.rooms)
    if (key.starts_with(prefix))
      count.set_rooms(count.rooms() + 1);
  for (const auto& [lease_id, session] : st.leases)
    if (lease_id.starts_with(prefix))
      count.set_participants(count.participants() + 1);
  return count;
}

/// Why the cluster cannot take another Allocate of `app` (one that needs a new room when
/// `new_room`), or nothing: the app's room and participant quotas, counted over every
/// live peer.
std::optional<grpc_status> count_quota_refusal(service_actor* self, const apps::app_definition& app,
                                               bool new_room) {
  if (!has_count_quotas(app))
    return std::nullopt;
  auto& st = self->state;
  const auto& quotas = app.config.quotas();
  auto total = local_count(st, app.config.app_id());
  for (const auto& [peer, counts] : st.remote_counts)
    if (auto it = counts.find(app.config.app_id()); it != counts.end()) {
      total.set_rooms(total.rooms() + it->second.rooms());
      total.set_participants(total.participants() + it->second.participants());
    }
  const std::string app_name = "app '" + app.config.app_id() + "'";
  // No retry time: places come back when rooms end and participants leave.
  auto exceeded = [&](std::string reason, std::string quota, uint64_t limit, uint64_t now,
                      std::string message) {
    return transport::with_error_info(
      make_status(grpc_code::resource_exhausted, std::move(message)), std::move(reason),
      {{"app_id", app.config.app_id()},
       {"quota", "quotas." + quota},
       {"limit", std::to_string(limit)},
       {"current", std::to_string(now)}});
  };
  if (new_room && quotas.max_rooms() > 0 && total.rooms() >= quotas.max_rooms())
    return exceeded("ROOM_QUOTA_EXCEEDED", "max_rooms", quotas.max_rooms(), total.rooms(),
                    app_name + " has " + std::to_string(total.rooms()) +
                      " rooms open, its quota (quotas.max_rooms " +
                      std::to_string(quotas.max_rooms()) + ")");
  if (quotas.max_participants() > 0 && total.participants() >= quotas.max_participants())
    return exceeded("PARTICIPANT_QUOTA_EXCEEDED", "max_participants", quotas.max_participants(),
                    total.participants(),
                    app_name + " has " + std::to_string(total.participants()) +
                      " participants, its quota (quotas.max_participants " +
                      std::to_string(quotas.max_participants()) + ")");
  return std::nullopt;
}

/// Takes a token of the app's allocation rate, this peer's share of it (the rate over the
/// live peers: clients reach the peers through a balancer, so each sees about its share).
std::optional<grpc_status> rate_refusal(service_actor* self, const apps::app_definition& app) {
  const auto& quotas = app.config.quotas();
  if (quotas.allocations_per_second() <= 0)
    return std::nullopt;
  auto& st = self->state;
  const double peers = std::max<double>(1, static_cast<double>(st.view.live.size()));
  const double rate = quotas.allocations_per_second() / peers;
  const double burst =
    (quotas.allocation_burst() > 0 ? quotas.allocation_burst() : quotas.allocations_per_second()) /
    peers;
  auto now = steady::now();
  auto [it, fresh] =
    st.allocation_buckets.try_emplace(app.config.app_id(), rate, std::max(burst, 1.0), now);
  if (!fresh && (it->second.rate() != rate || it->second.burst() != std::max(burst, 1.0)))
    it->second.reshape(rate, std::max(burst, 1.0), now);
  if (it->second.try_take(now))
    return std::nullopt;
  const double wait_s = it->second.wait_s(now);
  char wait[32];
  std::snprintf(wait, sizeof wait, "%.2f", wait_s);
  char limit[32];
  std::snprintf(limit, sizeof limit, "%g", quotas.allocations_per_second());
  return transport::with_error_info(
    make_status(grpc_code::resource_exhausted,
                "app '" + app.config.app_id() + "' is over its allocation rate (quotas." +
                  "allocations_per_second " + limit + "); retry in " + wait + " s"),
    "RATE_LIMITED",
    {{"app_id", app.config.app_id()}, {"quota", "quotas.allocations_per_second"}, {"limit", limit}},
    std::chrono::milliseconds{static_cast<int64_t>(std::ceil(wait_s * 1000))});
}

/// Participant-minutes of the leases held here since the last sample, per app, to the
/// app directory (usage metering). Sampling: a lease that comes and goes between two
/// samples is not counted, one held across a sample counts the whole interval.
void sample_usage(service_actor* self) {
  auto& st = self->state;
  auto now = steady::now();
  double minutes =
    std::chrono::duration<double, std::ratio<60>>(now - st.last_usage_sample).count();
  st.last_usage_sample = now;
  if (!st.settings.app_directory)
    return;
  std::map<std::string_view, uint64_t> leases;
  for (const auto& [lease_id, session] : st.leases)
    if (auto slash = lease_id.find('/'); slash != std::string::npos)
      ++leases[std::string_view{lease_id}.substr(0, slash)];
  for (const auto& [app_id, count] : leases) {
    chroom::apps::v1::UsageCounters counters;
    counters.set_participant_minutes(static_cast<double>(count) * minutes);
    self->send(st.settings.app_directory, usage_atom::value, std::string{app_id},
               counters.SerializeAsString());
  }
}

/// Sends this peer's counts of the apps with quotas to the other peers.
void send_counts(service_actor* self) {
  auto& st = self->state;
  cv1::AppCounts counts;
  counts.set_peer_id(st.settings.peer_id);
  for (const auto& [app_id, app] : st.catalog->apps())
    if (has_count_quotas(*app))
      *counts.add_counts() = local_count(st, app_id);
  if (counts.counts().empty())
    return;
  auto bytes = counts.SerializeAsString();
  for (const auto& peer : st.view.live)
    if (peer.peer_id != st.view.self_id && peer.allocation_service)
      self->send(peer.allocation_service, app_counts_atom::value, bytes);
}

/// Checks an Allocate and hands it to its room (an allocation_request) or to the room's
/// owner peer; otherwise the status to fail it with. `app_id` is set once the app is known.
std::optional<grpc_status> start_allocation(service_actor* self, unary_call& call,
                                            steady::time_point started, std::string& app_id) {
  auto& st = self->state;
  av1::AllocateRequest request;
  if (!request.ParseFromString(call.request))
    return make_status(grpc_code::invalid_argument,
                       "request is not a valid " + request.GetTypeName() + " message");
  if (auto refused = room_key_refusal(request.app_id(), request.room_id()))
    return std::move(*refused);
  auto found = app_or_refusal(self, call.context, request.app_id(), request.room_id());
  if (auto* refused = std::get_if<grpc_status>(&found))
    return std::move(*refused);
  auto app = std::get<0>(std::move(found));
  app_id = request.app_id();
  if (auto problem = id_problem("client_id", request.client_id(), max_client_id, is_client_char,
                                "A-Z a-z 0-9 . _ @ -");
      !problem.empty())
    return invalid_field("client_id", std::move(problem));
  std::string role = request.role().empty() ? "participant" : request.role();
  if (std::find(std::begin(roles), std::end(roles), role) == std::end(roles))
    return invalid_field("role", "role must be host, presenter, participant or viewer, got '" +
                                   role.substr(0, 32) + "'");
  // With a before_allocation hook the role is checked once the hook has had its say.
  const bool hooked = st.before_allocation_hooks.count(request.app_id()) > 0;
  if (!hooked)
    if (auto refused = role_refusal(*app, role))
      return std::move(*refused);
  if (auto problem = location_problem(request.location()); !problem.empty())
    return invalid_field("location", std::move(problem));
  if (request.probes_size() > max_probes)
    return invalid_field("probes", "at most " + std::to_string(max_probes) + " probes");
  for (int i = 0; i < request.probes_size(); ++i) {
    const auto& probe = request.probes(i);
    auto field = "probes[" + std::to_string(i) + "]";
    if (probe.node_id().empty() || probe.node_id().size() > 128)
      return invalid_field(field + ".node_id", "probes[].node_id must be 1 to 128 characters");
    if (!std::isfinite(probe.rtt_ms()) || probe.rtt_ms() <= 0 || probe.rtt_ms() > max_probe_rtt_ms)
      return invalid_field(field + ".rtt_ms", "probes[].rtt_ms must be above 0 and at most " +
                                                std::to_string(static_cast<int>(max_probe_rtt_ms)));
  }
  allocation::feature_needs needs;
  if (auto problem = features_problem(request.required_features(), needs); !problem.empty())
    return invalid_field("required_features", std::move(problem));
  if (request.expected_kbps() > max_expected_kbps)
    return invalid_field("expected_kbps",
                         "expected_kbps is at most " + std::to_string(max_expected_kbps));
  // The allocation rate is counted where a call enters the cluster.
  bool entered_here =
    std::none_of(call.context.request_metadata.begin(), call.context.request_metadata.end(),
                 [](const auto& entry) { return entry.first == forwarded_by_key; });
  if (entered_here)
    if (auto refused = rate_refusal(self, *app))
      return std::move(*refused);
  if (forward(self, call, node_room_id(request.app_id(), request.room_id()))) {
    app_id.clear(); // the owner counts it
    return std::nullopt;
  }
  if (auto refused = count_quota_refusal(
        self, *app, st.rooms.count(node_room_id(request.app_id(), request.room_id())) == 0))
    return std::move(*refused);

  allocation_ask ask;
  std::string warning;
  ask.query = query_of_request(app, st.settings.locator.get(), request, warning);
  ask.client_id = request.client_id();
  ask.role = std::move(role);
  ask.expected_kbps = request.expected_kbps();
  ask.query.alternates = st.room_settings_->alternates;
  if (!warning.empty())
    ask.warnings.push_back(std::move(warning));
  ask.request = request;
  if (hooked)
    if (auto it = st.policies.find(request.app_id()); it != st.policies.end()) {
      ask.hook = it->second;
      ask.app = app;
      const auto& location = request.location();
      if (!location.has_point() && !location.ip().empty() && st.settings.locator)
        if (auto found = st.settings.locator->locate(location.ip()))
          ask.client_country = found->country;
    }
  auto room = room_for(self, request.app_id(), request.room_id());
  if (!ask.hook) {
    // Nothing to do between the service and the room: the room answers the client.
    ++st.room_of[room.address()].direct_asks;
    self->send(room, allocate_atom::value, std::move(ask),
               direct_allocation{std::move(call.context), started});
    return std::nullopt;
  }
  self->spawn(allocation_request, std::move(call.context), std::move(call.request), std::move(ask),
              request.app_id(), request.room_id(), room, caf::actor_cast<caf::actor>(self),
              st.settings.room.registry, started);
  return std::nullopt;
}

void allocate(service_actor* self, unary_replies& replies, unary_call& call) {
  auto started = steady::now();
  std::string app_id;
  if (auto refused = start_allocation(self, call, started, app_id)) {
    // Refused before anything was moved out of the call.
    count_allocation(call.context, app_id, refused->code, started);
    replies.fail(call.context, std::move(*refused));
  }
}

// --- rooms for operators (AdminService ListRooms, GetRoom, MigrateRoom) ----------------

/// How long an operator's room call waits for rooms and peers.
constexpr auto admin_timeout = std::chrono::seconds{5};
/// Peer hops an operator's room call may take to the room's owner.
constexpr uint32_t max_admin_hops = 2;

using room_info_list = std::vector<std::string>;

/// The rooms this peer owns that pass the filters (app id, a node they span), as
/// serialized admin RoomInfo, each room asked for its state.
caf::result<room_info_list> local_rooms(service_actor* self, const std::string& app_id,
                                        const std::string& node_id) {
  auto& st = self->state;
  std::vector<caf::actor> rooms;
  for (const auto& [key, room] : st.rooms)
    if (app_id.empty() || key.compare(0, app_id.size() + 1, app_id + "/") == 0)
      rooms.push_back(room);
  if (rooms.empty())
    return room_info_list{};
  auto promise = self->make_response_promise<room_info_list>();
  auto gathered = std::make_shared<room_info_list>();
  auto pending = std::make_shared<size_t>(rooms.size());
  auto peer_id = st.settings.peer_id;
  for (const auto& room : rooms) {
    auto one_done = [promise, gathered, pending]() mutable {
      if (--*pending == 0)
        promise.deliver(std::move(*gathered));
    };
    self->request(room, admin_timeout, get_room_atom::value)
      .then(
        [=](grpc_status& status, av1::Room& room) mutable {
          bool on_node = node_id.empty() || std::any_of(room.nodes().begin(), room.nodes().end(),
                                                        [&](const av1::RoomNode& n) {
                                                          return n.node_id() == node_id;
                                                        });
          if (status.is_ok() && on_node) {
            chroom::admin::v1::RoomInfo info;
            *info.mutable_room() = std::move(room);
            info.set_owner_peer_id(peer_id);
            gathered->push_back(info.SerializeAsString());
          }
          one_done();
        },
        [one_done](caf::error&) mutable { one_done(); }); // the room just closed
  }
  return promise;
}

/// Every live peer's local_rooms, merged.
caf::result<room_info_list> cluster_rooms(service_actor* self, const std::string& app_id,
                                          const std::string& node_id) {
  auto& st = self->state;
  std::vector<caf::actor> services;
  for (const auto& peer : st.view.live)
    if (peer.peer_id != st.view.self_id && peer.allocation_service)
      services.push_back(peer.allocation_service);
  services.push_back(caf::actor_cast<caf::actor>(self));
  auto promise = self->make_response_promise<room_info_list>();
  auto gathered = std::make_shared<room_info_list>();
  auto pending = std::make_shared<size_t>(services.size());
  for (const auto& service : services) {
    auto one_done = [promise, gathered, pending]() mutable {
      if (--*pending == 0)
        promise.deliver(std::move(*gathered));
    };
    self->request(service, admin_timeout, local_rooms_atom::value, app_id, node_id)
      .then(
        [gathered, one_done](room_info_list& rooms) mutable {
          gathered->insert(gathered->end(), std::make_move_iterator(rooms.begin()),
                           std::make_move_iterator(rooms.end()));
          one_done();
        },
        [self, one_done](caf::error& err) mutable {
          // A peer that does not answer is missing from the list (it is dying, or new).
          spdlog::warn("ListRooms: a peer did not answer: {}", self->system().render(err));
          one_done();
        });
  }
  return promise;
}

/// Sends an operator's room call to the room's owner when that is another peer (the
/// answer comes back through this peer); true if it did.
template <class... Ts>
bool relay_to_owner(service_actor* self, const std::string& key, uint32_t hops, Ts&&... xs) {
  const auto* owner = remote_owner(self, key);
  if (owner == nullptr || !owner->allocation_service || hops >= max_admin_hops)
    return false;
  auto promise = self->make_response_promise();
  self->request(owner->allocation_service, admin_timeout, std::forward<Ts>(xs)..., hops + 1)
    .then(
      [promise](grpc_status& status, std::string& bytes) mutable {
        promise.deliver(std::move(status), std::move(bytes));
      },
      [self, promise](caf::error& err) mutable {
        promise.deliver(make_status(grpc_code::unavailable,
                                    "the room's owner peer: " + self->system().render(err)),
                        std::string{});
      });
  return true;
}

/// The room actor of a room this peer owns, or null with NOT_FOUND in `refused`.
caf::actor owned_room(service_actor* self, const std::string& app_id, const std::string& room_id,
                      grpc_status& refused) {
  auto& rooms = self->state.rooms;
  if (auto it = rooms.find(node_room_id(app_id, room_id)); it != rooms.end())
    return it->second;
  refused = make_status(grpc_code::not_found,
                        "room '" + room_id + "' of app '" + app_id + "' has no participant");
  return {};
}

/// GetRoom for operators: the room from its owner, as serialized admin RoomInfo.
caf::result<grpc_status, std::string> admin_room(service_actor* self, const std::string& app_id,
                                                 const std::string& room_id, uint32_t hops) {
  if (relay_to_owner(self, node_room_id(app_id, room_id), hops, admin_room_atom::value, app_id,
                     room_id))
    return caf::delegated<grpc_status, std::string>{};
  grpc_status refused;
  auto room = owned_room(self, app_id, room_id, refused);
  if (!room)
    return {std::move(refused), std::string{}};
  auto promise = self->make_response_promise();
  self->request(room, admin_timeout, get_room_atom::value)
    .then(
      [promise, peer_id = self->state.settings.peer_id](grpc_status& status,
                                                        av1::Room& room) mutable {
        std::string bytes;
        if (status.is_ok()) {
          chroom::admin::v1::RoomInfo info;
          *info.mutable_room() = std::move(room);
          info.set_owner_peer_id(peer_id);
          bytes = info.SerializeAsString();
        }
        promise.deliver(std::move(status), std::move(bytes));
      },
      [self, promise](caf::error& err) mutable {
        promise.deliver(make_status(grpc_code::unavailable, "room: " + self->system().render(err)),
                        std::string{});
      });
  return caf::delegated<grpc_status, std::string>{};
}

/// MigrateRoom: the room's owner moves its participants (serialized MigrateRoomResponse).
caf::result<grpc_status, std::string> migrate_room(service_actor* self, const std::string& app_id,
                                                   const std::string& room_id,
                                                   const std::string& to_node_id,
                                                   const std::string& from_node_id, uint32_t hops) {
  if (relay_to_owner(self, node_room_id(app_id, room_id), hops, migrate_atom::value, app_id,
                     room_id, to_node_id, from_node_id))
    return caf::delegated<grpc_status, std::string>{};
  grpc_status refused;
  auto room = owned_room(self, app_id, room_id, refused);
  if (!room)
    return {std::move(refused), std::string{}};
  auto promise = self->make_response_promise();
  // Placement takes as long as it takes (nodes answer within command_timeout).
  self->request(room, caf::infinite, migrate_atom::value, to_node_id, from_node_id)
    .then(
      [promise, peer_id = self->state.settings.peer_id](grpc_status& status,
                                                        std::string& bytes) mutable {
        if (status.is_ok()) {
          chroom::admin::v1::MigrateRoomResponse response;
          response.ParseFromString(bytes);
          response.mutable_room()->set_owner_peer_id(peer_id);
          bytes = response.SerializeAsString();
        }
        promise.deliver(std::move(status), std::move(bytes));
      },
      [self, promise](caf::error& err) mutable {
        promise.deliver(make_status(grpc_code::unavailable, "room: " + self->system().render(err)),
                        std::string{});
      });
  return caf::delegated<grpc_status, std::string>{};
}

void candidates(service_actor* self, unary_replies& replies, unary_call& call) {
  auto& st = self->state;
  av1::CandidatesRequest request;
  if (!replies.parse(call, request))
    return;
  auto invalid = [&](std::string problem) {
    replies.fail(call.context, make_status(grpc_code::invalid_argument, std::move(problem)));
  };
  auto app = app_of_call(self, replies, call.context, request.app_id());
  if (!app)
    return;
  if (auto problem = location_problem(request.location()); !problem.empty())
    return invalid(std::move(problem));
  if (request.max_candidates() > max_candidates)
    return invalid("max_candidates is at most " + std::to_string(max_candidates));
  candidates_query query;
  std::string warning;
  query.query = query_for(self, request.location(), std::move(app), warning);
  if (auto problem = features_problem(request.required_features(), query.query.request.features);
      !problem.empty())
    return invalid(std::move(problem));
  query.count = request.max_candidates() == 0 ? default_candidates : request.max_candidates();
  self->request(st.settings.room.registry, answer_timeout, candidates_atom::value, std::move(query))
    .then(
      [self, context = call.context, warning](candidates_answer& answer) {
        av1::CandidatesResponse response;
        for (auto& candidate : answer.candidates)
          *response.add_candidates() = std::move(candidate);
        if (!warning.empty())
          response.add_warnings(warning);
        unary_replies{self}.reply(context, response);
      },
      [self, context = call.context](caf::error& err) {
        unary_replies{self}.fail(
          context, make_status(grpc_code::unavailable, "registry: " + self->system().render(err)));
      });
}

/// A lease call whose room does not run here: while a room moves between peers its
/// state may arrive a moment after the call. Looked up again a few times before NOT_FOUND.
constexpr std::string_view lease_retry_key = "chroom-lease-retry";
constexpr int max_lease_retries = 5;
constexpr auto lease_retry_delay = std::chrono::milliseconds{200};

/// Finds the session of `lease_id` and calls `found(session)`, or fails the call. The
/// lease is asked of its room when the room runs here but has not registered it yet (it
/// was just taken over); a room not here yet is waited for.
template <class Found>
void with_session(service_actor* self, unary_replies& replies, unary_call& call,
                  const std::string& lease_id, bool renew_it, Found found) {
  auto& st = self->state;
  if (auto session = find_lease(self, lease_id, renew_it))
    return found(session);
  auto key = std::string{room_key_of_lease(lease_id)};
  auto room = st.rooms.find(key);
  if (room == st.rooms.end()) {
    auto tries = call.context.metadata_value(lease_retry_key);
    int attempt = tries.empty() ? 0 : tries.front() - '0';
    if (key.empty() || attempt >= max_lease_retries)
      return replies.fail(call.context, unknown_lease(lease_id));
    std::erase_if(call.context.request_metadata,
                  [](const auto& entry) { return entry.first == lease_retry_key; });
    call.context.request_metadata.emplace_back(std::string{lease_retry_key},
                                               std::to_string(attempt + 1));
    send_later(self, lease_retry_delay, call_unary_atom::value,
               std::vector<unary_call>{std::move(call)});
    return;
  }
  self->request(room->second, caf::infinite, lease_open_atom::value, lease_id)
    .then(
      [self, context = call.context, lease_id, found](const caf::actor& session) mutable {
        if (!session)
          return unary_replies{self}.fail(context, unknown_lease(lease_id));
        found(session);
      },
      [self, context = call.context, lease_id](caf::error&) {
        unary_replies{self}.fail(context, unknown_lease(lease_id));
      });
}

/// The call's credentials allow it to act on the lease's app and room (lease ids are
/// "app/room/random"); otherwise the call failed. An id of no known app is left to the
/// lease lookup (NOT_FOUND), so that probing lease ids tells nothing about apps.
bool may_touch_lease(service_actor* self, unary_replies& replies, const unary_call& call,
                     std::string_view lease_id) {
  auto first = lease_id.find('/');
  auto key = room_key_of_lease(lease_id);
  if (first == std::string_view::npos || key.size() <= first)
    return true;
  const auto* app = self->state.catalog->find(lease_id.substr(0, first));
  if (app == nullptr)
    return true;
  if (auto refused = refusal(self, *app, key.substr(first + 1), call.context)) {
    replies.fail(call.context, std::move(*refused));
    return false;
  }
  return true;
}

void keep_alive(service_actor* self, unary_replies& replies, unary_call& call) {
  av1::KeepAliveRequest request;
  if (!replies.parse(call, request))
    return;
  if (!may_touch_lease(self, replies, call, request.lease_id()))
    return;
  if (forward(self, call, room_key_of_lease(request.lease_id())))
    return;
  auto context = call.context;
  with_session(self, replies, call, request.lease_id(), true,
               [self, context, lease = request.lease_id()](const caf::actor& session) {
                 self->request(session, caf::infinite, keep_alive_atom::value)
                   .then(
                     [self, context](av1::KeepAliveResponse& response) {
                       unary_replies{self}.reply(
                         context, response, owner_hint(self->state.room_settings_->owner_address));
                     },
                     [self, context, lease](caf::error&) {
                       unary_replies{self}.fail(context, unknown_lease(lease));
                     });
               });
}

void release(service_actor* self, unary_replies& replies, unary_call& call) {
  av1::ReleaseRequest request;
  if (!replies.parse(call, request))
    return;
  if (!may_touch_lease(self, replies, call, request.lease_id()))
    return;
  if (forward(self, call, room_key_of_lease(request.lease_id())))
    return;
  auto context = call.context;
  with_session(self, replies, call, request.lease_id(), false,
               [self, context, lease = request.lease_id()](const caf::actor& session) {
                 // Forgotten now, so a second Release is NOT_FOUND even before the session
                 // has ended.
                 forget_lease(self->state, lease);
                 self->request(session, caf::infinite, release_atom::value)
                   .then(
                     [self, context](grpc_status&) {
                       unary_replies{self}.reply(
                         context, av1::ReleaseResponse{},
                         owner_hint(self->state.room_settings_->owner_address));
                     },
                     [self, context, lease](caf::error&) {
                       unary_replies{self}.fail(context, unknown_lease(lease));
                     });
               });
}

void get_room(service_actor* self, unary_replies& replies, unary_call& call) {
  auto& st = self->state;
  av1::GetRoomRequest request;
  if (!replies.parse(call, request))
    return;
  if (auto refused = room_key_refusal(request.app_id(), request.room_id()))
    return replies.fail(call.context, std::move(*refused));
  if (!app_of_call(self, replies, call.context, request.app_id(), request.room_id()))
    return;
  if (forward(self, call, node_room_id(request.app_id(), request.room_id())))
    return;
  auto it = st.rooms.find(node_room_id(request.app_id(), request.room_id()));
  if (it == st.rooms.end())
    return replies.fail(
      call.context, make_status(grpc_code::not_found, "room '" + request.room_id() + "' of app '" +
                                                        request.app_id() + "' has no participant"));
  self->request(it->second, answer_timeout, get_room_atom::value)
    .then(
      [self, context = call.context](grpc_status& status, av1::Room& room) {
        if (!status.is_ok())
          return unary_replies{self}.fail(context, std::move(status));
        av1::GetRoomResponse response;
        *response.mutable_room() = std::move(room);
        unary_replies{self}.reply(context, response,
                                  owner_hint(self->state.room_settings_->owner_address));
      },
      [self, context = call.context](caf::error&) {
        unary_replies{self}.fail(context,
                                 make_status(grpc_code::not_found, "the room has no participant"));
      });
}

void handle(service_actor* self, unary_replies& replies, unary_call& call) {
  observability::request_scope scope{call.context.metadata_value(observability::request_id_key)};
  const auto& path = call.context.path;
  auto method = std::string_view{path}.substr(path.rfind('/') + 1);
  if (method == "Allocate")
    allocate(self, replies, call);
  else if (method == "KeepAlive")
    keep_alive(self, replies, call);
  else if (method == "Release")
    release(self, replies, call);
  else if (method == "Candidates")
    candidates(self, replies, call);
  else if (method == "GetRoom")
    get_room(self, replies, call);
  else
    replies.fail(call.context,
                 make_status(grpc_code::unimplemented, "unknown or not a unary method " + path));
}

caf::behavior allocation_service(service_actor* self, allocation_service_settings settings) {
  log_exceptions(self, "allocation service");
  auto& st = self->state;
  st.settings = std::move(settings);
  st.catalog =
    st.settings.catalog ? st.settings.catalog : std::make_shared<const apps::app_catalog>();
  st.shared_catalog = std::make_shared<catalog_holder>();
  st.shared_catalog->set(st.catalog);
  if (st.settings.app_directory)
    self->send(st.settings.app_directory, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  auto rooms = std::make_shared<room_settings>(st.settings.room);
  rooms->service = caf::actor_cast<caf::actor>(self);
  rooms->query_of = [catalog = st.shared_catalog, locator = st.settings.locator](
                      const av1::AllocateRequest& request) -> std::optional<place_query> {
    auto app = catalog->get()->shared(request.app_id());
    if (!app)
      return std::nullopt;
    std::string warning;
    return query_of_request(std::move(app), locator.get(), request, warning);
  };
  rooms->app_of = [catalog = st.shared_catalog](const std::string& app_id) {
    return catalog->get()->shared(app_id);
  };
  rooms->policy_of = [catalog = st.shared_catalog](const std::string& app_id) {
    return catalog->policy(app_id);
  };
  rooms->peer_id = st.settings.peer_id;
  rooms->app_directory = st.settings.app_directory;
  st.webhooks = std::make_shared<apps::webhook_dispatcher>(
    webhook_threads, [](std::string_view line) { spdlog::info("webhooks: {}", line); });
  sync_policies(self);
  st.room_settings_ = std::move(rooms);
  self->send(st.settings.room.registry, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  // Leases expire within a tenth of their TTL (at most 1 s) after it.
  st.sweep_interval = std::clamp<steady::duration>(
    st.room_settings_->lease_ttl / 10, std::chrono::milliseconds{50}, std::chrono::seconds{1});
  send_later(self, st.sweep_interval, sweep_atom::value);
  send_later(self, counts_interval, app_counts_atom::value);
  st.last_usage_sample = steady::now();
  send_later(self, usage_sample_interval, usage_atom::value);
  // Rooms (and through them the sessions) end with the service: a peer shutting down
  // must not wait for idle rooms to linger out.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (const auto& [key, room] : self->state.rooms)
      self->send_exit(room, msg.reason);
    for (const auto& [app_id, policy] : self->state.policies)
      self->send_exit(policy, msg.reason);
    self->quit(msg.reason);
  });
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (auto it = st.lease_of.find(msg.source); it != st.lease_of.end()) {
      auto lease_id = it->second;
      forget_lease(st, lease_id);
      return;
    }
    if (auto it = st.room_of.find(msg.source); it != st.room_of.end()) {
      if (auto room = st.rooms.find(it->second.key);
          room != st.rooms.end() && room->second.address() == msg.source)
        st.rooms.erase(room);
      st.room_of.erase(it);
      if (st.handoffs_pending > 0)
        handoff_finished(self);
    }
  });
  return {
    [self](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch)
        handle(self, replies, call);
      flush_outbox(self);
    },
    [self](call_open_atom, const call_context& call) -> caf::actor {
      return self->spawn(room_watcher, call, caf::actor_cast<caf::actor>(self));
    },
    [](call_cancel_atom, int32_t) {
      // A unary call waiting for a room or the registry was cancelled; its answer is
      // dropped by the gateway.
    },
    [self](node_event_atom, const chroom::admin::v1::NodeEvent& event) {
      auto& st = self->state;
      for (const auto& lost : event.lost_room_ids())
        if (auto it = st.rooms.find(lost); it != st.rooms.end())
          self->send(it->second, node_lost_atom::value, event.node_id());
    },
    [self](app_catalog_atom, const std::shared_ptr<const apps::app_catalog>& catalog) {
      auto& st = self->state;
      if (!catalog)
        return;
      st.catalog = catalog;
      st.shared_catalog->set(catalog);
      sync_policies(self);
    },
    [self](hook_points_atom, const std::string& app_id, bool before_allocation) {
      auto& st = self->state;
      auto it = st.policies.find(app_id);
      // From a policy still running for this app (not one stopped meanwhile).
      if (it == st.policies.end() || it->second != self->current_sender())
        return;
      if (before_allocation)
        st.before_allocation_hooks.insert(app_id);
      else
        st.before_allocation_hooks.erase(app_id);
    },
    [self](sweep_atom) {
      sweep_leases(self);
      send_later(self, self->state.sweep_interval, sweep_atom::value);
    },
    [self](room_for_atom, const std::string& app_id,
           const std::string& room_id) -> caf::result<caf::message> {
      if (find_app(self, app_id) == nullptr)
        return caf::make_message(unknown_app(app_id), caf::actor{});
      if (const auto* owner = remote_owner(self, node_room_id(app_id, room_id));
          owner && owner->allocation_service)
        return self->delegate(owner->allocation_service, room_for_atom::value, app_id, room_id,
                              true);
      return caf::make_message(grpc_status::ok(), room_for(self, app_id, room_id));
    },
    [self](room_for_atom, const std::string& app_id, const std::string& room_id,
           const metadata& credentials) -> caf::result<caf::message> {
      // WatchRoom: the watcher's call must be allowed to see the room.
      const auto* app = find_app(self, app_id);
      if (app == nullptr)
        return caf::make_message(unknown_app(app_id), caf::actor{});
      call_context call;
      call.request_metadata = credentials;
      if (auto refused = refusal(self, *app, room_id, call))
        return caf::make_message(std::move(*refused), caf::actor{});
      return self->delegate(caf::actor_cast<caf::actor>(self), room_for_atom::value, app_id,
                            room_id);
    },
    [self](room_for_atom, const std::string& app_id, const std::string& room_id,
           bool) -> caf::result<grpc_status, caf::actor> {
      // From another peer, which found this one the owner: answered here in any case.
      if (find_app(self, app_id) == nullptr)
        return {unknown_app(app_id), caf::actor{}};
      return {grpc_status::ok(), room_for(self, app_id, room_id)};
    },
    [self](usage_atom) {
      sample_usage(self);
      send_later(self, usage_sample_interval, usage_atom::value);
    },
    [self](app_counts_atom) {
      send_counts(self);
      send_later(self, counts_interval, app_counts_atom::value);
    },
    [self](app_counts_atom, const std::string& bytes) {
      cv1::AppCounts counts;
      if (!counts.ParseFromString(bytes) || counts.peer_id().empty())
        return;
      auto& kept = self->state.remote_counts[counts.peer_id()];
      kept.clear();
      for (auto& count : *counts.mutable_counts()) {
        auto app_id = count.app_id();
        kept.emplace(std::move(app_id), std::move(count));
      }
    },
    [self](cluster_view_atom, cluster_view& view) {
      auto& st = self->state;
      bool was_leaving = st.leaving;
      st.view = std::move(view);
      // A peer gone took its rooms' counts with it (their new owners count them).
      std::erase_if(st.remote_counts,
                    [&](const auto& entry) { return st.view.find(entry.first) == nullptr; });
      if (was_leaving) // the view without this peer stays: everything goes elsewhere
        std::erase_if(st.view.live, [&](const auto& p) { return p.peer_id == st.view.self_id; });
      rebalance(self);
      reroute_orphaned_forwards(self);
    },
    [self](replicate_atom, const std::string& key, const std::string& bytes) {
      auto& st = self->state;
      cv1::RoomState state;
      if (!state.ParseFromString(bytes))
        return false;
      if (state.closed()) {
        auto it = st.replicas.find(key);
        if (it != st.replicas.end() &&
            cluster::compare_versions(state, it->second) == cluster::version_order::newer)
          st.replicas.erase(it);
        return true;
      }
      auto& kept = st.replicas[key];
      // The usual case is the owner's next version: taken as it is, no merge, no copy.
      auto order = kept.version_size() == 0 ? cluster::version_order::newer
                                            : cluster::compare_versions(state, kept);
      if (order == cluster::version_order::newer)
        kept = std::move(state);
      else if (order == cluster::version_order::concurrent)
        kept = cluster::merge_rooms(state, kept);
      return true;
    },
    [self](absorb_atom, const std::string& key, const std::string& bytes, uint32_t hops) {
      auto& st = self->state;
      cv1::RoomState state;
      if (!state.ParseFromString(bytes))
        return false;
      if (auto it = st.replicas.find(key); it != st.replicas.end()) {
        state = cluster::merge_rooms(state, it->second);
        st.replicas.erase(it);
      }
      if (const auto* owner = remote_owner(self, key); owner && owner->allocation_service) {
        // Not this peer's (views differ for a moment, or it is leaving): on to the owner
        // this peer sees, once; a copy stays here until rebalance finds its owner.
        if (hops < max_absorb_hops)
          self
            ->request(owner->allocation_service, answer_timeout, absorb_atom::value, key,
                      state.SerializeAsString(), hops + 1)
            .then([](bool) {}, [](caf::error&) {});
        st.replicas[key] = std::move(state);
        return true;
      }
      take_over(self, key, std::move(state));
      return true;
    },
    [self](leave_atom) -> caf::result<bool> {
      auto& st = self->state;
      st.leaving = true;
      std::erase_if(st.view.live, [&](const auto& p) { return p.peer_id == st.view.self_id; });
      if (st.view.live.empty())
        return true; // alone: nobody to hand rooms to
      rebalance(self);
      if (st.handoffs_pending == 0)
        return true;
      st.leave_done = self->make_response_promise();
      send_later(self, leave_timeout, leave_atom::value, true);
      return st.leave_done;
    },
    [self](leave_atom, bool) {
      auto& st = self->state;
      if (st.leave_done.pending()) {
        spdlog::warn("allocation: {} room hand-off(s) unfinished when leaving",
                     st.handoffs_pending);
        st.leave_done.deliver(true);
      }
    },
    [self](get_cluster_atom) {
      auto& st = self->state;
      return caf::make_message(static_cast<uint32_t>(st.rooms.size()),
                               static_cast<uint32_t>(st.replicas.size()));
    },
    [self](service_stats_atom) {
      auto& st = self->state;
      return caf::make_message(static_cast<uint32_t>(st.rooms.size()),
                               static_cast<uint32_t>(st.replicas.size()),
                               static_cast<uint32_t>(st.leases.size()));
    },
    [self](local_rooms_atom, const std::string& app_id, const std::string& node_id) {
      return local_rooms(self, app_id, node_id);
    },
    [self](list_rooms_atom, const std::string& app_id, const std::string& node_id) {
      return cluster_rooms(self, app_id, node_id);
    },
    [self](admin_room_atom, const std::string& app_id, const std::string& room_id, uint32_t hops) {
      return admin_room(self, app_id, room_id, hops);
    },
    [self](migrate_atom, const std::string& app_id, const std::string& room_id,
           const std::string& to_node_id, const std::string& from_node_id, uint32_t hops) {
      return migrate_room(self, app_id, room_id, to_node_id, from_node_id, hops);
    },
    [self](room_idle_atom, const std::string& app_id, const std::string& room_id,
           uint64_t direct_asks_seen) {
      // An idle room asks to go: forgotten unless a call handed to it is still on its way.
      auto& st = self->state;
      auto it = st.rooms.find(node_room_id(app_id, room_id));
      if (it == st.rooms.end() || it->second.address() != self->current_sender())
        return true; // not the room this peer runs for that key (any more)
      if (auto record = st.room_of.find(it->second.address());
          record != st.room_of.end() && record->second.direct_asks != direct_asks_seen)
        return false;
      st.room_of.erase(it->second.address());
      st.rooms.erase(it);
      return true;
    },
    [self](lease_open_atom, const std::string& lease_id, const caf::actor& session) {
      auto& st = self->state;
      st.leases[lease_id] = session;
      st.lease_of[session.address()] = lease_id;
      renew(self, lease_id);
      self->monitor(session);
    },
  };
}

} // namespace

caf::actor spawn_allocation_service(caf::actor_system& system,
                                    allocation_service_settings settings) {
  return system.spawn(allocation_service, std::move(settings));
}

} // namespace chroom::actors
