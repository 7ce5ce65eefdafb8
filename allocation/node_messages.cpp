#include "allocation/node_messages.hpp"

#include <cmath>
#include <fmt/format.h>

namespace chroom::allocation {

namespace {

/// Bounds on what one node may declare: far above any real SFU, low enough that a
/// malicious Register cannot make the registry hold megabytes.
constexpr int max_endpoints = 16;
constexpr int max_codecs = 32;
constexpr int max_hosted_rooms = 100'000;
constexpr int max_peer_rtts = 1'000;
constexpr uint32_t max_participants_bound = 1'000'000;
constexpr double max_mbps = 10'000'000; // 10 Tb/s
constexpr uint32_t max_cores = 4096;
constexpr size_t max_text = 256;

bool finite_in(double value, double low, double high) {
  return std::isfinite(value) && value >= low && value <= high;
}

} // namespace

std::optional<protocol_version_number> parse_protocol_version(std::string_view text) {
  auto dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == text.size() || text.size() > 21)
    return std::nullopt;
  auto parse = [](std::string_view digits, uint32_t& out) {
    uint64_t value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9')
        return false;
      value = value * 10 + static_cast<uint64_t>(c - '0');
      if (value > UINT32_MAX)
        return false;
    }
    out = static_cast<uint32_t>(value);
    return true;
  };
  protocol_version_number version;
  if (!parse(text.substr(0, dot), version.major) || !parse(text.substr(dot + 1), version.minor))
    return std::nullopt;
  return version;
}

bool is_valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  return true;
}

bool is_valid_room_id(std::string_view id) {
  if (id.empty() || id.size() > max_room_id_length)
    return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-' || c == '/'))
      return false;
  return true;
}

std::string validate_register(const chroom::medianode::v1::Register& message) {
  if (!is_valid_node_id(message.node_id()))
    return fmt::format("node_id '{}' is not 1 to 128 characters of [a-z0-9._-]",
                       message.node_id().substr(0, max_text));
  if (message.software_version().size() > max_text)
    return fmt::format("software_version is longer than {} characters", max_text);
  if (message.endpoints_size() == 0)
    return "endpoints: at least one endpoint is required";
  if (message.endpoints_size() > max_endpoints)
    return fmt::format("endpoints: at most {} allowed, got {}", max_endpoints,
                       message.endpoints_size());
  for (int i = 0; i < message.endpoints_size(); ++i) {
    const auto& endpoint = message.endpoints(i);
    if (endpoint.host().empty() || endpoint.host().size() > max_text)
      return fmt::format("endpoints[{}].host must be 1 to {} characters", i, max_text);
    if (endpoint.port() == 0 || endpoint.port() > 65535)
      return fmt::format("endpoints[{}].port {} is not in 1..65535", i, endpoint.port());
  }
  const auto& location = message.location();
  if (!finite_in(location.latitude(), -90, 90))
    return fmt::format("location.latitude {} is not in -90..90", location.latitude());
  if (!finite_in(location.longitude(), -180, 180))
    return fmt::format("location.longitude {} is not in -180..180", location.longitude());
  if (location.region().size() > max_text)
    return fmt::format("location.region is longer than {} characters", max_text);
  if (!location.country().empty() &&
      (location.country().size() != 2 ||
       !std::isupper(static_cast<unsigned char>(location.country()[0])) ||
       !std::isupper(static_cast<unsigned char>(location.country()[1]))))
    return fmt::format("location.country '{}' is not an ISO 3166-1 alpha-2 code",
                       location.country().substr(0, max_text));
  const auto& capacity = message.capacity();
  if (capacity.max_participants() == 0 || capacity.max_participants() > max_participants_bound)
    return fmt::format("capacity.max_participants {} is not in 1..{}", capacity.max_participants(),
                       max_participants_bound);
  if (!finite_in(capacity.upload_mbps(), 0, max_mbps) || capacity.upload_mbps() == 0)
    return fmt::format("capacity.upload_mbps {} is not a positive bandwidth",
                       capacity.upload_mbps());
  if (!finite_in(capacity.download_mbps(), 0, max_mbps) || capacity.download_mbps() == 0)
    return fmt::format("capacity.download_mbps {} is not a positive bandwidth",
                       capacity.download_mbps());
  if (capacity.cpu_cores() == 0 || capacity.cpu_cores() > max_cores)
    return fmt::format("capacity.cpu_cores {} is not in 1..{}", capacity.cpu_cores(), max_cores);
  if (message.features().codecs_size() > max_codecs)
    return fmt::format("features.codecs: at most {} allowed", max_codecs);
  if (message.rooms_size() > max_hosted_rooms)
    return fmt::format("rooms: at most {} allowed", max_hosted_rooms);
  for (int i = 0; i < message.rooms_size(); ++i)
    if (!is_valid_room_id(message.rooms(i).room_id()))
      return fmt::format("rooms[{}].room_id is not 1 to {} characters of [A-Za-z0-9._/-]", i,
                         max_room_id_length);
  return {};
}

std::string validate_stats(const chroom::medianode::v1::Stats& message) {
  if (!finite_in(message.cpu_load(), 0, 1))
    return fmt::format("cpu_load {} is not in 0..1", message.cpu_load());
  if (!finite_in(message.bandwidth_in_mbps(), 0, max_mbps))
    return fmt::format("bandwidth_in_mbps {} is not a bandwidth", message.bandwidth_in_mbps());
  if (!finite_in(message.bandwidth_out_mbps(), 0, max_mbps))
    return fmt::format("bandwidth_out_mbps {} is not a bandwidth", message.bandwidth_out_mbps());
  if (!finite_in(message.packet_loss(), 0, 1))
    return fmt::format("packet_loss {} is not in 0..1", message.packet_loss());
  if (!finite_in(message.jitter_ms(), 0, 60'000))
    return fmt::format("jitter_ms {} is not in 0..60000", message.jitter_ms());
  if (message.peer_rtts_size() > max_peer_rtts)
    return fmt::format("peer_rtts: at most {} allowed", max_peer_rtts);
  for (int i = 0; i < message.peer_rtts_size(); ++i)
    if (!finite_in(message.peer_rtts(i).rtt_ms(), 0, 60'000))
      return fmt::format("peer_rtts[{}].rtt_ms {} is not in 0..60000", i,
                         message.peer_rtts(i).rtt_ms());
  return {};
}

} // namespace chroom::allocation
