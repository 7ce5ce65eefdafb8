#include "tools/chroomctl/output.hpp"

#include "common/unix_time.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <ostream>

#include <google/protobuf/util/json_util.h>

namespace chroom::ctl {

namespace {

constexpr std::string_view column_gap = "   ";

// Characters, not bytes: UTF-8 continuation bytes do not count.
std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
    std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string upper(std::string text) {
  for (auto& c : text)
    if (c >= 'a' && c <= 'z')
      c = static_cast<char>(c - 'a' + 'A');
  return text;
}

void print_row(std::ostream& out, const std::vector<std::string>& cells,
               const std::vector<std::size_t>& widths) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i > 0)
      line += column_gap;
    line += cells[i];
    if (i + 1 < cells.size())
      line.append(widths[i] - display_width(cells[i]), ' ');
  }
  while (!line.empty() && line.back() == ' ')
    line.pop_back();
  out << line << '\n';
}

std::string two_units(std::int64_t big, const char* big_unit, std::int64_t small,
                      const char* small_unit) {
  char text[48];
  std::snprintf(text, sizeof text, "%lld%s%02lld%s", static_cast<long long>(big), big_unit,
                static_cast<long long>(small), small_unit);
  return text;
}

} // namespace

void table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void table::print(std::ostream& out, bool headers) const {
  std::vector<std::string> header_cells;
  for (const auto& header : headers_)
    header_cells.push_back(upper(header));
  std::vector<std::size_t> widths(headers_.size(), 0);
  auto widen = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i)
      widths[i] = std::max(widths[i], display_width(cells[i]));
  };
  if (headers)
    widen(header_cells);
  for (const auto& row : rows_)
    widen(row);
  if (headers)
    print_row(out, header_cells, widths);
  for (const auto& row : rows_)
    print_row(out, row, widths);
}

void field_list::add(std::string key, std::string value) {
  fields_.emplace_back(std::move(key), std::move(value));
}

void field_list::print(std::ostream& out) const {
  std::size_t width = 0;
  for (const auto& [key, value] : fields_)
    width = std::max(width, display_width(key) + 1);
  for (const auto& [key, value] : fields_) {
    std::string line = key;
    line += ':';
    line.append(width - display_width(key) - 1 + 2, ' ');
    line += value.empty() ? "-" : value;
    out << line << '\n';
  }
}

void print_json(std::ostream& out, const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  // Scripts see every field, zeros included, under the names of the .proto (the same
  // names `apps create -f` reads).
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!status.ok())
    throw std::runtime_error(std::string("cannot print JSON: ") + std::string(status.message()));
  out << text;
  if (text.empty() || text.back() != '\n')
    out << '\n';
}

std::string human_duration_ms(std::int64_t ms) {
  if (ms < 0)
    return std::string("-") + human_duration_ms(-ms);
  if (ms < 1000)
    return std::to_string(ms) + "ms";
  if (ms < 60'000) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1fs", static_cast<double>(ms) / 1000.0);
    return text;
  }
  std::int64_t s = ms / 1000;
  if (s < 3600)
    return two_units(s / 60, "m", s % 60, "s");
  if (s < 86400)
    return two_units(s / 3600, "h", (s % 3600) / 60, "m");
  return two_units(s / 86400, "d", (s % 86400) / 3600, "h");
}

std::string human_time(std::int64_t unix_ms) {
  if (unix_ms == 0)
    return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[48];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

std::string human_age(std::int64_t unix_ms) {
  if (unix_ms == 0)
    return "-";
  std::int64_t age = unix_ms_now() - unix_ms;
  if (age < 0)
    return std::string("in ") + human_duration_ms(-age);
  return human_duration_ms(age) + " ago";
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024)
    return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

std::string human_number(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  std::string out = text;
  if (out.find('.') != std::string::npos) {
    while (out.back() == '0')
      out.pop_back();
    if (out.back() == '.')
      out.pop_back();
  }
  return out;
}

std::string enum_word(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) == prefix)
    name.remove_prefix(prefix.size());
  std::string out(name);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
    else if (c == '_')
      c = '-';
  }
  return out;
}

} // namespace chroom::ctl
