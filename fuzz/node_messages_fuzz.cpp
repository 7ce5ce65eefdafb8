// Media-node message validation (allocation/node_messages), as a node's Connect stream
// reaches it: the input is the stream's request body (gRPC length-prefixed messages), each
// message a chroom.medianode.v1.NodeMessage. What validate_register / validate_stats accept
// is checked against the ranges media_node.proto promises, and then goes into a node table
// (what the registry does with it), which must take anything the validators let through.
#include "allocation/node_messages.hpp"
#include "allocation/node_table.hpp"
#include "fuzz/fuzz_check.hpp"
#include "transport/grpc_wire.hpp"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace chroom::fuzz;
namespace v1 = chroom::medianode::v1;

/// A problem names the field and quotes at most a bounded part of the value.
constexpr size_t max_problem_chars = 1024;

void check_problem(const std::string& problem) {
  FUZZ_CHECK(problem.size() <= max_problem_chars,
             "a problem of " + std::to_string(problem.size()) + " characters");
}

bool finite_in(double value, double low, double high) {
  return std::isfinite(value) && value >= low && value <= high;
}

void check_valid_register(const v1::Register& r) {
  FUZZ_CHECK(chroom::allocation::is_valid_node_id(r.node_id()), r.node_id());
  FUZZ_CHECK(r.endpoints_size() >= 1, "no endpoint");
  for (const auto& endpoint : r.endpoints())
    FUZZ_CHECK(!endpoint.host().empty() && endpoint.port() >= 1 && endpoint.port() <= 65535,
               "endpoint " + endpoint.host());
  FUZZ_CHECK(finite_in(r.location().latitude(), -90, 90), "latitude");
  FUZZ_CHECK(finite_in(r.location().longitude(), -180, 180), "longitude");
  FUZZ_CHECK(r.location().country().empty() || r.location().country().size() == 2, "country");
  FUZZ_CHECK(r.capacity().max_participants() >= 1, "max_participants");
  FUZZ_CHECK(std::isfinite(r.capacity().upload_mbps()) && r.capacity().upload_mbps() > 0,
             "upload_mbps");
  FUZZ_CHECK(std::isfinite(r.capacity().download_mbps()) && r.capacity().download_mbps() > 0,
             "download_mbps");
  FUZZ_CHECK(r.capacity().cpu_cores() >= 1, "cpu_cores");
  for (const auto& room : r.rooms())
    FUZZ_CHECK(chroom::allocation::is_valid_room_id(room.room_id()), room.room_id());
}

void check_valid_stats(const v1::Stats& s) {
  FUZZ_CHECK(finite_in(s.cpu_load(), 0, 1), "cpu_load");
  FUZZ_CHECK(finite_in(s.packet_loss(), 0, 1), "packet_loss");
  FUZZ_CHECK(finite_in(s.bandwidth_in_mbps(), 0, 1e7) && finite_in(s.bandwidth_out_mbps(), 0, 1e7),
             "bandwidth");
  FUZZ_CHECK(finite_in(s.jitter_ms(), 0, 60'000), "jitter_ms");
  for (const auto& rtt : s.peer_rtts())
    FUZZ_CHECK(finite_in(rtt.rtt_ms(), 0, 60'000), "rtt_ms");
}

void check_version(const std::string& text) {
  auto version = chroom::allocation::parse_protocol_version(text);
  if (!version)
    return;
  // Only digits around one dot parse; the numbers are what they say.
  auto dot = text.find('.');
  FUZZ_CHECK(dot != std::string::npos && text.find('.', dot + 1) == std::string::npos, text);
  FUZZ_CHECK(std::stoull(text.substr(0, dot)) == version->major &&
               std::stoull(text.substr(dot + 1)) == version->minor,
             text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using clock = chroom::allocation::clock;
  chroom::transport::grpc_message_decoder decoder{4u << 20};
  std::vector<std::string> messages;
  decoder.feed({data, size}, messages);

  // Made at the first valid Register: a table builds its geo index (7,200 cells) first,
  // which would cost more than everything else here.
  std::optional<chroom::allocation::node_table> table;
  auto now = clock::time_point{} + std::chrono::hours{1};
  std::string node_id;
  chroom::allocation::session_id session = 0;
  for (const auto& bytes : messages) {
    v1::NodeMessage message;
    if (!message.ParseFromString(bytes))
      continue;
    now += std::chrono::milliseconds{700};
    switch (message.message_case()) {
      case v1::NodeMessage::kRegister: {
        const auto& registration = message.register_();
        check_version(registration.protocol_version());
        auto problem = chroom::allocation::validate_register(registration);
        check_problem(problem);
        if (!problem.empty())
          break;
        check_valid_register(registration);
        node_id = registration.node_id();
        if (!table)
          table.emplace();
        table->on_register(registration, ++session, now);
        const auto* record = table->find(node_id);
        FUZZ_CHECK(record != nullptr && record->session == session, "registered node missing");
        FUZZ_CHECK(record->available_participants() <= registration.capacity().max_participants(),
                   "more room than capacity");
        break;
      }
      case v1::NodeMessage::kStats: {
        auto problem = chroom::allocation::validate_stats(message.stats());
        check_problem(problem);
        if (!problem.empty())
          break;
        check_valid_stats(message.stats());
        if (session != 0)
          table->on_stats(node_id, session, message.stats(), now);
        break;
      }
      default:
        break;
    }
    if (table)
      table->sweep(now);
  }
  if (table) {
    table->on_stream_closed(node_id, session, now);
    table->sweep(now + std::chrono::hours{1});
  }
  return 0;
}
