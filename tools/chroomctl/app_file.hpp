// An application definition file (`chroomctl apps create -f FILE`) read into an AppConfig.
#pragma once

#include <string>

#include "chroom/config/v1/config.pb.h"

namespace chroom::ctl {

// Reads path ("-": stdin) as JSON (.json, or text starting with '{': protobuf's JSON
// mapping) or YAML (anything else: read as an app in a peer's config file is, by
// daemon::decode_yaml). Throws std::runtime_error whose message names the file, the line and
// the key at fault ("clinic.yaml:3: stratgy: unknown key; did you mean 'strategy'?").
chroom::config::v1::AppConfig read_app_file(const std::string& path);

} // namespace chroom::ctl
