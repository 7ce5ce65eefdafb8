#include "daemon/dashboard_feed.hpp"

namespace chroom::daemon {

namespace {

using json = nlohmann::json;

/// A room's identity: ["app_id", "room_id"] as JSON text (an app id may hold '/').
std::string room_key(const json& room) {
  return json::array({room.value("app_id", ""), room.value("room_id", "")}).dump();
}

} // namespace

uint32_t dashboard_feed::take_slot() {
  if (free_slots_.empty())
    return next_slot_++;
  auto slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void dashboard_feed::advance(json snapshot) {
  ++seq_;
  json delta = json::object();
  delta["seq"] = seq_;
  delta["base_seq"] = seq_ - 1;
  for (auto& [key, value] : snapshot.items())
    if (key != "nodes" && key != "rooms")
      delta[key] = value;

  // Nodes: added whole, removed by slot, changed field by field as flat [slot, value, ...]
  // lists per field (most seconds only "load" moves, at ~8 bytes a node).
  json added = json::array();
  json changes = json::object();
  std::unordered_map<std::string, json> nodes;
  nodes.reserve(snapshot["nodes"].size());
  for (auto& node : snapshot["nodes"]) {
    auto id = node.value("node_id", "");
    if (nodes.contains(id))
      continue; // a repeated id (not expected): the first wins, as the page keys by id
    auto old = nodes_.find(id);
    if (old == nodes_.end()) {
      node["slot"] = take_slot();
      added.push_back(node);
    } else {
      auto slot = old->second["slot"];
      node["slot"] = slot;
      for (auto& [field, value] : node.items()) {
        auto before = old->second.find(field);
        if (before == old->second.end() || *before != value) {
          auto& list = changes[field];
          list.push_back(slot);
          list.push_back(value);
        }
      }
    }
    nodes.emplace(std::move(id), node);
  }
  json removed = json::array();
  for (const auto& [id, node] : nodes_)
    if (!nodes.contains(id)) {
      uint32_t slot = node["slot"];
      removed.push_back(slot);
      // Free only now: a slot is never removed and given again in one delta.
      free_slots_.push_back(slot);
    }
  nodes_ = std::move(nodes);
  delta["nodes_added"] = std::move(added);
  delta["nodes_removed"] = std::move(removed);
  delta["node_changes"] = std::move(changes);

  // Rooms (at most a few hundred): a changed room is sent whole.
  json rooms_upserted = json::array();
  std::unordered_map<std::string, json> rooms;
  for (const auto& room : snapshot["rooms"]) {
    auto key = room_key(room);
    auto old = rooms_.find(key);
    if (old == rooms_.end() || old->second != room)
      rooms_upserted.push_back(room);
    rooms.emplace(std::move(key), room);
  }
  json rooms_removed = json::array();
  for (const auto& [key, room] : rooms_)
    if (!rooms.contains(key))
      rooms_removed.push_back(json::array({room.value("app_id", ""), room.value("room_id", "")}));
  rooms_ = std::move(rooms);
  delta["rooms_upserted"] = std::move(rooms_upserted);
  delta["rooms_removed"] = std::move(rooms_removed);

  snapshot["seq"] = seq_;
  snapshot_text_ = std::make_shared<const std::string>(snapshot.dump());
  // The first snapshot has no base: nobody holds seq 0, so its delta is not kept.
  if (seq_ > 1)
    deltas_.push_back({seq_, std::make_shared<const std::string>(delta.dump())});
  while (deltas_.size() > retained_deltas)
    deltas_.pop_front();
}

dashboard_feed::catch_up dashboard_feed::deltas_since(uint64_t seen) const {
  catch_up out;
  if (seen == seq_) {
    out.complete = seen != 0;
    return out;
  }
  if (seen == 0 || seen > seq_ || deltas_.empty() || deltas_.front().seq > seen + 1)
    return out;
  for (const auto& kept : deltas_)
    if (kept.seq > seen)
      out.deltas.push_back(kept.text);
  out.complete = true;
  return out;
}

} // namespace chroom::daemon
