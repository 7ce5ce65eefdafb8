// Tests of app definitions (apps/app_spec.hpp), credentials (apps/app_catalog.hpp) and the
// app store (apps/app_store.hpp).
#include "apps/app_catalog.hpp"
#include "apps/app_spec.hpp"
#include "apps/app_store.hpp"
#include "apps/rate_limiter.hpp"
#include "apps/usage.hpp"
#include "tests/unit/jwt_for_tests.hpp"

#include <doctest/doctest.h>
#include <google/protobuf/text_format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace cfg = chroom::config::v1;
namespace cv1 = chroom::cluster::v1;
using namespace chroom::apps;
using std::chrono::seconds;
using std::chrono::system_clock;

cfg::AppConfig app_of(const std::string& text) {
  cfg::AppConfig app;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &app));
  return app;
}

/// "field: problem" of every problem, joined by "; ".
std::string problems_of(const cfg::AppConfig& app) {
  std::string out;
  for (const auto& problem : app_problems(app))
    out += (out.empty() ? "" : "; ") + problem.field + ": " + problem.problem;
  return out;
}

constexpr const char* secret_a = "0123456789abcdef0123456789abcdef";
constexpr const char* secret_b = "fedcba9876543210fedcba9876543210";

const system_clock::time_point now = system_clock::time_point{seconds{1'800'000'000}};

app_catalog two_apps() {
  return app_catalog{{
    compile_app(app_of(std::string{"app_id: 'clinic' keys { key_id: 'ck_clinic_1' secret: '"} +
                       secret_a + "' }")),
    compile_app(app_of(std::string{"app_id: 'arcade' keys { key_id: 'ck_arcade_1' secret: '"} +
                       secret_b + "' expires_unix_ms: 1800000000000 }")),
    compile_app(app_of("app_id: 'open' allow_unauthenticated: true")),
  }};
}

auth_result check(const app_catalog& catalog, std::string_view app, metadata_entries metadata,
                  std::string_view room = "room-1") {
  return authenticate(catalog, *catalog.find(app), room, metadata, now);
}

// A token built here, apart from sign_app_token, from JSON text as a backend writes it.
std::string hand_made_token(std::string_view header, std::string_view claims,
                            std::string_view secret) {
  using chroom::test::base64url;
  std::string input = base64url(header) + "." + base64url(claims);
  return input + "." + base64url(chroom::test::mac(EVP_sha256(), secret, input));
}

} // namespace

TEST_SUITE_BEGIN("apps");

TEST_CASE("app definitions: defaults and validation naming the field") {
  cfg::AppConfig minimal = app_of("app_id: 'x' allow_unauthenticated: true");
  CHECK(problems_of(minimal) == "");
  apply_app_defaults(minimal);
  CHECK(minimal.strategy() == "balanced");
  CHECK(minimal.media_profile() == "video");
  CHECK(minimal.priority() == "normal");
  CHECK(minimal.admission() == "open");

  CHECK(problems_of(app_of("app_id: 'x'")) ==
        "keys: an app needs an API key, or allow_unauthenticated: true (development only)");
  CHECK(problems_of(app_of("app_id: 'x' keys { key_id: 'short' secret: 'tiny' }")) ==
        "keys[0].key_id: must be 8 to 64 characters long, got 5; keys[0].secret: must be at "
        "least 32 characters long, got 4");
  CHECK(problems_of(app_of("app_id: 'x' allow_unauthenticated: true roles { role: 'admin' } "
                           "roles { role: 'host' publish: ['audio', 'smell', 'audio'] }")) ==
        "roles[0].role: must be one of host, presenter, participant, viewer, got \"admin\"; "
        "roles[1].publish[1]: must be one of audio, video, screen, got \"smell\"; "
        "roles[1].publish[2]: listed twice");
  CHECK(problems_of(app_of("app_id: 'x' allow_unauthenticated: true denied_countries: ['de'] "
                           "required_features: ['teleport'] latency_budget_ms: 20000")) ==
        "denied_countries[0]: must be an ISO 3166-1 alpha-2 country code in upper case (e.g. "
        "DE), got \"de\"; did you mean 'DE'?; required_features: unknown feature 'teleport' "
        "(known: opus, vp8, vp9, h264, av1, relay, recording, e2ee); latency_budget_ms: must be "
        "at most 10000, got 20000");
  CHECK(problems_of(app_of("app_id: 'x' allow_unauthenticated: true "
                           "webhook { url: 'ftp://example.com' secret: 'short' "
                           "events: ['room.exploded'] }")) ==
        "webhook.url: must start with http:// or https://, got \"ftp://example.com\"; "
        "webhook.secret: must be at least 32 characters long, got 5; webhook.events[0]: must be "
        "one of room.started, room.finished, participant.joined, participant.left, node.lost, "
        "got \"room.exploded\"");
  CHECK(problems_of(app_of("app_id: 'x' allow_unauthenticated: true admission: 'host' "
                           "roles { role: 'participant' } lease_ttl_ms: 5 "
                           "hooks { script: 'x' script_file: '/tmp/y' max_time_ms: 99999 } "
                           "weights { load_ms: -1 } quotas { allocations_per_second: nan }")) ==
        "admission: \"host\" needs the host role, which roles does not list; weights.load_ms: "
        "must be between 0 and 10000, got -1; lease_ttl_ms: must be 0 (the default) or between "
        "1000 and 3600000, got 5; quotas.allocations_per_second: must be between 0 and 1e+06, "
        "got nan; hooks.script_file: give script or script_file, not both; hooks.max_time_ms: "
        "must be 0 (the default) or between 1 and 10000, got 99999");
}

TEST_CASE("compiled apps: roles, publish rights capped by the media profile, placement") {
  auto app = compile_app(
    app_of("app_id: 'events' allow_unauthenticated: true media_profile: 'audio_only' "
           "roles { role: 'presenter' publish: ['audio', 'video'] max_per_room: 3 } "
           "roles { role: 'viewer' spread: true } denied_regions: ['ap-south'] priority: 'low' "
           "latency_budget_ms: 80 cascade { max_room_nodes: 2 fan_out_after: 100 } "
           "weights { load_ms: 40 } required_features: ['relay', 'opus']"));
  REQUIRE(app->role("presenter") != nullptr);
  CHECK(app->role("presenter")->allowed);
  CHECK(app->role("presenter")->publish == std::vector<std::string>{"audio"});
  CHECK(app->role("presenter")->max_per_room == 3);
  CHECK(app->role("viewer")->allowed);
  CHECK(app->role("viewer")->spread);
  CHECK(app->role("viewer")->publish.empty());
  CHECK_FALSE(app->role("host")->allowed);
  CHECK_FALSE(app->role("participant")->allowed);
  CHECK(app->role("nobody") == nullptr);
  CHECK(app->placement.denied_regions == std::vector<std::string>{"ap-south"});
  CHECK(app->placement.high_water(0.85) == doctest::Approx(0.68));
  CHECK(app->placement.latency_budget_ms == 80);
  CHECK(app->placement.max_room_nodes == 2);
  CHECK(app->placement.fan_out_after == 100);
  CHECK(app->placement.load_weight_ms == 40);
  CHECK(app->required_features.relay);
  CHECK(app->required_features.codecs == std::vector<std::string>{"opus"});

  auto open = compile_app(app_of("app_id: 'open' allow_unauthenticated: true"));
  for (auto role : role_names)
    CHECK(open->role(role)->allowed);
  CHECK(open->role("host")->publish == std::vector<std::string>{"audio", "video"});
  CHECK(open->role("viewer")->publish.empty());

  auto shown =
    redacted(app_of(std::string{"app_id: 'x' keys { key_id: 'ck_x_0001' secret: '"} + secret_a +
                    "' } webhook { url: 'https://a.example' secret: '" + secret_b + "' }"));
  CHECK(shown.keys(0).key_id() == "ck_x_0001");
  CHECK(shown.keys(0).secret().empty());
  CHECK(shown.webhook().secret().empty());

  auto key = make_app_key(1234);
  CHECK(key.key_id().size() == 19);
  CHECK(key.key_id().starts_with("ck_"));
  CHECK(key.secret().size() == 43);
  CHECK(key.created_unix_ms() == 1234);
  CHECK(make_app_key(1234).secret() != key.secret());
}

TEST_CASE("credentials: key and secret") {
  const auto catalog = two_apps();
  CHECK(check(catalog, "clinic",
              {{"x-chroom-api-key", "ck_clinic_1"}, {"x-chroom-api-secret", secret_a}})
          .outcome == auth_outcome::ok);
  auto missing = check(catalog, "clinic", {});
  CHECK(missing.outcome == auth_outcome::unauthenticated);
  CHECK(missing.message == "app 'clinic' needs credentials: x-chroom-api-key and "
                           "x-chroom-api-secret, or authorization: Bearer <token>");
  auto wrong = check(catalog, "clinic",
                     {{"x-chroom-api-key", "ck_clinic_1"}, {"x-chroom-api-secret", secret_b}});
  CHECK(wrong.outcome == auth_outcome::unauthenticated);
  CHECK(wrong.message == "wrong secret for API key 'ck_clinic_1'");
  auto half = check(catalog, "clinic", {{"x-chroom-api-key", "ck_clinic_1"}});
  CHECK(half.outcome == auth_outcome::unauthenticated);
  CHECK(half.message.starts_with("x-chroom-api-secret is missing"));
  auto unknown = check(catalog, "clinic",
                       {{"x-chroom-api-key", "ck_nobody"}, {"x-chroom-api-secret", secret_a}});
  CHECK(unknown.message == "unknown API key 'ck_nobody'");
  // The arcade's key expired at 1800000000000 ms, which is `now`.
  auto expired = check(catalog, "arcade",
                       {{"x-chroom-api-key", "ck_arcade_1"}, {"x-chroom-api-secret", secret_b}});
  CHECK(expired.outcome == auth_outcome::unauthenticated);
  CHECK(expired.message.find("has expired") != std::string::npos);
  auto foreign = check(catalog, "open",
                       {{"x-chroom-api-key", "ck_clinic_1"}, {"x-chroom-api-secret", secret_a}});
  CHECK(foreign.outcome == auth_outcome::permission_denied);
  CHECK(foreign.message == "API key 'ck_clinic_1' belongs to app 'clinic', not to app 'open'");
  // An open app needs nothing; credentials sent to it must still be right.
  CHECK(check(catalog, "open", {}).outcome == auth_outcome::ok);
}

TEST_CASE("credentials: signed tokens") {
  const auto catalog = two_apps();
  const auto* key = catalog.find_key("ck_clinic_1").second;
  REQUIRE(key != nullptr);
  auto bearer = [](const std::string& token) {
    return metadata_entries{{"authorization", "Bearer " + token}};
  };
  auto token = sign_app_token(*key, "clinic", "room-1", now, seconds{300});
  CHECK(check(catalog, "clinic", bearer(token)).outcome == auth_outcome::ok);
  CHECK(check(catalog, "clinic", bearer(token)).method == "token");
  // A token made by hand, as a backend in another language makes it.
  const std::string header = R"({"alg":"HS256","typ":"JWT","kid":"ck_clinic_1"})";
  CHECK(check(catalog, "clinic",
              bearer(hand_made_token(header, R"({"app":"clinic","exp":1800000060})", secret_a)))
          .outcome == auth_outcome::ok);
  auto refused = [&](std::string_view claims, std::string_view secret = secret_a,
                     std::string_view head = {}) {
    return check(catalog, "clinic",
                 bearer(hand_made_token(head.empty() ? header : head, claims, secret)));
  };
  CHECK(refused(R"({"app":"clinic","exp":1799999900})").message ==
        "bearer token expired 100 s ago");
  // Within the clock skew allowed: still fine.
  CHECK(refused(R"({"app":"clinic","exp":1799999990})").outcome == auth_outcome::ok);
  CHECK(refused(R"({"app":"clinic","exp":1800200000})").message ==
        "bearer token's \"exp\" is more than 24 h ahead: sign short-lived tokens");
  CHECK(refused(R"({"app":"clinic"})").message == "bearer token has no numeric \"exp\" claim");
  CHECK(refused(R"({"app":"clinic","exp":"soon"})").message ==
        "bearer token has no numeric \"exp\" claim");
  CHECK(refused(R"({"app":"clinic","exp":1800000060,"nbf":1800001000})").message ==
        "bearer token is not valid yet (\"nbf\" is in the future)");
  CHECK(refused(R"({"app":"clinic","exp":1800000060})", secret_b).message ==
        "bearer token's signature does not match API key 'ck_clinic_1'");
  auto other_app = refused(R"({"app":"arcade","exp":1800000060})");
  CHECK(other_app.outcome == auth_outcome::permission_denied);
  auto other_room = refused(R"({"app":"clinic","room":"room-2","exp":1800000060})");
  CHECK(other_room.outcome == auth_outcome::permission_denied);
  CHECK(other_room.message == "bearer token is for room 'room-2', not for room 'room-1'");
  CHECK(refused(R"({"app":"clinic","exp":1800000060})", secret_a,
                R"({"alg":"none","kid":"ck_clinic_1"})")
          .message == "bearer token must be signed with HS256");
  CHECK(refused(R"({"app":"clinic","exp":1800000060})", secret_a, R"({"alg":"HS256"})").message ==
        "bearer token's header has no \"kid\" (the API key id)");
  CHECK(refused(R"(not json)").message == "bearer token's header or claims are not a JSON object");
  for (const char* text : {"", "a.b", "a.b.c.d", "!!.??.**", "Basic abc"}) {
    CAPTURE(text);
    auto result = check(catalog, "clinic", {{"authorization", std::string{"Bearer "} + text}});
    CHECK(result.outcome == auth_outcome::unauthenticated);
  }
  CHECK(check(catalog, "clinic", {{"authorization", "Basic abc"}}).message ==
        "authorization must be \"Bearer <token>\"");
  CHECK(check(catalog, "clinic", {{"authorization", "Bearer " + std::string(5000, 'a')}}).message ==
        "bearer token is longer than 4096 bytes");
}

TEST_CASE("the app store keeps records across opening it again") {
  auto dir = std::filesystem::temp_directory_path() /
             ("chroom-app-store-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string error;
  {
    auto store = app_store::open(dir / "nested", error);
    REQUIRE(store);
    CHECK(error.empty());
    cv1::AppRecord record;
    record.set_app_id("clinic");
    *record.mutable_app() = app_of("app_id: 'clinic' allow_unauthenticated: true");
    record.set_updated_unix_ms(10);
    record.set_updated_by("peer-a");
    CHECK(store->put_app(record).empty());
    record.set_updated_unix_ms(11);
    record.set_deleted(true);
    CHECK(store->put_app(record).empty());
    cv1::AppRecord other = record;
    other.set_app_id("arcade");
    other.set_deleted(false);
    CHECK(store->put_app(other).empty());
  }
  auto store = app_store::open(dir / "nested", error);
  REQUIRE(store);
  auto records = store->load_apps(error);
  CHECK(error.empty());
  REQUIRE(records.size() == 2);
  CHECK(records[0].app_id() == "arcade");
  CHECK(records[1].app_id() == "clinic");
  CHECK(records[1].deleted());
  CHECK(records[1].updated_unix_ms() == 11);
  CHECK((std::filesystem::status(store->file()).permissions() &
         std::filesystem::perms::others_read) == std::filesystem::perms::none);
  // A directory that cannot be made: a clear error, no store.
  auto blocked = app_store::open(store->file() / "under-a-file", error);
  CHECK(!blocked);
  CHECK(error.find("cannot create") == 0);
  std::filesystem::remove_all(dir);

  cv1::AppRecord a, b;
  a.set_updated_unix_ms(5);
  a.set_updated_by("peer-a");
  b.set_updated_unix_ms(5);
  b.set_updated_by("peer-b");
  CHECK(supersedes(b, a));
  CHECK_FALSE(supersedes(a, b));
  a.set_updated_unix_ms(6);
  CHECK(supersedes(a, b));
  CHECK_FALSE(supersedes(a, a));
}

TEST_SUITE_END();

TEST_CASE("token bucket: burst, then the rate") {
  using chroom::apps::token_bucket;
  using namespace std::chrono_literals;
  const auto t0 = token_bucket::clock::time_point{} + 1h;
  token_bucket bucket{10, 3, t0};
  CHECK(bucket.try_take(t0));
  CHECK(bucket.try_take(t0));
  CHECK(bucket.try_take(t0));
  CHECK_FALSE(bucket.try_take(t0));
  CHECK(bucket.wait_s(t0) == doctest::Approx(0.1));
  CHECK_FALSE(bucket.try_take(t0 + 50ms));
  CHECK(bucket.try_take(t0 + 100ms));
  // A long pause saves up the burst, never more.
  int taken = 0;
  while (bucket.try_take(t0 + 10s))
    ++taken;
  CHECK(taken == 3);
  // A second's worth at the rate, over a simulated second of steady calls.
  taken = 0;
  for (int ms = 1; ms <= 1000; ++ms)
    taken += bucket.try_take(t0 + 10s + std::chrono::milliseconds{ms});
  CHECK(taken == 10);
  // Time going backwards (another thread's clock reading) changes nothing.
  CHECK_FALSE(bucket.try_take(t0));
  bucket.reshape(100, 1, t0 + 20s);
  CHECK(bucket.try_take(t0 + 20s));
  CHECK_FALSE(bucket.try_take(t0 + 20s));
  CHECK(bucket.try_take(t0 + 20s + 10ms));
}

TEST_CASE("usage: epochs, sums over peers, signed reports") {
  using namespace chroom::apps;
  CHECK(epoch_start(3'600'000 * 5 + 17, 3'600'000) == 3'600'000 * 5);
  CHECK(epoch_start(3'600'000 * 5, 3'600'000) == 3'600'000 * 5);
  CHECK(epoch_start(-1, 1000) == -1000);
  CHECK(epoch_start(1234, 0) == 1234);

  auto record = [](const std::string& app, int64_t start, const std::string& peer, double minutes,
                   uint64_t bytes) {
    chroom::apps::v1::UsageRecord r;
    r.set_app_id(app);
    r.set_epoch_start_unix_ms(start);
    r.set_epoch_ms(1000);
    r.set_peer_id(peer);
    r.mutable_usage()->set_participant_minutes(minutes);
    r.mutable_usage()->set_rooms(1);
    r.mutable_usage()->set_bytes_in(bytes);
    return r;
  };
  std::vector<chroom::apps::v1::UsageRecord> records = {
    record("a", 1000, "p1", 1.5, 10), record("a", 1000, "p2", 2.0, 5),
    record("a", 2000, "p1", 0.5, 1),  record("b", 1000, "p1", 9, 9),
    record("a", 3000, "p2", 7, 7),
  };
  google::protobuf::RepeatedPtrField<chroom::apps::v1::EpochUsage> epochs;
  chroom::apps::v1::UsageCounters total;
  sum_usage(records, "a", 1000, 3000, epochs, total);
  REQUIRE(epochs.size() == 2);
  CHECK(epochs[0].epoch_start_unix_ms() == 1000);
  CHECK(epochs[0].usage().participant_minutes() == doctest::Approx(3.5));
  CHECK(epochs[0].usage().bytes_in() == 15);
  CHECK(epochs[0].usage().rooms() == 2);
  CHECK(std::vector<std::string>(epochs[0].peers().begin(), epochs[0].peers().end()) ==
        std::vector<std::string>{"p1", "p2"});
  CHECK(epochs[1].epoch_start_unix_ms() == 2000);
  CHECK(total.participant_minutes() == doctest::Approx(4.0));
  CHECK(total.bytes_in() == 16);
  CHECK(empty(chroom::apps::v1::UsageCounters{}));
  CHECK_FALSE(empty(total));

  auto dir =
    std::filesystem::temp_directory_path() / ("chroom-usage-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string error;
  CHECK(!usage_signer::open(dir / "missing.pem", false, error));
  CHECK(error.find("cannot read") == 0);
  auto signer = usage_signer::open(dir / "key.pem", true, error);
  REQUIRE(signer);
  CHECK((std::filesystem::status(dir / "key.pem").permissions() &
         (std::filesystem::perms::group_all | std::filesystem::perms::others_all)) ==
        std::filesystem::perms::none);
  CHECK(signer->key_id().size() == 16);
  auto signature = signer->sign("report bytes");
  CHECK(signature.size() == 64);
  CHECK(verify_usage_signature(signer->public_key_pem(), "report bytes", signature));
  CHECK_FALSE(verify_usage_signature(signer->public_key_pem(), "report bytez", signature));
  // The same key after opening the file again.
  auto again = usage_signer::open(dir / "key.pem", true, error);
  REQUIRE(again);
  CHECK(again->key_id() == signer->key_id());
  CHECK(verify_usage_signature(again->public_key_pem(), "report bytes", signature));
  // A file that is not an Ed25519 key is refused, not replaced.
  std::ofstream(dir / "bad.pem") << "not a key\n";
  CHECK(!usage_signer::open(dir / "bad.pem", true, error));
  CHECK(error.find("holds no Ed25519 private key") != std::string::npos);
  std::filesystem::remove_all(dir);
}
