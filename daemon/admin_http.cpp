#include "daemon/admin_http.hpp"

#include "actors/atoms.hpp"
#include "actors/cluster_membership.hpp"
#include "actors/proto_messages.hpp"
#include "chroom/admin/v1/admin_service.pb.h"
#include "common/unix_time.hpp"
#include "daemon/dashboard_feed.hpp"
#include "dashboard/assets.hpp"
#include "observability/metrics.hpp"

#include <caf/all.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

namespace chroom::daemon {

namespace {

namespace adm = chroom::admin::v1;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

/// How long a request waits for an actor.
constexpr auto actor_timeout = std::chrono::seconds{3};
/// A snapshot younger than this is served again rather than rebuilt: many dashboards cost
/// the actors one snapshot a second.
constexpr auto snapshot_max_age = std::chrono::milliseconds{900};
constexpr auto event_interval = std::chrono::seconds{1};
/// Dashboards streaming at once: each holds one HTTP thread.
constexpr size_t max_event_streams = 8;
constexpr size_t http_threads = max_event_streams + 4;
/// Rooms in a snapshot (the largest): a page cannot show more usefully.
constexpr size_t max_snapshot_rooms = 200;
/// Allocation rate over this window; latency quantiles over the longer one.
constexpr auto rate_window = std::chrono::seconds{5};
constexpr auto latency_window = std::chrono::seconds{10};

/// "NODE_STATE_ACTIVE" -> "active".
std::string enum_word(const std::string& name, std::string_view prefix) {
  auto word = name.substr(std::min(name.size(), prefix.size()));
  std::transform(word.begin(), word.end(), word.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return word;
}

std::string node_state_word(adm::NodeState state) {
  return enum_word(adm::NodeState_Name(state), "NODE_STATE_");
}

std::string peer_state_word(adm::PeerState state) {
  return enum_word(adm::PeerState_Name(state), "PEER_STATE_");
}

/// A blocking request from a non-actor thread: the answer, or std::runtime_error naming
/// `what` when the actor fails or does not answer in time.
template <class... Results, class... Ts>
std::tuple<Results...> ask(caf::actor_system& system, const caf::actor& whom, std::string_view what,
                           Ts&&... xs) {
  caf::scoped_actor self{system};
  std::optional<std::tuple<Results...>> answer;
  std::string error;
  self->request(whom, actor_timeout, std::forward<Ts>(xs)...)
    .receive([&](Results&... results) { answer.emplace(std::move(results)...); },
             [&](caf::error& err) { error = system.render(err); });
  if (!answer)
    throw std::runtime_error(std::string(what) + ": " + error);
  return std::move(*answer);
}

/// What the actors say about the cluster at one moment.
struct peer_view {
  std::vector<adm::NodeInfo> nodes;
  adm::GetClusterResponse cluster;
  uint32_t rooms = 0;
  uint32_t replicas = 0;
  uint32_t participants = 0;
};

/// A node's load (0..1) rounded to a percent: finer figures are noise on the page, and
/// every one of them would be a change in the next delta.
double load_percent(double load) {
  return std::round(std::clamp(load, 0.0, 1.0) * 100) / 100;
}

/// A histogram sample and when it was taken.
struct timed_sample {
  steady::time_point at;
  observability::histogram_sample histogram;
};

/// A quantile in milliseconds, or null.
json quantile_ms(const timed_sample& from, const timed_sample& to, double q) {
  auto seconds = observability::quantile_between(from.histogram, to.histogram, q);
  return seconds ? json(*seconds * 1000) : json(nullptr);
}

} // namespace

// --- readiness -----------------------------------------------------------------------------

void readiness::set(const std::string& check, bool ok) {
  std::lock_guard lock{mutex_};
  checks_[check] = ok;
}

std::vector<std::string> readiness::failing() const {
  std::lock_guard lock{mutex_};
  std::vector<std::string> out;
  for (const auto& [check, ok] : checks_)
    if (!ok)
      out.push_back(check);
  return out;
}

std::map<std::string, bool> readiness::checks() const {
  std::lock_guard lock{mutex_};
  return checks_;
}

// --- the server ----------------------------------------------------------------------------

struct admin_http::impl {
  caf::actor_system& system;
  admin_http_settings settings;
  std::shared_ptr<const readiness> ready;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<size_t> event_streams{0};

  std::mutex stop_mutex;
  std::condition_variable stop_signal;
  bool stopping = false;

  /// The snapshots and their deltas, and the latency history they were computed from.
  std::mutex snapshot_mutex;
  dashboard_feed feed;
  steady::time_point snapshot_at{};
  std::deque<timed_sample> latency_history;

  impl(caf::actor_system& sys, admin_http_settings s, std::shared_ptr<const readiness> r)
      : system(sys), settings(std::move(s)), ready(std::move(r)) {}

  peer_view collect(bool with_nodes) {
    peer_view view;
    if (with_nodes) {
      adm::ListNodesRequest request;
      request.set_page_size(5000);
      do {
        auto [page] = ask<adm::ListNodesResponse>(system, settings.registry, "registry",
                                                  list_nodes_atom::value, request);
        for (auto& node : *page.mutable_nodes())
          view.nodes.push_back(std::move(node));
        request.set_page_token(page.next_page_token());
      } while (!request.page_token().empty());
    }
    std::tie(view.cluster) = ask<adm::GetClusterResponse>(system, settings.membership, "membership",
                                                          get_cluster_atom::value);
    std::tie(view.rooms, view.replicas, view.participants) = ask<uint32_t, uint32_t, uint32_t>(
      system, settings.allocation_service, "allocation service", service_stats_atom::value);
    return view;
  }

  /// Sets the gauges a scrape reads from the actors' state.
  void refresh_gauges(const peer_view& view) {
    auto& metrics = observability::metrics();
    std::map<std::pair<std::string, std::string>, double> nodes;
    for (const auto& node : view.nodes)
      nodes[{node_state_word(node.state()), node.location().region()}] += 1;
    metrics.set_nodes(nodes);
    // Regions with nodes but none active read 0: a region without capacity.
    std::map<std::string, observability::peer_metrics::region_capacity> regions;
    for (const auto& node : view.nodes) {
      auto& region = regions[node.location().region()];
      if (node.state() != adm::NODE_STATE_ACTIVE)
        continue;
      auto max = node.capacity().max_participants();
      auto taken = node.load().last_stats().participants() + node.load().reserved_participants();
      region.participants += max;
      region.free += max > taken ? max - taken : 0;
    }
    metrics.set_region_capacity(regions);
    std::map<std::string, double> members;
    for (const auto& peer : view.cluster.peers())
      members[peer_state_word(peer.state())] += 1;
    metrics.set_members(members);
    metrics.rooms_owned.Set(view.rooms);
    metrics.room_replicas.Set(view.replicas);
    metrics.participants.Set(view.participants);
    metrics.ready.Set(ready->failing().empty() ? 1 : 0);
    metrics.live_actors.Set(static_cast<double>(system.registry().running()));
    if (settings.gateway_memory)
      metrics.gateway_memory_bytes.Set(static_cast<double>(settings.gateway_memory->used()));
  }

  std::string metrics_text() {
    refresh_gauges(collect(true));
    return prometheus::TextSerializer{}.Serialize(observability::metrics().registry()->Collect());
  }

  /// Allocation rate, latency quantiles and results from this peer's metrics.
  json allocation_figures() {
    auto& metrics = observability::metrics();
    json by_result = json::object();
    double total = 0;
    for (const auto& family : metrics.registry()->Collect()) {
      if (family.name != "chroom_allocations_total")
        continue;
      for (const auto& metric : family.metric) {
        for (const auto& label : metric.label)
          if (label.name == "result") {
            auto key = enum_word(label.value, "");
            by_result[key] = by_result.value(key, 0.0) + metric.counter.value;
          }
        total += metric.counter.value;
      }
    }
    timed_sample now{steady::now(), observability::sample_of(metrics.allocation_seconds)};
    // The history holds a little more than the latency window.
    latency_history.push_back(now);
    while (latency_history.size() > 2 && now.at - latency_history[1].at >= latency_window)
      latency_history.pop_front();
    const auto& oldest = latency_history.front();
    const timed_sample* rate_from = &oldest;
    for (const auto& sample : latency_history)
      if (now.at - sample.at <= rate_window) {
        rate_from = &sample;
        break;
      }
    json per_second = nullptr;
    auto span = std::chrono::duration<double>(now.at - rate_from->at).count();
    if (span > 0.5)
      per_second = (now.histogram.count - rate_from->histogram.count) / span;
    return {{"per_second", per_second},
            {"total", total},
            {"latency_ms",
             {{"p50", quantile_ms(oldest, now, 0.5)},
              {"p90", quantile_ms(oldest, now, 0.9)},
              {"p99", quantile_ms(oldest, now, 0.99)}}},
            {"by_result", by_result}};
  }

  json build_snapshot() {
    auto view = collect(true);
    refresh_gauges(view);
    auto [serialized_rooms] =
      ask<std::vector<std::string>>(system, settings.allocation_service, "allocation service",
                                    list_rooms_atom::value, std::string{}, std::string{});
    json out;
    out["peer_id"] = settings.peer_id;
    out["at_unix_ms"] = unix_ms_now();
    auto& members = out["members"] = json::array();
    for (const auto& peer : view.cluster.peers())
      members.push_back({{"peer_id", peer.peer_id()},
                         {"state", peer_state_word(peer.state())},
                         {"grpc_address", peer.grpc_address()},
                         {"self", peer.self()},
                         {"last_heard_ms_ago", peer.last_heard_ms_ago()}});
    auto& nodes = out["nodes"] = json::array();
    for (const auto& node : view.nodes) {
      const auto& stats = node.load().last_stats();
      auto max = node.capacity().max_participants();
      auto participants = stats.participants() + node.load().reserved_participants();
      double share = max > 0 ? static_cast<double>(participants) / max : 0.0;
      nodes.push_back({{"node_id", node.node_id()},
                       {"state", node_state_word(node.state())},
                       {"lat", node.location().latitude()},
                       {"lon", node.location().longitude()},
                       {"region", node.location().region()},
                       {"country", node.location().country()},
                       {"participants", participants},
                       {"max_participants", max},
                       {"load", load_percent(std::max(share, stats.cpu_load()))},
                       {"rooms", node.room_ids_size()},
                       {"home_peer_id", node.home_peer_id()}});
    }
    std::vector<adm::RoomInfo> rooms(serialized_rooms.size());
    for (size_t i = 0; i < rooms.size(); ++i)
      rooms[i].ParseFromString(serialized_rooms[i]);
    std::sort(rooms.begin(), rooms.end(), [](const adm::RoomInfo& a, const adm::RoomInfo& b) {
      if (a.room().participants() != b.room().participants())
        return a.room().participants() > b.room().participants();
      return std::tie(a.room().app_id(), a.room().room_id()) <
             std::tie(b.room().app_id(), b.room().room_id());
    });
    out["rooms_total"] = rooms.size();
    auto& listed = out["rooms"] = json::array();
    for (size_t i = 0; i < rooms.size() && i < max_snapshot_rooms; ++i) {
      const auto& room = rooms[i].room();
      json room_nodes = json::array();
      json links = json::array();
      for (const auto& part : room.nodes()) {
        room_nodes.push_back({{"node_id", part.node_id()}, {"participants", part.participants()}});
        for (const auto& other : part.relay_node_ids())
          if (part.node_id() < other) // each link once
            links.push_back({part.node_id(), other});
      }
      listed.push_back({{"app_id", room.app_id()},
                        {"room_id", room.room_id()},
                        {"participants", room.participants()},
                        {"owner_peer_id", rooms[i].owner_peer_id()},
                        {"nodes", std::move(room_nodes)},
                        {"links", std::move(links)}});
    }
    out["allocations"] = allocation_figures();
    return out;
  }

  /// Rebuilds the snapshot (and its delta) when older than snapshot_max_age; the caller
  /// holds snapshot_mutex.
  void refresh_snapshot() {
    auto now = steady::now();
    if (feed.seq() == 0 || now - snapshot_at >= snapshot_max_age) {
      feed.advance(build_snapshot());
      snapshot_at = now;
    }
  }

  /// The latest snapshot, serialised.
  std::shared_ptr<const std::string> snapshot() {
    std::lock_guard lock{snapshot_mutex};
    refresh_snapshot();
    return feed.snapshot_text();
  }

  /// The events that bring a viewer holding snapshot `*seen` up to date (the deltas, or the
  /// full snapshot when it has none or is too far behind), and the seq it then holds.
  std::string next_events(uint64_t& seen) {
    std::lock_guard lock{snapshot_mutex};
    refresh_snapshot();
    auto catch_up = feed.deltas_since(seen);
    std::string events;
    if (catch_up.complete) {
      for (const auto& delta : catch_up.deltas)
        events += "event: delta\ndata: " + *delta + "\n\n";
    } else {
      events = "event: snapshot\ndata: " + *feed.snapshot_text() + "\n\n";
    }
    seen = feed.seq();
    return events;
  }

  /// Waits `interval` or until the server stops; false once it stops.
  bool wait_unless_stopping(std::chrono::milliseconds interval) {
    std::unique_lock lock{stop_mutex};
    return !stop_signal.wait_for(lock, interval, [this] { return stopping; });
  }

  void add_routes() {
    auto& srv = *server;
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      try {
        res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
      } catch (const std::exception& e) {
        res.status = 503;
        res.set_content(std::string("metrics unavailable: ") + e.what() + "\n", "text/plain");
      }
    });
    srv.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      try {
        ask<uint32_t, uint32_t, uint32_t>(system, settings.allocation_service, "allocation service",
                                          service_stats_atom::value);
        res.set_content("ok\n", "text/plain");
      } catch (const std::exception& e) {
        res.status = 503;
        res.set_content(std::string("unhealthy: ") + e.what() + "\n", "text/plain");
      }
    });
    srv.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      std::string body;
      bool all = true;
      for (const auto& [check, ok] : ready->checks()) {
        body += (ok ? "[+] " : "[-] ") + check + (ok ? " ok\n" : " waiting\n");
        all = all && ok;
      }
      res.status = all ? 200 : 503;
      res.set_content((all ? "ready\n" : "not ready\n") + body, "text/plain");
    });
    srv.Get("/api/v1/snapshot", [this](const httplib::Request&, httplib::Response& res) {
      try {
        res.set_header("Cache-Control", "no-store");
        res.set_content(*snapshot(), "application/json");
      } catch (const std::exception& e) {
        res.status = 503;
        res.set_content(json{{"error", e.what()}}.dump(), "application/json");
      }
    });
    srv.Get("/api/v1/events", [this](const httplib::Request&, httplib::Response& res) {
      if (event_streams.fetch_add(1) >= max_event_streams) {
        event_streams.fetch_sub(1);
        res.status = 503;
        res.set_content("too many dashboard streams on this peer (at most " +
                          std::to_string(max_event_streams) + ")\n",
                        "text/plain");
        return;
      }
      res.set_header("Cache-Control", "no-store");
      res.set_header("X-Accel-Buffering", "no");
      // The snapshot this viewer holds: it gets one whole, then each second's delta.
      auto seen = std::make_shared<uint64_t>(0);
      res.set_chunked_content_provider(
        "text/event-stream",
        [this, seen](size_t, httplib::DataSink& sink) {
          std::string events;
          try {
            events = next_events(*seen);
          } catch (const std::exception& e) {
            events = "event: unavailable\ndata: " + json{{"error", e.what()}}.dump() + "\n\n";
          }
          if (!events.empty() && !sink.write(events.data(), events.size()))
            return false;
          if (!wait_unless_stopping(event_interval)) {
            sink.done();
            return true;
          }
          return true;
        },
        [this](bool) { event_streams.fetch_sub(1); });
    });
    srv.Get(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
      const auto* asset = dashboard::find_asset(req.path);
      if (asset == nullptr) {
        res.status = 404;
        res.set_content("not found: " + req.path + "\n", "text/plain");
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_content(std::string(asset->body), std::string(asset->content_type));
    });
  }
};

admin_http::admin_http(caf::actor_system& system, admin_http_settings settings,
                       std::shared_ptr<const readiness> ready)
    : impl_(std::make_unique<impl>(system, std::move(settings), std::move(ready))) {}

admin_http::~admin_http() {
  stop();
}

uint16_t admin_http::start() {
  auto& st = *impl_;
  const auto& settings = st.settings;
  if (!settings.cert_file.empty()) {
    auto server =
      std::make_unique<httplib::SSLServer>(settings.cert_file.c_str(), settings.key_file.c_str());
    if (!server->is_valid())
      throw std::runtime_error("admin HTTP: cannot load " + settings.cert_file + " / " +
                               settings.key_file);
    st.server = std::move(server);
  } else {
    st.server = std::make_unique<httplib::Server>();
  }
  st.server->new_task_queue = [] { return new httplib::ThreadPool(http_threads); };
  st.server->set_keep_alive_max_count(100);
  st.add_routes();
  int port = settings.port == 0 ? st.server->bind_to_any_port(settings.host)
                                : (st.server->bind_to_port(settings.host, settings.port)
                                     ? static_cast<int>(settings.port)
                                     : -1);
  if (port <= 0)
    throw std::runtime_error("admin HTTP: cannot listen on " + settings.host + ":" +
                             std::to_string(settings.port) +
                             " (in use? set admin.http.port, or admin.disable_http)");
  st.thread = std::thread([server = st.server.get()] { server->listen_after_bind(); });
  return static_cast<uint16_t>(port);
}

void admin_http::stop() {
  auto& st = *impl_;
  {
    std::lock_guard lock{st.stop_mutex};
    st.stopping = true;
  }
  st.stop_signal.notify_all();
  if (st.server)
    st.server->stop();
  if (st.thread.joinable())
    st.thread.join();
}

} // namespace chroom::daemon
