#pragma once

// Lease expiry: when each lease ends unless renewed, for hundreds of thousands of leases
// with one timer. Leases are filed by the tick (a slice of time) in which they are due;
// renewing files a lease again under its new tick, and the old filing is skipped when its
// tick comes (lazy deletion), so renew and forget are O(1) and expire() touches only the
// leases filed in the ticks that passed. Pure: the allocation service calls expire() on
// its sweep timer and ends what it returns.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace chroom::allocation {

class lease_wheel {
public:
  using clock = std::chrono::steady_clock;

  /// `tick`: the resolution; a lease ends within one tick after it is due.
  explicit lease_wheel(clock::duration tick);

  /// The lease (new or known) is due at `expires_at`.
  void renew(const std::string& lease_id, clock::time_point expires_at);
  /// The lease ended otherwise (released, revoked): it will not expire.
  void forget(std::string_view lease_id);
  /// Removes and returns the leases due at or before `now`.
  std::vector<std::string> expire(clock::time_point now);

  /// When the lease is due, or nothing for an unknown lease.
  std::optional<clock::time_point> expires_at(std::string_view lease_id) const;
  size_t size() const { return due_at_.size(); }

private:
  int64_t tick_of(clock::time_point at) const { return at.time_since_epoch() / tick_; }

  clock::duration tick_;
  std::unordered_map<std::string, clock::time_point> due_at_;
  /// Lease ids by the tick after the one they are due in; may hold stale filings.
  std::map<int64_t, std::vector<std::string>> filed_;
};

} // namespace chroom::allocation
