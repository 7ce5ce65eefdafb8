#include "bench/chroom_bench/allocate_workload.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "chroom/allocation/v1/allocation_service.pb.h"
#include "chroom/diag/v1/diagnostics.pb.h"

namespace chroom::bench {

namespace {

// Protobuf wire types (encoding.md).
constexpr std::uint32_t wire_varint = 0;
constexpr std::uint32_t wire_fixed64 = 1;
constexpr std::uint32_t wire_length = 2;
constexpr std::uint32_t wire_fixed32 = 5;

// Field numbers of the messages encoded by hand; check_encoders() holds them to the
// generated classes.
constexpr std::uint32_t allocate_app_id = 1;
constexpr std::uint32_t allocate_room_id = 2;
constexpr std::uint32_t allocate_client_id = 3;
constexpr std::uint32_t allocate_location = 5;
constexpr std::uint32_t location_latitude = 1;
constexpr std::uint32_t location_longitude = 2;
constexpr std::uint32_t location_has_point = 3;
constexpr std::uint32_t release_lease_id = 1;
constexpr std::uint32_t echo_payload = 1;
constexpr std::uint32_t allocate_response_lease_id = 4;

void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_tag(std::string& out, std::uint32_t field, std::uint32_t wire_type) {
  put_varint(out, field << 3 | wire_type);
}

void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_tag(out, field, wire_length);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_double(std::string& out, std::uint32_t field, double value) {
  put_tag(out, field, wire_fixed64);
  auto bits = std::bit_cast<std::uint64_t>(value);
  for (int i = 0; i < 8; ++i, bits >>= 8)
    out.push_back(static_cast<char>(bits & 0xff));
}

// "<prefix><number>" in a caller's buffer: ids are built per request, so no allocation.
std::string_view numbered(char (&buffer)[64], std::string_view prefix, std::uint64_t number) {
  std::copy(prefix.begin(), prefix.end(), buffer);
  auto [end, ec] = std::to_chars(buffer + prefix.size(), buffer + sizeof buffer, number);
  return {buffer, static_cast<std::size_t>(end - buffer)};
}

bool get_varint(std::string_view& in, std::uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0)
      return true;
  }
  return false;
}

} // namespace

std::string parse_room_mix(std::string_view text, std::vector<room_size_band>& out) {
  constexpr std::uint32_t max_room_size = 100'000;
  out.clear();
  auto number = [](std::string_view s, auto& value) {
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    return ec == std::errc{} && ptr == s.data() + s.size();
  };
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view band = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    room_size_band b;
    const auto colon = band.find(':');
    const std::string_view sizes = band.substr(0, colon);
    if (colon != std::string_view::npos) {
      if (!number(band.substr(colon + 1), b.weight) || !std::isfinite(b.weight) || b.weight <= 0) {
        return fmt::format("in '{}' the weight after ':' is not a number > 0", band);
      }
    }
    const auto dash = sizes.find('-');
    bool sizes_ok = false;
    if (dash == std::string_view::npos) {
      sizes_ok = number(sizes, b.low);
      b.high = b.low;
    } else {
      sizes_ok = number(sizes.substr(0, dash), b.low) && number(sizes.substr(dash + 1), b.high);
    }
    if (!sizes_ok || b.low < 1 || b.high < b.low || b.high > max_room_size) {
      return fmt::format("'{}' is not SIZE or LOW-HIGH participants (1..{}) with an "
                         "optional :WEIGHT",
                         band, max_room_size);
    }
    out.push_back(b);
  }
  if (out.empty())
    return "no band";
  return {};
}

double mean_room_size(const std::vector<room_size_band>& mix) {
  double weights = 0, sum = 0;
  for (const auto& b : mix) {
    weights += b.weight;
    sum += b.weight * (b.low + b.high) / 2.0;
  }
  return weights > 0 ? sum / weights : 0;
}

allocate_workload::allocate_workload(const workload_parameters& parameters,
                                     const city_sampler& cities)
    : parameters_(parameters), cities_(cities), rng_(parameters.seed),
      room_prefix_(fmt::format("r{}-", parameters.seed)),
      client_prefix_(fmt::format("c{}-", parameters.seed)) {
  double total = 0;
  for (const auto& b : parameters_.room_mix) {
    total += b.weight;
    band_cumulative_.push_back(total);
  }
  open_.reserve(parameters_.open_rooms);
  for (std::uint32_t i = 0; i < parameters_.open_rooms; ++i)
    open_.push_back(new_room());
}

allocate_workload::open_room allocate_workload::new_room() {
  const double u = rng_.uniform() * band_cumulative_.back();
  const auto band =
    std::min<std::size_t>(std::upper_bound(band_cumulative_.begin(), band_cumulative_.end(), u) -
                            band_cumulative_.begin(),
                          band_cumulative_.size() - 1);
  const auto& b = parameters_.room_mix[band];
  open_room r;
  r.number = rooms_started_++;
  r.size = b.low + static_cast<std::uint32_t>(rng_.below(b.high - b.low + 1));
  r.home_city = cities_.pick_index(rng_.uniform());
  return r;
}

void allocate_workload::append_next(std::string& out) {
  auto& room = open_[rng_.below(open_.size())];
  const std::size_t city =
    rng_.uniform() < parameters_.local_share ? room.home_city : cities_.pick_index(rng_.uniform());
  const auto& place = cities_[city];
  const double s = parameters_.scatter_degrees;
  const double latitude = std::clamp(place.latitude + rng_.uniform(-s, s), -90.0, 90.0);
  const double longitude = std::clamp(place.longitude + rng_.uniform(-s, s), -180.0, 180.0);

  char buffer[64];
  put_bytes(out, allocate_app_id, parameters_.app_id);
  put_bytes(out, allocate_room_id, numbered(buffer, room_prefix_, room.number));
  put_bytes(out, allocate_client_id, numbered(buffer, client_prefix_, requests_));
  // ClientLocation{latitude, longitude, has_point}: 9 + 9 + 2 bytes.
  put_tag(out, allocate_location, wire_length);
  put_varint(out, 20);
  put_double(out, location_latitude, latitude);
  put_double(out, location_longitude, longitude);
  put_tag(out, location_has_point, wire_varint);
  out.push_back(1);

  ++requests_;
  if (++room.joined >= room.size)
    room = new_room();
}

void append_release_request(std::string& out, std::string_view lease_id) {
  put_bytes(out, release_lease_id, lease_id);
}

void append_echo_request(std::string& out, std::string_view payload) {
  put_bytes(out, echo_payload, payload);
}

std::optional<std::string_view> find_lease_id(std::string_view in) {
  while (!in.empty()) {
    std::uint64_t tag = 0, value = 0;
    if (!get_varint(in, tag))
      return std::nullopt;
    switch (tag & 7) {
      case wire_varint:
        if (!get_varint(in, value))
          return std::nullopt;
        break;
      case wire_fixed64:
        if (in.size() < 8)
          return std::nullopt;
        in.remove_prefix(8);
        break;
      case wire_length:
        if (!get_varint(in, value) || value > in.size())
          return std::nullopt;
        if ((tag >> 3) == allocate_response_lease_id)
          return in.substr(0, value);
        in.remove_prefix(value);
        break;
      case wire_fixed32:
        if (in.size() < 4)
          return std::nullopt;
        in.remove_prefix(4);
        break;
      default: // groups (3, 4) are not in proto3 messages
        return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string check_encoders(const workload_parameters& parameters, const city_sampler& cities) {
  namespace alloc = chroom::allocation::v1;
  allocate_workload workload(parameters, cities);
  std::string bytes;
  workload.append_next(bytes);
  alloc::AllocateRequest request;
  if (!request.ParseFromString(bytes))
    return "AllocateRequest does not parse";
  const auto& where = request.location();
  if (request.app_id() != parameters.app_id ||
      request.client_id() != fmt::format("c{}-0", parameters.seed) ||
      !request.room_id().starts_with(fmt::format("r{}-", parameters.seed)) || !where.has_point() ||
      std::abs(where.latitude()) > 90 || std::abs(where.longitude()) > 180 ||
      (where.latitude() == 0 && where.longitude() == 0)) {
    return "AllocateRequest fields differ: " + request.ShortDebugString();
  }

  bytes.clear();
  append_release_request(bytes, "lease-1");
  alloc::ReleaseRequest release;
  if (!release.ParseFromString(bytes) || release.lease_id() != "lease-1")
    return "ReleaseRequest fields differ";

  bytes.clear();
  append_echo_request(bytes, "some payload");
  chroom::diag::v1::EchoRequest echo;
  if (!echo.ParseFromString(bytes) || echo.payload() != "some payload")
    return "EchoRequest fields differ";

  alloc::AllocateResponse response;
  response.mutable_node()->set_node_id("sim-00001");
  response.mutable_node()->set_estimated_rtt_ms(12.5);
  response.set_join_token("header.claims.signature");
  response.set_join_token_expires_unix_ms(1'800'000'000'000);
  response.set_lease_id("lease-42");
  response.set_lease_ttl_ms(30000);
  response.add_alternates()->set_node_id("sim-00002");
  response.set_room_nodes(1);
  if (find_lease_id(response.SerializeAsString()) != std::string_view("lease-42"))
    return "lease_id not found in an AllocateResponse";
  return {};
}

} // namespace chroom::bench
