#include "cluster/room_state.hpp"

#include "allocation/geo.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

namespace chroom::cluster {

namespace {

std::map<std::string, uint64_t, std::less<>> counters(const RoomState& state) {
  std::map<std::string, uint64_t, std::less<>> out;
  for (const auto& entry : state.version())
    out[entry.writer()] = std::max(out[entry.writer()], entry.changes());
  return out;
}

/// Union-find over part indices.
struct components {
  std::vector<size_t> parent;
  explicit components(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  size_t root(size_t i) {
    while (parent[i] != i)
      i = parent[i] = parent[parent[i]];
    return i;
  }
  bool join(size_t a, size_t b) {
    a = root(a);
    b = root(b);
    if (a == b)
      return false;
    parent[b] = a;
    return true;
  }
};

allocation::geo_point location_of(const v1::PartState& part) {
  return {part.latitude(), part.longitude()};
}

/// Keeps the links of `state` that join two of its parts without closing a loop, then
/// links the remaining components, each by its shortest link to the rest.
void make_tree(RoomState& state) {
  const auto& parts = state.parts();
  std::map<std::string, size_t, std::less<>> index;
  for (int i = 0; i < parts.size(); ++i)
    index.emplace(parts[i].node_id(), static_cast<size_t>(i));
  components sets(static_cast<size_t>(parts.size()));
  google::protobuf::RepeatedPtrField<v1::RelayLink> kept;
  for (const auto& link : state.links()) {
    auto a = index.find(link.a());
    auto b = index.find(link.b());
    if (a == index.end() || b == index.end() || a->second == b->second)
      continue;
    if (sets.join(a->second, b->second))
      *kept.Add() = link;
  }
  // Prim over components: grow the component of part 0 by the shortest link out of it.
  const auto n = static_cast<size_t>(parts.size());
  for (;;) {
    double best = std::numeric_limits<double>::infinity();
    size_t from = 0, to = 0;
    for (size_t i = 0; i < n; ++i) {
      if (sets.root(i) != sets.root(0))
        continue;
      for (size_t j = 0; j < n; ++j) {
        if (sets.root(j) == sets.root(0))
          continue;
        auto km = allocation::great_circle_km(location_of(parts[static_cast<int>(i)]),
                                              location_of(parts[static_cast<int>(j)]));
        if (km < best) {
          best = km;
          from = i;
          to = j;
        }
      }
    }
    if (best == std::numeric_limits<double>::infinity())
      break;
    sets.join(from, to);
    auto* link = kept.Add();
    const auto& a = parts[static_cast<int>(from)].node_id();
    const auto& b = parts[static_cast<int>(to)].node_id();
    link->set_a(std::min(a, b));
    link->set_b(std::max(a, b));
  }
  *state.mutable_links() = std::move(kept);
}

} // namespace

version_order compare_versions(const RoomState& a, const RoomState& b) {
  auto x = counters(a);
  auto y = counters(b);
  bool a_ahead = false, b_ahead = false;
  for (const auto& [writer, count] : x) {
    auto it = y.find(writer);
    uint64_t other = it == y.end() ? 0 : it->second;
    a_ahead |= count > other;
    b_ahead |= count < other;
  }
  for (const auto& [writer, count] : y)
    if (!x.contains(writer) && count > 0)
      b_ahead = true;
  if (a_ahead && b_ahead)
    return version_order::concurrent;
  if (a_ahead)
    return version_order::newer;
  if (b_ahead)
    return version_order::older;
  return version_order::same;
}

void count_change(RoomState& state, std::string_view writer) {
  for (auto& entry : *state.mutable_version())
    if (entry.writer() == writer) {
      entry.set_changes(entry.changes() + 1);
      return;
    }
  auto* entry = state.add_version();
  entry->set_writer(std::string{writer});
  entry->set_changes(1);
}

uint64_t total_changes(const RoomState& state) {
  uint64_t total = 0;
  for (const auto& entry : state.version())
    total += entry.changes();
  return total;
}

RoomState merge_rooms(const RoomState& a, const RoomState& b) {
  switch (compare_versions(a, b)) {
    case version_order::same:
    case version_order::newer:
      return a;
    case version_order::older:
      return b;
    case version_order::concurrent:
      break;
  }
  RoomState out;
  out.set_app_id(a.app_id());
  out.set_room_id(a.room_id());
  auto x = counters(a);
  for (const auto& [writer, count] : counters(b))
    x[writer] = std::max(x[writer], count);
  for (const auto& [writer, count] : x) {
    auto* entry = out.add_version();
    entry->set_writer(writer);
    entry->set_changes(count);
  }
  auto created = [](const RoomState& s) {
    return s.created_unix_ms() == 0 ? std::numeric_limits<int64_t>::max() : s.created_unix_ms();
  };
  auto earliest = std::min(created(a), created(b));
  out.set_created_unix_ms(earliest == std::numeric_limits<int64_t>::max() ? 0 : earliest);

  std::set<std::string, std::less<>> members;
  for (const auto* side : {&a, &b})
    for (const auto& member : side->members())
      if (members.insert(member.client_id()).second)
        *out.add_members() = member;
  // Parts that some member is on, and parts either side still ran: a part nobody is on
  // closes at the room's next change.
  std::set<std::string, std::less<>> parts;
  for (const auto* side : {&a, &b})
    for (const auto& part : side->parts())
      if (parts.insert(part.node_id()).second)
        *out.add_parts() = part;
  for (const auto* side : {&a, &b})
    for (const auto& link : side->links())
      *out.add_links() = link;
  make_tree(out);
  out.set_closed(a.closed() && b.closed());
  return out;
}

bool links_form_tree(const RoomState& state) {
  const auto n = static_cast<size_t>(state.parts_size());
  if (n == 0)
    return state.links_size() == 0;
  if (static_cast<size_t>(state.links_size()) != n - 1)
    return false;
  std::map<std::string, size_t, std::less<>> index;
  for (size_t i = 0; i < n; ++i)
    index.emplace(state.parts(static_cast<int>(i)).node_id(), i);
  components sets(n);
  for (const auto& link : state.links()) {
    auto p = index.find(link.a());
    auto q = index.find(link.b());
    if (p == index.end() || q == index.end() || !sets.join(p->second, q->second))
      return false;
  }
  return true;
}

} // namespace chroom::cluster
