#pragma once

// The node the join-token target verifies for; make_seeds signs its seed tokens with the
// same key, so that the seeds are valid tokens the fuzzer mutates.

#include <cstdint>
#include <string_view>

namespace chroom::fuzz::join_token_fixture {

inline constexpr std::string_view key = "node-secret-0123456789abcdef";
inline constexpr std::string_view node_id = "node-1";
/// The verifier's clock, Unix seconds.
inline constexpr int64_t now_s = 1'700'000'000;

} // namespace chroom::fuzz::join_token_fixture
