// Join-token verification (transport/join_token). First byte: the mode.
//   hostile token  the rest is a token, verified under a fixed key: no crash, the claims
//                  output untouched unless valid, and a valid token re-verifies the same.
//   round trip     the rest is claims (any bytes in the strings): sign, verify under the
//                  same key gives the same claims; under another key, for another node or
//                  after its expiry it is refused for that reason; and any one byte of the
//                  token changed makes it invalid.
#include "fuzz/fuzz_check.hpp"
#include "fuzz/join_token_fixture.hpp"
#include "transport/join_token.hpp"

#include <string>

namespace {

using namespace chroom::fuzz;
using chroom::transport::join_claims;
using chroom::transport::token_error;
using chroom::transport::verify_join_token;

using chroom::fuzz::join_token_fixture::key;
using chroom::fuzz::join_token_fixture::node_id;
using chroom::fuzz::join_token_fixture::now_s;

bool same_claims(const join_claims& a, const join_claims& b) {
  return a.client_id == b.client_id && a.app_id == b.app_id && a.room_id == b.room_id &&
         a.node_id == b.node_id && a.role == b.role && a.lease_id == b.lease_id &&
         a.issued_at_s == b.issued_at_s && a.expires_at_s == b.expires_at_s &&
         a.publish == b.publish && a.recording == b.recording && a.tier == b.tier;
}

join_claims sentinel() {
  join_claims claims;
  claims.client_id = "untouched";
  return claims;
}

void hostile_token(byte_reader& in) {
  auto token = in.text(in.remaining());
  auto claims = sentinel();
  auto result = verify_join_token(token, key, node_id, now_s, &claims);
  FUZZ_CHECK(!chroom::transport::to_string(result).empty(), "unnamed result");
  if (result != token_error::none) {
    FUZZ_CHECK(same_claims(claims, sentinel()), "claims written for a refused token");
    return;
  }
  FUZZ_CHECK(claims.node_id == node_id && claims.expires_at_s > now_s,
             "accepted for another node or expired");
  join_claims second;
  FUZZ_CHECK(verify_join_token(token, key, node_id, now_s, &second) == token_error::none &&
               same_claims(claims, second),
             "a valid token verified differently twice");
}

std::string field(byte_reader& in) {
  return std::string{in.text(in.u8() % 48)};
}

void round_trip(byte_reader& in) {
  join_claims claims;
  claims.client_id = field(in);
  claims.app_id = field(in);
  claims.room_id = field(in);
  claims.node_id = in.u8() % 4 == 0 ? field(in) : std::string{node_id};
  claims.role = field(in);
  claims.lease_id = field(in);
  claims.issued_at_s = static_cast<int64_t>((uint64_t{in.u32()} << 32) | in.u32());
  claims.expires_at_s = in.u8() % 4 == 0
                          ? static_cast<int64_t>((uint64_t{in.u32()} << 32) | in.u32())
                          : now_s + 1 + in.u16();
  auto optional = in.u8();
  if (optional & 1)
    claims.publish = field(in);
  if (optional & 2)
    claims.recording = (optional & 4) != 0;
  if (optional & 8)
    claims.tier = field(in);
  auto token = chroom::transport::sign_join_token(claims, key);

  join_claims verified;
  auto result = verify_join_token(token, key, node_id, now_s, &verified);
  auto expected = claims.expires_at_s <= now_s ? token_error::expired
                  : claims.node_id != node_id  ? token_error::wrong_node
                                               : token_error::none;
  FUZZ_CHECK(result == expected, "signed token: " + std::string{to_string(result)} + ", expected " +
                                   std::string{to_string(expected)} + ": " + token);
  if (result == token_error::none)
    FUZZ_CHECK(same_claims(claims, verified), "claims changed in a round trip: " + token);
  FUZZ_CHECK(verify_join_token(token, "another key", node_id, now_s, nullptr) ==
               token_error::bad_signature,
             "verified under another key");

  // Any single change to a valid token breaks it.
  if (!token.empty()) {
    auto changed = token;
    auto at = in.u16() % changed.size();
    auto replacement = static_cast<char>(in.u8());
    if (replacement == changed[at])
      replacement = static_cast<char>(replacement ^ 1);
    changed[at] = replacement;
    FUZZ_CHECK(verify_join_token(changed, key, node_id, now_s, nullptr) != token_error::none,
               "token still valid after byte " + std::to_string(at) + " changed: " + changed);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  byte_reader in{data, size};
  if (in.u8() % 2 == 0)
    hostile_token(in);
  else
    round_trip(in);
  return 0;
}
