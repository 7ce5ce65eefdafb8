// grpc-status-details-bin values (transport/status_details.hpp), read back as a client
// does: a google.rpc.Status whose details unpack to ErrorInfo, RetryInfo and BadRequest.

#include "transport/status_details.hpp"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

#include <doctest/doctest.h>

using namespace chroom::transport;

namespace {

google::rpc::Status parsed(const grpc_status& status) {
  google::rpc::Status out;
  REQUIRE(out.ParseFromString(status.details));
  return out;
}

} // namespace

TEST_CASE("status details: code and message as the status's, ErrorInfo and RetryInfo") {
  auto status =
    with_error_info(make_status(grpc_code::resource_exhausted, "over the rate"), "RATE_LIMITED",
                    {{"app_id", "games"}, {"limit", "10"}}, std::chrono::milliseconds{1250});
  CHECK(status.code == grpc_code::resource_exhausted);
  CHECK(status.message == "over the rate");
  CHECK(status.trailers.empty());
  auto details = parsed(status);
  CHECK(details.code() == 8);
  CHECK(details.message() == "over the rate");
  REQUIRE(details.details_size() == 2);

  google::rpc::ErrorInfo info;
  REQUIRE(details.details(0).UnpackTo(&info));
  CHECK(info.reason() == "RATE_LIMITED");
  CHECK(info.domain() == error_domain);
  CHECK(info.metadata().at("app_id") == "games");
  CHECK(info.metadata().at("limit") == "10");

  google::rpc::RetryInfo retry;
  REQUIRE(details.details(1).UnpackTo(&retry));
  CHECK(retry.retry_delay().seconds() == 1);
  CHECK(retry.retry_delay().nanos() == 250'000'000);
}

TEST_CASE("status details: invalid fields are BadRequest violations") {
  auto status = invalid_fields(
    "client_id is required", "INVALID_FIELD",
    {{"client_id", "client_id is required"}, {"probes[2].rtt_ms", "must be above 0"}});
  CHECK(status.code == grpc_code::invalid_argument);
  auto details = parsed(status);
  CHECK(details.code() == 3);
  REQUIRE(details.details_size() == 2);
  google::rpc::ErrorInfo info;
  REQUIRE(details.details(0).UnpackTo(&info));
  CHECK(info.reason() == "INVALID_FIELD");
  google::rpc::BadRequest bad;
  CHECK_FALSE(details.details(0).UnpackTo(&bad)); // an Any names its type
  REQUIRE(details.details(1).UnpackTo(&bad));
  REQUIRE(bad.field_violations_size() == 2);
  CHECK(bad.field_violations(0).field() == "client_id");
  CHECK(bad.field_violations(1).field() == "probes[2].rtt_ms");
  CHECK(bad.field_violations(1).description() == "must be above 0");
}

TEST_CASE("status details: nothing but what was given; a negative delay is 0") {
  auto bare = parsed(with_details(make_status(grpc_code::not_found, "gone"), {}));
  CHECK(bare.code() == 5);
  CHECK(bare.details_size() == 0);
  error_details negative;
  negative.retry_delay = std::chrono::milliseconds{-5};
  auto now = parsed(with_details(make_status(grpc_code::unavailable, "x"), negative));
  REQUIRE(now.details_size() == 1);
  google::rpc::RetryInfo retry;
  REQUIRE(now.details(0).UnpackTo(&retry));
  CHECK(retry.retry_delay().seconds() == 0);
  CHECK(retry.retry_delay().nanos() == 0);
}
