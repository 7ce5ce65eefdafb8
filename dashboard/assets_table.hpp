#pragma once

// The table of bundled files, defined by the source that dashboard/build.mjs generates
// into the build directory. Only assets.cpp and that generated source include this.

#include <cstddef>

#include "dashboard/assets.hpp"

namespace chroom::dashboard::detail {

/// Sorted by path (strictly increasing), so that find_asset can search it by halves.
extern const asset bundled_assets[];
extern const std::size_t bundled_asset_count;

} // namespace chroom::dashboard::detail
