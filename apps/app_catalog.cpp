#include "apps/app_catalog.hpp"

#include "transport/grpc_wire.hpp"

#include <algorithm>
#include <cmath>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace chroom::apps {
namespace {

namespace pb = google::protobuf;

// A token is a few hundred bytes; anything much larger is not one of ours.
constexpr size_t max_token_length = 4096;

std::string base64url_encode(std::string_view bytes) {
  auto text = transport::base64_encode(bytes);
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  text.erase(std::find(text.begin(), text.end(), '='), text.end());
  return text;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.find_first_of("+/=") != std::string_view::npos)
    return std::nullopt;
  std::string standard{text};
  std::replace(standard.begin(), standard.end(), '-', '+');
  std::replace(standard.begin(), standard.end(), '_', '/');
  auto decoded = transport::base64_decode(standard);
  if (!decoded || (decoded->empty() && !text.empty()))
    return std::nullopt;
  return decoded;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

bool equal_secrets(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const std::string* find_metadata(const metadata_entries& metadata, std::string_view name) {
  for (const auto& [key, value] : metadata)
    if (key == name)
      return &value;
  return nullptr;
}

auth_result refuse(auth_outcome outcome, std::string message) {
  auth_result result;
  result.outcome = outcome;
  result.message = std::move(message);
  return result;
}

auth_result unauthenticated(std::string message) {
  return refuse(auth_outcome::unauthenticated, std::move(message));
}

std::string shown(std::string_view text) {
  std::string out(1, '\'');
  out.append(text.substr(0, 64));
  out.append(text.size() > 64 ? "...'" : "'");
  return out;
}

int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

int64_t unix_ms(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

std::optional<pb::Struct> json_object(std::string_view text) {
  pb::Struct object;
  if (!pb::util::JsonStringToMessage(std::string{text}, &object).ok())
    return std::nullopt;
  return object;
}

const pb::Value* field(const pb::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it == object.fields().end() ? nullptr : &it->second;
}

/// The key checks shared by both methods: it exists, belongs to the app, is not expired.
auth_result check_key(const app_catalog& catalog, const app_definition& app,
                      std::string_view key_id, const cfg::AppKey*& key_out, int64_t now_ms) {
  auto [owner, key] = catalog.find_key(key_id);
  if (key == nullptr)
    return unauthenticated("unknown API key " + shown(key_id));
  if (owner->config.app_id() != app.config.app_id())
    return refuse(auth_outcome::permission_denied, "API key " + shown(key_id) +
                                                     " belongs to app '" + owner->config.app_id() +
                                                     "', not to app '" + app.config.app_id() + "'");
  if (key->expires_unix_ms() != 0 && key->expires_unix_ms() <= now_ms)
    return unauthenticated("API key " + shown(key_id) + " of app '" + app.config.app_id() +
                           "' has expired (rotated); use the app's current key");
  key_out = key;
  return {};
}

auth_result check_token(const app_catalog& catalog, const app_definition& app,
                        std::string_view room_id, std::string_view token,
                        std::chrono::system_clock::time_point now) {
  if (token.size() > max_token_length)
    return unauthenticated("bearer token is longer than " + std::to_string(max_token_length) +
                           " bytes");
  auto first = token.find('.');
  auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
    return unauthenticated("bearer token is not a JWT (header.claims.signature)");
  auto header_text = base64url_decode(token.substr(0, first));
  auto claims_text = base64url_decode(token.substr(first + 1, second - first - 1));
  auto signature = base64url_decode(token.substr(second + 1));
  if (!header_text || !claims_text || !signature)
    return unauthenticated("bearer token is not base64url-encoded JSON");
  auto header = json_object(*header_text);
  auto claims = json_object(*claims_text);
  if (!header || !claims)
    return unauthenticated("bearer token's header or claims are not a JSON object");
  const auto* alg = field(*header, "alg");
  if (alg == nullptr || alg->string_value() != "HS256")
    return unauthenticated("bearer token must be signed with HS256");
  const auto* kid = field(*header, "kid");
  if (kid == nullptr || kid->string_value().empty())
    return unauthenticated("bearer token's header has no \"kid\" (the API key id)");
  const cfg::AppKey* key = nullptr;
  if (auto result = check_key(catalog, app, kid->string_value(), key, unix_ms(now));
      result.outcome != auth_outcome::ok)
    return result;
  auto expected = hmac_sha256(key->secret(), token.substr(0, second));
  if (!equal_secrets(expected, *signature))
    return unauthenticated("bearer token's signature does not match API key " +
                           shown(kid->string_value()));
  const auto* app_claim = field(*claims, "app");
  if (app_claim == nullptr || app_claim->string_value() != app.config.app_id())
    return refuse(auth_outcome::permission_denied,
                  "bearer token is for app " +
                    shown(app_claim == nullptr ? "" : app_claim->string_value()) +
                    ", not for app '" + app.config.app_id() + "'");
  const auto* exp = field(*claims, "exp");
  if (exp == nullptr || exp->kind_case() != pb::Value::kNumberValue ||
      !std::isfinite(exp->number_value()))
    return unauthenticated("bearer token has no numeric \"exp\" claim");
  const auto now_s = unix_seconds(now);
  const auto skew = token_clock_skew.count();
  if (exp->number_value() + static_cast<double>(skew) <= static_cast<double>(now_s))
    return unauthenticated("bearer token expired " +
                           std::to_string(now_s - static_cast<int64_t>(exp->number_value())) +
                           " s ago");
  if (exp->number_value() > static_cast<double>(now_s + max_token_lifetime.count() + skew))
    return unauthenticated("bearer token's \"exp\" is more than " +
                           std::to_string(max_token_lifetime.count() / 3600) +
                           " h ahead: sign short-lived tokens");
  if (const auto* nbf = field(*claims, "nbf");
      nbf != nullptr && nbf->number_value() > static_cast<double>(now_s + skew))
    return unauthenticated("bearer token is not valid yet (\"nbf\" is in the future)");
  if (const auto* room = field(*claims, "room"); room != nullptr && !room_id.empty()) {
    if (room->string_value() != room_id)
      return refuse(auth_outcome::permission_denied, "bearer token is for room " +
                                                       shown(room->string_value()) +
                                                       ", not for room " + shown(room_id));
  }
  auth_result result;
  result.method = "token";
  return result;
}

} // namespace

app_catalog::app_catalog(std::vector<std::shared_ptr<const app_definition>> apps) {
  for (auto& app : apps) {
    for (const auto& key : app->config.keys())
      keys_.emplace(key.key_id(), std::make_pair(app.get(), &key));
    auto id = app->config.app_id();
    apps_.emplace(std::move(id), std::move(app));
  }
}

const app_definition* app_catalog::find(std::string_view app_id) const {
  auto it = apps_.find(app_id);
  return it == apps_.end() ? nullptr : it->second.get();
}

std::shared_ptr<const app_definition> app_catalog::shared(std::string_view app_id) const {
  auto it = apps_.find(app_id);
  return it == apps_.end() ? nullptr : it->second;
}

std::pair<const app_definition*, const cfg::AppKey*>
app_catalog::find_key(std::string_view key_id) const {
  auto it = keys_.find(std::string{key_id});
  if (it == keys_.end())
    return {nullptr, nullptr};
  return it->second;
}

auth_result authenticate(const app_catalog& catalog, const app_definition& app,
                         std::string_view room_id, const metadata_entries& metadata,
                         std::chrono::system_clock::time_point now) {
  const auto* authorization = find_metadata(metadata, authorization_header);
  const auto* key_id = find_metadata(metadata, api_key_header);
  const auto* secret = find_metadata(metadata, api_secret_header);
  if (authorization != nullptr) {
    std::string_view value = *authorization;
    constexpr std::string_view bearer = "Bearer ";
    if (!value.starts_with(bearer))
      return unauthenticated("authorization must be \"Bearer <token>\"");
    return check_token(catalog, app, room_id, value.substr(bearer.size()), now);
  }
  if (key_id != nullptr || secret != nullptr) {
    if (key_id == nullptr || secret == nullptr)
      return unauthenticated(std::string{key_id == nullptr ? api_key_header : api_secret_header} +
                             " is missing (send both " + std::string{api_key_header} + " and " +
                             std::string{api_secret_header} + ")");
    const cfg::AppKey* key = nullptr;
    if (auto result = check_key(catalog, app, *key_id, key, unix_ms(now));
        result.outcome != auth_outcome::ok)
      return result;
    if (!equal_secrets(key->secret(), *secret))
      return unauthenticated("wrong secret for API key " + shown(*key_id));
    auth_result result;
    result.method = "key";
    return result;
  }
  if (app.config.allow_unauthenticated())
    return {};
  return unauthenticated("app '" + app.config.app_id() +
                         "' needs credentials: " + std::string{api_key_header} + " and " +
                         std::string{api_secret_header} + ", or authorization: Bearer <token>");
}

std::string sign_app_token(const cfg::AppKey& key, std::string_view app_id,
                           std::string_view room_id, std::chrono::system_clock::time_point now,
                           std::chrono::seconds lifetime) {
  pb::Struct header;
  (*header.mutable_fields())["alg"].set_string_value("HS256");
  (*header.mutable_fields())["typ"].set_string_value("JWT");
  (*header.mutable_fields())["kid"].set_string_value(key.key_id());
  pb::Struct claims;
  (*claims.mutable_fields())["app"].set_string_value(std::string{app_id});
  (*claims.mutable_fields())["iat"].set_number_value(static_cast<double>(unix_seconds(now)));
  (*claims.mutable_fields())["exp"].set_number_value(
    static_cast<double>(unix_seconds(now) + lifetime.count()));
  if (!room_id.empty())
    (*claims.mutable_fields())["room"].set_string_value(std::string{room_id});
  std::string header_json, claims_json;
  (void)pb::util::MessageToJsonString(header, &header_json);
  (void)pb::util::MessageToJsonString(claims, &claims_json);
  auto signing_input = base64url_encode(header_json) + "." + base64url_encode(claims_json);
  return signing_input + "." + base64url_encode(hmac_sha256(key.secret(), signing_input));
}

} // namespace chroom::apps
