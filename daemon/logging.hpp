#pragma once

#include <string>

namespace chroom::daemon {

/// Sets up the process-wide spdlog logger on stderr.
/// @param level  trace|debug|info|warn|error|critical|off (validated by the config loader)
/// @param format "text" (human lines) or "json" (one JSON object per line)
/// @param peer_id in every JSON line ("peer"), so that merged logs of a cluster stay apart
void setup_logging(const std::string& level, const std::string& format, const std::string& peer_id);

} // namespace chroom::daemon
