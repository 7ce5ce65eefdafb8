// Loading the peer's configuration: a YAML file whose keys are the field names of the proto
// message chroom.config.v1.OrchestratorConfig (messages/chroom/config/v1/config.proto).
//
// The loader walks the YAML with protobuf reflection, so a field added to the proto is
// accepted from the file with no change here; only the defaults and the validation rules
// in config.cpp name fields. docs/configuration.md is the operator's reference.
#pragma once

#include "chroom/config/v1/config.pb.h"

#include <stdexcept>
#include <string>
#include <string_view>

namespace chroom::daemon {

// Thrown for any configuration problem. what() is a complete message for a human, in the
// form "<source>:<line>: <dotted.key.path>: <problem>", e.g.
//   orchestrator.yaml:12: limits.max_message_bytes: expected an unsigned integer, got "abc"
// The line (1-based) is left out when the value did not come from the file (a default),
// and the key path when the problem concerns the whole file (unreadable, bad YAML syntax).
// A key missing from a sequence element in the file is reported on the element's line, e.g.
//   orchestrator.yaml:9: media_nodes.credentials[1].secret: must not be empty (...)
// Secrets are never quoted in messages, only their length.
class config_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

// The embedded defaults: what the peer runs on with no config file (a single peer serving
// h2c on 127.0.0.1:7443, no media node allowed to register). Every field that has a default
// is filled in; worker_threads is the number of cores minus one, clamped to the valid range
// 1..256; peer_id is the host name when that is a valid peer id ([A-Za-z0-9._-], 1 to 64
// characters), else "peer".
chroom::config::v1::OrchestratorConfig default_config();

// Parses a configuration from YAML text.
//   yaml_text    the whole file. Empty text, or text holding only comments, is valid and
//                yields default_config().
//   source_name  how to name the text in error messages, normally its file name.
// A default is applied to every field whose key is absent from the text; a key that is
// present keeps its value even when that is zero (an explicit `port: 0` asks for an
// ephemeral port). The result is then validated. Relative cert_file/key_file paths are
// resolved against the working directory. Throws config_error and nothing else.
chroom::config::v1::OrchestratorConfig parse_config(std::string_view yaml_text,
                                                    std::string_view source_name);

// Reads the file at `path` and parses it as parse_config(text, path) does. A file that
// cannot be read is a config_error naming the path and the system's reason (errno text).
// Throws config_error and nothing else.
chroom::config::v1::OrchestratorConfig load_config_file(const std::string& path);

// True for a host name or address that only this machine reaches: "localhost", "::1",
// 127.0.0.0/8.
bool is_loopback_host(std::string_view host);

// Whether the peer serves gRPC server reflection: admin.reflection "on", or "auto" with the
// gRPC listener on a loopback address.
bool reflection_enabled(const chroom::config::v1::OrchestratorConfig& config);

// The reflection walker behind parse_config, for any protobuf message: decodes one YAML
// document into `message` (which is cleared first) with the same key, type and duplicate
// checks, but applies no defaults and no validation. Nested messages are YAML maps,
// repeated fields YAML sequences, map fields YAML maps, enums their value names (e.g.
// LOG_LEVEL_INFO), bytes fields the scalar's text as is. Throws config_error and nothing
// else. parse_config is what the daemon uses; this exists so tools and tests can reuse the
// walker on other messages.
void decode_yaml(std::string_view yaml_text, std::string_view source_name,
                 google::protobuf::Message& message);

} // namespace chroom::daemon
