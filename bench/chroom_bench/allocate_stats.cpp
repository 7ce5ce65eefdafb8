#include "bench/chroom_bench/allocate_stats.hpp"

#include "transport/grpc_wire.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include <fmt/format.h>

namespace chroom::bench {

std::size_t latency_histogram::index_of(std::uint64_t value) {
  value = std::min<std::uint64_t>(value, (std::uint64_t{1} << max_bits) - 1);
  if (value < (std::uint64_t{1} << sub_bits))
    return static_cast<std::size_t>(value);
  const unsigned top = static_cast<unsigned>(std::bit_width(value)) - 1; // >= sub_bits
  const unsigned shift = top - sub_bits;
  return (static_cast<std::size_t>(shift + 1) << sub_bits) +
         static_cast<std::size_t>((value >> shift) & ((1u << sub_bits) - 1));
}

std::uint64_t latency_histogram::lowest_of(std::size_t index) {
  if (index < (std::size_t{1} << sub_bits))
    return index;
  const unsigned shift = static_cast<unsigned>(index >> sub_bits) - 1;
  const std::uint64_t mantissa = index & ((std::size_t{1} << sub_bits) - 1);
  return ((std::uint64_t{1} << sub_bits) + mantissa) << shift;
}

void latency_histogram::record(std::uint64_t nanoseconds) {
  ++buckets_[index_of(nanoseconds)];
  ++count_;
  max_ = std::max(max_, nanoseconds);
}

std::uint64_t latency_histogram::percentile(double q) const {
  if (count_ == 0)
    return 0;
  const auto rank = std::max<std::uint64_t>(
    1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const std::uint64_t low = lowest_of(i);
      const std::uint64_t width = lowest_of(i + 1) - low;
      return std::min(max_, low + width / 2);
    }
  }
  return max_;
}

std::string status_name(int code) {
  static constexpr const char* names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(names)))
    return names[code];
  return fmt::format("code {}", code);
}

void outcome_tally::add_status(int code, std::string_view message) {
  line& l = codes_[code >= 0 && code < named_codes ? code : named_codes];
  if (l.count++ == 0) {
    l.what = code >= 0 && code < named_codes ? status_name(code) : "code outside 0..16";
    l.first_message = code >= 0 && code < named_codes
                        ? transport::percent_decode(message)
                        : fmt::format("{}: {}", code, transport::percent_decode(message));
  }
}

void outcome_tally::add_failure(std::string_view what, std::string_view detail) {
  for (auto& l : failures_) {
    if (l.what == what) {
      ++l.count;
      return;
    }
  }
  failures_.push_back({std::string(what), 1, std::string(detail)});
}

std::uint64_t outcome_tally::calls() const {
  std::uint64_t total = 0;
  for (const auto& l : codes_)
    total += l.count;
  for (const auto& l : failures_)
    total += l.count;
  return total;
}

std::vector<outcome_tally::line> outcome_tally::problems() const {
  std::vector<line> out;
  for (std::size_t i = 1; i < codes_.size(); ++i) {
    if (codes_[i].count > 0)
      out.push_back(codes_[i]);
  }
  out.insert(out.end(), failures_.begin(), failures_.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const line& a, const line& b) { return a.count > b.count; });
  return out;
}

} // namespace chroom::bench
