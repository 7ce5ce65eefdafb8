// How a simulated node proves its identity (see media_node.proto, Register.credential).
#pragma once

#include <string>
#include <string_view>

namespace chroom::node_sim {

// Lowercase hex of HMAC-SHA256(key, message): the credential of node `message` when the
// orchestrator is configured with media_nodes.secret_key = key.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

} // namespace chroom::node_sim
