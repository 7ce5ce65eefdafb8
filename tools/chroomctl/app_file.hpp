// An application definition file (`chroomctl apps create -f FILE`) read into an AppConfig.
#pragma once

#include <string>

#include "chroom/config/v1/config.pb.h"

namespace chroom::ctl {

// Reads path ("-": stdin) as JSON (.json, or text starting with '{') or YAML (anything else).
// YAML is turned into JSON guided by the message's fields, then both are parsed with
// protobuf's JSON parser, so the names are the .proto's (snake_case; lowerCamelCase is
// accepted too). Throws std::runtime_error whose message names the file, the line and the
// key at fault ("clinic.yaml:3:1: unknown key 'stratgy' (did you mean 'strategy'?)").
chroom::config::v1::AppConfig read_app_file(const std::string& path);

} // namespace chroom::ctl
