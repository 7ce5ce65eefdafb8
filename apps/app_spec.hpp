#pragma once

// An application's definition: its config (chroom.config.v1.AppConfig), checked field by
// field, with defaults filled in, compiled into what the allocation path reads on every
// call (the placement policy, the roles, the keys). The one place that knows what an app
// may say: the config file loader and AdminService both validate with app_problems().

#include "allocation/placement.hpp"
#include "chroom/config/v1/config.pb.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::apps {

namespace cfg = chroom::config::v1;

/// The roles of AllocateRequest.role, in order of authority.
inline constexpr std::array<std::string_view, 4> role_names = {"host", "presenter", "participant",
                                                               "viewer"};
/// Media a role may send.
inline constexpr std::array<std::string_view, 3> media_kinds = {"audio", "video", "screen"};
/// AppConfig.media_profile values, and the media each allows.
inline constexpr std::array<std::string_view, 3> media_profiles = {"video", "audio_only",
                                                                   "screen_share"};
inline constexpr std::array<std::string_view, 3> priorities = {"high", "normal", "low"};
inline constexpr std::array<std::string_view, 2> admissions = {"open", "host"};
/// Webhook event types (docs/webhooks.md).
inline constexpr std::array<std::string_view, 5> webhook_events = {
  "room.started", "room.finished", "participant.joined", "participant.left", "node.lost"};

/// Live keys an app may hold at once: the current one and the one it replaces.
inline constexpr size_t max_live_keys = 2;
/// Secrets (API keys, webhooks) are at least this long: 32 characters of a random
/// alphabet carry well over 128 bits.
inline constexpr size_t min_app_secret_length = 32;
inline constexpr size_t min_key_id_length = 8;
inline constexpr size_t max_key_id_length = 64;

/// A field that is wrong, named by its path inside AppConfig ("roles[1].publish[0]"),
/// and what is wrong with it.
struct field_problem {
  std::string field;
  std::string problem;
};

/// A value as it appears in an error message: in double quotes, escaped, cut short so that
/// a stray multi-line block does not flood a terminal.
std::string quoted(std::string_view text);

/// Fills in what an app left out: strategy balanced, media_profile video, priority normal,
/// admission open, hook limits. Idempotent.
void apply_app_defaults(cfg::AppConfig& app);

/// Everything wrong with `app` (defaults applied first). Files named by the app (a hook
/// script_file) are not read here: the caller checks them where it can.
std::vector<field_problem> app_problems(const cfg::AppConfig& app);

/// What one role may do in the app's rooms.
struct role_rules {
  bool allowed = true;
  /// Media the role may send, already capped by the media profile ("pub" claim).
  std::vector<std::string> publish;
  uint32_t max_per_room = 0;
  bool spread = false;
};

/// An app ready for the allocation path. Immutable once built; shared between actors.
struct app_definition {
  /// With defaults applied; secrets included (never shown: see redacted()).
  cfg::AppConfig config;
  allocation::app_policy placement;
  /// Features every room of the app needs (merged into each request's).
  allocation::feature_needs required_features;
  /// By role name, for all four roles.
  std::map<std::string, role_rules, std::less<>> roles;
  /// 0: the peer's allocation.lease_ttl_ms.
  std::chrono::milliseconds lease_ttl{0};
  /// The text of the hook script (script, or script_file's contents); empty: none.
  std::string hook_script;

  const role_rules* role(std::string_view name) const;
};

/// Compiles a valid app (app_problems() empty). `hook_script` is the script's text when it
/// comes from a file.
std::shared_ptr<const app_definition> compile_app(cfg::AppConfig app, std::string hook_script = {});

/// `app` as operators may see it: key secrets and the webhook secret removed.
cfg::AppConfig redacted(cfg::AppConfig app);

/// A fresh key for `app_id`: id "ck_" + 16 random base32 characters, secret 43 random
/// base64url characters (256 bits), created now.
cfg::AppKey make_app_key(int64_t now_unix_ms);

/// Keys of `app` still live at `now_unix_ms`.
size_t live_keys(const cfg::AppConfig& app, int64_t now_unix_ms);

} // namespace chroom::apps
