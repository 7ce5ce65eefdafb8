#include "transport/json_mapping.hpp"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <memory>

namespace chroom::transport {

std::optional<std::string> json_request_to_binary(const google::protobuf::Message& prototype,
                                                  std::string_view json, std::string& binary) {
  std::unique_ptr<google::protobuf::Message> request{prototype.New()};
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto parsed = google::protobuf::util::JsonStringToMessage(
    google::protobuf::StringPiece{json.data(), json.size()}, request.get(), options);
  if (!parsed.ok())
    return std::string{parsed.message()};
  binary = request->SerializeAsString();
  return std::nullopt;
}

std::optional<std::string> binary_response_to_json(const google::protobuf::Message& prototype,
                                                   std::string_view binary) {
  std::unique_ptr<google::protobuf::Message> response{prototype.New()};
  std::string json;
  if (!response->ParseFromArray(binary.data(), static_cast<int>(binary.size())) ||
      !google::protobuf::util::MessageToJsonString(*response, &json).ok())
    return std::nullopt;
  return json;
}

} // namespace chroom::transport
