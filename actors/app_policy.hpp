#pragma once

// app_policy: one actor per application on each peer (DESIGN.md), spawned and kept up to
// date by the allocation service from the app catalog. It owns what of an app runs, not
// just reads: the app's Lua hooks (apps/hook_runtime, docs/hooks.md), its webhook endpoint
// (apps/webhook_dispatcher, docs/webhooks.md) and its audit trail.
//
//   (app_definition_atom, definition)      a new version of the app: the script is loaded
//                                          again when it changed, the webhook endpoint set
//   (hook_atom, allocation_hook_input) -> (grpc_status, allocation_hook_result)
//                                          before_allocation; a failing or over-budget hook
//                                          fails the call (INTERNAL, naming the failure)
//   (app_event_atom, AppEvent)             from the app's rooms on this peer: the matching
//                                          hook runs, the webhook is queued, the audit
//                                          log gets participant events (when audit is on)
// It tells the service which hook points its script defines:
//   (hook_points_atom, app_id, before_allocation defined)

#include "apps/app_spec.hpp"
#include "apps/hook_runtime.hpp"
#include "apps/webhook_dispatcher.hpp"
#include "chroom/apps/v1/events.pb.h"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <memory>
#include <string>

namespace chroom::actors {

struct app_policy_settings {
  std::shared_ptr<const apps::app_definition> app;
  /// Shared by every app of the peer (its worker threads deliver all webhooks).
  std::shared_ptr<apps::webhook_dispatcher> webhooks;
  /// Gets (audit_atom, AppEvent bytes) for apps with audit on.
  caf::actor app_directory;
  /// Gets (hook_points_atom, app_id, bool).
  caf::actor service;
  std::string peer_id;
};

caf::actor spawn_app_policy(caf::actor_system& system, app_policy_settings settings);

/// The webhook endpoint of an app's config, or nothing when it has none.
std::optional<apps::webhook_endpoint> webhook_endpoint_of(const config::v1::AppConfig& app);

/// An app's hook limits with the defaults (docs/hooks.md) for the values left 0.
apps::hook_limits hook_limits_of(const config::v1::HookConfig& hooks);

} // namespace chroom::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const chroom::apps::app_definition>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::apps::allocation_hook_input)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::apps::allocation_hook_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::apps::v1::AppEvent)
