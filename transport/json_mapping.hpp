#pragma once

// The protobuf JSON mapping of unary calls (content-type application/json): the gateway
// turns a JSON request into the binary message its handler parses, and the handler's binary
// response back into JSON. Handlers only ever see binary protobuf.

#include <optional>
#include <string>
#include <string_view>

namespace google::protobuf {
class Message;
}

namespace chroom::transport {

/// Parses `json` as a message of `prototype`'s type and serializes it, binary, into
/// `binary`. Unknown fields are ignored, as in binary protobuf (DESIGN.md): a client built
/// against a newer .proto keeps working with an older peer. Returns the parser's reason
/// when `json` is not such a message (`binary` is then unspecified).
std::optional<std::string> json_request_to_binary(const google::protobuf::Message& prototype,
                                                  std::string_view json, std::string& binary);

/// The JSON form of `binary`, a serialized message of `prototype`'s type; empty when it
/// does not parse as one.
std::optional<std::string> binary_response_to_json(const google::protobuf::Message& prototype,
                                                   std::string_view binary);

} // namespace chroom::transport
