// Request ids, histogram quantiles, the metrics' gauges, and the admin token check.

#include "actors/admin_service.hpp"
#include "observability/metrics.hpp"
#include "observability/request_id.hpp"

#include <doctest/doctest.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <set>

using namespace chroom;
using observability::histogram_sample;
using observability::quantile_between;

TEST_CASE("request ids: what a client may send, what the gateway makes") {
  CHECK(observability::usable_request_id("ops-trace-42"));
  CHECK(observability::usable_request_id("a.b_c:d-E9"));
  CHECK(observability::usable_request_id(std::string(128, 'x')));
  CHECK_FALSE(observability::usable_request_id(""));
  CHECK_FALSE(observability::usable_request_id(std::string(129, 'x')));
  CHECK_FALSE(observability::usable_request_id("no spaces"));
  CHECK_FALSE(observability::usable_request_id("quote\""));
  CHECK_FALSE(observability::usable_request_id("new\nline"));

  std::set<std::string> made;
  for (int i = 0; i < 1000; ++i) {
    auto id = observability::new_request_id();
    CHECK(id.size() == 12);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(observability::usable_request_id(id));
    made.insert(id);
  }
  CHECK(made.size() == 1000);
}

TEST_CASE("request scopes nest and restore the id of the enclosing call") {
  CHECK(observability::current_request_id().empty());
  {
    observability::request_scope outer{"outer"};
    CHECK(observability::current_request_id() == "outer");
    {
      observability::request_scope inner{"inner"};
      CHECK(observability::current_request_id() == "inner");
    }
    CHECK(observability::current_request_id() == "outer");
  }
  CHECK(observability::current_request_id().empty());
}

namespace {

histogram_sample sample(std::vector<double> cumulative) {
  histogram_sample s;
  s.upper_bounds = {0.001, 0.01, 0.1, INFINITY};
  s.count = cumulative.back();
  s.cumulative = std::move(cumulative);
  return s;
}

} // namespace

TEST_CASE("quantiles between two histogram samples interpolate within the bucket") {
  auto empty = sample({0, 0, 0, 0});
  auto later = sample({10, 60, 100, 100});
  // 50th of 100: the 40th of the 50 in (0.001, 0.01].
  CHECK(*quantile_between(empty, later, 0.5) == doctest::Approx(0.001 + 0.009 * 40 / 50));
  // 99th: the 39th of the 40 in (0.01, 0.1].
  CHECK(*quantile_between(empty, later, 0.99) == doctest::Approx(0.01 + 0.09 * 39 / 40));
  // 5th: within the first bucket, from 0.
  CHECK(*quantile_between(empty, later, 0.05) == doctest::Approx(0.001 * 5 / 10));

  SUBCASE("only what happened between the samples counts") {
    auto then = sample({110, 160, 200, 200}); // 100 more, all in the first bucket
    CHECK(*quantile_between(later, then, 0.99) <= 0.001);
  }
  SUBCASE("beyond the last finite bound: that bound") {
    auto slow = sample({0, 0, 0, 5});
    CHECK(*quantile_between(empty, slow, 0.5) == doctest::Approx(0.1));
  }
  SUBCASE("no observations, or samples of different histograms: nothing") {
    CHECK_FALSE(quantile_between(later, later, 0.5));
    auto other = later;
    other.cumulative.pop_back();
    CHECK_FALSE(quantile_between(empty, other, 0.5));
  }
}

TEST_CASE("a histogram's sample has its count and cumulative buckets") {
  prometheus::Registry registry;
  auto& histogram = prometheus::BuildHistogram()
                      .Name("test_seconds")
                      .Help("test")
                      .Register(registry)
                      .Add({}, observability::latency_buckets());
  auto before = observability::sample_of(histogram);
  for (double seconds : {0.0002, 0.0003, 0.004, 3.0})
    histogram.Observe(seconds);
  auto after = observability::sample_of(histogram);
  CHECK(after.count == 4);
  CHECK(after.upper_bounds.size() == observability::latency_buckets().size() + 1);
  CHECK(std::isinf(after.upper_bounds.back()));
  CHECK(after.cumulative.back() == 4);
  auto median = quantile_between(before, after, 0.5);
  REQUIRE(median);
  CHECK(*median > 0.0001);
  CHECK(*median <= 0.0005);
}

TEST_CASE("node gauges by state and region: a combination that disappears reads 0") {
  auto& metrics = observability::metrics();
  auto text = [&] { return prometheus::TextSerializer{}.Serialize(metrics.registry()->Collect()); };
  metrics.set_nodes({{{"active", "unit-region"}, 3}});
  CHECK(text().find(R"(chroom_nodes{region="unit-region",state="active"} 3)") != std::string::npos);
  metrics.set_nodes({{{"suspect", "unit-region"}, 1}});
  auto now = text();
  CHECK(now.find(R"(chroom_nodes{region="unit-region",state="active"} 0)") != std::string::npos);
  CHECK(now.find(R"(chroom_nodes{region="unit-region",state="suspect"} 1)") != std::string::npos);
}

TEST_CASE("capacity by region: a region that disappears reads 0") {
  auto& metrics = observability::metrics();
  auto text = [&] { return prometheus::TextSerializer{}.Serialize(metrics.registry()->Collect()); };
  metrics.set_region_capacity({{"unit-cap-a", {100, 40}}, {"unit-cap-b", {50, 50}}});
  auto first = text();
  CHECK(first.find(R"(chroom_region_capacity_participants{region="unit-cap-a"} 100)") !=
        std::string::npos);
  CHECK(first.find(R"(chroom_region_free_participants{region="unit-cap-a"} 40)") !=
        std::string::npos);
  metrics.set_region_capacity({{"unit-cap-b", {0, 0}}});
  auto now = text();
  CHECK(now.find(R"(chroom_region_capacity_participants{region="unit-cap-a"} 0)") !=
        std::string::npos);
  CHECK(now.find(R"(chroom_region_free_participants{region="unit-cap-b"} 0)") != std::string::npos);
}

TEST_CASE("node state changes are counted by the state entered") {
  auto& metrics = observability::metrics();
  auto before = metrics.node_state_changes("dead").Value();
  metrics.node_state_changes("dead").Increment();
  metrics.node_state_changes("suspect").Increment();
  CHECK(metrics.node_state_changes("dead").Value() == before + 1);
  auto text = prometheus::TextSerializer{}.Serialize(metrics.registry()->Collect());
  CHECK(text.find(R"(chroom_node_state_changes_total{state="dead"})") != std::string::npos);
}

TEST_CASE("gRPC responses are counted by code; unknown codes as UNKNOWN") {
  auto& metrics = observability::metrics();
  auto before = metrics.responses(2).Value();
  metrics.responses(99).Increment();
  metrics.responses(-1).Increment();
  CHECK(metrics.responses(2).Value() == before + 2);
}

TEST_CASE("admin tokens: Bearer one of them, or anything when none is configured") {
  using actors::admin_authorized;
  CHECK(admin_authorized({}, ""));
  CHECK(admin_authorized({}, "Bearer whatever"));
  std::vector<std::string> tokens{"first-token-0123456789", "second-token-0123456789"};
  CHECK(admin_authorized(tokens, "Bearer first-token-0123456789"));
  CHECK(admin_authorized(tokens, "bearer second-token-0123456789"));
  CHECK(admin_authorized(tokens, "BEARER second-token-0123456789"));
  CHECK_FALSE(admin_authorized(tokens, ""));
  CHECK_FALSE(admin_authorized(tokens, "Bearer "));
  CHECK_FALSE(admin_authorized(tokens, "first-token-0123456789"));
  CHECK_FALSE(admin_authorized(tokens, "Basic first-token-0123456789"));
  CHECK_FALSE(admin_authorized(tokens, "Bearer first-token-012345678"));   // a prefix
  CHECK_FALSE(admin_authorized(tokens, "Bearer first-token-01234567890")); // longer
  CHECK_FALSE(admin_authorized(tokens, "Bearer  first-token-0123456789")); // two spaces
}
