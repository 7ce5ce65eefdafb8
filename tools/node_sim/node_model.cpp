#include "tools/node_sim/node_model.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tools/node_sim/credential.hpp"
#include "tools/node_sim/json.hpp"

namespace chroom::node_sim {

namespace {

// Media each participant sends and receives on average, Mbps: one 720p simulcast upload
// and a mix of layers down, as a typical SFU sees it.
constexpr double mbps_per_participant = 1.5;
// A cascade relay carries the room's forwarded streams between two nodes, Mbps each way.
constexpr double mbps_per_relay = 2.0;
// CPU share of a node at full participant capacity on top of its idle load: leaves
// headroom below 100% so that "full" is a capacity decision, not a melted node.
constexpr double cpu_at_capacity = 0.8;
// CPU per relay: a relay is one more (big) subscriber.
constexpr double cpu_per_relay = 0.005;
// Above this CPU load, queueing in the SFU makes loss and jitter grow quickly.
constexpr double cpu_congestion_threshold = 0.85;
constexpr double congestion_slope = 20.0;
// Media ports: node i listens on first_media_port + i (wrapping), never a real socket.
constexpr std::uint32_t first_media_port = 20000;
constexpr std::uint32_t media_port_count = 40000;
// Nodes in one city are scattered over ~10 km so they are not all in one spot.
constexpr double city_spread_degrees = 0.05;

network_quality draw_quality(network_profile profile, rng& r) {
  // good: a well-peered data-centre node; poor: a congested or wireless-backhauled one;
  // fair sits between (mixed fleets have all three).
  auto good = [&] { return network_quality{r.uniform(0.0005, 0.0015), r.uniform(3, 7)}; };
  auto fair = [&] { return network_quality{r.uniform(0.005, 0.015), r.uniform(10, 20)}; };
  auto poor = [&] { return network_quality{r.uniform(0.02, 0.04), r.uniform(20, 40)}; };
  switch (profile) {
    case network_profile::good:
      return good();
    case network_profile::poor:
      return poor();
    case network_profile::mixed: {
      const double u = r.uniform();
      if (u < 0.6)
        return good();
      if (u < 0.9)
        return fair();
      return poor();
    }
  }
  return good();
}

} // namespace

std::string node_id_for(const std::string& prefix, std::uint32_t index) {
  return fmt::format("{}-{:05}", prefix, index);
}

double modelled_rtt_ms(double distance_km) {
  return 2.0 + 1.5 * distance_km / 100.0;
}

std::vector<node_profile> make_profiles(const fleet_parameters& parameters,
                                        const city_table& cities) {
  std::vector<node_profile> profiles(parameters.nodes);
  std::vector<rng> setup;
  setup.reserve(parameters.nodes);
  for (std::uint32_t i = 0; i < parameters.nodes; ++i) {
    setup.emplace_back(parameters.seed, i, rng_purpose::setup);
    rng& r = setup.back();
    node_profile& p = profiles[i];
    p.index = i;
    p.node_id = node_id_for(parameters.id_prefix, i);
    p.credential = parameters.secret_key.empty()
                     ? parameters.credential
                     : hmac_sha256_hex(parameters.secret_key, p.node_id);
    p.media_port = first_media_port + i % media_port_count;
    const city& home = cities.pick_weighted(r.uniform());
    p.latitude =
      std::clamp(home.latitude + r.uniform(-city_spread_degrees, city_spread_degrees), -90.0, 90.0);
    p.longitude = std::clamp(home.longitude + r.uniform(-city_spread_degrees, city_spread_degrees),
                             -180.0, 180.0);
    p.region = home.region;
    p.country = home.country;
    p.city = home.name;
    p.max_participants = parameters.max_participants;
    p.upload_mbps = parameters.upload_mbps;
    p.download_mbps = parameters.download_mbps;
    p.cpu_cores = parameters.cpu_cores;
    p.recording = r.chance(0.5);
    p.e2ee = r.chance(0.7);
    p.quality = draw_quality(parameters.profile, r);
    p.base_cpu = r.uniform(0.02, 0.08);
  }
  // Peers need everyone's place, so they are drawn in a second pass.
  for (std::uint32_t i = 0; i < parameters.nodes; ++i) {
    node_profile& p = profiles[i];
    const std::uint32_t others = parameters.nodes - 1;
    const std::uint32_t wanted = std::min(parameters.peer_rtts, others);
    std::set<std::uint32_t> chosen;
    // Bounded: with wanted <= others a fresh index turns up quickly; the cap only guards
    // against a pathological generator.
    for (std::uint32_t attempt = 0; chosen.size() < wanted && attempt < 64 * wanted + 64;
         ++attempt) {
      auto j = static_cast<std::uint32_t>(setup[i].below(parameters.nodes));
      if (j != i)
        chosen.insert(j);
    }
    for (const std::uint32_t j : chosen) {
      const node_profile& q = profiles[j];
      p.peers.push_back({q.node_id, modelled_rtt_ms(great_circle_km(p.latitude, p.longitude,
                                                                    q.latitude, q.longitude))});
    }
  }
  return profiles;
}

node_model::node_model(const node_profile& profile, double mean_session_s, std::uint64_t seed)
    : profile_(&profile), mean_session_s_(mean_session_s),
      rng_(seed, profile.index, rng_purpose::runtime) {}

void node_model::fill_register(v1::Register& out) const {
  const node_profile& p = *profile_;
  out.set_node_id(p.node_id);
  out.set_credential(p.credential);
  out.set_protocol_version(protocol_version);
  out.set_software_version("chroom-node-sim " CHROOM_NODE_SIM_VERSION);
  auto* endpoint = out.add_endpoints();
  endpoint->set_host("127.0.0.1");
  endpoint->set_port(p.media_port);
  endpoint->set_transport(v1::Endpoint::TRANSPORT_UDP);
  auto* location = out.mutable_location();
  location->set_latitude(p.latitude);
  location->set_longitude(p.longitude);
  location->set_region(p.region);
  location->set_country(p.country);
  auto* capacity = out.mutable_capacity();
  capacity->set_max_participants(p.max_participants);
  capacity->set_upload_mbps(p.upload_mbps);
  capacity->set_download_mbps(p.download_mbps);
  capacity->set_cpu_cores(p.cpu_cores);
  auto* features = out.mutable_features();
  for (const char* codec : {"opus", "vp8", "vp9", "h264"})
    features->add_codecs(codec);
  features->set_relay(true);
  features->set_recording(p.recording);
  features->set_e2ee(p.e2ee);
  for (const auto& [room_id, r] : rooms_) {
    auto* hosted = out.add_rooms();
    hosted->set_room_id(room_id);
    hosted->set_participants(static_cast<std::uint32_t>(r.participants.size()));
  }
}

v1::NodeMessage node_model::ack(std::uint64_t command_id) const {
  v1::NodeMessage out;
  out.mutable_ack()->set_command_id(command_id);
  return out;
}

v1::NodeMessage node_model::nack(std::uint64_t command_id, v1::Nack::Reason reason,
                                 std::string message) const {
  v1::NodeMessage out;
  auto* n = out.mutable_nack();
  n->set_command_id(command_id);
  n->set_reason(reason);
  n->set_message(std::move(message));
  return out;
}

v1::NodeMessage node_model::apply(const v1::Command& command, sim_clock::time_point now) {
  const std::uint64_t id = command.command_id();
  switch (command.command_case()) {
    case v1::Command::kPrepareRoom: {
      const auto& c = command.prepare_room();
      if (rooms_.contains(c.room_id()))
        return ack(id);
      if (draining_)
        return nack(id, v1::Nack::REASON_DRAINING, "node is draining");
      if (c.e2ee() && !profile_->e2ee) {
        return nack(id, v1::Nack::REASON_UNSUPPORTED, "node does not forward e2ee media");
      }
      if (c.recording() && !profile_->recording) {
        return nack(id, v1::Nack::REASON_UNSUPPORTED, "node cannot record");
      }
      rooms_[c.room_id()].app_id = c.app_id();
      return ack(id);
    }
    case v1::Command::kAdmitParticipant: {
      const auto& c = command.admit_participant();
      auto it = rooms_.find(c.room_id());
      if (it == rooms_.end()) {
        return nack(id, v1::Nack::REASON_NOT_FOUND, fmt::format("no room {}", c.room_id()));
      }
      auto& people = it->second.participants;
      const bool present = std::any_of(people.begin(), people.end(), [&](const participant& p) {
        return p.participant_id == c.participant_id();
      });
      if (present)
        return ack(id);
      if (draining_)
        return nack(id, v1::Nack::REASON_DRAINING, "node is draining");
      if (participants_ >= profile_->max_participants) {
        return nack(
          id, v1::Nack::REASON_FULL,
          fmt::format("{} of {} participants", participants_, profile_->max_participants));
      }
      const auto session = std::chrono::duration_cast<sim_clock::duration>(
        std::chrono::duration<double>(rng_.exponential(mean_session_s_)));
      people.push_back({c.participant_id(), now + session});
      ++participants_;
      next_departure_ = std::min(next_departure_, people.back().leaves_at);
      return ack(id);
    }
    case v1::Command::kAttachRelay: {
      const auto& c = command.attach_relay();
      auto it = rooms_.find(c.room_id());
      if (it == rooms_.end()) {
        return nack(id, v1::Nack::REASON_NOT_FOUND, fmt::format("no room {}", c.room_id()));
      }
      it->second.relays.insert(c.peer_node_id());
      return ack(id);
    }
    case v1::Command::kDetachRelay: {
      const auto& c = command.detach_relay();
      if (auto it = rooms_.find(c.room_id()); it != rooms_.end()) {
        it->second.relays.erase(c.peer_node_id());
      }
      return ack(id);
    }
    case v1::Command::kRemoveParticipant: {
      // No ParticipantLeft (nor RoomEmpty) follows: the orchestrator asked, so it already
      // counts the place as free and an event would only echo its own decision back.
      const auto& c = command.remove_participant();
      if (auto it = rooms_.find(c.room_id()); it != rooms_.end()) {
        auto& people = it->second.participants;
        auto gone = std::find_if(people.begin(), people.end(), [&](const participant& p) {
          return p.participant_id == c.participant_id();
        });
        // next_departure_ may now be early; the expiry scan at that time then finds
        // nobody due and recomputes it.
        if (gone != people.end()) {
          people.erase(gone);
          --participants_;
        }
      }
      // Also when the participant or room is unknown: it may have left by itself or a
      // retried command may have removed it already; either way the place is free.
      return ack(id);
    }
    case v1::Command::kCloseRoom: {
      if (auto it = rooms_.find(command.close_room().room_id()); it != rooms_.end()) {
        participants_ -= static_cast<std::uint32_t>(it->second.participants.size());
        rooms_.erase(it);
        recompute_next_departure();
      }
      return ack(id);
    }
    case v1::Command::kDrain:
      draining_ = true;
      return ack(id);
    case v1::Command::kPing:
      return ack(id);
    case v1::Command::COMMAND_NOT_SET:
      break;
  }
  // A command newer than this simulator (unknown oneof case) or an empty one.
  return nack(id, v1::Nack::REASON_UNSUPPORTED, "unknown command");
}

void node_model::close_rooms(const google::protobuf::RepeatedPtrField<std::string>& room_ids) {
  for (const auto& room_id : room_ids) {
    if (auto it = rooms_.find(room_id); it != rooms_.end()) {
      participants_ -= static_cast<std::uint32_t>(it->second.participants.size());
      rooms_.erase(it);
    }
  }
  recompute_next_departure();
}

void node_model::expire_participants(sim_clock::time_point now,
                                     std::vector<v1::NodeMessage>& events) {
  if (now < next_departure_)
    return;
  for (auto& [room_id, r] : rooms_) {
    auto& people = r.participants;
    if (people.empty())
      continue;
    auto gone = std::stable_partition(people.begin(), people.end(),
                                      [&](const participant& p) { return p.leaves_at > now; });
    if (gone == people.end())
      continue;
    for (auto it = gone; it != people.end(); ++it) {
      auto* left = events.emplace_back().mutable_event()->mutable_participant_left();
      left->set_room_id(room_id);
      left->set_participant_id(it->participant_id);
    }
    participants_ -= static_cast<std::uint32_t>(people.end() - gone);
    people.erase(gone, people.end());
    if (people.empty()) {
      events.emplace_back().mutable_event()->mutable_room_empty()->set_room_id(room_id);
    }
  }
  recompute_next_departure();
}

void node_model::recompute_next_departure() {
  next_departure_ = sim_clock::time_point::max();
  for (const auto& [room_id, r] : rooms_) {
    for (const auto& p : r.participants)
      next_departure_ = std::min(next_departure_, p.leaves_at);
  }
}

std::uint32_t node_model::relays() const {
  std::uint32_t total = 0;
  for (const auto& [room_id, r] : rooms_)
    total += static_cast<std::uint32_t>(r.relays.size());
  return total;
}

void node_model::fill_stats(v1::Stats& out, sim_clock::time_point now) {
  const node_profile& p = *profile_;
  const double relay_count = relays();
  const double load = static_cast<double>(participants_) / p.max_participants;
  const double cpu = std::clamp(p.base_cpu + load * cpu_at_capacity + relay_count * cpu_per_relay +
                                  rng_.uniform(-0.02, 0.02),
                                0.0, 1.0);
  const double congestion = 1.0 + std::max(0.0, cpu - cpu_congestion_threshold) * congestion_slope;
  const double media_mbps = participants_ * mbps_per_participant + relay_count * mbps_per_relay;
  out.set_participants(participants_);
  out.set_rooms(rooms());
  out.set_cpu_load(cpu);
  out.set_bandwidth_in_mbps(media_mbps * rng_.uniform(0.9, 1.1));
  out.set_bandwidth_out_mbps(media_mbps * rng_.uniform(0.9, 1.1));
  out.set_packet_loss(std::min(1.0, p.quality.packet_loss * rng_.uniform(0.5, 1.5) * congestion));
  out.set_jitter_ms(p.quality.jitter_ms * rng_.uniform(0.7, 1.3) * congestion);
  // Each room's media over the time since the previous Stats: its participants' and
  // relays' streams, both ways.
  if (last_traffic_ != sim_clock::time_point{} && now > last_traffic_) {
    const double seconds = std::chrono::duration<double>(now - last_traffic_).count();
    for (const auto& [room_id, r] : rooms_) {
      const double mbps = r.participants.size() * mbps_per_participant +
                          static_cast<double>(r.relays.size()) * mbps_per_relay;
      if (mbps <= 0)
        continue;
      const auto bytes = static_cast<std::uint64_t>(mbps * 1e6 / 8 * seconds);
      auto* traffic = out.add_room_traffic();
      traffic->set_room_id(room_id);
      traffic->set_bytes_in(bytes);
      traffic->set_bytes_out(bytes);
    }
  }
  last_traffic_ = now;
  for (const auto& peer : p.peers) {
    auto* rtt = out.add_peer_rtts();
    rtt->set_node_id(peer.node_id);
    // Queueing adds up to one jitter's worth on top of the path; routes wander by a few %.
    rtt->set_rtt_ms(peer.base_rtt_ms * rng_.uniform(0.97, 1.08) +
                    rng_.uniform(0, p.quality.jitter_ms));
  }
}

void node_model::reset() {
  rooms_.clear();
  participants_ = 0;
  draining_ = false;
  next_departure_ = sim_clock::time_point::max();
}

std::string node_model::rooms_json() const {
  std::string out = "{\"rooms\":[";
  bool first_room = true;
  for (const auto& [room_id, r] : rooms_) {
    if (!first_room)
      out += ',';
    first_room = false;
    out += fmt::format("{{\"room_id\":{},\"app_id\":{},\"participants\":{},\"relays\":[",
                       json_string(room_id), json_string(r.app_id), r.participants.size());
    bool first_relay = true;
    for (const auto& relay : r.relays) {
      if (!first_relay)
        out += ',';
      first_relay = false;
      out += json_string(relay);
    }
    out += "]}";
  }
  out += fmt::format("],\"participants\":{},\"draining\":{}}}", participants_,
                     draining_ ? "true" : "false");
  return out;
}

} // namespace chroom::node_sim
