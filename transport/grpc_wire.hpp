#pragma once

// The gRPC-over-HTTP/2 wire format, free of any HTTP/2 library: length-prefixed
// message framing, grpc-timeout, grpc-message percent-encoding and metadata rules.
// Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

#include "transport/grpc_status.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::transport {

/// Size of the prefix before every message: 1 byte compressed flag + 4 bytes length.
inline constexpr size_t grpc_prefix_bytes = 5;

/// Appends `message` framed as an uncompressed gRPC message to `out`.
void append_grpc_frame(std::string& out, std::string_view message);

/// Turns a byte stream (the DATA of one HTTP/2 stream) back into messages.
class grpc_message_decoder {
public:
  enum class error {
    none,
    too_large,  ///< a prefix announced more than the maximum message size
    compressed, ///< a message has the compressed flag set
    bad_flag,   ///< the flag byte is neither 0 nor 1
    discarded,  ///< discard() was called
  };

  /// @param max_message_bytes largest message accepted, in bytes.
  explicit grpc_message_decoder(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  /// Consumes `bytes`, appending each complete message to `messages`. After an error the
  /// decoder stays failed; `announced_bytes()` tells the size a too-large prefix announced.
  error feed(std::span<const uint8_t> bytes, std::vector<std::string>& messages);

  /// True when no message is partially received (the stream may end here cleanly).
  bool at_boundary() const { return prefix_fill_ == 0 && !in_body_; }

  /// Bytes held for the message being received (prefix and body so far).
  size_t buffered_bytes() const {
    return in_body_ ? grpc_prefix_bytes + body_.size() : prefix_fill_;
  }
  /// Memory the decoder holds for that message (its buffer's capacity).
  size_t held_bytes() const { return in_body_ ? grpc_prefix_bytes + body_.capacity() : prefix_fill_; }

  /// Drops the message in progress and its buffer; the decoder then fails every feed
  /// (the stream it decoded for is being ended).
  void discard();

  uint64_t announced_bytes() const { return announced_; }

private:
  size_t max_message_bytes_;
  uint8_t prefix_[grpc_prefix_bytes]{};
  size_t prefix_fill_ = 0;
  bool in_body_ = false;
  uint64_t announced_ = 0;
  std::string body_;
  error error_ = error::none;
};

/// Parses a grpc-timeout value ("1*8DIGIT unit", units H M S m u n). Empty on malformed.
/// Values beyond what nanoseconds can hold (over about 2.5 million hours) saturate.
std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view value);

/// Formats a timeout the way clients send it (at most 8 digits, coarsest exact-enough unit).
std::string format_grpc_timeout(std::chrono::nanoseconds timeout);

/// Percent-encodes a grpc-message: bytes outside 0x20..0x7E and '%' become %XX.
std::string percent_encode(std::string_view text);

/// Decodes percent-encoding; malformed escapes are kept literally (the spec asks
/// receivers to be lenient).
std::string percent_decode(std::string_view text);

/// Base64 (standard alphabet) without padding, as gRPC sends -bin metadata.
std::string base64_encode(std::string_view bytes);

/// Decodes padded or unpadded base64; empty on invalid input.
std::optional<std::string> base64_decode(std::string_view text);

/// True for keys whose values are binary ("-bin" suffix).
bool is_binary_metadata_key(std::string_view key);

/// True for a key the application may set: lowercase [0-9a-z-_.], not a pseudo-header,
/// not reserved by gRPC ("grpc-" prefix) or HTTP/2 transport (connection-specific headers).
bool is_valid_custom_metadata_key(std::string_view key);

/// True for a value that may travel as-is in a non-binary header (printable ASCII).
bool is_valid_ascii_metadata_value(std::string_view value);

/// True for request headers the gateway consumes itself and does not pass to handlers.
bool is_transport_header(std::string_view key);

/// Request metadata with this prefix is set only by orchestrator peers on the calls they
/// pass to each other; the gateway drops it from clients' requests.
inline constexpr std::string_view reserved_metadata_prefix = "chroom-";

} // namespace chroom::transport
