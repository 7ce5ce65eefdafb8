// The webhook dispatcher: per-application FIFO queues, a schedule of "application ready at
// t" served by a few workers, and a watchdog that cuts requests running past their budget.
//
// Locking: one mutex (mutex_) guards every queue, the schedule and the counters. It is never
// held across network I/O, a call into httplib that may wait (Client::stop waits for a
// connect in progress), or the log function; so enqueue waits at most for another short
// critical section.

#include "apps/webhook_dispatcher.hpp"

#include <httplib.h>

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#error "cpp-httplib must be built with CPPHTTPLIB_OPENSSL_SUPPORT: link PkgConfig::HTTPLIB"
#endif

#include <algorithm>
#include <arpa/inet.h>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chroom::apps {
namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t max_url_length = 2048;
constexpr std::size_t max_event_field_length = 200;
constexpr std::string_view system_ca_bundle = "/etc/ssl/certs/ca-certificates.crt";
// How often the watchdog repeats Client::stop on a request that is over its budget: a stop
// that lands before the request has its socket (between claim and connect) does nothing.
constexpr milliseconds restop_interval{20};

bool is_visible_ascii(char c) {
  return c > ' ' && c < 0x7F;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

struct url_parts {
  bool https = false;
  std::string host; // IPv6 literals without brackets: httplib adds them to the Host header
  int port = 0;
  std::string target; // path and query; "/" at least
};

bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253)
    return false;
  if (host.back() == '.') // a fully qualified name
    host.remove_suffix(1);
  std::size_t label_start = 0;
  for (std::size_t i = 0; i <= host.size(); ++i) {
    if (i < host.size() && host[i] != '.') {
      const char c = host[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
      if (!ok)
        return false;
      continue;
    }
    const std::string_view label = host.substr(label_start, i - label_start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    label_start = i + 1;
  }
  return true;
}

// Splits a URL into what httplib needs; the problem in words when it cannot be an endpoint.
std::optional<std::string> parse_url(std::string_view url, url_parts& out) {
  if (url.empty())
    return "the URL is empty";
  if (url.size() > max_url_length)
    return fmt::format("the URL is longer than {} characters", max_url_length);
  for (std::size_t i = 0; i < url.size(); ++i)
    if (!is_visible_ascii(url[i]))
      return fmt::format("the URL has a space, control or non-ASCII character at offset {} "
                         "(percent-encode it)",
                         i);
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return "the URL has no scheme: it must start with http:// or https://";
  const std::string_view scheme = url.substr(0, scheme_end);
  if (iequals(scheme, "https"))
    out.https = true;
  else if (iequals(scheme, "http"))
    out.https = false;
  else
    return fmt::format("the scheme must be http or https, not '{}'", scheme);
  if (url.find('#') != std::string_view::npos)
    return "the URL has a #fragment, which is never sent: remove it";

  std::string_view rest = url.substr(scheme_end + 3);
  const std::size_t authority_end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, authority_end);
  const std::string_view target =
    authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos)
    return "the URL has user:password@, which is not allowed: receivers authenticate events "
           "by their signature";
  if (authority.empty())
    return "the URL has no host";

  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return "the URL's IPv6 address has no closing ']'";
    host = authority.substr(1, close - 1);
    const std::string literal(host);
    in6_addr address{};
    if (inet_pton(AF_INET6, literal.c_str(), &address) != 1)
      return fmt::format("'{}' is not an IPv6 address", host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return "the URL has characters after its IPv6 address";
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    if (!valid_host_name(host))
      return fmt::format("'{}' is not a valid host name", host);
  }

  int port = out.https ? 443 : 80;
  if (has_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(),
                     [](char c) { return c >= '0' && c <= '9'; }))
      return fmt::format("the port '{}' is not a number", port_text);
    port = std::stoi(std::string(port_text));
    if (port < 1 || port > 65535)
      return fmt::format("the port {} is not in 1-65535", port);
  }

  out.host = std::string(host);
  out.port = port;
  if (target.empty())
    out.target.assign(1, '/');
  else if (target.front() == '?')
    out.target = std::string(1, '/').append(target);
  else
    out.target = std::string(target);
  return std::nullopt;
}

std::optional<std::string> event_problem(const webhook_event& event) {
  const auto field_problem = [](std::string_view name,
                                std::string_view value) -> std::optional<std::string> {
    if (value.empty() || value.size() > max_event_field_length)
      return fmt::format("its {} must have 1 to {} characters", name, max_event_field_length);
    if (!std::all_of(value.begin(), value.end(), is_visible_ascii))
      return fmt::format("its {} has a character that is not visible ASCII", name);
    return std::nullopt;
  };
  if (auto problem = field_problem("id", event.id))
    return problem;
  if (auto problem = field_problem("type", event.type))
    return problem;
  if (event.json_body.size() > webhook_max_body_bytes)
    return fmt::format("its body has {} bytes, more than {}", event.json_body.size(),
                       webhook_max_body_bytes);
  return std::nullopt;
}

// Retry-After in seconds (RFC 9110 section 10.2.3); the HTTP-date form is not honoured, the
// normal backoff applies then.
std::optional<milliseconds> retry_after(const std::string& value) {
  std::string_view text = value;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::chrono::seconds(std::stol(std::string(text)));
}

enum class verdict { delivered, retry, refused };

struct attempt_result {
  verdict kind = verdict::retry;
  std::optional<milliseconds> retry_after;
  std::string reason; // for the log when the event is given up
};

// What an answer's status means for the event. `retry_after_header`: the Retry-After value,
// empty when absent.
attempt_result judge(int status, const std::string& retry_after_header) {
  if (status >= 200 && status < 300)
    return {verdict::delivered, std::nullopt, {}};
  std::string reason = fmt::format("HTTP {}", status);
  // 408 and 429 say "not now"; 5xx are the receiver's own trouble: all may pass.
  if (status == 408 || status == 429 || status >= 500) {
    std::optional<milliseconds> wait;
    if (status == 429 || status == 503)
      wait = retry_after(retry_after_header);
    return {verdict::retry, wait, std::move(reason)};
  }
  // Other 4xx: the receiver refused this event, and will again. 3xx: redirects are not
  // followed (they would carry the signed event to wherever the receiver points); 1xx and
  // the rest: not an answer we understand. Retrying changes none of these.
  if (status >= 300 && status < 400)
    reason += " (redirects are not followed: set the endpoint to the final URL)";
  return {verdict::refused, std::nullopt, std::move(reason)};
}

std::string hex(const unsigned char* bytes, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 0xF]);
  }
  return out;
}

std::shared_ptr<httplib::ClientImpl> make_client(const url_parts& url,
                                                 const webhook_endpoint& endpoint) {
  std::shared_ptr<httplib::ClientImpl> client;
  if (url.https) {
    auto tls = std::make_shared<httplib::SSLClient>(url.host, url.port);
    // Without a file httplib falls back to OpenSSL's default paths, which Debian points at
    // the same bundle; the explicit file only makes the choice visible.
    std::error_code ignored;
    if (!endpoint.ca_file.empty())
      tls->set_ca_cert_path(endpoint.ca_file);
    else if (std::filesystem::is_regular_file(system_ca_bundle, ignored))
      tls->set_ca_cert_path(std::string(system_ca_bundle));
    tls->enable_server_certificate_verification(true);
    client = std::move(tls);
  } else {
    client = std::make_shared<httplib::ClientImpl>(url.host, url.port);
  }
  // httplib's timeouts bound each connect/read/write; the watchdog bounds their sum.
  const milliseconds timeout = std::max(endpoint.request_timeout, milliseconds{1});
  client->set_connection_timeout(timeout);
  client->set_read_timeout(timeout);
  client->set_write_timeout(timeout);
  // Kept alive while the application has events back to back; closed when it goes idle or
  // into backoff (see finish), so idle applications hold no sockets.
  client->set_keep_alive(true);
  client->set_follow_location(false);
  client->set_tcp_nodelay(true);
  return client;
}

} // namespace

std::string webhook_signature(std::string_view secret, std::int64_t unix_s, std::string_view body) {
  std::string signed_text = std::to_string(unix_s);
  signed_text += '.';
  signed_text += body;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // A null key pointer makes HMAC fail with an empty secret: pass a valid one.
  static constexpr unsigned char no_key[1] = {0};
  const auto* key = secret.empty() ? no_key : reinterpret_cast<const unsigned char*>(secret.data());
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), digest,
           &length) == nullptr)
    length = 0; // no SHA-256 in this OpenSSL: an empty v1 that no receiver accepts
  return fmt::format("t={},v1={}", unix_s, hex(digest, length));
}

milliseconds webhook_backoff(const webhook_endpoint& endpoint, std::uint32_t attempt,
                             double jitter_0_1) {
  const double cap =
    static_cast<double>(std::max<milliseconds::rep>(0, endpoint.max_backoff.count()));
  const double first =
    static_cast<double>(std::max<milliseconds::rep>(0, endpoint.first_backoff.count()));
  // Doubles in floating point, so no integer overflows; 2^62 times any first_backoff is finite
  // (no 0 * inf) and far above any cap.
  const int doublings = static_cast<int>(std::min<std::uint32_t>(std::max(attempt, 1u) - 1, 62));
  const double whole = std::min(first * std::ldexp(1.0, doublings), cap);
  const double jitter = std::isnan(jitter_0_1) ? 0.0 : std::clamp(jitter_0_1, 0.0, 1.0);
  const double wait = whole * (0.5 + 0.5 * jitter);
  if (wait >= cap)
    return std::max(endpoint.max_backoff, milliseconds{0});
  return milliseconds(static_cast<milliseconds::rep>(std::llround(wait)));
}

std::optional<std::string> webhook_url_problem(std::string_view url) {
  url_parts ignored;
  return parse_url(url, ignored);
}

struct webhook_dispatcher::impl {
  struct pending {
    webhook_event event;
    std::uint32_t attempts = 0; // made so far
  };

  struct app_state {
    std::string app_id;
    webhook_endpoint endpoint;
    url_parts url;
    std::shared_ptr<httplib::ClientImpl> client;
    std::deque<pending> queue;
    webhook_stats stats;
    std::uint64_t wake_ticket = 0; // the live schedule entry; 0: none
    bool busy = false;             // a worker has it: in a request, or closing after one
    bool removed = false;          // its endpoint was removed; a busy worker discards its result
    bool retry_now = false;        // the endpoint was replaced while busy: skip the backoff
    bool full_logged = false;      // logged this full-queue episode
    // The request in flight, for the watchdog.
    std::shared_ptr<httplib::ClientImpl> request_client;
    steady::time_point deadline;
    std::uint32_t stops_in_progress = 0;
  };

  struct wake {
    steady::time_point at;
    std::uint64_t ticket;
    std::shared_ptr<app_state> app;
    // A min-heap on (at, ticket): applications due at the same time go first come first served.
    bool operator>(const wake& other) const {
      return at != other.at ? at > other.at : ticket > other.ticket;
    }
  };

  // One attempt, as copied out of the queue under the lock.
  struct job {
    std::shared_ptr<app_state> app;
    std::shared_ptr<httplib::ClientImpl> client;
    std::string target;
    std::string secret;
    webhook_event event;
    std::uint32_t attempt = 0;
  };

  explicit impl(log_function log) : log_(std::move(log)) {}
  ~impl() { shutdown(); }

  void start(std::size_t worker_threads) {
    watchdog_ = std::thread([this] { watchdog_loop(); });
    for (std::size_t i = 0; i < std::max<std::size_t>(worker_threads, 1); ++i)
      workers_.emplace_back([this] { worker_loop(); });
  }

  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_ && workers_.empty() && !watchdog_.joinable())
        return;
      stopping_ = true;
    }
    work_cv_.notify_all();
    watch_cv_.notify_all(); // the watchdog now cuts every request in flight
    for (auto& worker : workers_)
      worker.join();
    workers_.clear();
    std::size_t left = 0;
    {
      std::lock_guard lock(mutex_);
      watchdog_exit_ = true;
      for (const auto& [id, app] : apps_)
        left += app->queue.size();
    }
    watch_cv_.notify_all();
    if (watchdog_.joinable())
      watchdog_.join();
    if (left > 0)
      log(fmt::format("webhooks: stopping with {} undelivered event(s), dropped", left));
  }

  void log(std::string_view line) {
    if (!log_)
      return;
    try {
      log_(line);
    } catch (...) {
      // A logging failure must not take a worker (and the process) down.
    }
  }

  // Under mutex_.
  void schedule(const std::shared_ptr<app_state>& app, steady::time_point at) {
    app->wake_ticket = ++last_ticket_;
    schedule_.push(wake{at, app->wake_ticket, app});
    work_cv_.notify_one();
  }

  bool set_endpoint(const std::string& app_id, std::optional<webhook_endpoint> endpoint) {
    std::shared_ptr<httplib::ClientImpl> old_client;
    std::shared_ptr<app_state> removed;
    if (!endpoint) {
      std::size_t dropped = 0;
      {
        std::lock_guard lock(mutex_);
        const auto found = apps_.find(app_id);
        if (found == apps_.end())
          return true;
        removed = found->second;
        apps_.erase(found);
        removed->removed = true;
        removed->wake_ticket = 0; // its schedule entry, if any, is stale now
        dropped = removed->queue.size();
        totals_.dropped += dropped;
        totals_.queued -= dropped;
        removed->queue.clear();
        if (!removed->busy)
          old_client = std::move(removed->client); // closed below, outside the lock
      }
      if (dropped > 0)
        log(fmt::format("webhooks: app {}: endpoint removed, {} queued event(s) dropped", app_id,
                        dropped));
      return true;
    }

    url_parts url;
    std::optional<std::string> problem = parse_url(endpoint->url, url);
    std::error_code error;
    if (!problem && url.https && !endpoint->ca_file.empty() &&
        !std::filesystem::is_regular_file(endpoint->ca_file, error))
      problem = fmt::format("ca_file {} is not a readable file", endpoint->ca_file);
    if (problem) {
      log(fmt::format("webhooks: app {}: endpoint refused: {}", app_id, *problem));
      return false;
    }
    endpoint->max_attempts = std::max<std::uint32_t>(endpoint->max_attempts, 1);
    {
      // A configuration reload hands every app's endpoint again: an unchanged one keeps its
      // connection and its backoff.
      std::lock_guard lock(mutex_);
      const auto found = apps_.find(app_id);
      if (found != apps_.end() && found->second->endpoint == *endpoint)
        return true;
    }
    // Made outside the lock: an SSLClient creates its SSL_CTX here.
    auto client = make_client(url, *endpoint);

    std::lock_guard lock(mutex_);
    auto& app = apps_[app_id];
    if (!app) {
      app = std::make_shared<app_state>();
      app->app_id = app_id;
    }
    app->endpoint = std::move(*endpoint);
    app->url = std::move(url);
    old_client = std::exchange(app->client, std::move(client));
    app->full_logged = false;
    if (app->busy)
      app->retry_now = true;
    else if (!app->queue.empty())
      schedule(app, steady::now()); // supersedes a backoff in progress
    return true;
    // old_client is destroyed after the lock is released (declared before it): closing a
    // socket and freeing an SSL_CTX need no lock. A worker using it holds its own reference.
  }

  bool enqueue(const std::string& app_id, webhook_event&& event) {
    if (auto problem = event_problem(event)) {
      log(fmt::format("webhooks: app {}: event refused: {}", app_id, *problem));
      return false;
    }
    std::string full_line;
    {
      std::lock_guard lock(mutex_);
      if (stopping_)
        return false;
      const auto found = apps_.find(app_id);
      if (found == apps_.end())
        return false;
      const auto& app = found->second;
      if (app->queue.size() >= app->endpoint.max_queued) {
        ++app->stats.dropped;
        ++totals_.dropped;
        if (app->full_logged)
          return false;
        app->full_logged = true;
        full_line = fmt::format("webhooks: app {}: queue full ({} events), dropping new events "
                                "until it drains",
                                app_id, app->queue.size());
      } else {
        app->queue.push_back(pending{std::move(event), 0});
        ++app->stats.enqueued;
        ++app->stats.queued;
        ++totals_.enqueued;
        ++totals_.queued;
        if (!app->busy && app->wake_ticket == 0)
          schedule(app, steady::now());
        return true;
      }
    }
    log(full_line);
    return false;
  }

  webhook_stats stats(const std::string& app_id) const {
    std::lock_guard lock(mutex_);
    const auto found = apps_.find(app_id);
    return found == apps_.end() ? webhook_stats{} : found->second->stats;
  }

  webhook_stats totals() const {
    std::lock_guard lock(mutex_);
    return totals_;
  }

  void worker_loop() {
    std::mt19937_64 random(std::random_device{}());
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (schedule_.empty()) {
        work_cv_.wait(lock);
        continue;
      }
      const wake& top = schedule_.top();
      if (top.ticket != top.app->wake_ticket) { // superseded, or the app was removed
        schedule_.pop();
        continue;
      }
      const steady::time_point at = top.at;
      if (at > steady::now()) {
        work_cv_.wait_until(lock, at);
        continue;
      }
      std::shared_ptr<app_state> app = top.app;
      schedule_.pop();
      app->wake_ticket = 0;
      if (app->busy || app->removed || app->queue.empty())
        continue;
      // The notification that woke us may have been meant for the next entry: another worker
      // (possibly in an untimed wait) must look at it, or it waits for our request to end.
      if (!schedule_.empty())
        work_cv_.notify_one();

      pending& head = app->queue.front();
      ++head.attempts;
      job work{app, app->client, app->url.target, app->endpoint.secret, head.event, head.attempts};
      app->busy = true;
      app->request_client = work.client;
      app->deadline = steady::now() + std::max(app->endpoint.request_timeout, milliseconds{1});
      requests_.push_back(app);
      watch_cv_.notify_one();

      lock.unlock();
      attempt_result result = perform(work);
      lock.lock();
      finish(lock, work, std::move(result), unit(random));
      // The last references to a replaced client or a removed application may be these:
      // closing a socket (a TLS close_notify is a write) happens outside the lock.
      lock.unlock();
      work = job{};
      lock.lock();
    }
  }

  // Sends one attempt. Runs without the lock.
  static attempt_result perform(const job& work) {
    try {
      httplib::Request request;
      request.method = "POST";
      request.path = work.target;
      const auto now = std::chrono::system_clock::now().time_since_epoch();
      const auto unix_s = std::chrono::duration_cast<std::chrono::seconds>(now).count();
      request.headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "chroom-orchestrator"},
        {"X-Chroom-Event", work.event.type},
        {"X-Chroom-Delivery", work.event.id},
        {"X-Chroom-Attempt", std::to_string(work.attempt)},
        {"X-Chroom-Signature", webhook_signature(work.secret, unix_s, work.event.json_body)},
      };
      request.body = work.event.json_body;
      // The status and headers decide; they are taken as soon as they are in. The body is
      // read (to keep the connection usable) and dropped instead of kept (a receiver could
      // answer gigabytes); if it is cut (by the budget, a reset), the status still stands:
      // the receiver said what it did with the event.
      std::optional<int> status;
      std::string retry_after_header;
      request.response_handler = [&](const httplib::Response& response) {
        status = response.status;
        retry_after_header = response.get_header_value("Retry-After");
        return true;
      };
      request.content_receiver = [](const char*, std::size_t, std::uint64_t, std::uint64_t) {
        return true;
      };
      httplib::Response response;
      httplib::Error error = httplib::Error::Success;
      if (!work.client->is_valid())
        return {verdict::retry, std::nullopt, "the TLS client could not be set up"};
      if (work.client->send(request, response, error) && !status) {
        // httplib calls no response handler for a 204 (or a HEAD): the response is complete.
        status = response.status;
        retry_after_header = response.get_header_value("Retry-After");
      }
      if (!status)
        return {verdict::retry, std::nullopt, httplib::to_string(error)};
      return judge(*status, retry_after_header);
    } catch (const std::exception& e) {
      return {verdict::retry, std::nullopt, fmt::format("internal error: {}", e.what())};
    } catch (...) {
      return {verdict::retry, std::nullopt, "internal error"};
    }
  }

  // Books an attempt's result and puts the application back on the schedule. Called and
  // returns with the lock held; releases it in between.
  void finish(std::unique_lock<std::mutex>& lock, job& work, attempt_result result, double jitter) {
    app_state& app = *work.app;
    requests_.erase(std::find(requests_.begin(), requests_.end(), work.app));
    // The watchdog may be inside client->stop(): the client must not be used again (by the
    // close below, or the next attempt) before that returns.
    done_cv_.wait(lock, [&] { return app.stops_in_progress == 0; });
    app.request_client.reset();

    ++totals_.attempts;
    const bool delivered = result.kind == verdict::delivered;
    if (!delivered)
      ++totals_.failed_attempts;
    if (app.removed) { // its queue and counters are gone; the client goes with `work`
      app.busy = false;
      return;
    }
    ++app.stats.attempts;
    if (!delivered)
      ++app.stats.failed_attempts;

    std::string give_up_line;
    steady::time_point next_at = steady::now();
    bool close = false;
    const auto pop_head = [&] {
      app.queue.pop_front();
      --app.stats.queued;
      --totals_.queued;
      if (app.full_logged && app.queue.size() <= app.endpoint.max_queued / 2)
        app.full_logged = false; // the next full episode is logged again
    };
    if (delivered) {
      ++app.stats.delivered;
      ++totals_.delivered;
      pop_head();
    } else if (result.kind == verdict::retry && work.attempt < app.endpoint.max_attempts) {
      ++app.stats.retried;
      ++totals_.retried;
      const milliseconds wait = result.retry_after
                                  ? std::min(*result.retry_after, app.endpoint.max_backoff)
                                  : webhook_backoff(app.endpoint, work.attempt, jitter);
      next_at += std::max(wait, milliseconds{0});
      close = true; // no socket held through a backoff
    } else {
      ++app.stats.given_up;
      ++totals_.given_up;
      give_up_line =
        fmt::format("webhooks: app {}: gave up event {} ({}) after {} attempt(s): {}", app.app_id,
                    work.event.id, work.event.type, work.attempt,
                    result.kind == verdict::refused ? result.reason : "last: " + result.reason);
      pop_head();
    }
    close = close || app.queue.empty();

    if (close || !give_up_line.empty()) {
      // Still busy: nobody else touches the client while it closes.
      lock.unlock();
      if (close)
        work.client->stop();
      if (!give_up_line.empty())
        log(give_up_line);
      lock.lock();
    }
    app.busy = false;
    if (app.retry_now) {
      app.retry_now = false;
      next_at = steady::now();
    }
    if (!app.removed && !app.queue.empty())
      schedule(work.app, next_at);
  }

  void watchdog_loop() {
    std::unique_lock lock(mutex_);
    while (!watchdog_exit_) {
      const steady::time_point now = steady::now();
      std::vector<std::shared_ptr<app_state>> overdue;
      std::vector<std::shared_ptr<httplib::ClientImpl>> clients;
      steady::time_point next = steady::time_point::max();
      for (const auto& app : requests_) {
        if (stopping_ || app->deadline <= now) {
          ++app->stops_in_progress;
          overdue.push_back(app);
          clients.push_back(app->request_client);
        } else {
          next = std::min(next, app->deadline);
        }
      }
      if (overdue.empty()) {
        if (next == steady::time_point::max())
          watch_cv_.wait(lock);
        else
          watch_cv_.wait_until(lock, next);
        continue;
      }
      // Client::stop shuts the socket down under httplib's own lock, which a connect in
      // progress holds: it may wait for that connect (bounded by its timeout), so not here.
      lock.unlock();
      for (const auto& client : clients)
        client->stop();
      lock.lock();
      for (const auto& app : overdue)
        --app->stops_in_progress;
      done_cv_.notify_all();
      // These may be the last references (the worker dropped its own): free them unlocked.
      lock.unlock();
      clients.clear();
      overdue.clear();
      lock.lock();
      watch_cv_.wait_for(lock, restop_interval);
    }
  }

  const log_function log_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;  // the schedule changed, or stopping
  std::condition_variable watch_cv_; // a request started, or stopping
  std::condition_variable done_cv_;  // the watchdog finished stopping some clients
  std::unordered_map<std::string, std::shared_ptr<app_state>> apps_;
  std::priority_queue<wake, std::vector<wake>, std::greater<>> schedule_;
  std::uint64_t last_ticket_ = 0;
  std::vector<std::shared_ptr<app_state>> requests_; // in flight, for the watchdog
  webhook_stats totals_;
  bool stopping_ = false;
  bool watchdog_exit_ = false;

  std::vector<std::thread> workers_;
  std::thread watchdog_;
};

webhook_dispatcher::webhook_dispatcher(std::size_t worker_threads, log_function log)
    : impl_(std::make_unique<impl>(std::move(log))) {
  impl_->start(worker_threads);
}

webhook_dispatcher::~webhook_dispatcher() {
  impl_->shutdown();
}

bool webhook_dispatcher::set_endpoint(const std::string& app_id,
                                      std::optional<webhook_endpoint> endpoint) {
  return impl_->set_endpoint(app_id, std::move(endpoint));
}

bool webhook_dispatcher::enqueue(const std::string& app_id, webhook_event event) {
  return impl_->enqueue(app_id, std::move(event));
}

webhook_stats webhook_dispatcher::stats(const std::string& app_id) const {
  return impl_->stats(app_id);
}

webhook_stats webhook_dispatcher::totals() const {
  return impl_->totals();
}

} // namespace chroom::apps
