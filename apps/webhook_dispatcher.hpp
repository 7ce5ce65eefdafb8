#pragma once

// Webhooks: the orchestrator tells an application what happened to its rooms (room started or
// finished, participant joined or left, node lost under a room) by POSTing a signed JSON event
// to the application's endpoint, with retries and backoff. The caller (an actor on the
// allocation path) hands events over with enqueue(), which never waits for the network: a
// dead or slow endpoint costs its own application a queue, nobody else anything.
// docs/webhooks.md describes the contract for application developers.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chroom::apps {

/// Where and how an application receives its events.
struct webhook_endpoint {
  std::string url;    ///< http://host[:port][/path][?query] or https://...; see webhook_url_problem
  std::string secret; ///< HMAC-SHA256 key of X-Chroom-Signature, used as bytes as written
  /// Attempts per event (the first included); then the event is given up. 0 counts as 1.
  std::uint32_t max_attempts = 8;
  /// The wait after the first failed attempt; doubles with each further one (see webhook_backoff).
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{60'000}; ///< cap of each wait, Retry-After included
  /// Budget of one attempt, start to end: connecting, TLS, sending and reading the whole
  /// answer. A request still running then is cut (a trickling receiver cannot hold a worker).
  std::chrono::milliseconds request_timeout{5'000};
  /// Events waiting (the one being sent included); enqueue refuses more.
  std::size_t max_queued = 10'000;
  /// https only: PEM file of the CAs that may sign the receiver's certificate. Empty: the
  /// system bundle (/etc/ssl/certs/ca-certificates.crt). The certificate and its name are
  /// always verified; there is deliberately no way to turn that off.
  std::string ca_file;

  friend bool operator==(const webhook_endpoint&, const webhook_endpoint&) = default;
};

/// One event. `id` is unique per event and sent as X-Chroom-Delivery on every attempt, so
/// receivers can drop duplicates; `type` is e.g. "room.started". Both are 1 to 200 visible
/// ASCII characters (they become header values); the body is at most webhook_max_body_bytes.
struct webhook_event {
  std::string id;
  std::string type;
  std::string json_body;
};

/// Largest body enqueue accepts.
inline constexpr std::size_t webhook_max_body_bytes = 1 << 20;

/// Counters of one application (stats) or of all, removed applications included (totals).
struct webhook_stats {
  std::uint64_t queued = 0;          ///< gauge: events waiting now, the one in flight included
  std::uint64_t enqueued = 0;        ///< events accepted by enqueue
  std::uint64_t delivered = 0;       ///< answered 2xx
  std::uint64_t attempts = 0;        ///< requests that ended (delivered or not)
  std::uint64_t failed_attempts = 0; ///< attempts that did not deliver
  std::uint64_t retried = 0;         ///< failed attempts followed by another attempt
  /// Refused by a full queue, or waiting when the endpoint was removed.
  std::uint64_t dropped = 0;
  std::uint64_t given_up = 0; ///< refused by the receiver (4xx, 3xx) or out of attempts
};

/// Delivers events to application endpoints from a few worker threads.
///
/// Order: the events of one application are delivered strictly in the order they were
/// enqueued. Its next event is sent only once the previous one was delivered or given up, so
/// an endpoint in backoff holds up its own application (head-of-line) and no other: workers
/// never sleep on a backoff, they take whichever application is due next.
///
/// Thread-safe; every member may be called from any thread. The log function is called from
/// the workers and from enqueue (a full queue, an invalid event), possibly from several
/// threads at once, never with the dispatcher's lock held; what it throws is swallowed.
/// https needs SIGPIPE ignored in the process (the daemon does): OpenSSL writes with write().
class webhook_dispatcher {
public:
  using log_function = std::function<void(std::string_view)>;

  /// Starts `worker_threads` workers (at least 1): the number of requests in flight at once.
  explicit webhook_dispatcher(std::size_t worker_threads = 2, log_function log = {});
  /// Stops promptly: requests in flight are interrupted (a request still connecting ends by
  /// its request_timeout at worst), waiting events are dropped (logged), every thread joined.
  ~webhook_dispatcher();
  webhook_dispatcher(const webhook_dispatcher&) = delete;
  webhook_dispatcher& operator=(const webhook_dispatcher&) = delete;

  /// Adds, replaces (nullopt: removes) an application's endpoint. Setting the endpoint an
  /// application already has changes nothing. Replacing keeps the application's queue,
  /// counters and order; an event waiting in backoff is tried again at once at the new
  /// endpoint (a request in flight ends at the old one). Removing drops the queue (counted as
  /// dropped) and the application's counters. False (logged, nothing changed): the URL or
  /// ca_file is unusable; configuration should have checked webhook_url_problem first.
  bool set_endpoint(const std::string& app_id, std::optional<webhook_endpoint> endpoint);

  /// Queues an event for the application's endpoint; never blocks on the network (a short
  /// critical section, O(log apps)). False: the application has no endpoint, its queue is
  /// full (counted as dropped), the event is invalid (logged), or the dispatcher is stopping.
  bool enqueue(const std::string& app_id, webhook_event event);

  /// The application's counters; all zero for an application without endpoint.
  webhook_stats stats(const std::string& app_id) const;
  /// Counters over all applications since construction (queued: over current ones).
  webhook_stats totals() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// X-Chroom-Signature for a body sent at `unix_s`:
/// "t=<unix_s>,v1=<lowercase hex HMAC-SHA256(secret, "<unix_s>." + body)>".
std::string webhook_signature(std::string_view secret, std::int64_t unix_s, std::string_view body);

/// The wait after failed attempt `attempt` (1 = the first): uniformly between half and all of
/// min(first_backoff * 2^(attempt-1), max_backoff), placed by `jitter_0_1` (clamped to
/// [0, 1]; 0 gives the half, 1 the whole). Pure.
std::chrono::milliseconds webhook_backoff(const webhook_endpoint& endpoint, std::uint32_t attempt,
                                          double jitter_0_1);

/// Why `url` cannot be a webhook endpoint, or nullopt when it can: scheme http or https, a
/// host name, IPv4 or [IPv6] literal, an optional port 1-65535, no user:password@, no
/// #fragment, only visible ASCII (percent-encode the rest), at most 2048 characters.
std::optional<std::string> webhook_url_problem(std::string_view url);

} // namespace chroom::apps
