// Tests of join tokens (transport/join_token.hpp): round trips, a fixed vector computed
// independently, and every way a token can be refused.
#include "transport/join_token.hpp"

#include "tests/unit/jwt_for_tests.hpp"

#include <cstdint>
#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string>
#include <string_view>

namespace {

using chroom::test::base64url;
using chroom::test::mac;

using chroom::transport::join_claims;
using chroom::transport::sign_join_token;
using chroom::transport::token_error;
using chroom::transport::verify_join_token;

// The secret of node media-1 derived from the key of docs/configuration.md's example.
constexpr std::string_view node_key =
  "773e3fe0bf2ef316476b909136483ec570dd6ffad9e77edac85e21cb84347a61";
constexpr std::int64_t issued = 1700000000;

join_claims example_claims() {
  join_claims claims;
  claims.client_id = "alice@example.com";
  claims.app_id = "telemedicine";
  claims.room_id = "room-42";
  claims.node_id = "media-1";
  claims.role = "host";
  claims.lease_id = "lease-0001";
  claims.issued_at_s = issued;
  claims.expires_at_s = issued + 300;
  return claims;
}

// Computed once, independently of the code under test, with
//   /usr/bin/python3 -c '
//   import hmac,hashlib,base64,json
//   b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
//   key=b"773e3fe0bf2ef316476b909136483ec570dd6ffad9e77edac85e21cb84347a61"
//   h=b(json.dumps({"alg":"HS256","typ":"JWT"},separators=(",",":")).encode())
//   p=b(json.dumps({"iss":"chroom","sub":"alice@example.com","app":"telemedicine",
//     "room":"room-42","node":"media-1","role":"host","lease":"lease-0001",
//     "iat":1700000000,"exp":1700000300},separators=(",",":")).encode())
//   s=b(hmac.new(key,(h+"."+p).encode(),hashlib.sha256).digest())
//   print(h+"."+p+"."+s)'
constexpr std::string_view example_token =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
  "eyJpc3MiOiJjaHJvb20iLCJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImFwcCI6InRlbGVtZWRpY2luZSIsInJvb20i"
  "OiJyb29tLTQyIiwibm9kZSI6Im1lZGlhLTEiLCJyb2xlIjoiaG9zdCIsImxlYXNlIjoibGVhc2UtMDAwMSIsImlhdCI6"
  "MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwfQ."
  "a7l1pSfVmKI8RaUysxgCqXNWWTrl_YHfKyPz0ANXYUQ";

// A token with any header and claims JSON, signed with `digest` (HMAC).
std::string make_token(std::string_view header_json, std::string_view claims_json,
                       std::string_view key = node_key, const EVP_MD* digest = EVP_sha256()) {
  const std::string signed_part = base64url(header_json) + "." + base64url(claims_json);
  return signed_part + "." + base64url(mac(digest, key, signed_part));
}

constexpr std::string_view hs256_header = R"({"alg":"HS256","typ":"JWT"})";
constexpr std::string_view example_claims_json =
  R"({"iss":"chroom","sub":"alice@example.com","app":"telemedicine","room":"room-42",)"
  R"("node":"media-1","role":"host","lease":"lease-0001","iat":1700000000,"exp":1700000300})";

token_error verify(std::string_view token, join_claims* out = nullptr,
                   std::string_view key = node_key, std::string_view node = "media-1",
                   std::int64_t now = issued) {
  return verify_join_token(token, key, node, now, out);
}

bool same(const join_claims& a, const join_claims& b) {
  return a.client_id == b.client_id && a.app_id == b.app_id && a.room_id == b.room_id &&
         a.node_id == b.node_id && a.role == b.role && a.lease_id == b.lease_id &&
         a.issued_at_s == b.issued_at_s && a.expires_at_s == b.expires_at_s &&
         a.publish == b.publish && a.recording == b.recording;
}

} // namespace

TEST_SUITE_BEGIN("join_token");

TEST_CASE("the fixed vector: our signer matches an independent computation") {
  CHECK(sign_join_token(example_claims(), node_key) == example_token);
  CHECK(make_token(hs256_header, example_claims_json) == example_token);
  join_claims out;
  REQUIRE(verify(example_token, &out) == token_error::none);
  CHECK(same(out, example_claims()));
}

TEST_CASE("round trip") {
  join_claims claims = example_claims();
  claims.node_id = "eu-west.media_2";
  claims.role = "viewer";
  const std::string token = sign_join_token(claims, "another secret of sixteen+");
  join_claims out;
  CHECK(verify(token, &out, "another secret of sixteen+", "eu-west.media_2") == token_error::none);
  CHECK(same(out, claims));
  // A null claims_out is allowed.
  CHECK(verify(token, nullptr, "another secret of sixteen+", "eu-west.media_2") ==
        token_error::none);

  SUBCASE("characters callers never pass are escaped, and come back unchanged") {
    claims.client_id = "quote\" backslash\\ newline\n nul" + std::string(1, '\0') + " del\x7f";
    claims.room_id = "caf\xc3\xa9"; // UTF-8 passes through
    claims.role = "";
    const std::string escaped = sign_join_token(claims, node_key);
    CHECK(verify(escaped, &out, node_key, "eu-west.media_2") == token_error::none);
    CHECK(same(out, claims));
  }
  SUBCASE("the optional claims pub and rec") {
    claims.publish = "audio video";
    claims.recording = false;
    const std::string with_rights = sign_join_token(claims, node_key);
    join_claims rights;
    CHECK(verify(with_rights, &rights, node_key, "eu-west.media_2") == token_error::none);
    CHECK(rights.publish == std::optional<std::string>{"audio video"});
    CHECK(rights.recording == std::optional<bool>{false});
    claims.publish = "";
    claims.recording = true;
    CHECK(verify(sign_join_token(claims, node_key), &rights, node_key, "eu-west.media_2") ==
          token_error::none);
    CHECK(rights.publish == std::optional<std::string>{""});
    CHECK(rights.recording == std::optional<bool>{true});
    // Tokens without them (issuers before 1.2) leave them unset.
    join_claims plain;
    CHECK(verify(std::string(example_token), &plain) == token_error::none);
    CHECK(!plain.publish);
    CHECK(!plain.recording);
  }
  SUBCASE("negative and extreme times") {
    claims.issued_at_s = INT64_MIN;
    claims.expires_at_s = INT64_MAX;
    CHECK(verify(sign_join_token(claims, node_key), &out, node_key, "eu-west.media_2") ==
          token_error::none);
    CHECK(same(out, claims));
  }
  SUBCASE("tokens from other encoders: spaces, escapes, extra claims and header fields") {
    const std::string spaced = make_token(
      R"( { "typ" : "JWT" , "alg" : "HS256", "kid": "k1" } )",
      "{\n \"exp\": 1700000300, \"iat\": 1700000000, \"iss\": \"chroom\", \"sub\": "
      "\"alice\\u0040example.com\", \"app\": \"telemedicine\", \"room\": \"room\\/42\", "
      "\"node\": \"media-1\", \"role\": \"host\", \"lease\": \"lease-0001\", \"jti\": \"x\", "
      "\"nbf\": 1, \"emoji\": \"\\ud83d\\ude00\"\n}");
    CHECK(verify(spaced, &out) == token_error::none);
    CHECK(out.client_id == "alice@example.com");
    CHECK(out.room_id == "room/42");
  }
}

TEST_CASE("a tampered token is refused") {
  const std::string token(example_token);
  const std::size_t first_dot = token.find('.');
  const std::size_t second_dot = token.find('.', first_dot + 1);

  SUBCASE("payload: another claim under the old signature") {
    std::string claims_json(example_claims_json);
    claims_json.replace(claims_json.find("room-42"), 7, "room-43");
    const std::string forged =
      token.substr(0, first_dot + 1) + base64url(claims_json) + token.substr(second_dot);
    CHECK(verify(forged) == token_error::bad_signature);
  }
  SUBCASE("payload: one character changed") {
    std::string forged = token;
    forged[first_dot + 5] = forged[first_dot + 5] == 'A' ? 'B' : 'A';
    CHECK(verify(forged) == token_error::bad_signature);
  }
  SUBCASE("signature: one character changed, cut short, missing") {
    std::string forged = token;
    forged[second_dot + 1] = forged[second_dot + 1] == 'A' ? 'B' : 'A';
    CHECK(verify(forged) == token_error::bad_signature);
    CHECK(verify(token.substr(0, token.size() - 3)) == token_error::bad_signature);
    CHECK(verify(token.substr(0, second_dot + 1)) == token_error::bad_signature);
    CHECK(verify(token + "AAAA") == token_error::bad_signature);
  }
  SUBCASE("header: alg none, with or without a signature") {
    const std::string none =
      base64url(R"({"alg":"none","typ":"JWT"})") + "." + base64url(example_claims_json) + ".";
    CHECK(verify(none) == token_error::wrong_algorithm);
    CHECK(verify(none + token.substr(second_dot + 1)) == token_error::wrong_algorithm);
  }
  SUBCASE("header: HS512 (validly signed with HMAC-SHA512 under the same key)") {
    const std::string hs512 =
      make_token(R"({"alg":"HS512","typ":"JWT"})", example_claims_json, node_key, EVP_sha512());
    CHECK(verify(hs512) == token_error::wrong_algorithm);
  }
  SUBCASE("header: other spellings and algorithms") {
    for (const char* header : {R"({"alg":"hs256"})", R"({"alg":"RS256"})", R"({"alg":""})"}) {
      CAPTURE(header);
      CHECK(verify(make_token(header, example_claims_json)) == token_error::wrong_algorithm);
    }
    // The same header re-encoded differently is another signed text: the signature fails.
    const std::string reordered =
      base64url(R"({"typ":"JWT","alg":"HS256"})") + token.substr(first_dot);
    CHECK(verify(reordered) == token_error::bad_signature);
  }
  SUBCASE("header: no alg, alg twice, alg not a string, another typ, crit") {
    for (const char* header :
         {R"({"typ":"JWT"})", R"({"alg":"HS256","alg":"none"})", R"({"alg":256})",
          R"({"alg":"HS256","typ":"JWE"})", R"({"alg":"HS256","crit":"exp"})",
          R"({"alg":["HS256"]})", "{}", "[]", "null"}) {
      CAPTURE(header);
      CHECK(verify(make_token(header, example_claims_json)) == token_error::malformed);
    }
  }
}

TEST_CASE("expiry: exp is the first second the token is refused") {
  join_claims out;
  CHECK(verify(example_token, &out, node_key, "media-1", issued + 299) == token_error::none);
  CHECK(verify(example_token, &out, node_key, "media-1", issued + 300) == token_error::expired);
  CHECK(verify(example_token, &out, node_key, "media-1", issued + 100000) == token_error::expired);
}

TEST_CASE("wrong key and wrong node") {
  CHECK(verify(example_token, nullptr, "a-different-secret-0123456789") ==
        token_error::bad_signature);
  // An empty key is a key like any other (and not "the previous call's key" to OpenSSL).
  CHECK(verify(example_token, nullptr, "") == token_error::bad_signature);
  const std::string empty_key_token = sign_join_token(example_claims(), "");
  CHECK(empty_key_token == make_token(hs256_header, example_claims_json, ""));
  CHECK(verify(empty_key_token, nullptr, "") == token_error::none);
  CHECK(verify(empty_key_token, nullptr, node_key) == token_error::bad_signature);
  CHECK(verify(example_token, nullptr, node_key, "media-2") == token_error::wrong_node);
  CHECK(verify(example_token, nullptr, node_key, "") == token_error::wrong_node);
  // Expiry is judged before the node.
  CHECK(verify(example_token, nullptr, node_key, "media-2", issued + 300) == token_error::expired);
}

TEST_CASE("claims must be exactly the ones we sign") {
  const auto claims_with = [](std::string_view from, std::string_view to) {
    std::string json(example_claims_json);
    const std::size_t at = json.find(from);
    REQUIRE(at != std::string::npos);
    json.replace(at, from.size(), to);
    return make_token(hs256_header, json);
  };
  CHECK(verify(claims_with(R"("iss":"chroom")", R"("iss":"other")")) == token_error::malformed);
  CHECK(verify(claims_with(R"("iss":"chroom",)", "")) == token_error::malformed);
  CHECK(verify(claims_with(R"("lease":"lease-0001",)", "")) == token_error::malformed);
  CHECK(verify(claims_with(R"("iat":1700000000)", R"("iat":"1700000000")")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("exp":1700000300)", R"("exp":1700000300.5)")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("exp":1700000300)", R"("exp":1.7e9)")) == token_error::malformed);
  CHECK(verify(claims_with(R"("exp":1700000300)", R"("exp":01700000300)")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("exp":1700000300)", R"("exp":99999999999999999999)")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("room":"room-42")", R"("room":"room-42","room":"other")")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":null)")) == token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"host","x":{"y":1})")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"bad \q escape")")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", "\"role\":\"raw\ttab\"")) == token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"\ud800 lone")")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"host","pub":1)")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"host","rec":2)")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"host","rec":"yes")")) ==
        token_error::malformed);
  CHECK(verify(claims_with(R"("role":"host")", R"("role":"host","pub":"a","pub":"b")")) ==
        token_error::malformed);
  CHECK(verify(claims_with("1700000300}", "1700000300},")) == token_error::malformed);
  CHECK(verify(claims_with("1700000300}", "1700000300} {}")) == token_error::malformed);
}

TEST_CASE("claims_out is left alone when a token is refused") {
  join_claims out;
  out.client_id = "untouched";
  CHECK(verify(example_token, &out, node_key, "media-2") == token_error::wrong_node);
  CHECK(verify(example_token, &out, node_key, "media-1", issued + 301) == token_error::expired);
  CHECK(out.client_id == "untouched");
}

TEST_CASE("truncated tokens are never valid") {
  const std::string token(example_token);
  for (std::size_t length = 0; length < token.size(); ++length) {
    CAPTURE(length);
    join_claims out;
    const token_error error = verify(token.substr(0, length), &out);
    CHECK(error != token_error::none);
    CHECK((error == token_error::malformed || error == token_error::bad_signature));
  }
}

TEST_CASE("garbage is malformed") {
  const std::string token(example_token);
  for (const std::string& garbage :
       {std::string(), std::string("."), std::string(".."), std::string("..."),
        std::string("not a token"), std::string("a.b.c"), std::string("a.b.c.d"), token + ".",
        "." + token, std::string("\0\xff\x80.\x01.\x02", 7), std::string(10000, 'A'),
        std::string(10000, '.'),
        // Padding, and the standard alphabet's '+' and '/', are not base64url.
        token.substr(0, token.find('.')) + "=" + token.substr(token.find('.')),
        token.substr(0, token.rfind('.')) + ".+/+/",
        // Base64 of something that is not JSON.
        base64url("HS256") + "." + base64url("{}") + "."}) {
    CAPTURE(garbage.substr(0, 40));
    CHECK(verify(garbage) == token_error::malformed);
  }
  // Non-canonical base64url in the signature: bits beyond the 32 bytes set.
  std::string loose = token;
  loose.back() = 'R'; // 'Q' = 010000; 'R' = 010001 sets a bit past the last byte
  CHECK(verify(loose) == token_error::malformed);
}

TEST_CASE("to_string names every error") {
  CHECK(chroom::transport::to_string(token_error::none) == "valid");
  CHECK(chroom::transport::to_string(token_error::malformed) == "malformed");
  CHECK(chroom::transport::to_string(token_error::bad_signature) == "bad signature");
  CHECK(chroom::transport::to_string(token_error::expired) == "expired");
  CHECK(chroom::transport::to_string(token_error::wrong_algorithm) == "wrong algorithm");
  CHECK(chroom::transport::to_string(token_error::wrong_node) == "wrong node");
}

TEST_SUITE_END();
