#pragma once

// Who may register as a media node: per-node secrets from the config, or secrets derived
// from one key (hex HMAC-SHA256(key, node_id)), so operators hand each node its own
// secret without listing thousands of them.

#include <map>
#include <string>
#include <string_view>

namespace chroom::transport {

class node_credentials {
public:
  /// @param secrets    node id -> secret (listed nodes)
  /// @param secret_key key for derived secrets; empty: only listed nodes may register
  node_credentials(std::map<std::string, std::string, std::less<>> secrets, std::string secret_key)
      : secrets_(std::move(secrets)), secret_key_(std::move(secret_key)) {}

  /// True when `credential` is the secret of `node_id` (listed, else derived). The
  /// comparison takes the same time wherever the strings differ.
  bool verify(std::string_view node_id, std::string_view credential) const;

  /// The secret of `node_id` (listed, else derived), or empty when it has none. Join
  /// tokens for a node are signed with it, so the node verifies them offline.
  std::string secret_of(std::string_view node_id) const;

  /// True when some secret exists for `node_id` (listed, or a key is configured).
  bool knows(std::string_view node_id) const;

  /// Lowercase hex of HMAC-SHA256(key, node_id): a node's derived secret.
  static std::string derive_secret(std::string_view key, std::string_view node_id);

private:
  std::map<std::string, std::string, std::less<>> secrets_;
  std::string secret_key_;
};

} // namespace chroom::transport
