// What `chroom-bench allocate` records per call: latency in a fixed-size histogram and
// the call's outcome (gRPC status, or a failure below gRPC), both O(1) per call.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::bench {

// Log-linear latency histogram (the HdrHistogram layout): exact below 64 ns, then 64 steps
// per power of two, so any reported percentile is within 1.6% of the true value. Fixed
// memory (~18 KiB) whatever the run's length, one array increment per call.
class latency_histogram {
public:
  void record(std::uint64_t nanoseconds);
  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  // Nearest-rank percentile, q in (0, 1]: a value that at least q of the samples do not
  // exceed (the middle of its bucket, capped at max()); 0 when empty.
  std::uint64_t percentile(double q) const;

private:
  static constexpr unsigned sub_bits = 6;
  // Up to 2^40 ns (18 minutes); longer samples count as that.
  static constexpr unsigned max_bits = 40;
  static constexpr std::size_t bucket_count = (max_bits - sub_bits + 1) << sub_bits;
  static std::size_t index_of(std::uint64_t value);
  static std::uint64_t lowest_of(std::size_t index);

  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

// "OK", "NOT_FOUND", ... for codes 0..16, else "code N".
std::string status_name(int code);

// Calls by how they ended. gRPC statuses are counted in an array; failures below gRPC
// (an HTTP status, a reset stream, a lost connection) by their text, as they are rare.
class outcome_tally {
public:
  // A call answered with grpc-status `code` and grpc-message `message` (percent-decoded
  // here, only for the first call of each code).
  void add_status(int code, std::string_view message);
  // A call that got no grpc-status: `what` says why, `detail` is kept from the first.
  void add_failure(std::string_view what, std::string_view detail);

  std::uint64_t calls() const;
  std::uint64_t ok() const { return codes_[0].count; }

  struct line {
    std::string what; // "NOT_FOUND", "HTTP 404", "stream reset: REFUSED_STREAM", ...
    std::uint64_t count = 0;
    std::string first_message;
  };
  // Every non-OK outcome, most frequent first.
  std::vector<line> problems() const;

private:
  static constexpr int named_codes = 17;
  std::array<line, named_codes + 1> codes_{}; // the last one: codes outside 0..16
  std::vector<line> failures_;
};

} // namespace chroom::bench
