#pragma once

// A token bucket: `rate` tokens a second, at most `burst` saved up. Pure (the caller
// passes the time), so the allocation service can keep one per app without timers.

#include <chrono>

namespace chroom::apps {

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// rate: tokens per second (> 0); burst: the bucket's size (at least 1).
  token_bucket(double rate, double burst, clock::time_point now);

  /// Takes one token if there is one.
  bool try_take(clock::time_point now);
  /// Changes rate and burst, keeping the tokens saved (capped by the new burst).
  void reshape(double rate, double burst, clock::time_point now);
  double rate() const { return rate_; }
  double burst() const { return burst_; }
  /// Seconds until a token is there (0 when one is).
  double wait_s(clock::time_point now);

private:
  void refill(clock::time_point now);

  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
};

} // namespace chroom::apps
