// Tests of lease expiry (allocation/lease_wheel.hpp): leases end within one tick after they
// are due, renewed leases do not, forgotten ones never, and a large wheel stays exact.
#include "allocation/lease_wheel.hpp"

#include <doctest/doctest.h>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using chroom::allocation::lease_wheel;
using strings = std::vector<std::string>;

const lease_wheel::clock::time_point t0 = lease_wheel::clock::time_point{} + 1h;

} // namespace

TEST_CASE("lease_wheel: a lease ends once due, within one tick") {
  lease_wheel wheel{100ms};
  wheel.renew("a", t0 + 30s);
  wheel.renew("b", t0 + 31s);
  CHECK(wheel.size() == 2);
  CHECK(wheel.expires_at("a") == t0 + 30s);
  CHECK(wheel.expire(t0 + 29'999ms).empty());
  // Due at 30 s: gone by the end of the tick that follows, not before it is due.
  CHECK(wheel.expire(t0 + 30s).empty());
  CHECK(wheel.expire(t0 + 30'100ms) == strings{"a"});
  CHECK(wheel.size() == 1);
  CHECK_FALSE(wheel.expires_at("a").has_value());
  CHECK(wheel.expire(t0 + 30'200ms).empty()); // once only
  CHECK(wheel.expire(t0 + 40s) == strings{"b"});
  CHECK(wheel.size() == 0);
}

TEST_CASE("lease_wheel: renewing moves the end; forgetting cancels it") {
  lease_wheel wheel{100ms};
  wheel.renew("kept", t0 + 30s);
  wheel.renew("released", t0 + 30s);
  wheel.renew("kept", t0 + 50s); // a KeepAlive at 20 s
  wheel.forget("released");
  wheel.forget("unknown"); // harmless
  CHECK(wheel.expire(t0 + 31s).empty());
  CHECK(wheel.expires_at("kept") == t0 + 50s);
  CHECK(wheel.expire(t0 + 50'100ms) == strings{"kept"});
  // A forgotten lease renewed again (the same id reused) is a lease again.
  wheel.renew("released", t0 + 60s);
  CHECK(wheel.expire(t0 + 61s) == strings{"released"});
}

TEST_CASE("lease_wheel: a late sweep ends everything due, and nothing that is not") {
  lease_wheel wheel{250ms};
  for (int i = 0; i < 100; ++i)
    wheel.renew("l" + std::to_string(i), t0 + std::chrono::milliseconds{i * 100});
  // One sweep 5 s late: the leases due before 5 s (ticks that passed) end, in one call.
  auto ended = wheel.expire(t0 + 5s);
  std::set<std::string> names(ended.begin(), ended.end());
  CHECK(names.size() == ended.size());
  for (int i = 0; i < 100; ++i) {
    CAPTURE(i);
    CHECK(names.count("l" + std::to_string(i)) == (i * 100 < 5000 ? 1u : 0u));
  }
  CHECK(wheel.size() == 50);
}

TEST_CASE("lease_wheel: 100,000 leases with random renewals end exactly when due") {
  std::mt19937_64 rng{7};
  lease_wheel wheel{100ms};
  std::vector<lease_wheel::clock::time_point> due(100'000);
  for (size_t i = 0; i < due.size(); ++i) {
    due[i] = t0 + std::chrono::milliseconds{rng() % 30'000};
    wheel.renew("l" + std::to_string(i), due[i]);
  }
  // A third of the leases are renewed (later), a tenth forgotten.
  std::vector<bool> forgotten(due.size(), false);
  for (size_t i = 0; i < due.size(); i += 3) {
    due[i] += std::chrono::milliseconds{rng() % 30'000};
    wheel.renew("l" + std::to_string(i), due[i]);
  }
  for (size_t i = 1; i < due.size(); i += 10) {
    wheel.forget("l" + std::to_string(i));
    forgotten[i] = true;
  }
  std::vector<bool> ended(due.size(), false);
  for (auto now = t0; now <= t0 + 61s; now += 100ms) {
    for (const auto& name : wheel.expire(now)) {
      auto i = std::stoul(name.substr(1));
      REQUIRE_FALSE(ended[i]);
      REQUIRE_FALSE(forgotten[i]);
      // Never early, at most one tick (plus the sweep step) late.
      REQUIRE(due[i] <= now);
      REQUIRE(now - due[i] <= 200ms);
      ended[i] = true;
    }
  }
  for (size_t i = 0; i < due.size(); ++i)
    CHECK(ended[i] == !forgotten[i]);
  CHECK(wheel.size() == 0);
}
