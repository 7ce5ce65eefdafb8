#include "actors/allocation_metrics.hpp"

#include "observability/metrics.hpp"
#include "observability/request_id.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <unordered_map>

namespace chroom::actors {

namespace {

/// The app label of calls that name no known app (or fail before their app is known):
/// made-up app ids cannot grow the label set.
const std::string unknown_app_label = "(none)";

/// Counters of one app, by status code: looked up once per app and thread.
using code_counters = std::array<prometheus::Counter*, observability::grpc_code_count>;

struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};

} // namespace

void count_allocation(const transport::call_context& call, const std::string& app_id,
                      transport::grpc_code code, std::chrono::steady_clock::time_point started) {
  auto& metrics = observability::metrics();
  auto seconds = observability::seconds_since(started);
  // The family's lookup builds a label map and takes a lock: each thread remembers the
  // counters it used (they live as long as the registry), found without building a key.
  thread_local std::unordered_map<std::string, code_counters, string_hash, std::equal_to<>>
    counters;
  const std::string& app = app_id.empty() ? unknown_app_label : app_id;
  auto it = counters.find(std::string_view{app});
  if (it == counters.end())
    it = counters.emplace(app, code_counters{}).first;
  auto index = static_cast<size_t>(code);
  if (index >= it->second.size())
    index = static_cast<size_t>(transport::grpc_code::unknown);
  auto& counter = it->second[index];
  if (counter == nullptr)
    counter = &metrics.allocations(app, std::string(transport::to_string(code)));
  counter->Increment();
  metrics.allocation_seconds.Observe(seconds);
  if (spdlog::should_log(spdlog::level::debug)) {
    observability::request_scope scope{call.metadata_value(observability::request_id_key)};
    spdlog::debug("Allocate for app '{}' answered {} in {:.3f} ms", app_id, to_string(code),
                  seconds * 1000);
  }
}

} // namespace chroom::actors
