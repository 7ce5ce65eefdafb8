#pragma once

// Join tokens: what a client presents to the media node it was allocated to. A JWT
// (RFC 7519) in compact form, base64url(header).base64url(claims).base64url(signature)
// without padding, signed with HS256 (HMAC-SHA256) under the node's own secret (the
// Register.credential it presents), so the node verifies tokens offline with what it
// already has. docs/join-tokens.md describes the format for media node vendors.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chroom::transport {

/// The "iss" claim of every join token.
inline constexpr std::string_view join_token_issuer = "chroom";

/// What a join token grants. The strings are restricted by callers to [A-Za-z0-9._@-];
/// the encoder escapes anything else all the same, so a token is always valid JSON.
struct join_claims {
  std::string client_id;         ///< "sub": the participant
  std::string app_id;            ///< "app"
  std::string room_id;           ///< "room"
  std::string node_id;           ///< "node": the only node that accepts the token
  std::string role;              ///< "role": "host", "presenter", "participant", "viewer"
  std::string lease_id;          ///< "lease": the allocation's lease
  std::int64_t issued_at_s = 0;  ///< "iat", Unix seconds
  std::int64_t expires_at_s = 0; ///< "exp", Unix seconds; refused from this second on
  /// "pub": the media the holder may send, space-separated ("audio video screen"; "" for
  /// receive only), as OAuth's "scope" lists rights. Absent: the issuer did not say.
  std::optional<std::string> publish;
  /// "rec": 1 when the room may be recorded, 0 when not. Absent: the issuer did not say.
  std::optional<bool> recording;
  /// "tier": "audio_only" when the holder is to receive audio only (a low-bandwidth
  /// client); absent: all the media it is sent.
  std::optional<std::string> tier;
};

/// A signed token for `claims` (iss "chroom"). `key` is the node's secret, used as HMAC key
/// bytes as written. One HMAC computation and one allocation (the result).
std::string sign_join_token(const join_claims& claims, std::string_view key);

/// Why a token was refused.
enum class token_error {
  none,            ///< valid
  malformed,       ///< not three base64url parts, not the JSON we produce, a claim missing
  bad_signature,   ///< signed with another key, or altered
  expired,         ///< exp <= now
  wrong_algorithm, ///< a header alg other than HS256 (including "none")
  wrong_node,      ///< valid, but for another node
};

/// A short name for logs and messages ("malformed", "bad signature", ...).
std::string_view to_string(token_error error);

/// Checks `token` and, when it is valid, fills `*claims_out` (when not null).
///   key               the node's secret (as for sign_join_token)
///   expected_node_id  the node that verifies; the "node" claim must equal it
///   now_s             the current Unix time, seconds
/// The checks run in this order, and the first that fails is returned: structure and header
/// (malformed), alg (wrong_algorithm), signature, compared in constant time
/// (bad_signature), claims (malformed), exp (expired), node (wrong_node). Claims are only
/// parsed once the signature holds. `*claims_out` is left untouched on failure.
token_error verify_join_token(std::string_view token, std::string_view key,
                              std::string_view expected_node_id, std::int64_t now_s,
                              join_claims* claims_out);

} // namespace chroom::transport
