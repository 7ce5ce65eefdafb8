// The YAML config reader (daemon/config): the input is a config file's text. parse_config
// must throw config_error and nothing else, its message must start with the file's name
// (config.hpp: "<source>:<line>: <key>: <problem>"), and what it accepts it accepts the same
// way twice, and as a plain decode_yaml of the same message.
//
// Run with stdin closed or at /dev/null: the validator reads one byte of each cert_file
// and key_file it is given, and the input may name /dev/stdin.
#include "daemon/config.hpp"
#include "fuzz/fuzz_check.hpp"

#include <google/protobuf/util/message_differencer.h>

namespace {

constexpr std::string_view source_name = "fuzz.yaml";

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using chroom::daemon::config_error;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  chroom::config::v1::OrchestratorConfig config;
  try {
    config = chroom::daemon::parse_config(text, source_name);
  } catch (const config_error& error) {
    std::string_view message = error.what();
    FUZZ_CHECK(message.starts_with(std::string{source_name} + ":"), message);
    FUZZ_CHECK(message.size() < 64u << 10,
               "a config error of " + std::to_string(message.size()) + " bytes");
    return 0;
  }
  auto again = chroom::daemon::parse_config(text, source_name);
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(config, again),
             "the same text parsed twice gave two configs");
  chroom::config::v1::OrchestratorConfig decoded;
  try {
    chroom::daemon::decode_yaml(text, source_name, decoded);
  } catch (const config_error& error) {
    FUZZ_CHECK(false,
               std::string{"parse_config accepted what decode_yaml refuses: "} + error.what());
  }
  return 0;
}
