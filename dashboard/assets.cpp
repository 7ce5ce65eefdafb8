#include "dashboard/assets.hpp"

#include <algorithm>
#include <span>

#include "dashboard/assets_table.hpp"

namespace chroom::dashboard {

const asset* find_asset(std::string_view path) {
  if (path == "/")
    path = "/index.html";
  const std::span<const asset> table{detail::bundled_assets, detail::bundled_asset_count};
  const auto it = std::lower_bound(table.begin(), table.end(), path,
                                   [](const asset& a, std::string_view p) { return a.path < p; });
  return it != table.end() && it->path == path ? &*it : nullptr;
}

} // namespace chroom::dashboard
