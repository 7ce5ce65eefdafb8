#pragma once

// Checks of what a media node sends, before anything acts on it. Each returns an empty
// string for a valid message, or a message naming the offending field and value.

#include "chroom/medianode/v1/media_node.pb.h"

#include <optional>
#include <string>
#include <string_view>

namespace chroom::allocation {

/// The Media Node RPC version this orchestrator speaks.
inline constexpr uint32_t protocol_major = 1;
inline constexpr uint32_t protocol_minor = 0;
inline constexpr std::string_view protocol_version = "1.1";

struct protocol_version_number {
  uint32_t major = 0;
  uint32_t minor = 0;
};

/// Parses "major.minor"; empty on anything else.
std::optional<protocol_version_number> parse_protocol_version(std::string_view text);

/// True for node ids: [a-z0-9._-], 1 to 128 characters.
bool is_valid_node_id(std::string_view id);

/// Longest room id on a node: "app_id/room_id" (64 + 1 + 128), with room to spare.
inline constexpr size_t max_room_id_length = 256;

/// True for room ids as the orchestrator gives them to nodes (PrepareRoom): "app/room",
/// 1 to max_room_id_length characters of [A-Za-z0-9._/-].
bool is_valid_room_id(std::string_view id);

/// Fields, ranges and sizes of a Register (not the credential or the version).
std::string validate_register(const chroom::medianode::v1::Register& message);

/// Ranges of a Stats report (no NaN, fractions within 0..1, ...).
std::string validate_stats(const chroom::medianode::v1::Stats& message);

} // namespace chroom::allocation
