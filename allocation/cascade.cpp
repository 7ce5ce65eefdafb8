#include "allocation/cascade.hpp"

#include <algorithm>
#include <limits>

namespace chroom::allocation {

relay_link::relay_link(std::string x, std::string y) {
  if (y < x)
    std::swap(x, y);
  a = std::move(x);
  b = std::move(y);
}

bool relay_tree::contains(std::string_view node) const {
  return std::find(nodes_.begin(), nodes_.end(), node) != nodes_.end();
}

std::vector<std::string> relay_tree::neighbours(std::string_view node) const {
  std::vector<std::string> out;
  for (const auto& link : links_)
    if (link.touches(node))
      out.push_back(link.other(node));
  return out;
}

relay_changes relay_tree::add(const std::string& node, const std::string& link_to,
                              const rtt_function& rtt) {
  relay_changes changes;
  if (contains(node))
    return changes;
  if (nodes_.empty()) {
    nodes_.push_back(node);
    return changes;
  }
  const std::string* peer = nullptr;
  if (auto chosen = std::find(nodes_.begin(), nodes_.end(), link_to); chosen != nodes_.end()) {
    peer = &*chosen;
  } else {
    peer = &nodes_.front();
    double best = std::numeric_limits<double>::infinity();
    if (rtt)
      for (const auto& candidate : nodes_)
        if (double cost = rtt(node, candidate); cost < best) {
          best = cost;
          peer = &candidate;
        }
  }
  links_.emplace_back(node, *peer);
  nodes_.push_back(node);
  changes.attach.push_back(links_.back());
  return changes;
}

relay_changes relay_tree::remove(const std::string& node, const rtt_function& rtt) {
  relay_changes changes;
  if (!contains(node))
    return changes;
  auto orphans = neighbours(node);
  for (const auto& link : links_)
    if (link.touches(node))
      changes.detach.push_back(link);
  std::erase_if(links_, [&](const relay_link& link) { return link.touches(node); });
  std::erase(nodes_, node);
  // Each orphan heads one piece of the tree; Prim's algorithm over the orphans joins the
  // pieces again with the shortest links among them.
  if (orphans.size() < 2)
    return changes;
  std::vector<bool> joined(orphans.size(), false);
  joined[0] = true;
  for (size_t round = 1; round < orphans.size(); ++round) {
    // Unknown RTTs (infinite) still give a link: the first pair found.
    double best = std::numeric_limits<double>::infinity();
    size_t from = orphans.size(), to = orphans.size();
    for (size_t i = 0; i < orphans.size(); ++i) {
      if (!joined[i])
        continue;
      for (size_t j = 0; j < orphans.size(); ++j) {
        if (joined[j])
          continue;
        double cost = rtt(orphans[i], orphans[j]);
        if (to == orphans.size() || cost < best) {
          best = cost;
          from = i;
          to = j;
        }
      }
    }
    joined[to] = true;
    links_.emplace_back(orphans[from], orphans[to]);
    changes.attach.push_back(links_.back());
  }
  return changes;
}

} // namespace chroom::allocation
