#pragma once

// "host:port" addresses of peers (cluster.seeds, Member.cluster_address).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chroom::cluster {

struct peer_address {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
  friend bool operator==(const peer_address&, const peer_address&) = default;
};

/// Parses "host:port" or "[v6-address]:port"; on failure returns nothing and says why in
/// `problem`.
std::optional<peer_address> parse_peer_address(std::string_view text, std::string& problem);

} // namespace chroom::cluster
