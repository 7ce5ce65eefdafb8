#pragma once

// The admin HTTP port of a peer (docs/operations.md): Prometheus metrics, liveness and
// readiness probes, and the live dashboard with its JSON snapshot and Server-Sent Events.
// cpp-httplib serves it on threads of its own; they ask the actors for state with
// blocking requests (scoped actors), never the other way round. Read-only.
//
//   GET /metrics           Prometheus text format (observability/metrics.hpp)
//   GET /healthz           200 while the peer's actors answer, 503 otherwise
//   GET /readyz            200 once the peer loaded its apps, joined its cluster and
//                          serves; 503 naming what it waits for (also while shutting down)
//   GET /api/v1/snapshot   the cluster as this peer sees it (JSON, docs/dashboard.md)
//   GET /api/v1/events     text/event-stream: that snapshot once, then each second a delta
//                          (what changed, docs/dashboard.md); all viewers share them
//   GET /, /assets/...     the dashboard (bundled at build time, dashboard/)

#include "transport/memory_budget.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace chroom::daemon {

/// What /readyz checks: named conditions, each true or false.
class readiness {
public:
  void set(const std::string& check, bool ok);
  /// The checks that are false, by name.
  std::vector<std::string> failing() const;
  /// Every check and its state, by name.
  std::map<std::string, bool> checks() const;

private:
  mutable std::mutex mutex_;
  std::map<std::string, bool> checks_;
};

struct admin_http_settings {
  std::string host = "127.0.0.1";
  /// 0: any free port.
  uint16_t port = 0;
  /// Both set: HTTPS.
  std::string cert_file;
  std::string key_file;
  std::string peer_id;
  caf::actor registry;
  caf::actor membership;
  caf::actor allocation_service;
  /// The gateway's peer-wide memory account (chroom_gateway_memory_bytes); may be null.
  std::shared_ptr<const transport::peer_memory_budget> gateway_memory;
};

class admin_http {
public:
  admin_http(caf::actor_system& system, admin_http_settings settings,
             std::shared_ptr<const readiness> ready);
  ~admin_http();
  admin_http(const admin_http&) = delete;
  admin_http& operator=(const admin_http&) = delete;

  /// Binds and starts serving; the bound port. Throws std::runtime_error naming the
  /// address when it cannot bind (or load the certificate).
  uint16_t start();
  /// Stops serving (event streams end); idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace chroom::daemon
