#pragma once

// The dashboard's feed (docs/dashboard.md, "Deltas"): the snapshots the admin HTTP port
// builds, numbered in sequence, each kept with the delta from the one before, so that a
// viewer receives one full snapshot and then only what changed. At 2,000 nodes a full
// snapshot is ~450 KB; a second's delta is mostly the nodes whose load moved.
//
// Every node gets a slot, a small integer that names it in deltas for as long as it stays
// in the snapshots (a slot is reused only after its node left, in a later snapshot).
// Pure: no I/O, no threads; the caller serialises access.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace chroom::daemon {

class dashboard_feed {
public:
  /// Deltas kept for viewers that are behind; one further back gets the full snapshot.
  static constexpr size_t retained_deltas = 8;

  /// Takes the next snapshot: a JSON object whose "nodes" each have a string "node_id" and
  /// whose "rooms" each have "app_id" and "room_id"; any other member is an aggregate sent
  /// whole in every delta. Adds "seq" and each node's "slot".
  void advance(nlohmann::json snapshot);

  /// The number of the latest snapshot; 0 before the first.
  uint64_t seq() const { return seq_; }
  /// The latest snapshot, serialised (with "seq" and the slots); null before the first.
  std::shared_ptr<const std::string> snapshot_text() const { return snapshot_text_; }
  /// The deltas that bring a viewer that holds snapshot `seen` to the latest, oldest first
  /// (none when it is up to date); empty with `complete` false when they are no longer all
  /// kept (or `seen` is 0, or ahead): then the viewer needs the full snapshot.
  struct catch_up {
    bool complete = false;
    std::vector<std::shared_ptr<const std::string>> deltas;
  };
  catch_up deltas_since(uint64_t seen) const;

private:
  struct kept_delta {
    uint64_t seq;
    std::shared_ptr<const std::string> text;
  };

  uint32_t take_slot();

  uint64_t seq_ = 0;
  std::shared_ptr<const std::string> snapshot_text_;
  std::deque<kept_delta> deltas_;
  /// The latest snapshot's nodes by id (with their slot) and rooms by [app_id, room_id].
  std::unordered_map<std::string, nlohmann::json> nodes_;
  std::unordered_map<std::string, nlohmann::json> rooms_;
  std::vector<uint32_t> free_slots_;
  uint32_t next_slot_ = 0;
};

} // namespace chroom::daemon
