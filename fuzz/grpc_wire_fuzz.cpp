// The gRPC wire format of transport/grpc_wire: the length-prefix decoder above all, and the
// small parsers of grpc-timeout, grpc-message and -bin metadata. First byte: which one
// (and, for the decoder, the message size limit); the rest is the input.
//
// The decoder is checked against a reference written here from the spec, fed the same
// bytes whole: pieces must not change what comes out, it never returns more bytes than it
// was given, and it holds no more memory than its header promises.
#include "fuzz/fuzz_check.hpp"
#include "transport/grpc_wire.hpp"

#include <string>
#include <vector>

namespace {

using namespace chroom::fuzz;
using chroom::transport::grpc_message_decoder;
using chroom::transport::grpc_prefix_bytes;

/// What a gRPC message stream means (PROTOCOL-HTTP2.md "Length-Prefixed-Message"), decoded
/// in one go.
struct reference_result {
  std::vector<std::string> messages;
  grpc_message_decoder::error error = grpc_message_decoder::error::none;
  size_t partial = 0; // bytes of an unfinished message at the end
};

reference_result reference_decode(std::string_view bytes, size_t max_message_bytes) {
  reference_result result;
  while (bytes.size() >= grpc_prefix_bytes) {
    auto flag = static_cast<uint8_t>(bytes[0]);
    uint64_t length = 0;
    for (size_t i = 1; i < grpc_prefix_bytes; ++i)
      length = (length << 8) | static_cast<uint8_t>(bytes[i]);
    if (flag > 1) {
      result.error = grpc_message_decoder::error::bad_flag;
      return result;
    }
    if (flag == 1) {
      result.error = grpc_message_decoder::error::compressed;
      return result;
    }
    if (length > max_message_bytes) {
      result.error = grpc_message_decoder::error::too_large;
      return result;
    }
    if (bytes.size() - grpc_prefix_bytes < length)
      break;
    result.messages.emplace_back(bytes.substr(grpc_prefix_bytes, length));
    bytes.remove_prefix(grpc_prefix_bytes + length);
  }
  result.partial = bytes.size();
  return result;
}

/// Buffer the decoder reserves at once for a message announced larger than what arrived
/// (eager_reserve_bytes in grpc_wire.cpp); beyond it the buffer grows with what arrives,
/// at most twice that (grpc_wire.hpp).
constexpr size_t eager_reserve_bytes = 64u << 10;

void fuzz_decoder(byte_reader& in) {
  static constexpr size_t limits[] = {4u << 20, 0, 1, 100, 1000, 70000};
  const size_t max_message_bytes = limits[in.pick(std::size(limits))];
  const size_t max_piece = 1 + in.u8();
  auto input = in.rest();
  std::string_view whole{reinterpret_cast<const char*>(input.data()), input.size()};
  auto expected = reference_decode(whole, max_message_bytes);

  grpc_message_decoder decoder{max_message_bytes};
  std::vector<std::string> messages;
  auto error = grpc_message_decoder::error::none;
  size_t fed = 0;
  size_t largest_piece = 0;
  // Piece sizes from the bytes themselves: deterministic, and varied.
  for (size_t offset = 0; offset < input.size();) {
    auto piece = std::min<size_t>(input.size() - offset, 1 + input[offset] % max_piece);
    largest_piece = std::max(largest_piece, piece);
    size_t before = messages.size();
    error = decoder.feed(input.subspan(offset, piece), messages);
    offset += piece;
    fed += piece;
    size_t out = 0;
    for (const auto& message : messages)
      out += grpc_prefix_bytes + message.size();
    FUZZ_CHECK(out + decoder.buffered_bytes() <= fed,
               "decoder returned " + std::to_string(out) + " + " +
                 std::to_string(decoder.buffered_bytes()) + " buffered bytes of " +
                 std::to_string(fed) + " fed");
    for (size_t i = before; i < messages.size(); ++i)
      FUZZ_CHECK(messages[i].size() <= max_message_bytes, "message over the limit");
    if (error == grpc_message_decoder::error::none) {
      FUZZ_CHECK(out + decoder.buffered_bytes() == fed, "bytes lost without an error");
      FUZZ_CHECK(decoder.held_bytes() >= decoder.buffered_bytes(), "holds less than it buffers");
      FUZZ_CHECK(decoder.held_bytes() <=
                   grpc_prefix_bytes +
                     std::max({2 * decoder.buffered_bytes(), eager_reserve_bytes, largest_piece}),
                 "holds " + std::to_string(decoder.held_bytes()) + " bytes for " +
                   std::to_string(decoder.buffered_bytes()));
    } else {
      break;
    }
  }
  FUZZ_CHECK(error == expected.error, "error differs from the reference");
  FUZZ_CHECK(messages == expected.messages, "messages differ from the reference");
  if (error == grpc_message_decoder::error::none) {
    FUZZ_CHECK(decoder.buffered_bytes() == expected.partial, "partial message differs");
    FUZZ_CHECK(decoder.at_boundary() == (expected.partial == 0), "at_boundary is wrong");
  }
  decoder.discard();
  FUZZ_CHECK(decoder.held_bytes() == 0 && decoder.buffered_bytes() == 0, "discard kept bytes");
  FUZZ_CHECK(decoder.feed(chroom::fuzz::as_bytes("\0\0\0\0\0"), messages) ==
               grpc_message_decoder::error::discarded,
             "a discarded decoder decodes");
}

void fuzz_timeout(byte_reader& in) {
  auto text = in.text(in.remaining());
  auto timeout = chroom::transport::parse_grpc_timeout(text);
  if (timeout) {
    FUZZ_CHECK(timeout->count() >= 0, "negative timeout from " + std::string{text});
    // What a client would send for it means at least as long (clients round up).
    auto formatted = chroom::transport::format_grpc_timeout(*timeout);
    auto again = chroom::transport::parse_grpc_timeout(formatted);
    FUZZ_CHECK(again && *again >= *timeout, std::string{text} + " -> " + formatted);
  }
}

void fuzz_percent(byte_reader& in) {
  auto text = in.text(in.remaining());
  auto encoded = chroom::transport::percent_encode(text);
  FUZZ_CHECK(chroom::transport::is_valid_ascii_metadata_value(encoded), encoded);
  FUZZ_CHECK(chroom::transport::percent_decode(encoded) == text, "percent round trip");
  auto decoded = chroom::transport::percent_decode(text);
  FUZZ_CHECK(decoded.size() <= text.size(), "percent_decode grew its input");
}

void fuzz_base64(byte_reader& in) {
  auto text = in.text(in.remaining());
  auto encoded = chroom::transport::base64_encode(text);
  auto decoded = chroom::transport::base64_decode(encoded);
  FUZZ_CHECK(decoded && *decoded == text, "base64 round trip");
  if (auto bytes = chroom::transport::base64_decode(text)) {
    auto digits = text.find_last_not_of('=') + 1;
    FUZZ_CHECK(bytes->size() == digits * 6 / 8, "base64_decode length");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  byte_reader in{data, size};
  switch (in.u8() % 8) {
    case 0:
      fuzz_timeout(in);
      break;
    case 1:
      fuzz_percent(in);
      break;
    case 2:
      fuzz_base64(in);
      break;
    default:
      fuzz_decoder(in);
      break;
  }
  return 0;
}
