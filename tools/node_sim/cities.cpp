#include "tools/node_sim/cities.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numbers>
#include <optional>

#include <fmt/format.h>

namespace chroom::node_sim {

namespace {

// Splits one CSV line into fields; quoted fields may hold commas and doubled quotes (no
// line breaks: the derived file has none). nullopt for an unterminated quote.
std::optional<std::vector<std::string>> split_csv(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  if (quoted)
    return std::nullopt;
  return fields;
}

template <typename T> bool parse_number(const std::string& text, T& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end;
}

} // namespace

std::string city_table::load(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fmt::format("{}: cannot open", path);
  std::string line;
  if (!std::getline(in, line))
    return fmt::format("{}: empty file", path);
  auto header = split_csv(line);
  if (!header)
    return fmt::format("{}:1: unterminated quote", path);
  auto column = [&](const char* name) -> int {
    auto it = std::find(header->begin(), header->end(), name);
    return it == header->end() ? -1 : static_cast<int>(it - header->begin());
  };
  const int name_col = column("name"), country_col = column("country"), lat_col = column("lat"),
            lon_col = column("lon"), population_col = column("population"),
            region_col = column("region");
  if (std::min({name_col, country_col, lat_col, lon_col, population_col, region_col}) < 0) {
    return fmt::format("{}:1: header must name the columns name,country,lat,lon,population,region",
                       path);
  }
  const auto needed = static_cast<std::size_t>(
    std::max({name_col, country_col, lat_col, lon_col, population_col, region_col}) + 1);

  std::vector<city> loaded;
  for (int line_number = 2; std::getline(in, line); ++line_number) {
    if (line.empty() || line == "\r")
      continue;
    auto fields = split_csv(line);
    if (!fields || fields->size() < needed) {
      return fmt::format("{}:{}: expected {} fields", path, line_number, needed);
    }
    city c;
    c.name = (*fields)[name_col];
    c.country = (*fields)[country_col];
    c.region = (*fields)[region_col];
    if (!parse_number((*fields)[lat_col], c.latitude) || std::abs(c.latitude) > 90 ||
        !parse_number((*fields)[lon_col], c.longitude) || std::abs(c.longitude) > 180) {
      return fmt::format("{}:{}: bad coordinates", path, line_number);
    }
    if (!parse_number((*fields)[population_col], c.population)) {
      return fmt::format("{}:{}: bad population '{}'", path, line_number,
                         (*fields)[population_col]);
    }
    if (c.country.size() != 2 || c.region.empty()) {
      return fmt::format("{}:{}: country must be two letters and region non-empty", path,
                         line_number);
    }
    loaded.push_back(std::move(c));
  }
  if (loaded.empty())
    return fmt::format("{}: no cities", path);
  cities_ = std::move(loaded);
  index();
  if (cumulative_.back() == 0)
    return fmt::format("{}: total population is zero", path);
  return {};
}

void city_table::load_fallback() {
  // One big city per broad region, so a relocated binary still spreads nodes over the world.
  cities_ = {
    {"Tokyo", "JP", "ap-northeast", 35.6895, 139.6917, 8336599},
    {"Shanghai", "CN", "ap-east", 31.2222, 121.4581, 22315474},
    {"Mumbai", "IN", "ap-south", 19.0728, 72.8826, 12691836},
    {"Jakarta", "ID", "ap-southeast", -6.2146, 106.8451, 8540121},
    {"Istanbul", "TR", "me-west", 41.0138, 28.9497, 14804116},
    {"London", "GB", "eu-west", 51.5085, -0.1257, 8961989},
    {"Berlin", "DE", "eu-central", 52.5244, 13.4105, 3426354},
    {"Lagos", "NG", "af-west", 6.4541, 3.3947, 9000000},
    {"Cairo", "EG", "af-north", 30.0626, 31.2497, 7734614},
    {"New York City", "US", "us-east", 40.7143, -74.0060, 8175133},
    {"Los Angeles", "US", "us-west", 34.0522, -118.2437, 3971883},
    {"Mexico City", "MX", "na-south", 19.4285, -99.1277, 12294193},
    {"Sao Paulo", "BR", "sa-east", -23.5475, -46.6361, 10021295},
    {"Sydney", "AU", "oceania", -33.8679, 151.2073, 4627345},
  };
  index();
}

void city_table::index() {
  cumulative_.clear();
  cumulative_.reserve(cities_.size());
  std::uint64_t total = 0;
  for (const auto& c : cities_)
    cumulative_.push_back(total += c.population);
}

std::size_t city_table::pick_index(double u) const {
  const auto target = static_cast<std::uint64_t>(u * static_cast<double>(cumulative_.back()));
  auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), target);
  if (it == cumulative_.end())
    --it;
  return static_cast<std::size_t>(it - cumulative_.begin());
}

double great_circle_km(double lat1, double lon1, double lat2, double lon2) {
  constexpr double earth_radius_km = 6371.0;
  constexpr double to_radians = std::numbers::pi / 180.0;
  const double dlat = (lat2 - lat1) * to_radians;
  const double dlon = (lon2 - lon1) * to_radians;
  const double a = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(lat1 * to_radians) * std::cos(lat2 * to_radians) * std::sin(dlon / 2) *
                     std::sin(dlon / 2);
  return 2 * earth_radius_km * std::asin(std::min(1.0, std::sqrt(a)));
}

} // namespace chroom::node_sim
