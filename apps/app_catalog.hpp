#pragma once

// The apps a peer knows, as the allocation path reads them: by app_id and by API key.
// Immutable: the app store builds a new catalog on every change and hands it to the
// services, which swap their pointer (no locks, no hop on the allocation path).
//
// Authentication of AllocationService calls (docs/apps.md, "Credentials"), one of:
//   x-chroom-api-key: <key_id>   +   x-chroom-api-secret: <secret>
//   authorization: Bearer <JWT>  HS256 under the key's secret, header "kid": key_id,
//                                claims "app" (the app_id), "exp" (Unix seconds, at most
//                                max_token_lifetime ahead), optional "room" (the only room
//                                the token may touch), optional "nbf"/"iat".
// Missing, unknown, wrong or expired credentials: UNAUTHENTICATED. Credentials of another
// app, or a token for another room: PERMISSION_DENIED.

#include "apps/app_spec.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chroom::apps {

/// Metadata names of the credentials.
inline constexpr std::string_view api_key_header = "x-chroom-api-key";
inline constexpr std::string_view api_secret_header = "x-chroom-api-secret";
inline constexpr std::string_view authorization_header = "authorization";
/// A signed token valid longer than this is refused: a leaked token must be short-lived.
inline constexpr std::chrono::seconds max_token_lifetime{24 * 3600};
/// Clocks of backends and peers differ a little: "exp" and "nbf" allow this much.
inline constexpr std::chrono::seconds token_clock_skew{30};

class app_catalog {
public:
  app_catalog() = default;
  explicit app_catalog(std::vector<std::shared_ptr<const app_definition>> apps);

  const app_definition* find(std::string_view app_id) const;
  std::shared_ptr<const app_definition> shared(std::string_view app_id) const;
  const std::map<std::string, std::shared_ptr<const app_definition>, std::less<>>& apps() const {
    return apps_;
  }
  /// The app holding the key and the key, or nulls.
  std::pair<const app_definition*, const cfg::AppKey*> find_key(std::string_view key_id) const;

private:
  std::map<std::string, std::shared_ptr<const app_definition>, std::less<>> apps_;
  std::unordered_map<std::string, std::pair<const app_definition*, const cfg::AppKey*>> keys_;
};

enum class auth_outcome { ok, unauthenticated, permission_denied };

struct auth_result {
  auth_outcome outcome = auth_outcome::ok;
  /// Why not (for the client: names the key, never a secret).
  std::string message;
  /// How the call proved itself: "key", "token", or "none" (an app open to all).
  std::string_view method = "none";
};

using metadata_entries = std::vector<std::pair<std::string, std::string>>;

/// Checks that the call's credentials allow it to act for `app` (and, when not empty, on
/// `room_id`). `now`: the wall clock.
auth_result authenticate(const app_catalog& catalog, const app_definition& app,
                         std::string_view room_id, const metadata_entries& metadata,
                         std::chrono::system_clock::time_point now);

/// A token for tests and tools (chroomctl): HS256 under `key`, kid key.key_id(), claims app,
/// exp (now + lifetime), iat and, when not empty, room.
std::string sign_app_token(const cfg::AppKey& key, std::string_view app_id,
                           std::string_view room_id, std::chrono::system_clock::time_point now,
                           std::chrono::seconds lifetime);

} // namespace chroom::apps
