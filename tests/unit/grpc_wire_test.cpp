// Tests of the gRPC wire format helpers (transport/grpc_wire.hpp): message framing and
// reassembly under arbitrary chunkings, grpc-timeout, grpc-message percent-encoding,
// base64 for -bin metadata, metadata key rules and the status code tables.
#include "transport/grpc_wire.hpp"

#include <chrono>
#include <cstdint>
#include <doctest/doctest.h>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using namespace std::string_view_literals;
using chroom::transport::append_grpc_frame;
using chroom::transport::base64_decode;
using chroom::transport::base64_encode;
using chroom::transport::format_grpc_timeout;
using chroom::transport::grpc_code;
using chroom::transport::grpc_code_from_int;
using chroom::transport::grpc_message_decoder;
using chroom::transport::grpc_prefix_bytes;
using chroom::transport::http_status_for;
using chroom::transport::is_binary_metadata_key;
using chroom::transport::is_transport_header;
using chroom::transport::is_valid_ascii_metadata_value;
using chroom::transport::is_valid_custom_metadata_key;
using chroom::transport::parse_grpc_timeout;
using chroom::transport::percent_decode;
using chroom::transport::percent_encode;
using decode_error = grpc_message_decoder::error;

// Fixed seed: the property loops must be reproducible when they fail.
constexpr uint32_t test_seed = 20240611;

std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string all_byte_values() {
  std::string bytes;
  for (int b = 0; b < 256; ++b)
    bytes.push_back(static_cast<char>(b));
  return bytes;
}

std::string random_bytes(std::mt19937& rng, size_t size) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string bytes(size, '\0');
  for (auto& c : bytes)
    c = static_cast<char>(byte(rng));
  return bytes;
}

// Feeds `stream` to `decoder` in random pieces of 1..max_piece bytes.
decode_error feed_chunked(grpc_message_decoder& decoder, std::string_view stream, std::mt19937& rng,
                          size_t max_piece, std::vector<std::string>& out) {
  std::uniform_int_distribution<size_t> piece(1, max_piece);
  auto result = decode_error::none;
  size_t offset = 0;
  while (offset < stream.size()) {
    auto take = std::min(piece(rng), stream.size() - offset);
    result = decoder.feed(as_bytes(stream.substr(offset, take)), out);
    offset += take;
  }
  return result;
}

std::string prefix(uint8_t flag, uint32_t length) {
  return {static_cast<char>(flag), static_cast<char>(length >> 24), static_cast<char>(length >> 16),
          static_cast<char>(length >> 8), static_cast<char>(length)};
}

} // namespace

// --- framing -----------------------------------------------------------------------

TEST_CASE("append_grpc_frame writes flag 0 and a big-endian length before the message") {
  std::string out;
  append_grpc_frame(out, "");
  CHECK(out == "\0\0\0\0\0"s);

  out = "keep";
  append_grpc_frame(out, "abc");
  CHECK(out == "keep\0\0\0\0\3abc"s);

  out.clear();
  std::string big(0x01020304 & 0xFFFF, 'x'); // 0x0304 = 772 bytes
  append_grpc_frame(out, big);
  REQUIRE(out.size() == grpc_prefix_bytes + big.size());
  CHECK(out.substr(0, 5) == "\0\0\0\x03\x04"s);
  CHECK(out.substr(5) == big);
}

TEST_CASE("decoder: one whole message, then an empty one") {
  grpc_message_decoder decoder(100);
  std::vector<std::string> messages;
  std::string stream;
  append_grpc_frame(stream, "hello");
  append_grpc_frame(stream, "");
  CHECK(decoder.feed(as_bytes(stream), messages) == decode_error::none);
  REQUIRE(messages.size() == 2);
  CHECK(messages[0] == "hello");
  CHECK(messages[1].empty());
  CHECK(decoder.at_boundary());
  CHECK(decoder.buffered_bytes() == 0);
}

TEST_CASE("decoder: a message of exactly the maximum size is accepted") {
  grpc_message_decoder decoder(10);
  std::vector<std::string> messages;
  std::string stream;
  append_grpc_frame(stream, std::string(10, 'm'));
  CHECK(decoder.feed(as_bytes(stream), messages) == decode_error::none);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == std::string(10, 'm'));
}

TEST_CASE("decoder: at_boundary is false inside a prefix and inside a body") {
  grpc_message_decoder decoder(100);
  std::vector<std::string> messages;
  std::string stream;
  append_grpc_frame(stream, "abcdef");

  CHECK(decoder.at_boundary());
  CHECK(decoder.feed(as_bytes(stream.substr(0, 3)), messages) == decode_error::none);
  CHECK_FALSE(decoder.at_boundary());
  CHECK(decoder.buffered_bytes() == 3);
  CHECK(messages.empty());

  // The prefix completes with no body byte yet: still mid-message.
  CHECK(decoder.feed(as_bytes(stream.substr(3, 2)), messages) == decode_error::none);
  CHECK_FALSE(decoder.at_boundary());
  CHECK(messages.empty());

  CHECK(decoder.feed(as_bytes(stream.substr(5, 2)), messages) == decode_error::none);
  CHECK_FALSE(decoder.at_boundary());
  CHECK(messages.empty());

  CHECK(decoder.feed(as_bytes(stream.substr(7)), messages) == decode_error::none);
  CHECK(decoder.at_boundary());
  CHECK(decoder.buffered_bytes() == 0);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == "abcdef");
}

TEST_CASE("decoder: buffered_bytes counts the prefix and the body so far") {
  grpc_message_decoder decoder(100);
  std::vector<std::string> messages;
  std::string stream;
  append_grpc_frame(stream, "abcdef");
  CHECK(decoder.feed(as_bytes(stream.substr(0, 5)), messages) == decode_error::none);
  CHECK(decoder.buffered_bytes() == 5);
  CHECK(decoder.feed(as_bytes(stream.substr(5, 2)), messages) == decode_error::none);
  CHECK(decoder.buffered_bytes() == 7);
}

TEST_CASE("decoder: random chunkings of a random message stream give the same messages") {
  std::mt19937 rng(test_seed);
  std::uniform_int_distribution<size_t> message_size(0, 300);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> expected;
    std::string stream;
    auto count = 1 + round % 7;
    for (int i = 0; i < count; ++i) {
      expected.push_back(random_bytes(rng, message_size(rng)));
      append_grpc_frame(stream, expected.back());
    }
    grpc_message_decoder decoder(300);
    std::vector<std::string> messages;
    // Pieces from 1 byte (every state transition on its own) to larger than a message.
    auto max_piece = size_t{1} << (round % 10);
    CAPTURE(round);
    CAPTURE(max_piece);
    CHECK(feed_chunked(decoder, stream, rng, max_piece, messages) == decode_error::none);
    CHECK(messages == expected);
    CHECK(decoder.at_boundary());
    CHECK(decoder.buffered_bytes() == 0);
  }
}

TEST_CASE("decoder: a prefix over the maximum is too_large and the decoder stays failed") {
  grpc_message_decoder decoder(10);
  std::vector<std::string> messages;
  std::string stream;
  append_grpc_frame(stream, "ok");
  stream += prefix(0, 11);
  stream += std::string(11, 'x');
  // The message before the bad prefix is still delivered.
  CHECK(decoder.feed(as_bytes(stream), messages) == decode_error::too_large);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == "ok");
  CHECK(decoder.announced_bytes() == 11);

  std::string more;
  append_grpc_frame(more, "later");
  CHECK(decoder.feed(as_bytes(more), messages) == decode_error::too_large);
  CHECK(messages.size() == 1);
}

TEST_CASE("decoder: the largest announced length is reported, not truncated") {
  grpc_message_decoder decoder(4u << 20);
  std::vector<std::string> messages;
  CHECK(decoder.feed(as_bytes(prefix(0, 0xFFFFFFFF)), messages) == decode_error::too_large);
  CHECK(decoder.announced_bytes() == 0xFFFFFFFFu);
  CHECK(messages.empty());
}

TEST_CASE("decoder: flag 1 is compressed, any other non-zero flag is bad_flag") {
  std::vector<std::string> messages;
  {
    grpc_message_decoder decoder(100);
    auto stream = prefix(1, 3) + "abc";
    CHECK(decoder.feed(as_bytes(stream), messages) == decode_error::compressed);
  }
  for (int flag : {2, 0x80, 0xFF}) {
    CAPTURE(flag);
    grpc_message_decoder decoder(100);
    auto stream = prefix(static_cast<uint8_t>(flag), 3) + "abc";
    CHECK(decoder.feed(as_bytes(stream), messages) == decode_error::bad_flag);
  }
  CHECK(messages.empty());
}

TEST_CASE("decoder: an error is found whatever the chunking") {
  std::mt19937 rng(test_seed + 1);
  std::string stream;
  append_grpc_frame(stream, "first");
  stream += prefix(1, 4) + "zzzz";
  for (size_t max_piece : {1, 2, 3, 7, 64}) {
    CAPTURE(max_piece);
    grpc_message_decoder decoder(100);
    std::vector<std::string> messages;
    CHECK(feed_chunked(decoder, stream, rng, max_piece, messages) == decode_error::compressed);
    REQUIRE(messages.size() == 1);
    CHECK(messages[0] == "first");
  }
}

// --- grpc-timeout -------------------------------------------------------------------

TEST_CASE("parse_grpc_timeout: every unit") {
  CHECK(parse_grpc_timeout("1H") == std::chrono::nanoseconds(1h));
  CHECK(parse_grpc_timeout("2M") == std::chrono::nanoseconds(2min));
  CHECK(parse_grpc_timeout("3S") == std::chrono::nanoseconds(3s));
  CHECK(parse_grpc_timeout("4m") == std::chrono::nanoseconds(4ms));
  CHECK(parse_grpc_timeout("5u") == std::chrono::nanoseconds(5us));
  CHECK(parse_grpc_timeout("6n") == std::chrono::nanoseconds(6ns));
  CHECK(parse_grpc_timeout("0n") == std::chrono::nanoseconds(0));
  CHECK(parse_grpc_timeout("00000001m") == std::chrono::nanoseconds(1ms));
  CHECK(parse_grpc_timeout("99999999S") == std::chrono::nanoseconds(99'999'999s));
  CHECK(parse_grpc_timeout("99999999M") ==
        std::chrono::nanoseconds(std::chrono::minutes(99'999'999)));
  CHECK(parse_grpc_timeout("2562047H") == std::chrono::nanoseconds(std::chrono::hours(2'562'047)));
}

TEST_CASE("parse_grpc_timeout: malformed values are empty") {
  for (std::string_view bad : {"", "S", "1", "12345678", "123456789S", "-1S", "+1S", "1s", "1h",
                               "1x", "1 S", " 1S", "1.5S", "S1", "1SS", "abcS", "0x1S"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_grpc_timeout(bad).has_value());
  }
  CHECK_FALSE(parse_grpc_timeout("1\0"sv).has_value());
}

TEST_CASE("parse_grpc_timeout: the largest hour values do not wrap around") {
  auto longest = parse_grpc_timeout("99999999H");
  REQUIRE(longest.has_value());
  CHECK(*longest >= std::chrono::nanoseconds(std::chrono::hours(2'562'047)));
  auto just_over = parse_grpc_timeout("2562048H");
  REQUIRE(just_over.has_value());
  CHECK(*just_over >= std::chrono::nanoseconds(std::chrono::hours(2'562'047)));
}

TEST_CASE("format_grpc_timeout: known values") {
  CHECK(format_grpc_timeout(0ns) == "0n");
  CHECK(format_grpc_timeout(1ns) == "1n");
  CHECK(format_grpc_timeout(99'999'999ns) == "99999999n");
  CHECK(format_grpc_timeout(100'000'000ns) == "100000u");
  CHECK(format_grpc_timeout(-5s) == "0n");
  // Rounded up, never down: a client must not ask for less time than it has.
  CHECK(format_grpc_timeout(100'000'001ns) == "100001u");
}

TEST_CASE("format_grpc_timeout: at most 8 digits, parses back to at least the input") {
  std::mt19937_64 rng(test_seed);
  // Log-uniform over 1 ns .. ~11 days, and a few edges.
  std::vector<int64_t> samples = {1,
                                  999,
                                  1000,
                                  1001,
                                  99'999'999,
                                  100'000'000,
                                  60'000'000'000,
                                  3'600'000'000'000,
                                  99'999'999'000'000'000};
  std::uniform_int_distribution<int> digits(0, 18);
  for (int i = 0; i < 500; ++i) {
    int64_t scale = 1;
    for (int d = digits(rng); d > 0; --d)
      scale *= 10;
    samples.push_back(std::uniform_int_distribution<int64_t>(scale, scale * 9)(rng));
  }
  for (auto n : samples) {
    std::chrono::nanoseconds timeout(n);
    auto text = format_grpc_timeout(timeout);
    CAPTURE(n);
    CAPTURE(text);
    REQUIRE(text.size() >= 2);
    CHECK(text.size() <= 9);
    auto parsed = parse_grpc_timeout(text);
    REQUIRE(parsed.has_value());
    CHECK(*parsed >= timeout);
    // Rounding costs less than one unit, and the unit is chosen so that is < 1e-5 relative.
    CHECK((*parsed - timeout).count() <= n / 99'999);
  }
}

TEST_CASE("format_grpc_timeout: nanoseconds::max() gives a parseable header") {
  auto text = format_grpc_timeout(std::chrono::nanoseconds::max());
  CAPTURE(text);
  CHECK(text.size() <= 9);
  CHECK(text.front() != '-');
}

// --- percent-encoding --------------------------------------------------------------

TEST_CASE("percent_encode: printable ASCII passes, '%' and the rest become %XX") {
  CHECK(percent_encode("") == "");
  CHECK(percent_encode("hello world ~!") == "hello world ~!");
  CHECK(percent_encode("%") == "%25");
  CHECK(percent_encode("50% off") == "50%25 off");
  CHECK(percent_encode("a\nb\tc") == "a%0Ab%09c");
  CHECK(percent_encode("\x7F") == "%7F");
  CHECK(percent_encode("\x1F") == "%1F");
  CHECK(percent_encode("\0"s) == "%00");
  CHECK(percent_encode("caf\xC3\xA9") == "caf%C3%A9");  // UTF-8 é
  CHECK(percent_encode("\xE2\x82\xAC") == "%E2%82%AC"); // UTF-8 €
}

TEST_CASE("percent_decode: well-formed escapes, either hex case") {
  CHECK(percent_decode("caf%C3%A9") == "caf\xC3\xA9");
  CHECK(percent_decode("caf%c3%a9") == "caf\xC3\xA9");
  CHECK(percent_decode("%25") == "%");
  CHECK(percent_decode("%00") == "\0"s);
  CHECK(percent_decode("no escapes") == "no escapes");
}

TEST_CASE("percent_decode: malformed escapes are kept literally") {
  CHECK(percent_decode("%") == "%");
  CHECK(percent_decode("%4") == "%4");
  CHECK(percent_decode("%zz") == "%zz");
  CHECK(percent_decode("%4g") == "%4g");
  CHECK(percent_decode("%g4") == "%g4");
  CHECK(percent_decode("a%") == "a%");
  CHECK(percent_decode("ab%2") == "ab%2");
  CHECK(percent_decode("%%41") == "%A");
  CHECK(percent_decode("100%") == "100%");
}

TEST_CASE("percent encoding round-trips every byte value and random byte strings") {
  auto all = all_byte_values();
  auto encoded = percent_encode(all);
  for (char c : encoded)
    CHECK((c >= 0x20 && c <= 0x7E));
  CHECK(percent_decode(encoded) == all);

  std::mt19937 rng(test_seed);
  for (int round = 0; round < 200; ++round) {
    auto bytes = random_bytes(rng, static_cast<size_t>(round));
    CAPTURE(round);
    CHECK(percent_decode(percent_encode(bytes)) == bytes);
  }
}

// --- base64 ------------------------------------------------------------------------

TEST_CASE("base64: RFC 4648 section 10 vectors, emitted without padding") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg");
  CHECK(base64_encode("fo") == "Zm8");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg");
  CHECK(base64_encode("fooba") == "Zm9vYmE");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode("\xFB\xFF") == "+/8");
  CHECK(base64_encode("\xFF\xFF\xFF") == "////");
  CHECK(base64_encode("\0\0\0"s) == "AAAA");
}

TEST_CASE("base64: decodes padded and unpadded RFC 4648 vectors") {
  struct vector {
    std::string_view padded, unpadded, plain;
  };
  for (auto [padded, unpadded, plain] :
       {vector{"", "", ""}, vector{"Zg==", "Zg", "f"}, vector{"Zm8=", "Zm8", "fo"},
        vector{"Zm9v", "Zm9v", "foo"}, vector{"Zm9vYg==", "Zm9vYg", "foob"},
        vector{"Zm9vYmE=", "Zm9vYmE", "fooba"}, vector{"Zm9vYmFy", "Zm9vYmFy", "foobar"}}) {
    CAPTURE(padded);
    CHECK(base64_decode(padded) == std::string(plain));
    CHECK(base64_decode(unpadded) == std::string(plain));
  }
}

TEST_CASE("base64: invalid input is empty") {
  for (std::string_view bad : {"Z", "Z===", "Zm9vY", "Zm9vY=", "Zm9v!", "Zm-v", "Zm_v", "Zm9v\n",
                               "Zm 9v", "Z=g=", "=Zg"}) {
    CAPTURE(bad);
    CHECK_FALSE(base64_decode(bad).has_value());
  }
  CHECK_FALSE(base64_decode("Zm9v\0"sv).has_value());
  CHECK_FALSE(base64_decode("\xC3\xA9\xC3\xA9").has_value());
}

TEST_CASE("base64: round-trips every byte value and every length") {
  auto all = all_byte_values();
  CHECK(base64_decode(base64_encode(all)) == all);
  std::mt19937 rng(test_seed);
  for (size_t size = 0; size < 100; ++size) {
    auto bytes = random_bytes(rng, size);
    auto text = base64_encode(bytes);
    CAPTURE(size);
    CHECK(text.size() == (size * 4 + 2) / 3);
    CHECK(text.find('=') == std::string::npos);
    CHECK(base64_decode(text) == bytes);
    // Padded to a multiple of 4, as other implementations send it.
    CHECK(base64_decode(text + std::string((4 - text.size() % 4) % 4, '=')) == bytes);
  }
}

// --- metadata rules ----------------------------------------------------------------

TEST_CASE("is_binary_metadata_key: only a non-empty name followed by -bin") {
  CHECK(is_binary_metadata_key("x-bin"));
  CHECK(is_binary_metadata_key("trace-context-bin"));
  CHECK_FALSE(is_binary_metadata_key("-bin"));
  CHECK_FALSE(is_binary_metadata_key("bin"));
  CHECK_FALSE(is_binary_metadata_key("x-bint"));
  CHECK_FALSE(is_binary_metadata_key("x-BIN"));
  CHECK_FALSE(is_binary_metadata_key("xbin"));
  CHECK_FALSE(is_binary_metadata_key(""));
}

TEST_CASE("is_valid_custom_metadata_key") {
  for (std::string_view good :
       {"x-user", "x_user.name-1", "authorization", "user-agent", "x-token-bin", "0", "a.b_c-d"}) {
    CAPTURE(good);
    CHECK(is_valid_custom_metadata_key(good));
  }
  for (std::string_view bad : {"",
                               "X-User",
                               "x user",
                               "x/user",
                               "x:user",
                               ":path",
                               ":authority",
                               "grpc-status",
                               "grpc-message",
                               "grpc-custom",
                               "content-type",
                               "te",
                               "connection",
                               "keep-alive",
                               "transfer-encoding",
                               "upgrade",
                               "proxy-connection",
                               "host",
                               "grpc-timeout",
                               "content-length",
                               "x-\xC3\xA9"}) {
    CAPTURE(bad);
    CHECK_FALSE(is_valid_custom_metadata_key(bad));
  }
}

TEST_CASE("is_valid_ascii_metadata_value: printable ASCII only") {
  CHECK(is_valid_ascii_metadata_value(""));
  CHECK(is_valid_ascii_metadata_value("hello world"));
  CHECK(is_valid_ascii_metadata_value(" ~!\"#"));
  CHECK_FALSE(is_valid_ascii_metadata_value("tab\there"));
  CHECK_FALSE(is_valid_ascii_metadata_value("line\n"));
  CHECK_FALSE(is_valid_ascii_metadata_value("\x7F"));
  CHECK_FALSE(is_valid_ascii_metadata_value("\x80"));
  CHECK_FALSE(is_valid_ascii_metadata_value("caf\xC3\xA9"));
  CHECK_FALSE(is_valid_ascii_metadata_value("\0"sv));
}

TEST_CASE("is_transport_header: pseudo-headers and the headers the gateway consumes") {
  for (std::string_view key :
       {":path", ":method", ":authority", ":scheme", "content-type", "te", "grpc-timeout",
        "grpc-encoding", "grpc-accept-encoding", "content-length", "connection", "keep-alive",
        "transfer-encoding", "upgrade", "proxy-connection", "host"}) {
    CAPTURE(key);
    CHECK(is_transport_header(key));
  }
  for (std::string_view key : {"x-user", "user-agent", "authorization", "x-token-bin", ""}) {
    CAPTURE(key);
    CHECK_FALSE(is_transport_header(key));
  }
}

// --- status codes ------------------------------------------------------------------

TEST_CASE("to_string(grpc_code) names every code, UNKNOWN outside the enum") {
  constexpr std::string_view names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
  for (int i = 0; i < 17; ++i) {
    CAPTURE(i);
    CHECK(to_string(static_cast<grpc_code>(i)) == names[i]);
  }
  CHECK(to_string(static_cast<grpc_code>(17)) == "UNKNOWN");
  CHECK(to_string(static_cast<grpc_code>(-1)) == "UNKNOWN");
}

TEST_CASE("grpc_code_from_int: identity in range, unknown outside") {
  for (int i = 0; i <= 16; ++i)
    CHECK(grpc_code_from_int(i) == static_cast<grpc_code>(i));
  CHECK(grpc_code_from_int(-1) == grpc_code::unknown);
  CHECK(grpc_code_from_int(17) == grpc_code::unknown);
  CHECK(grpc_code_from_int(std::numeric_limits<int64_t>::max()) == grpc_code::unknown);
  CHECK(grpc_code_from_int(std::numeric_limits<int64_t>::min()) == grpc_code::unknown);
  CHECK(grpc_code_from_int(int64_t{1} << 32) == grpc_code::unknown);
}

TEST_CASE("http_status_for follows google.rpc's HTTP mapping") {
  CHECK(http_status_for(grpc_code::ok) == 200);
  CHECK(http_status_for(grpc_code::cancelled) == 499);
  CHECK(http_status_for(grpc_code::unknown) == 500);
  CHECK(http_status_for(grpc_code::invalid_argument) == 400);
  CHECK(http_status_for(grpc_code::deadline_exceeded) == 504);
  CHECK(http_status_for(grpc_code::not_found) == 404);
  CHECK(http_status_for(grpc_code::already_exists) == 409);
  CHECK(http_status_for(grpc_code::permission_denied) == 403);
  CHECK(http_status_for(grpc_code::resource_exhausted) == 429);
  CHECK(http_status_for(grpc_code::failed_precondition) == 400);
  CHECK(http_status_for(grpc_code::aborted) == 409);
  CHECK(http_status_for(grpc_code::out_of_range) == 400);
  CHECK(http_status_for(grpc_code::unimplemented) == 501);
  CHECK(http_status_for(grpc_code::internal) == 500);
  CHECK(http_status_for(grpc_code::unavailable) == 503);
  CHECK(http_status_for(grpc_code::data_loss) == 500);
  CHECK(http_status_for(grpc_code::unauthenticated) == 401);
}
