// The JSON mapping of unary methods (transport/json_mapping): a JSON request body becomes
// the binary message the handler parses, a binary response becomes JSON. First byte: which
// unary method of the public services (its request type for a JSON body, its response type
// for binary bytes) and which direction; the rest is the body.
//
// Both directions must round-trip: what the request side accepts, serialized, prints as
// JSON that parses to the same message; what parses as a response prints as JSON that
// parses back to the same message.
#include "fuzz/fuzz_check.hpp"
#include "fuzz/unary_methods.hpp"
#include "transport/json_mapping.hpp"

#include <google/protobuf/util/message_differencer.h>

#include <memory>
#include <vector>

namespace {

using namespace chroom::fuzz;
namespace pb = google::protobuf;

bool same_message(const pb::Message& a, const pb::Message& b) {
  pb::util::MessageDifferencer differencer;
  // NaN travels as "NaN" and comes back NaN; it is the same value here.
  pb::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

/// `binary` (a valid message of `prototype`'s type) survives binary -> JSON -> binary.
void check_round_trip(const unary_method& method, const pb::Message& prototype,
                      const std::string& binary, std::string_view input) {
  std::unique_ptr<pb::Message> original{prototype.New()};
  FUZZ_CHECK(original->ParseFromString(binary), method.name + ": own output does not parse");
  auto json = chroom::transport::binary_response_to_json(prototype, binary);
  FUZZ_CHECK(json.has_value(), method.name + ": a parsed message does not print as JSON");
  std::string again;
  auto problem = chroom::transport::json_request_to_binary(prototype, *json, again);
  FUZZ_CHECK(!problem, method.name + ": printed JSON does not parse back: " + problem.value_or("") +
                         "\n  JSON: " + *json + "\n  input: " + std::string{input});
  std::unique_ptr<pb::Message> back{prototype.New()};
  FUZZ_CHECK(back->ParseFromString(again), method.name + ": round trip does not parse");
  FUZZ_CHECK(same_message(*original, *back),
             method.name + ": JSON round trip changed the message\n  JSON: " + *json);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  byte_reader in{data, size};
  const auto& methods = unary_methods();
  auto choice = in.u8();
  const auto& method = methods[(choice >> 1) % methods.size()];
  auto body = in.text(in.remaining());
  if ((choice & 1) == 0) {
    // A client's JSON request.
    std::string binary;
    if (!chroom::transport::json_request_to_binary(*method.request, body, binary))
      check_round_trip(method, *method.request, binary, body);
  } else {
    // A handler's binary response (only what parses as the type can be converted).
    std::string binary{body};
    std::unique_ptr<pb::Message> response{method.response->New()};
    if (response->ParseFromString(binary)) {
      // Unknown fields do not travel in JSON: compare what does.
      response->DiscardUnknownFields();
      check_round_trip(method, *method.response, response->SerializeAsString(), body);
    }
  }
  return 0;
}
