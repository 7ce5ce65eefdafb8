#include "transport/grpc_wire.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace chroom::transport {

namespace {

/// Buffer reserved at once for a message announced larger than what has arrived: the
/// rest is allocated as it comes.
constexpr size_t eager_reserve_bytes = 64u << 10;

} // namespace

std::string_view to_string(grpc_code code) {
  static constexpr std::array<std::string_view, 17> names{
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
  auto index = static_cast<size_t>(code);
  return index < names.size() ? names[index] : "UNKNOWN";
}

grpc_code grpc_code_from_int(int64_t value) {
  if (value < 0 || value > static_cast<int64_t>(grpc_code::unauthenticated))
    return grpc_code::unknown;
  return static_cast<grpc_code>(value);
}

int http_status_for(grpc_code code) {
  switch (code) {
    case grpc_code::ok:
      return 200;
    case grpc_code::invalid_argument:
    case grpc_code::failed_precondition:
    case grpc_code::out_of_range:
      return 400;
    case grpc_code::unauthenticated:
      return 401;
    case grpc_code::permission_denied:
      return 403;
    case grpc_code::not_found:
      return 404;
    case grpc_code::already_exists:
    case grpc_code::aborted:
      return 409;
    case grpc_code::resource_exhausted:
      return 429;
    case grpc_code::cancelled:
      return 499;
    case grpc_code::unimplemented:
      return 501;
    case grpc_code::unavailable:
      return 503;
    case grpc_code::deadline_exceeded:
      return 504;
    default:
      return 500;
  }
}

void append_grpc_frame(std::string& out, std::string_view message) {
  auto size = static_cast<uint32_t>(message.size());
  char prefix[grpc_prefix_bytes] = {0, static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                                    static_cast<char>(size >> 8), static_cast<char>(size)};
  out.append(prefix, grpc_prefix_bytes);
  out.append(message);
}

grpc_message_decoder::error grpc_message_decoder::feed(std::span<const uint8_t> bytes,
                                                       std::vector<std::string>& messages) {
  while (error_ == error::none && !bytes.empty()) {
    if (!in_body_) {
      auto take = std::min(grpc_prefix_bytes - prefix_fill_, bytes.size());
      std::memcpy(prefix_ + prefix_fill_, bytes.data(), take);
      prefix_fill_ += take;
      bytes = bytes.subspan(take);
      if (prefix_fill_ < grpc_prefix_bytes)
        break;
      announced_ = (uint64_t{prefix_[1]} << 24) | (uint64_t{prefix_[2]} << 16) |
                   (uint64_t{prefix_[3]} << 8) | uint64_t{prefix_[4]};
      if (prefix_[0] > 1)
        return error_ = error::bad_flag;
      if (prefix_[0] == 1)
        return error_ = error::compressed;
      if (announced_ > max_message_bytes_)
        return error_ = error::too_large;
      prefix_fill_ = 0;
      in_body_ = true;
      body_.clear();
      // Not the announced size: a client may announce 4 MiB and send 5 bytes, on 100
      // streams. The buffer grows with what arrives (at most twice that, by doubling).
      body_.reserve(std::min<uint64_t>(announced_, std::max(bytes.size(), eager_reserve_bytes)));
    }
    auto take = std::min<size_t>(announced_ - body_.size(), bytes.size());
    body_.append(reinterpret_cast<const char*>(bytes.data()), take);
    bytes = bytes.subspan(take);
    if (body_.size() == announced_) {
      messages.push_back(std::move(body_));
      body_ = std::string{};
      in_body_ = false;
    }
  }
  return error_;
}

void grpc_message_decoder::discard() {
  body_ = std::string{};
  prefix_fill_ = 0;
  in_body_ = false;
  error_ = error::discarded;
}

std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9)
    return std::nullopt;
  int64_t amount = 0; // at most 8 digits: no overflow here
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9')
      return std::nullopt;
    amount = amount * 10 + (c - '0');
  }
  int64_t unit_nanos = 0;
  switch (value.back()) {
    case 'H':
      unit_nanos = 3'600'000'000'000;
      break;
    case 'M':
      unit_nanos = 60'000'000'000;
      break;
    case 'S':
      unit_nanos = 1'000'000'000;
      break;
    case 'm':
      unit_nanos = 1'000'000;
      break;
    case 'u':
      unit_nanos = 1'000;
      break;
    case 'n':
      unit_nanos = 1;
      break;
    default:
      return std::nullopt;
  }
  if (amount > std::chrono::nanoseconds::max().count() / unit_nanos)
    return std::chrono::nanoseconds::max();
  return std::chrono::nanoseconds{amount * unit_nanos};
}

std::string format_grpc_timeout(std::chrono::nanoseconds timeout) {
  constexpr int64_t max_amount = 99'999'999;
  struct unit {
    int64_t nanos;
    char symbol;
  };
  static constexpr unit units[] = {{1, 'n'},
                                   {1'000, 'u'},
                                   {1'000'000, 'm'},
                                   {1'000'000'000, 'S'},
                                   {60'000'000'000, 'M'},
                                   {3'600'000'000'000, 'H'}};
  auto nanos = std::max<int64_t>(timeout.count(), 0);
  for (const auto& u : units) {
    // Round up so a client never asks for less time than it has (written so that it
    // cannot overflow near nanoseconds::max()).
    auto amount = nanos / u.nanos + (nanos % u.nanos != 0 ? 1 : 0);
    if (amount <= max_amount)
      return std::to_string(amount) + u.symbol;
  }
  return std::to_string(max_amount) + 'H';
}

std::string percent_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xF]);
    }
  }
  return out;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

constexpr std::string_view base64_alphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  auto pos = base64_alphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

} // namespace

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int hi = hex_value(text[i + 1]);
      int lo = hex_value(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte_at = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (byte_at(i) << 16) | (byte_at(i + 1) << 8) | byte_at(i + 2);
    out.push_back(base64_alphabet[(v >> 18) & 63]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    out.push_back(base64_alphabet[(v >> 6) & 63]);
    out.push_back(base64_alphabet[v & 63]);
  }
  auto rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = byte_at(i) << 16;
    if (rest == 2)
      v |= byte_at(i + 1) << 8;
    out.push_back(base64_alphabet[(v >> 18) & 63]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    if (rest == 2)
      out.push_back(base64_alphabet[(v >> 6) & 63]);
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=')
    text.remove_suffix(1);
  if (text.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = base64_value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

bool is_binary_metadata_key(std::string_view key) {
  return key.size() > 4 && key.substr(key.size() - 4) == "-bin";
}

bool is_valid_custom_metadata_key(std::string_view key) {
  if (key.empty() || key.starts_with("grpc-") || is_transport_header(key))
    return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

bool is_valid_ascii_metadata_value(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

bool is_transport_header(std::string_view key) {
  static constexpr std::string_view consumed[] = {
    "content-type",     "te",         "grpc-timeout", "grpc-encoding",     "grpc-accept-encoding",
    "content-length",   "connection", "keep-alive",   "transfer-encoding", "upgrade",
    "proxy-connection", "host"};
  if (!key.empty() && key.front() == ':')
    return true;
  return std::find(std::begin(consumed), std::end(consumed), key) != std::end(consumed);
}

} // namespace chroom::transport
