// grpc++ (stock, 1.51) as the client of a running chroom-orchestrator.
//
// Driven by test_grpcpp_client.py, which starts the peers and passes:
//   CHROOM_TARGET         host:port of an h2c peer
//   CHROOM_TLS_TARGET     host:port of a TLS peer
//   CHROOM_TLS_ROOT_CERT  PEM file of the TLS peer's (self-signed) certificate
// Every call has a deadline, every loop a bound: the binary always ends by itself.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "chroom/diag/v1/diagnostics.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace {

namespace diag = chroom::diag::v1;
namespace health = grpc::health::v1;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Deadline of calls that should be quick.
constexpr auto call_timeout = 5s;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string{} : std::string{value};
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<grpc::Channel> h2c_channel() {
  auto target = env("CHROOM_TARGET");
  REQUIRE_MESSAGE(!target.empty(), "CHROOM_TARGET is not set");
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

std::shared_ptr<grpc::Channel> tls_channel() {
  auto target = env("CHROOM_TLS_TARGET");
  auto cert_path = env("CHROOM_TLS_ROOT_CERT");
  REQUIRE_MESSAGE(!target.empty(), "CHROOM_TLS_TARGET is not set");
  REQUIRE_MESSAGE(!cert_path.empty(), "CHROOM_TLS_ROOT_CERT is not set");
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = read_file(cert_path);
  REQUIRE_MESSAGE(!options.pem_root_certs.empty(), "cannot read " << cert_path);
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

void set_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds timeout = call_timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}

diag::EchoRequest echo_request(const std::string& text, const std::string& payload = {}) {
  diag::EchoRequest req;
  req.set_text(text);
  req.set_payload(payload);
  return req;
}

std::string describe(const grpc::Status& status) {
  return std::to_string(status.error_code()) + " " + status.error_message();
}

diag::GetCountersResponse counters(diag::Diagnostics::Stub& stub) {
  grpc::ClientContext ctx;
  set_deadline(ctx);
  diag::GetCountersResponse reply;
  auto status = stub.GetCounters(&ctx, diag::GetCountersRequest{}, &reply);
  REQUIRE_MESSAGE(status.ok(), "GetCounters: " << describe(status));
  return reply;
}

std::vector<std::string> values_of(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                                   const std::string& key) {
  std::vector<std::string> out;
  auto [first, last] = md.equal_range(key);
  for (auto it = first; it != last; ++it)
    out.emplace_back(it->second.data(), it->second.size());
  return out;
}

std::string all_bytes() {
  std::string out;
  for (int i = 0; i < 256; ++i)
    out.push_back(static_cast<char>(i));
  return out;
}

// An unknown method, called with the generic stub (raw bytes, no generated code).
grpc::Status generic_unary(const std::shared_ptr<grpc::Channel>& channel,
                           const std::string& method) {
  grpc::GenericStub stub{channel};
  grpc::ClientContext ctx;
  set_deadline(ctx);
  grpc::CompletionQueue cq;
  grpc::Slice slice{std::string{}};
  grpc::ByteBuffer request{&slice, 1};
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&ctx, method, request, &cq);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  auto next = cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + 10s);
  REQUIRE(next == grpc::CompletionQueue::GOT_EVENT);
  REQUIRE(tag == reinterpret_cast<void*>(1));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

} // namespace

TEST_CASE("unary Echo") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  diag::EchoResponse reply;
  auto status = stub->Echo(&ctx, echo_request("grpc++", all_bytes()), &reply);
  REQUIRE_MESSAGE(status.ok(), describe(status));
  CHECK(reply.text() == "grpc++");
  CHECK(reply.payload() == all_bytes());
  CHECK(reply.sequence() == 0);
}

TEST_CASE("server streaming EchoRepeat") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  auto req = echo_request("rep");
  req.set_repeat(4);
  req.set_interval_ms(5);
  auto reader = stub->EchoRepeat(&ctx, req);
  diag::EchoResponse reply;
  std::vector<uint64_t> sequences;
  while (sequences.size() < 10 && reader->Read(&reply)) {
    CHECK(reply.text() == "rep");
    sequences.push_back(reply.sequence());
  }
  auto status = reader->Finish();
  REQUIRE_MESSAGE(status.ok(), describe(status));
  CHECK(sequences == std::vector<uint64_t>{0, 1, 2, 3});
}

TEST_CASE("client streaming EchoCollect") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  diag::EchoCollectResponse reply;
  auto writer = stub->EchoCollect(&ctx, &reply);
  REQUIRE(writer->Write(echo_request("a", "12")));
  REQUIRE(writer->Write(echo_request("b", "345")));
  REQUIRE(writer->Write(echo_request("c", "")));
  REQUIRE(writer->WritesDone());
  auto status = writer->Finish();
  REQUIRE_MESSAGE(status.ok(), describe(status));
  CHECK(reply.message_count() == 3);
  CHECK(reply.payload_bytes() == 5);
  CHECK(reply.text() == "abc");
}

TEST_CASE("bidirectional EchoStream, one response per request") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  auto stream = stub->EchoStream(&ctx);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(stream->Write(echo_request("b" + std::to_string(i))));
    diag::EchoResponse reply;
    REQUIRE(stream->Read(&reply));
    CHECK(reply.text() == "b" + std::to_string(i));
    CHECK(reply.sequence() == static_cast<uint64_t>(i));
  }
  REQUIRE(stream->WritesDone());
  diag::EchoResponse extra;
  CHECK_FALSE(stream->Read(&extra));
  auto status = stream->Finish();
  REQUIRE_MESSAGE(status.ok(), describe(status));
}

TEST_CASE("x-echo- metadata comes back as initial metadata and trailers") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  ctx.AddMetadata("x-echo-color", "green");
  ctx.AddMetadata("x-echo-data-bin", all_bytes());
  ctx.AddMetadata("x-not-echoed", "nope");
  diag::EchoResponse reply;
  auto status = stub->Echo(&ctx, echo_request("md"), &reply);
  REQUIRE_MESSAGE(status.ok(), describe(status));
  for (const auto* md : {&ctx.GetServerInitialMetadata(), &ctx.GetServerTrailingMetadata()}) {
    CHECK(values_of(*md, "x-echo-color") == std::vector<std::string>{"green"});
    CHECK(values_of(*md, "x-echo-data-bin") == std::vector<std::string>{all_bytes()});
    CHECK(values_of(*md, "x-not-echoed").empty());
  }
}

TEST_CASE("fail_code gives that status and the exact message") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx);
  auto req = echo_request("fail");
  req.set_fail_code(grpc::StatusCode::NOT_FOUND);
  req.set_fail_message("nötig: 100% fertig\n\tok");
  diag::EchoResponse reply;
  auto status = stub->Echo(&ctx, req, &reply);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(status.error_message() == "nötig: 100% fertig\n\tok");
}

TEST_CASE("deadline exceeded") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  grpc::ClientContext ctx;
  set_deadline(ctx, 200ms);
  auto req = echo_request("slow");
  req.set_delay_ms(2000);
  diag::EchoResponse reply;
  auto start = clock_type::now();
  auto status = stub->Echo(&ctx, req, &reply);
  auto elapsed = clock_type::now() - start;
  CHECK_MESSAGE(status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED, describe(status));
  CHECK(elapsed < 1500ms);
}

TEST_CASE("TryCancel on EchoRepeat stops the call") {
  auto stub = diag::Diagnostics::NewStub(h2c_channel());
  auto before = counters(*stub);
  grpc::ClientContext ctx;
  set_deadline(ctx, 20s);
  auto req = echo_request("tick");
  req.set_repeat(0);
  req.set_interval_ms(10);
  auto reader = stub->EchoRepeat(&ctx, req);
  diag::EchoResponse reply;
  for (uint64_t i = 0; i < 3; ++i) {
    REQUIRE(reader->Read(&reply));
    CHECK(reply.sequence() == i);
  }
  ctx.TryCancel();
  int drained = 0;
  while (drained < 1000 && reader->Read(&reply))
    ++drained; // bounded
  auto status = reader->Finish();
  CHECK(status.error_code() == grpc::StatusCode::CANCELLED);

  auto deadline = clock_type::now() + 1s;
  auto after = counters(*stub);
  while (clock_type::now() < deadline && (after.calls_cancelled() <= before.calls_cancelled() ||
                                          after.calls_active() != before.calls_active())) {
    std::this_thread::sleep_for(50ms);
    after = counters(*stub);
  }
  CHECK(after.calls_cancelled() >= before.calls_cancelled() + 1);
  CHECK(after.calls_active() == before.calls_active());
}

TEST_CASE("unknown method and unknown service are UNIMPLEMENTED") {
  auto channel = h2c_channel();
  auto status = generic_unary(channel, "/chroom.diag.v1.Diagnostics/NoSuchMethod");
  CHECK_MESSAGE(status.error_code() == grpc::StatusCode::UNIMPLEMENTED, describe(status));
  status = generic_unary(channel, "/no.such.Service/Echo");
  CHECK_MESSAGE(status.error_code() == grpc::StatusCode::UNIMPLEMENTED, describe(status));
}

TEST_CASE("health Check") {
  auto stub = health::Health::NewStub(h2c_channel());
  for (const std::string service : {"", "chroom.diag.v1.Diagnostics"}) {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    health::HealthCheckRequest req;
    req.set_service(service);
    health::HealthCheckResponse reply;
    auto status = stub->Check(&ctx, req, &reply);
    REQUIRE_MESSAGE(status.ok(), describe(status));
    CHECK(reply.status() == health::HealthCheckResponse::SERVING);
  }
  grpc::ClientContext ctx;
  set_deadline(ctx);
  health::HealthCheckRequest req;
  req.set_service("no.such.Service");
  health::HealthCheckResponse reply;
  CHECK(stub->Check(&ctx, req, &reply).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("TLS: Echo and EchoStream") {
  auto stub = diag::Diagnostics::NewStub(tls_channel());
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    diag::EchoResponse reply;
    auto status = stub->Echo(&ctx, echo_request("secure", all_bytes()), &reply);
    REQUIRE_MESSAGE(status.ok(), describe(status));
    CHECK(reply.text() == "secure");
    CHECK(reply.payload() == all_bytes());
  }
  grpc::ClientContext ctx;
  set_deadline(ctx);
  auto stream = stub->EchoStream(&ctx);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(stream->Write(echo_request("t" + std::to_string(i))));
    diag::EchoResponse reply;
    REQUIRE(stream->Read(&reply));
    CHECK(reply.text() == "t" + std::to_string(i));
  }
  REQUIRE(stream->WritesDone());
  auto status = stream->Finish();
  CHECK_MESSAGE(status.ok(), describe(status));
}
