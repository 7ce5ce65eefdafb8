#include "transport/grpc_reflection.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <algorithm>
#include <stdexcept>

namespace chroom::transport {

namespace pb = google::protobuf;

reflection_catalog::reflection_catalog(std::vector<std::string> services,
                                       const pb::DescriptorPool* pool)
    : pool_(pool != nullptr ? pool : pb::DescriptorPool::generated_pool()),
      services_(std::move(services)) {
  std::sort(services_.begin(), services_.end());
  services_.erase(std::unique(services_.begin(), services_.end()), services_.end());
  // The exposed files: the services' own and everything they import.
  std::vector<const pb::FileDescriptor*> pending;
  for (const auto& name : services_) {
    const auto* service = pool_->FindServiceByName(name);
    if (service == nullptr)
      throw std::invalid_argument("reflection: no descriptor of service '" + name + "'");
    pending.push_back(service->file());
  }
  while (!pending.empty()) {
    const auto* file = pending.back();
    pending.pop_back();
    if (serialized_.count(file->name()) > 0)
      continue;
    pb::FileDescriptorProto proto;
    file->CopyTo(&proto);
    proto.SerializeToString(&serialized_[file->name()]);
    for (int i = 0; i < file->dependency_count(); ++i)
      pending.push_back(file->dependency(i));
  }
}

bool reflection_catalog::exposed(const pb::FileDescriptor* file) const {
  return file != nullptr && serialized_.count(file->name()) > 0;
}

std::optional<std::vector<std::string>>
reflection_catalog::file_with_dependencies(const pb::FileDescriptor* file) const {
  if (!exposed(file))
    return std::nullopt;
  // Depth first from the file asked for, so it comes first; grpc's own reflection service
  // answers the same set (each file once per response).
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  std::vector<const pb::FileDescriptor*> pending{file};
  while (!pending.empty()) {
    const auto* next = pending.back();
    pending.pop_back();
    if (!seen.insert(next->name()).second)
      continue;
    out.push_back(serialized_.at(next->name()));
    for (int i = next->dependency_count() - 1; i >= 0; --i)
      pending.push_back(next->dependency(i));
  }
  return out;
}

std::optional<std::vector<std::string>>
reflection_catalog::file_by_name(std::string_view filename) const {
  if (serialized_.count(std::string{filename}) == 0)
    return std::nullopt; // not looked up in the pool: an unexposed file stays unloaded
  return file_with_dependencies(pool_->FindFileByName(std::string{filename}));
}

std::optional<std::vector<std::string>>
reflection_catalog::file_containing_symbol(std::string_view symbol) const {
  return file_with_dependencies(pool_->FindFileContainingSymbol(std::string{symbol}));
}

std::optional<std::vector<std::string>>
reflection_catalog::file_containing_extension(std::string_view containing_type,
                                              int32_t number) const {
  const auto* type = pool_->FindMessageTypeByName(std::string{containing_type});
  if (type == nullptr || !exposed(type->file()))
    return std::nullopt;
  const auto* extension = pool_->FindExtensionByNumber(type, number);
  return extension == nullptr ? std::nullopt : file_with_dependencies(extension->file());
}

std::optional<std::vector<int32_t>>
reflection_catalog::extension_numbers(std::string_view type_name) const {
  const auto* type = pool_->FindMessageTypeByName(std::string{type_name});
  if (type == nullptr || !exposed(type->file()))
    return std::nullopt;
  std::vector<const pb::FieldDescriptor*> extensions;
  pool_->FindAllExtensions(type, &extensions);
  std::vector<int32_t> numbers;
  for (const auto* extension : extensions)
    if (exposed(extension->file()))
      numbers.push_back(extension->number());
  std::sort(numbers.begin(), numbers.end());
  numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
  return numbers;
}

} // namespace chroom::transport
