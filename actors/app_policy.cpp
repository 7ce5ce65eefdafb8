#include "actors/app_policy.hpp"

#include "actors/atoms.hpp"
#include "actors/exception_log.hpp"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <spdlog/spdlog.h>

namespace chroom::actors {
namespace {

using transport::grpc_code;
using transport::grpc_status;
using transport::make_status;
namespace cfg = chroom::config::v1;
namespace ev1 = chroom::apps::v1;

// Hook limits when the app leaves them 0 (docs/hooks.md says why these).
constexpr uint32_t default_hook_instructions = 1'000'000;
constexpr uint32_t default_hook_memory_kib = 8 * 1024;
constexpr uint32_t default_hook_time_ms = 50;
// Attempts per webhook event when the app leaves max_attempts 0.
constexpr uint32_t default_webhook_attempts = 8;

struct policy_state {
  app_policy_settings settings;
  std::unique_ptr<apps::hook_runtime> hooks;
  /// Why the script did not load (every hook call fails with it until a version loads).
  std::string load_error;
  uint64_t hook_failures = 0;
};

using policy_actor = caf::stateful_actor<policy_state>;

const std::string& app_id_of(const policy_state& st) {
  return st.settings.app->config.app_id();
}

/// Logs a hook that failed: the app's developers find it by app, point and reason.
void report_failure(policy_actor* self, std::string_view point, apps::hook_failure failure,
                    const std::string& message) {
  auto& st = self->state;
  ++st.hook_failures;
  spdlog::warn("app {}: hook {} failed ({}): {} [{} failure(s) so far]", app_id_of(st), point,
               apps::to_string(failure), message, st.hook_failures);
}

void load_hooks(policy_actor* self) {
  auto& st = self->state;
  st.hooks.reset();
  st.load_error.clear();
  const auto& app = *st.settings.app;
  if (app.hook_script.empty()) {
    self->send(st.settings.service, hook_points_atom::value, app_id_of(st), false);
    return;
  }
  auto log = [app_id = app_id_of(st)](std::string_view line) {
    spdlog::info("app {} hook: {}", app_id, line);
  };
  apps::hook_failure failure = apps::hook_failure::none;
  st.hooks =
    apps::hook_runtime::load(app.hook_script, app_id_of(st) + ".lua",
                             hook_limits_of(app.config.hooks()), log, st.load_error, &failure);
  if (!st.hooks)
    report_failure(self, "load", failure, st.load_error);
  else
    spdlog::info("app {}: hooks loaded", app_id_of(st));
  // A script that does not load still "defines" before_allocation: every Allocate of the
  // app then fails with the load error instead of running without the app's checks.
  bool before = !st.hooks || st.hooks->defines(apps::hook_point::before_allocation);
  self->send(st.settings.service, hook_points_atom::value, app_id_of(st), before);
}

void set_webhook(policy_state& st) {
  if (st.settings.webhooks)
    st.settings.webhooks->set_endpoint(app_id_of(st), webhook_endpoint_of(st.settings.app->config));
}

std::optional<apps::hook_point> hook_point_of(std::string_view type) {
  if (type == "room.started")
    return apps::hook_point::room_created;
  if (type == "room.finished")
    return apps::hook_point::room_closed;
  if (type == "participant.joined")
    return apps::hook_point::participant_joined;
  if (type == "participant.left")
    return apps::hook_point::participant_left;
  return std::nullopt; // node.lost has no hook
}

bool webhook_wants(const cfg::WebhookConfig& webhook, const std::string& type) {
  if (webhook.url().empty())
    return false;
  return webhook.events().empty() || std::find(webhook.events().begin(), webhook.events().end(),
                                               type) != webhook.events().end();
}

void on_event(policy_actor* self, const ev1::AppEvent& event) {
  auto& st = self->state;
  const auto& config = st.settings.app->config;
  if (auto point = hook_point_of(event.type()); point && st.hooks && st.hooks->defines(*point)) {
    apps::room_event hook_event;
    hook_event.point = *point;
    hook_event.app_id = event.app_id();
    hook_event.room_id = event.room_id();
    hook_event.client_id = event.client_id();
    hook_event.role = event.role();
    hook_event.node_id = event.node_id();
    hook_event.unix_ms = event.occurred_unix_ms();
    hook_event.participants = event.room_participants();
    auto outcome = st.hooks->on_event(hook_event);
    if (!outcome.ok())
      report_failure(self, apps::to_string(*point), outcome.failure, outcome.message);
  }
  if (webhook_wants(config.webhook(), event.type()) && st.settings.webhooks) {
    std::string body;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(event, &body, options);
    if (!st.settings.webhooks->enqueue(app_id_of(st), {event.event_id(), event.type(), body}))
      spdlog::warn("app {}: webhook event {} dropped (queue full or endpoint unusable)",
                   app_id_of(st), event.event_id());
  }
  if (config.audit() && event.type().starts_with("participant.") && st.settings.app_directory)
    self->send(st.settings.app_directory, audit_atom::value, event.SerializeAsString());
}

caf::behavior app_policy(policy_actor* self, app_policy_settings settings) {
  log_exceptions(self, "app policy " + settings.app->config.app_id());
  self->state.settings = std::move(settings);
  load_hooks(self);
  set_webhook(self->state);
  self->attach_functor(
    [webhooks = self->state.settings.webhooks, app_id = app_id_of(self->state)](const caf::error&) {
      // The app is gone (or the peer stops): its waiting events go with it.
      if (webhooks)
        webhooks->set_endpoint(app_id, std::nullopt);
    });
  return {
    [self](app_definition_atom, std::shared_ptr<const apps::app_definition>& app) {
      auto& st = self->state;
      bool script_changed = app->hook_script != st.settings.app->hook_script ||
                            !google::protobuf::util::MessageDifferencer::Equals(
                              app->config.hooks(), st.settings.app->config.hooks());
      st.settings.app = std::move(app);
      if (script_changed)
        load_hooks(self);
      set_webhook(st);
    },
    [self](hook_atom, apps::allocation_hook_input& input)
      -> caf::result<grpc_status, apps::allocation_hook_result> {
      auto& st = self->state;
      const std::string prefix = "app '" + app_id_of(st) + "' hook before_allocation ";
      if (!st.hooks)
        return {make_status(grpc_code::internal, prefix + "did not load: " + st.load_error),
                apps::allocation_hook_result{}};
      if (!st.hooks->defines(apps::hook_point::before_allocation))
        return {grpc_status::ok(), apps::allocation_hook_result{}};
      auto outcome = st.hooks->before_allocation(input);
      if (!outcome.ok()) {
        report_failure(self, "before_allocation", outcome.failure, outcome.message);
        return {make_status(grpc_code::internal, prefix + "failed (" +
                                                   std::string{apps::to_string(outcome.failure)} +
                                                   "): " + outcome.message),
                apps::allocation_hook_result{}};
      }
      return {grpc_status::ok(), std::move(outcome.value)};
    },
    [self](app_event_atom, const ev1::AppEvent& event) { on_event(self, event); },
  };
}

} // namespace

std::optional<apps::webhook_endpoint> webhook_endpoint_of(const cfg::AppConfig& app) {
  if (app.webhook().url().empty())
    return std::nullopt;
  apps::webhook_endpoint endpoint;
  endpoint.url = app.webhook().url();
  endpoint.secret = app.webhook().secret();
  endpoint.max_attempts =
    app.webhook().max_attempts() > 0 ? app.webhook().max_attempts() : default_webhook_attempts;
  return endpoint;
}

apps::hook_limits hook_limits_of(const cfg::HookConfig& hooks) {
  apps::hook_limits limits;
  limits.max_instructions =
    hooks.max_instructions() > 0 ? hooks.max_instructions() : default_hook_instructions;
  limits.max_memory_bytes =
    size_t{hooks.max_memory_kib() > 0 ? hooks.max_memory_kib() : default_hook_memory_kib} * 1024;
  limits.max_time =
    std::chrono::milliseconds{hooks.max_time_ms() > 0 ? hooks.max_time_ms() : default_hook_time_ms};
  return limits;
}

caf::actor spawn_app_policy(caf::actor_system& system, app_policy_settings settings) {
  // An app with hooks gets its own thread: a hook may run for its whole time budget, which
  // must not hold one of the few scheduler workers that every allocation needs.
  if (!settings.app->hook_script.empty())
    return system.spawn<caf::detached>(app_policy, std::move(settings));
  return system.spawn(app_policy, std::move(settings));
}

} // namespace chroom::actors
