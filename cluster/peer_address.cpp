#include "cluster/peer_address.hpp"

#include <fmt/format.h>

#include <charconv>

namespace chroom::cluster {

std::string peer_address::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<peer_address> parse_peer_address(std::string_view text, std::string& problem) {
  auto bad = [&](std::string why) -> std::optional<peer_address> {
    // fmt, not `"'" + std::string + ...`: GCC 12 warns falsely about that (bug 105329).
    problem = fmt::format("'{}' is not host:port: {}", text.substr(0, 128), why);
    return std::nullopt;
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return bad("no port");
  auto host = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string_view::npos)
    return bad("an IPv6 address needs brackets, [::1]:7000");
  if (host.empty())
    return bad("no host");
  if (host.size() > 253)
    return bad("the host is longer than 253 characters");
  for (char c : host)
    if (c <= ' ' || c == '/' || c == '[' || c == ']' || c == 0x7f)
      return bad("the host holds a space, '/' or a bracket");
  unsigned port = 0;
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc{} || end != port_text.data() + port_text.size() ||
      port == 0 || port > 65535)
    return bad("the port must be 1 to 65535");
  return peer_address{std::string{host}, static_cast<uint16_t>(port)};
}

} // namespace chroom::cluster
