// How chroomctl prints: aligned tables and field lists for people, protobuf JSON and bare ids
// for scripts, and the human forms of times, durations, sizes and states.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <google/protobuf/message.h>

#include "tools/chroomctl/cli.hpp"

namespace chroom::ctl {

// Columns separated by three spaces, each as wide as its widest cell (in characters, not
// bytes), left aligned; the header row in capitals unless headers are off.
class table {
public:
  explicit table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  void print(std::ostream& out, bool headers) const;

private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "Key:   value" lines with the values aligned: one object in detail.
class field_list {
public:
  void add(std::string key, std::string value);
  void print(std::ostream& out) const;

private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// The message as protobuf JSON (proto field names, every field, indented), one document.
void print_json(std::ostream& out, const google::protobuf::Message& message);

// "850ms", "3.2s", "4m12s", "2h05m", "3d04h".
std::string human_duration_ms(std::int64_t ms);
// A Unix time as "2024-05-01 12:00:03 UTC"; "-" for 0.
std::string human_time(std::int64_t unix_ms);
// How long ago a Unix time was: "4m12s ago"; "-" for 0.
std::string human_age(std::int64_t unix_ms);
// "1.5 KiB", "3.0 GiB".
std::string human_bytes(std::uint64_t bytes);
// A number with at most `decimals` digits after the point, trailing zeros dropped.
std::string human_number(double value, int decimals = 1);
// An enum value's name without its prefix, lower case: NODE_STATE_ACTIVE -> "active".
std::string enum_word(std::string_view name, std::string_view prefix);

} // namespace chroom::ctl
