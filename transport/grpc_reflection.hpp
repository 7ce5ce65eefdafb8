#pragma once

// What gRPC server reflection (grpc.reflection.v1.ServerReflection) answers, from the
// descriptors compiled into the binary: the services a peer serves and the .proto files
// that define them. Pure lookups, built once at start-up and then shared read-only; the
// streaming service around it is actors/reflection_service.
//
// Only the files of served services and what they import are exposed: a file linked into
// the binary for other reasons (the peer-to-peer messages of chroom.cluster.v1) is not
// part of the public protocol and is NOT_FOUND like any unknown name.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace google::protobuf {
class DescriptorPool;
class FileDescriptor;
} // namespace google::protobuf

namespace chroom::transport {

class reflection_catalog {
public:
  /// @param services fully qualified names of the services the peer serves (reflection's
  ///        own included); each must be in `pool`, else std::invalid_argument.
  /// @param pool where the descriptors come from; null: the generated pool (every .proto
  ///        linked into the binary). Must outlive the catalog.
  explicit reflection_catalog(std::vector<std::string> services,
                              const google::protobuf::DescriptorPool* pool = nullptr);

  /// The served services' names, sorted (ListServices).
  const std::vector<std::string>& services() const { return services_; }

  /// FileDescriptorProtos, serialized, of the file named `filename` and of every file it
  /// imports, directly or not: each file once, the named one first, so that a client can
  /// build a pool from one answer. nullopt when no exposed file has that name.
  std::optional<std::vector<std::string>> file_by_name(std::string_view filename) const;

  /// As file_by_name, for the file that defines `symbol`: a fully qualified service,
  /// method, message, field, enum, enum value or extension name.
  std::optional<std::vector<std::string>> file_containing_symbol(std::string_view symbol) const;

  /// As file_by_name, for the file that defines extension `number` of message
  /// `containing_type` (fully qualified).
  std::optional<std::vector<std::string>>
  file_containing_extension(std::string_view containing_type, int32_t number) const;

  /// The extension numbers of message `type` that exposed files define, ascending; nullopt
  /// when the message is unknown (or not exposed).
  std::optional<std::vector<int32_t>> extension_numbers(std::string_view type) const;

private:
  std::optional<std::vector<std::string>>
  file_with_dependencies(const google::protobuf::FileDescriptor* file) const;
  bool exposed(const google::protobuf::FileDescriptor* file) const;

  const google::protobuf::DescriptorPool* pool_;
  std::vector<std::string> services_;
  /// Every exposed file by name, serialized once here.
  std::unordered_map<std::string, std::string> serialized_;
};

} // namespace chroom::transport
