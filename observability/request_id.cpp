#include "observability/request_id.hpp"

#include <algorithm>
#include <cstdint>
#include <random>

namespace chroom::observability {

namespace {

thread_local std::string current_id;

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

} // namespace

bool usable_request_id(std::string_view id) {
  return !id.empty() && id.size() <= max_request_id_length &&
         std::all_of(id.begin(), id.end(), is_id_char);
}

std::string new_request_id() {
  // Unique enough to tell calls apart in logs; not a secret.
  thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  auto bits = generator();
  // 12 digits (48 bits): short enough for the string's inline buffer, no allocation.
  std::string id(12, '0');
  for (auto& c : id) {
    c = hex[bits & 0xF];
    bits >>= 4;
  }
  return id;
}

std::string_view current_request_id() {
  return current_id;
}

request_scope::request_scope(std::string_view id) : previous_(std::move(current_id)) {
  current_id.assign(id);
}

request_scope::~request_scope() {
  current_id = std::move(previous_);
}

} // namespace chroom::observability
