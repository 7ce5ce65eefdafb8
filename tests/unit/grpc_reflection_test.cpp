// Tests of reflection_catalog (transport/grpc_reflection.hpp): what gRPC server reflection
// answers, from the generated pool as the peer uses it and from a pool built here (for
// extensions, which the project's protos do not have).
#include "transport/grpc_reflection.hpp"

#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/allocation/v1/allocation_service.pb.h"
#include "chroom/cluster/v1/cluster.pb.h"
#include "grpc/health/v1/health.pb.h"

#include <doctest/doctest.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace pb = google::protobuf;
using chroom::transport::reflection_catalog;

// The file names in an answer, in its order.
std::vector<std::string> names_of(const std::vector<std::string>& serialized) {
  std::vector<std::string> names;
  for (const auto& bytes : serialized) {
    pb::FileDescriptorProto file;
    REQUIRE(file.ParseFromString(bytes));
    names.push_back(file.name());
  }
  return names;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

reflection_catalog peer_catalog() {
  // Named once so that their files are linked into the test binary.
  (void)chroom::allocation::v1::AllocateRequest::descriptor();
  (void)chroom::admin::v1::NodeInfo::descriptor();
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  return reflection_catalog{{"chroom.allocation.v1.AllocationService",
                             "chroom.admin.v1.AdminService", "grpc.health.v1.Health",
                             "chroom.allocation.v1.AllocationService"}};
}

// Every file an answer holds, parsed into a pool of its own: what a client does.
bool builds_a_pool(const std::vector<std::string>& serialized, const std::string& symbol) {
  pb::DescriptorPool pool;
  // Dependencies come after their dependents: add files once their imports are in.
  std::vector<pb::FileDescriptorProto> files(serialized.size());
  for (size_t i = 0; i < serialized.size(); ++i)
    REQUIRE(files[i].ParseFromString(serialized[i]));
  for (size_t round = 0; round < files.size(); ++round)
    for (auto& file : files)
      if (!file.name().empty() && pool.FindFileByName(file.name()) == nullptr) {
        bool ready = std::all_of(file.dependency().begin(), file.dependency().end(),
                                 [&](const std::string& d) { return pool.FindFileByName(d); });
        if (ready)
          REQUIRE(pool.BuildFile(file) != nullptr);
      }
  return pool.FindFileContainingSymbol(symbol) != nullptr;
}

} // namespace

TEST_CASE("reflection: services are listed sorted, each once") {
  auto catalog = peer_catalog();
  CHECK(catalog.services() == std::vector<std::string>{"chroom.admin.v1.AdminService",
                                                       "chroom.allocation.v1.AllocationService",
                                                       "grpc.health.v1.Health"});
}

TEST_CASE("reflection: a service that has no descriptor is refused at start") {
  CHECK_THROWS_AS(reflection_catalog{{"chroom.nothing.v1.NoService"}}, std::invalid_argument);
}

TEST_CASE("reflection: a file comes first with every file it imports, each once") {
  auto catalog = peer_catalog();
  auto files = catalog.file_by_name("chroom/admin/v1/admin_service.proto");
  REQUIRE(files);
  auto names = names_of(*files);
  CHECK(names.front() == "chroom/admin/v1/admin_service.proto");
  for (const char* dependency :
       {"chroom/allocation/v1/allocation_service.proto", "chroom/medianode/v1/media_node.proto",
        "chroom/config/v1/config.proto", "chroom/apps/v1/events.proto"})
    CHECK(has(names, dependency));
  auto sorted = names;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  CHECK(builds_a_pool(*files, "chroom.admin.v1.AdminService"));
}

TEST_CASE("reflection: the file containing a symbol, for every kind of symbol") {
  auto catalog = peer_catalog();
  for (const char* symbol :
       {"chroom.allocation.v1.AllocationService", "chroom.allocation.v1.AllocationService.Allocate",
        "chroom.allocation.v1.AllocateRequest", "chroom.allocation.v1.AllocateRequest.app_id",
        "chroom.allocation.v1.RttSource", "chroom.allocation.v1.RTT_SOURCE_PROBE"}) {
    CAPTURE(symbol);
    auto files = catalog.file_containing_symbol(symbol);
    REQUIRE(files);
    CHECK(names_of(*files).front() == "chroom/allocation/v1/allocation_service.proto");
  }
  auto files = catalog.file_containing_symbol("chroom.allocation.v1.AllocationService");
  REQUIRE(files);
  CHECK(builds_a_pool(*files, "chroom.allocation.v1.AllocateRequest"));
  // A message of an imported file is found in that file.
  auto register_files = catalog.file_containing_symbol("chroom.medianode.v1.Register");
  REQUIRE(register_files);
  CHECK(names_of(*register_files).front() == "chroom/medianode/v1/media_node.proto");
}

TEST_CASE("reflection: unknown names, and files no served service uses, are not found") {
  auto catalog = peer_catalog();
  CHECK_FALSE(catalog.file_by_name("chroom/nothing.proto"));
  CHECK_FALSE(catalog.file_by_name(""));
  CHECK_FALSE(catalog.file_containing_symbol("chroom.allocation.v1.NoSuchMessage"));
  CHECK_FALSE(catalog.file_containing_symbol(""));
  // Linked into the binary, but the peers' own protocol, which no served service imports.
  (void)chroom::cluster::v1::NodeUpdates::descriptor();
  CHECK_FALSE(catalog.file_by_name("chroom/cluster/v1/cluster.proto"));
  CHECK_FALSE(catalog.file_containing_symbol("chroom.cluster.v1.NodeUpdates"));
  CHECK_FALSE(catalog.extension_numbers("chroom.cluster.v1.NodeUpdates"));
  CHECK_FALSE(catalog.extension_numbers("chroom.nothing.v1.Nothing"));
  // A message without extensions has an empty list.
  auto numbers = catalog.extension_numbers("chroom.allocation.v1.AllocateRequest");
  REQUIRE(numbers);
  CHECK(numbers->empty());
  CHECK_FALSE(catalog.file_containing_extension("chroom.allocation.v1.AllocateRequest", 1));
}

TEST_CASE("reflection: extensions, from a pool with some") {
  pb::DescriptorPool pool;
  pb::FileDescriptorProto base, user;
  REQUIRE(pb::TextFormat::ParseFromString(R"(
    name: "test/base.proto" package: "test" syntax: "proto2"
    message_type { name: "Base" extension_range { start: 100 end: 200 } }
    message_type { name: "Reply" }
    service { name: "BaseService"
              method { name: "Get" input_type: ".test.Base" output_type: ".test.Reply" } }
  )",
                                          &base));
  REQUIRE(pb::TextFormat::ParseFromString(R"(
    name: "test/user.proto" package: "test.user" syntax: "proto2" dependency: "test/base.proto"
    extension { name: "tag" number: 150 label: LABEL_OPTIONAL type: TYPE_STRING
                extendee: ".test.Base" }
    extension { name: "weight" number: 120 label: LABEL_OPTIONAL type: TYPE_INT32
                extendee: ".test.Base" }
    message_type { name: "Empty" }
    service { name: "UserService"
              method { name: "Get" input_type: ".test.Base" output_type: ".test.user.Empty" } }
  )",
                                          &user));
  REQUIRE(pool.BuildFile(base) != nullptr);
  REQUIRE(pool.BuildFile(user) != nullptr);

  SUBCASE("the extending file is exposed") {
    reflection_catalog catalog{{"test.user.UserService"}, &pool};
    CHECK(catalog.extension_numbers("test.Base") == std::vector<int32_t>{120, 150});
    auto files = catalog.file_containing_extension("test.Base", 150);
    REQUIRE(files);
    CHECK(names_of(*files) == std::vector<std::string>{"test/user.proto", "test/base.proto"});
    CHECK_FALSE(catalog.file_containing_extension("test.Base", 151));
    CHECK_FALSE(catalog.file_containing_extension("test.Nothing", 150));
    auto by_symbol = catalog.file_containing_symbol("test.user.tag");
    REQUIRE(by_symbol);
    CHECK(names_of(*by_symbol).front() == "test/user.proto");
  }
  SUBCASE("extensions in files no served service uses are left out") {
    reflection_catalog catalog{{"test.BaseService"}, &pool};
    CHECK(catalog.extension_numbers("test.Base") == std::vector<int32_t>{});
    CHECK_FALSE(catalog.file_containing_extension("test.Base", 150));
    CHECK(catalog.file_by_name("test/base.proto"));
    CHECK_FALSE(catalog.file_by_name("test/user.proto"));
  }
}
