#include "actors/fleet_summary.hpp"

#include <algorithm>
#include <map>
#include <vector>

namespace chroom::actors {

namespace {

using chroom::admin::v1::NodeState;

/// The states after "active", in the order a reader wants them: what is about to serve,
/// what is in trouble, what an operator did, what is over.
constexpr NodeState other_states[] = {
  chroom::admin::v1::NODE_STATE_JOINING,  chroom::admin::v1::NODE_STATE_SUSPECT,
  chroom::admin::v1::NODE_STATE_DRAINING, chroom::admin::v1::NODE_STATE_CORDONED,
  chroom::admin::v1::NODE_STATE_DEAD,     chroom::admin::v1::NODE_STATE_GONE,
};

std::string_view state_word(NodeState state) {
  switch (state) {
    case chroom::admin::v1::NODE_STATE_JOINING:
      return "joining";
    case chroom::admin::v1::NODE_STATE_ACTIVE:
      return "active";
    case chroom::admin::v1::NODE_STATE_DRAINING:
      return "draining";
    case chroom::admin::v1::NODE_STATE_CORDONED:
      return "cordoned";
    case chroom::admin::v1::NODE_STATE_SUSPECT:
      return "suspect";
    case chroom::admin::v1::NODE_STATE_DEAD:
      return "dead";
    case chroom::admin::v1::NODE_STATE_GONE:
      return "gone";
    default:
      return "unknown";
  }
}

} // namespace

std::string fleet_summary(const allocation::node_table& table) {
  std::map<std::string, size_t> active_by_region;
  std::map<NodeState, size_t> by_state;
  size_t active = 0;
  for (const auto& [id, record] : table.nodes()) {
    if (record.state == chroom::admin::v1::NODE_STATE_ACTIVE) {
      ++active;
      const auto& region = record.registration.location().region();
      ++active_by_region[region.empty() ? "no region" : region];
    } else {
      ++by_state[record.state];
    }
  }
  std::string out = std::to_string(active) + (active == 1 ? " node active" : " nodes active");
  std::vector<std::pair<std::string, size_t>> regions(active_by_region.begin(),
                                                      active_by_region.end());
  std::stable_sort(regions.begin(), regions.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  for (size_t i = 0; i < regions.size() && i < fleet_summary_regions; ++i)
    out += (i == 0 ? ": " : ", ") + regions[i].first + " " + std::to_string(regions[i].second);
  if (regions.size() > fleet_summary_regions) {
    size_t rest = 0;
    for (size_t i = fleet_summary_regions; i < regions.size(); ++i)
      rest += regions[i].second;
    const auto more = regions.size() - fleet_summary_regions;
    out += " and " + std::to_string(rest) + " in " + std::to_string(more) +
           (more == 1 ? " more region" : " more regions");
  }
  bool first = true;
  for (auto state : other_states) {
    auto it = by_state.find(state);
    if (it == by_state.end())
      continue;
    out +=
      (first ? "; " : ", ") + std::to_string(it->second) + " " + std::string{state_word(state)};
    first = false;
  }
  return out;
}

} // namespace chroom::actors
