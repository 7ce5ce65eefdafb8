#include "apps/rate_limiter.hpp"

#include <algorithm>

namespace chroom::apps {

token_bucket::token_bucket(double rate, double burst, clock::time_point now)
    : rate_(std::max(rate, 1e-9)), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

void token_bucket::refill(clock::time_point now) {
  if (now <= last_)
    return;
  std::chrono::duration<double> elapsed = now - last_;
  tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
  last_ = now;
}

bool token_bucket::try_take(clock::time_point now) {
  refill(now);
  if (tokens_ < 1.0)
    return false;
  tokens_ -= 1.0;
  return true;
}

void token_bucket::reshape(double rate, double burst, clock::time_point now) {
  refill(now);
  rate_ = std::max(rate, 1e-9);
  burst_ = std::max(burst, 1.0);
  tokens_ = std::min(tokens_, burst_);
}

double token_bucket::wait_s(clock::time_point now) {
  refill(now);
  return tokens_ >= 1.0 ? 0.0 : (1.0 - tokens_) / rate_;
}

} // namespace chroom::apps
