// Join tokens (JWT, HS256): see join_token.hpp and docs/join-tokens.md.
//
// Signing runs once per allocation, tens of thousands of times a second, so it builds the
// token in place: the header's encoding is a constant, the claims' JSON goes into a
// per-thread scratch buffer, and the result is the only allocation. Verification runs on
// media nodes and in tests, and is written for strictness rather than speed: it accepts
// the flat JSON objects this file produces (and the same written by other encoders), and
// canonical base64url only, so that one token has exactly one spelling.
#include "transport/join_token.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <limits>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

namespace chroom::transport {
namespace {

// base64url({"alg":"HS256","typ":"JWT"}): every token we sign starts with it.
constexpr std::string_view encoded_header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
constexpr std::size_t signature_bytes = 32; // SHA-256
// 43 characters: 32 bytes in base64url without padding.
constexpr std::size_t encoded_signature_chars = (signature_bytes * 4 + 2) / 3;
// Far above any token we produce (claims are a few hundred bytes); bounds what a hostile
// token makes the verifier decode.
constexpr std::size_t max_token_chars = 8192;

constexpr char base64url_alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Characters base64url(n bytes) takes without padding.
constexpr std::size_t encoded_size(std::size_t bytes) {
  return bytes / 3 * 4 + (bytes % 3 == 0 ? 0 : bytes % 3 + 1);
}

// Writes through a pointer rather than push_back: the capacity check per character was
// a third of the signing time.
void append_base64url(std::string& out, const unsigned char* data, std::size_t size) {
  const std::size_t old_size = out.size();
  out.resize(old_size + encoded_size(size));
  char* next = out.data() + old_size;
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const std::uint32_t group = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) |
                                std::uint32_t{data[i + 2]};
    *next++ = base64url_alphabet[(group >> 18) & 0x3F];
    *next++ = base64url_alphabet[(group >> 12) & 0x3F];
    *next++ = base64url_alphabet[(group >> 6) & 0x3F];
    *next++ = base64url_alphabet[group & 0x3F];
  }
  if (const std::size_t rest = size - i; rest > 0) {
    std::uint32_t group = std::uint32_t{data[i]} << 16;
    if (rest == 2)
      group |= std::uint32_t{data[i + 1]} << 8;
    *next++ = base64url_alphabet[(group >> 18) & 0x3F];
    *next++ = base64url_alphabet[(group >> 12) & 0x3F];
    if (rest == 2)
      *next++ = base64url_alphabet[(group >> 6) & 0x3F];
  }
}

// The 6-bit value of a base64url character, or -1.
int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

// Appends the bytes `text` encodes. Only canonical unpadded base64url is accepted: no '=',
// no other alphabet, no leftover bits set (else "xx" and "xy" could both stand for the same
// byte, and a token would have several valid spellings).
bool append_base64url_decoded(std::string& out, std::string_view text) {
  if (text.size() % 4 == 1)
    return false;
  const std::size_t old_size = out.size();
  out.resize(old_size + text.size() / 4 * 3 + (text.size() % 4 == 0 ? 0 : text.size() % 4 - 1));
  char* next = out.data() + old_size;
  std::uint32_t group = 0;
  int bits = 0;
  for (const char c : text) {
    const int value = base64url_value(c);
    if (value < 0)
      return false;
    group = (group << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *next++ = static_cast<char>((group >> bits) & 0xFF);
    }
  }
  return (group & ((1u << bits) - 1)) == 0;
}

// --- JSON, the flat objects of a JWT --------------------------------------------------------

// Appends runs of plain characters at once; only '"', '\\' and control characters are
// escaped (\u00XX for the latter, which every JSON reader takes).
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto needs_escape = [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return c == '"' || c == '\\' || byte < 0x20 || byte == 0x7F;
  };
  out.push_back('"');
  std::size_t run = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!needs_escape(c))
      continue;
    out.append(text.data() + run, i - run);
    run = i + 1;
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out.append("\\u00");
      out.push_back(hex[byte >> 4]);
      out.push_back(hex[byte & 0xF]);
    }
  }
  out.append(text.data() + run, text.size() - run);
  out.push_back('"');
}

// Members go into an object whose '{' is already there; all but the first get a ','.
void append_member(std::string& out, std::string_view key, std::string_view value) {
  if (out.size() > 1)
    out.push_back(',');
  append_json_string(out, key);
  out.push_back(':');
  append_json_string(out, value);
}

void append_member(std::string& out, std::string_view key, std::int64_t value) {
  if (out.size() > 1)
    out.push_back(',');
  append_json_string(out, key);
  out.push_back(':');
  char digits[24];
  const auto [end, error] = std::to_chars(digits, digits + sizeof digits, value);
  (void)error; // 24 characters hold any int64
  out.append(digits, end);
}

// A member value: a string or an integer (the only kinds a join token holds).
struct json_value {
  bool is_string = false;
  std::string text;
  std::int64_t number = 0;
};

// A strict reader of one flat JSON object: members whose values are strings or integers.
// Arrays, nested objects, literals, fractions and exponents are refused: a join token has
// none, and refusing them keeps this reader small.
class flat_json_reader {
public:
  explicit flat_json_reader(std::string_view text) : text_(text) {}

  // Calls on_member(key, value) for each member in order; false when the text is not such
  // an object or on_member returned false.
  template <class OnMember> bool read(OnMember&& on_member) {
    skip_space();
    if (!consume('{'))
      return false;
    skip_space();
    if (consume('}'))
      return at_end();
    std::string key;
    json_value value;
    for (;;) {
      key.clear();
      skip_space();
      if (!read_string(key))
        return false;
      skip_space();
      if (!consume(':'))
        return false;
      skip_space();
      if (!read_value(value) || !on_member(std::string_view(key), value))
        return false;
      skip_space();
      if (consume('}'))
        return at_end();
      if (!consume(','))
        return false;
    }
  }

private:
  bool at_end() {
    skip_space();
    return pos_ == text_.size();
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool read_value(json_value& value) {
    value.text.clear();
    if (pos_ < text_.size() && text_[pos_] == '"') {
      value.is_string = true;
      return read_string(value.text);
    }
    value.is_string = false;
    return read_integer(value.number);
  }

  // -?(0|[1-9][0-9]*), within int64.
  bool read_integer(std::int64_t& number) {
    const std::size_t start = pos_;
    consume('-');
    const std::size_t digits = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9')
      ++pos_;
    if (pos_ == digits || (text_[digits] == '0' && pos_ - digits > 1))
      return false;
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    const auto [end, error] = std::from_chars(first, last, number);
    return error == std::errc{} && end == last;
  }

  int hex_digit(char c) const {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  }

  bool read_hex4(std::uint32_t& unit) {
    if (text_.size() - pos_ < 4)
      return false;
    unit = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = hex_digit(text_[pos_++]);
      if (digit < 0)
        return false;
      unit = (unit << 4) | static_cast<std::uint32_t>(digit);
    }
    return true;
  }

  static void append_utf8(std::string& out, std::uint32_t code_point) {
    if (code_point < 0x80) {
      out.push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
      out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    } else if (code_point < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
      out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
      out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    }
  }

  // A \u escape (the "\u" already read): one UTF-16 unit, or a surrogate pair.
  bool read_unicode_escape(std::string& out) {
    std::uint32_t unit = 0;
    if (!read_hex4(unit))
      return false;
    if (unit >= 0xDC00 && unit <= 0xDFFF)
      return false; // a low surrogate alone
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      std::uint32_t low = 0;
      if (!consume('\\') || !consume('u') || !read_hex4(low) || low < 0xDC00 || low > 0xDFFF)
        return false;
      unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, unit);
    return true;
  }

  bool read_string(std::string& out) {
    if (!consume('"'))
      return false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"')
        return true;
      if (static_cast<unsigned char>(c) < 0x20)
        return false; // control characters must be escaped
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ == text_.size())
        return false;
      switch (const char escaped = text_[pos_++]) {
        case '"':
        case '\\':
        case '/':
          out.push_back(escaped);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u':
          if (!read_unicode_escape(out))
            return false;
          break;
        default:
          return false;
      }
    }
    return false; // unterminated
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// The claims of a join token, by member name. Each must appear exactly once.
enum claim_bit : unsigned {
  claim_iss = 1u << 0,
  claim_sub = 1u << 1,
  claim_app = 1u << 2,
  claim_room = 1u << 3,
  claim_node = 1u << 4,
  claim_role = 1u << 5,
  claim_lease = 1u << 6,
  claim_iat = 1u << 7,
  claim_exp = 1u << 8,
  all_claims = (1u << 9) - 1,
  // Optional claims: at most once each, not required.
  claim_pub = 1u << 9,
  claim_rec = 1u << 10,
  claim_tier = 1u << 11,
};

bool parse_claims(std::string_view json, join_claims& claims) {
  unsigned seen = 0;
  const auto take = [&seen](claim_bit bit) {
    if (seen & bit)
      return false; // a duplicate: which one counts would be up to the reader
    seen |= bit;
    return true;
  };
  const auto string_claim = [&](claim_bit bit, const json_value& value, std::string& into) {
    if (!value.is_string || !take(bit))
      return false;
    into = value.text;
    return true;
  };
  const auto integer_claim = [&](claim_bit bit, const json_value& value, std::int64_t& into) {
    if (value.is_string || !take(bit))
      return false;
    into = value.number;
    return true;
  };
  const bool read = flat_json_reader(json).read([&](std::string_view key, const json_value& value) {
    if (key == "iss")
      return value.is_string && value.text == join_token_issuer && take(claim_iss);
    if (key == "sub")
      return string_claim(claim_sub, value, claims.client_id);
    if (key == "app")
      return string_claim(claim_app, value, claims.app_id);
    if (key == "room")
      return string_claim(claim_room, value, claims.room_id);
    if (key == "node")
      return string_claim(claim_node, value, claims.node_id);
    if (key == "role")
      return string_claim(claim_role, value, claims.role);
    if (key == "lease")
      return string_claim(claim_lease, value, claims.lease_id);
    if (key == "iat")
      return integer_claim(claim_iat, value, claims.issued_at_s);
    if (key == "exp")
      return integer_claim(claim_exp, value, claims.expires_at_s);
    if (key == "pub") {
      std::string publish;
      if (!string_claim(claim_pub, value, publish))
        return false;
      claims.publish = std::move(publish);
      return true;
    }
    if (key == "tier") {
      std::string tier;
      if (!string_claim(claim_tier, value, tier))
        return false;
      claims.tier = std::move(tier);
      return true;
    }
    if (key == "rec") {
      std::int64_t recording = 0;
      if (!integer_claim(claim_rec, value, recording) || (recording != 0 && recording != 1))
        return false;
      claims.recording = recording == 1;
      return true;
    }
    return true; // other registered or private claims are allowed, and ignored
  });
  return read && (seen & all_claims) == all_claims;
}

enum class header_verdict { ok, malformed, wrong_algorithm };

header_verdict check_header(std::string_view json) {
  bool has_alg = false;
  bool hs256 = false;
  const bool read = flat_json_reader(json).read([&](std::string_view key, const json_value& value) {
    if (key == "alg") {
      if (has_alg || !value.is_string)
        return false;
      has_alg = true;
      hs256 = value.text == "HS256";
      return true;
    }
    if (key == "typ")
      return value.is_string && value.text == "JWT";
    // RFC 7515 section 4.1.11: extensions listed in "crit" must be understood, and we
    // understand none.
    return key != "crit";
  });
  if (!read || !has_alg)
    return header_verdict::malformed;
  return hs256 ? header_verdict::ok : header_verdict::wrong_algorithm;
}

// HMAC-SHA256 with a context kept per thread. OpenSSL 3's one-shot HMAC() fetches the
// algorithm on every call: 1.1 us per token against 0.47 us with a kept context (64-byte
// key, 250-byte message, this machine). Re-keying a kept context is cheap and per call, as
// every node has its own key.
class hmac_sha256_context {
public:
  hmac_sha256_context() {
    // Fetched once per process; a context per thread, as contexts are not shareable.
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr)
      return;
    context_ = EVP_MAC_CTX_new(mac);
    char digest_name[] = "SHA256";
    const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
    if (context_ != nullptr && EVP_MAC_CTX_set_params(context_, params) != 1) {
      EVP_MAC_CTX_free(context_);
      context_ = nullptr;
    }
  }
  ~hmac_sha256_context() { EVP_MAC_CTX_free(context_); }
  hmac_sha256_context(const hmac_sha256_context&) = delete;
  hmac_sha256_context& operator=(const hmac_sha256_context&) = delete;

  // False when OpenSSL failed (no HMAC provider); the caller then falls back.
  bool compute(std::string_view key, std::string_view data,
               std::array<unsigned char, signature_bytes>& digest) {
    // A null key would make EVP_MAC_init reuse the previous call's key: an empty key must
    // still be passed as a pointer.
    static constexpr unsigned char no_key[1] = {0};
    const auto* key_bytes =
      key.empty() ? no_key : reinterpret_cast<const unsigned char*>(key.data());
    std::size_t length = 0;
    return context_ != nullptr && EVP_MAC_init(context_, key_bytes, key.size(), nullptr) == 1 &&
           EVP_MAC_update(context_, reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1 &&
           EVP_MAC_final(context_, digest.data(), &length, digest.size()) == 1 &&
           length == digest.size();
  }

private:
  EVP_MAC_CTX* context_ = nullptr;
};

// HMAC-SHA256(key, data): one HMAC computation over the whole signed text.
std::array<unsigned char, signature_bytes> hmac_sha256(std::string_view key,
                                                       std::string_view data) {
  thread_local hmac_sha256_context context;
  std::array<unsigned char, signature_bytes> digest{};
  if (context.compute(key, data, digest))
    return digest;
  // The one-shot path cannot fail for SHA-256 with in-memory buffers once OpenSSL works at
  // all; the kept context failing means it is unusable, and this is the slower equivalent.
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data(), &length);
  return digest;
}

} // namespace

std::string sign_join_token(const join_claims& claims, std::string_view key) {
  // Scratch for the claims' JSON, reused by each thread: signing allocates only the result.
  thread_local std::string json;
  json.assign(1, '{');
  json.reserve(128 + claims.client_id.size() + claims.app_id.size() + claims.room_id.size() +
               claims.node_id.size() + claims.role.size() + claims.lease_id.size());
  append_member(json, "iss", join_token_issuer);
  append_member(json, "sub", claims.client_id);
  append_member(json, "app", claims.app_id);
  append_member(json, "room", claims.room_id);
  append_member(json, "node", claims.node_id);
  append_member(json, "role", claims.role);
  append_member(json, "lease", claims.lease_id);
  append_member(json, "iat", claims.issued_at_s);
  append_member(json, "exp", claims.expires_at_s);
  if (claims.publish)
    append_member(json, "pub", *claims.publish);
  if (claims.recording)
    append_member(json, "rec", std::int64_t{*claims.recording ? 1 : 0});
  if (claims.tier)
    append_member(json, "tier", *claims.tier);
  json.push_back('}');

  std::string token;
  token.reserve(encoded_header.size() + 1 + encoded_size(json.size()) + 1 +
                encoded_signature_chars);
  token.append(encoded_header);
  token.push_back('.');
  append_base64url(token, reinterpret_cast<const unsigned char*>(json.data()), json.size());
  const auto signature = hmac_sha256(key, token);
  token.push_back('.');
  append_base64url(token, signature.data(), signature.size());
  return token;
}

std::string_view to_string(token_error error) {
  switch (error) {
    case token_error::none:
      return "valid";
    case token_error::malformed:
      return "malformed";
    case token_error::bad_signature:
      return "bad signature";
    case token_error::expired:
      return "expired";
    case token_error::wrong_algorithm:
      return "wrong algorithm";
    case token_error::wrong_node:
      return "wrong node";
  }
  return "unknown";
}

token_error verify_join_token(std::string_view token, std::string_view key,
                              std::string_view expected_node_id, std::int64_t now_s,
                              join_claims* claims_out) {
  if (token.size() > max_token_chars)
    return token_error::malformed;
  const std::size_t first_dot = token.find('.');
  if (first_dot == std::string_view::npos)
    return token_error::malformed;
  const std::size_t second_dot = token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos ||
      token.find('.', second_dot + 1) != std::string_view::npos)
    return token_error::malformed;
  const std::string_view header_part = token.substr(0, first_dot);
  const std::string_view payload_part = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view signature_part = token.substr(second_dot + 1);

  std::string decoded;
  decoded.reserve(encoded_size(std::max(header_part.size(), payload_part.size())));
  if (!append_base64url_decoded(decoded, header_part))
    return token_error::malformed;
  switch (check_header(decoded)) {
    case header_verdict::ok:
      break;
    case header_verdict::malformed:
      return token_error::malformed;
    case header_verdict::wrong_algorithm:
      return token_error::wrong_algorithm;
  }

  decoded.clear();
  if (!append_base64url_decoded(decoded, signature_part))
    return token_error::malformed;
  // A signature of another length (another algorithm's, or cut short) cannot match; it is
  // compared all the same, so that the time taken does not depend on it.
  const auto expected = hmac_sha256(key, token.substr(0, second_dot));
  std::array<unsigned char, signature_bytes> given{};
  for (std::size_t i = 0; i < given.size() && i < decoded.size(); ++i)
    given[i] = static_cast<unsigned char>(decoded[i]);
  const bool signature_matches = CRYPTO_memcmp(expected.data(), given.data(), expected.size()) == 0;
  if (!signature_matches || decoded.size() != signature_bytes)
    return token_error::bad_signature;

  decoded.clear();
  if (!append_base64url_decoded(decoded, payload_part))
    return token_error::malformed;
  join_claims claims;
  if (!parse_claims(decoded, claims))
    return token_error::malformed;
  if (claims.expires_at_s <= now_s)
    return token_error::expired;
  if (claims.node_id != expected_node_id)
    return token_error::wrong_node;
  if (claims_out != nullptr)
    *claims_out = std::move(claims);
  return token_error::none;
}

} // namespace chroom::transport
