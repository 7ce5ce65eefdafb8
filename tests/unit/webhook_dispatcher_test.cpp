// Tests of the webhook dispatcher (apps/webhook_dispatcher.hpp): the pure helpers (signature
// against an independently computed vector, backoff schedule, URL checks), then delivery to
// real receivers (httplib servers on 127.0.0.1): headers and signature, retries, give-ups,
// Retry-After, order, isolation between applications, limits, removal, shutdown, https.
// Every wait is bounded; no assertion needs the machine to be fast (only lower bounds on
// durations, or upper bounds many times above what the code needs).

// The test target does not get cpp-httplib's pkg-config flags, and the library was built with
// these: they change the layout of httplib::Request and the clients, so they must match.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif

#include "apps/webhook_dispatcher.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <functional>
#include <httplib.h>
#include <map>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <optional>
#include <poll.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using chroom::apps::webhook_backoff;
using chroom::apps::webhook_dispatcher;
using chroom::apps::webhook_endpoint;
using chroom::apps::webhook_event;
using chroom::apps::webhook_signature;
using chroom::apps::webhook_stats;
using chroom::apps::webhook_url_problem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Polls `done` until it holds or `limit` passed: every wait in these tests is bounded.
template <class Predicate> bool eventually(Predicate done, milliseconds limit = 15s) {
  const auto deadline = steady::now() + limit;
  while (steady::now() < deadline) {
    if (done())
      return true;
    std::this_thread::sleep_for(2ms);
  }
  return done();
}

// The log lines a dispatcher wrote; outlives the dispatcher.
class log_capture {
public:
  webhook_dispatcher::log_function function() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex_);
      lines_.emplace_back(line);
    };
  }
  std::size_t count(std::string_view needle) const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& line : lines_)
      n += line.find(needle) != std::string::npos ? 1 : 0;
    return n;
  }
  std::string all() const {
    std::lock_guard lock(mutex_);
    std::string text;
    for (const auto& line : lines_)
      text += line + "\n";
    return text;
  }

private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

// One request as a receiver saw it.
struct received {
  std::string target; // path and query
  httplib::Headers headers;
  std::string body;
  steady::time_point at;
  int remote_port = 0; // tells connections apart

  std::string header(const std::string& name) const {
    const auto found = headers.find(name);
    return found == headers.end() ? std::string{} : found->second;
  }
  int attempt() const { return std::atoi(header("X-Chroom-Attempt").c_str()); }
};

// A webhook receiver on 127.0.0.1 (http, or https with the given certificate and key): records
// every request, then lets `respond` answer it (default: 200). A responder may call hold(),
// which blocks until release() (or 30 s): a hanging endpoint. The destructor releases every
// held request before stopping the server.
class receiver {
public:
  struct call {
    const httplib::Request& request;
    httplib::Response& response;
    receiver& rx;
    std::size_t index; // arrival order, from 0
  };
  using responder = std::function<void(call)>;

  explicit receiver(responder respond = {}, X509* cert = nullptr, EVP_PKEY* key = nullptr)
      : respond_(std::move(respond)), https_(cert != nullptr) {
    if (cert != nullptr)
      server_ = std::make_unique<httplib::SSLServer>(cert, key);
    else
      server_ = std::make_unique<httplib::Server>();
    REQUIRE(server_->is_valid());
    // httplib writes an answer's headers and body apart: without this, Nagle's algorithm and
    // the client's delayed ACK hold every answer for tens of milliseconds.
    server_->set_tcp_nodelay(true);
    server_->Post(".*", [this](const httplib::Request& request, httplib::Response& response) {
      std::size_t index = 0;
      {
        std::lock_guard lock(mutex_);
        index = requests_.size();
        requests_.push_back(received{request.target, request.headers, request.body, steady::now(),
                                     request.remote_port});
      }
      response.status = 200;
      response.set_content("ok", "text/plain");
      if (respond_)
        respond_(call{request, response, *this, index});
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // Server::stop before the accept loop runs would be lost (and the join below hang).
    REQUIRE(eventually([this] { return server_->is_running(); }));
  }
  ~receiver() {
    release();
    server_->stop();
    thread_.join();
  }
  receiver(const receiver&) = delete;
  receiver& operator=(const receiver&) = delete;

  std::string url(const std::string& path = "/hook") const {
    return (https_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_) + path;
  }
  std::vector<received> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

  void hold() {
    std::unique_lock lock(mutex_);
    ++held_;
    released_cv_.wait_for(lock, 30s, [this] { return released_; });
    --held_;
  }
  std::size_t held() const {
    std::lock_guard lock(mutex_);
    return held_;
  }
  bool released() const {
    std::lock_guard lock(mutex_);
    return released_;
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      released_ = true;
    }
    released_cv_.notify_all();
  }

private:
  responder respond_;
  bool https_ = false;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable released_cv_;
  std::vector<received> requests_;
  std::size_t held_ = 0;
  bool released_ = false;
};

// A port on 127.0.0.1 where connections are refused: bound (so nobody else takes it while the
// test runs) but not listening.
class refusing_port {
public:
  refusing_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
  }
  ~refusing_port() { ::close(fd_); }
  refusing_port(const refusing_port&) = delete;
  refusing_port& operator=(const refusing_port&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

private:
  int fd_ = -1;
  int port_ = 0;
};

// A raw TCP receiver that answers "HTTP/1.1 200 OK" and then a header line every 20 ms,
// never ending its headers (for 30 s at most, or until destroyed): no single read of the
// client ever times out. One connection at a time.
class trickling_receiver {
public:
  trickling_receiver() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~trickling_receiver() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  trickling_receiver(const trickling_receiver&) = delete;
  trickling_receiver& operator=(const trickling_receiver&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

private:
  void run() {
    const auto give_up = steady::now() + 30s;
    while (!stop_ && steady::now() < give_up) {
      pollfd ready{listen_fd_, POLLIN, 0};
      if (::poll(&ready, 1, 20) <= 0)
        continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0)
        continue;
      serve(fd, give_up);
      ::close(fd);
    }
  }
  void serve(int fd, steady::time_point give_up) {
    static constexpr std::string_view status = "HTTP/1.1 200 OK\r\n";
    static constexpr std::string_view line = "X-Trickle: 1\r\n";
    if (::send(fd, status.data(), status.size(), MSG_NOSIGNAL) < 0)
      return;
    char buffer[4096];
    while (!stop_ && steady::now() < give_up) {
      std::this_thread::sleep_for(20ms);
      // Drain the request; a read of 0 is the client hanging up.
      const ssize_t got = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got == 0)
        return;
      if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0)
        return;
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

constexpr std::string_view test_secret = "whsec_test_5f1c";

// Quick retries, so retry tests take milliseconds; a request budget no busy machine reaches.
webhook_endpoint endpoint_for(const std::string& url) {
  webhook_endpoint endpoint;
  endpoint.url = url;
  endpoint.secret = std::string(test_secret);
  endpoint.max_attempts = 5;
  endpoint.first_backoff = 1ms;
  endpoint.max_backoff = 20ms;
  endpoint.request_timeout = 20s;
  return endpoint;
}

webhook_event event_number(int n, const std::string& type = "room.started") {
  return webhook_event{"evt-" + std::to_string(n), type,
                       R"({"type":")" + type + R"(","seq":)" + std::to_string(n) + "}"};
}

std::string hex_hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &length);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 0xF];
  }
  return out;
}

// Checks a delivery's signature as a receiver would: parse, recompute, compare.
void check_signature(const received& request) {
  const std::string signature = request.header("X-Chroom-Signature");
  const auto comma = signature.find(",v1=");
  REQUIRE(signature.rfind("t=", 0) == 0);
  REQUIRE(comma != std::string::npos);
  const std::string t = signature.substr(2, comma - 2);
  const std::string v1 = signature.substr(comma + 4);
  CHECK(v1.size() == 64);
  CHECK(v1 == hex_hmac_sha256(test_secret, t + "." + request.body));
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  CHECK(std::llabs(std::atoll(t.c_str()) - now_s) <= 300);
}

bool stats_equal(const webhook_stats& a, const webhook_stats& b) {
  return a.queued == b.queued && a.enqueued == b.enqueued && a.delivered == b.delivered &&
         a.attempts == b.attempts && a.failed_attempts == b.failed_attempts &&
         a.retried == b.retried && a.dropped == b.dropped && a.given_up == b.given_up;
}

// --- pure helpers -------------------------------------------------------------------------

TEST_CASE("webhook: the signature matches an independently computed vector") {
  // Computed with
  //   /usr/bin/python3 -c '
  //   import hmac,hashlib
  //   key=b"whsec_test_5f1c"
  //   body=b"{\"type\":\"room.started\",\"room\":\"room-42\"}"
  //   t=1700000000
  //   print("t=%d,v1=%s" % (t, hmac.new(key, str(t).encode()+b"."+body,
  //   hashlib.sha256).hexdigest())) print("t=%d,v1=%s" % (t, hmac.new(b"", str(t).encode()+b".",
  //   hashlib.sha256).hexdigest()))'
  CHECK(webhook_signature(test_secret, 1700000000, R"({"type":"room.started","room":"room-42"})") ==
        "t=1700000000,v1=c43d45c82fdca041ba2a4d505519c4c717749e557a0fa3b521eafed3d572846f");
  CHECK(webhook_signature("", 1700000000, "") ==
        "t=1700000000,v1=c1da1b6c6b8e9da7f4bbb90f7cab0820f271ad19ccbf80c88479c4e14f37d1c6");
  // The timestamp is signed: the same body at another second signs differently.
  CHECK(webhook_signature(test_secret, 1700000001, "{}") !=
        webhook_signature(test_secret, 1700000000, "{}"));
}

TEST_CASE(
  "webhook: the backoff doubles from first_backoff up to max_backoff, jittered down to half") {
  webhook_endpoint endpoint; // 500 ms, doubling, capped at 60 s
  const std::vector<std::int64_t> whole = {500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (std::size_t i = 0; i < whole.size(); ++i) {
    const auto attempt = static_cast<std::uint32_t>(i + 1);
    CAPTURE(attempt);
    CHECK(webhook_backoff(endpoint, attempt, 1.0).count() == whole[i]);
    CHECK(webhook_backoff(endpoint, attempt, 0.0).count() == whole[i] / 2);
    CHECK(webhook_backoff(endpoint, attempt, 0.5).count() == whole[i] * 3 / 4);
  }
  // Jitter stays within [half, whole] whatever it is given.
  std::mt19937 random(7);
  std::uniform_real_distribution<double> any(-1.0, 2.0);
  for (int i = 0; i < 1000; ++i) {
    const auto attempt = static_cast<std::uint32_t>(1 + i % 12);
    const auto wait = webhook_backoff(endpoint, attempt, any(random)).count();
    const auto full = std::min<std::int64_t>(500LL << (attempt - 1), 60000);
    CHECK(wait >= full / 2);
    CHECK(wait <= full);
  }
  CHECK(webhook_backoff(endpoint, 3, -5.0).count() == 1000);
  CHECK(webhook_backoff(endpoint, 3, 7.0).count() == 2000);
  CHECK(webhook_backoff(endpoint, 3, std::nan("")).count() == 1000);
  // Attempt 0 reads as 1; huge attempts neither overflow nor pass the cap.
  CHECK(webhook_backoff(endpoint, 0, 1.0).count() == 500);
  CHECK(webhook_backoff(endpoint, 1000, 1.0).count() == 60000);
  CHECK(webhook_backoff(endpoint, UINT32_MAX, 1.0).count() == 60000);
  // A first wait above the cap is capped; zero stays zero.
  endpoint.first_backoff = 90s;
  CHECK(webhook_backoff(endpoint, 1, 1.0).count() == 60000);
  endpoint.first_backoff = 0ms;
  CHECK(webhook_backoff(endpoint, 1000, 1.0).count() == 0);
}

TEST_CASE("webhook: the URL check accepts usual endpoints and names what is wrong with others") {
  for (const char* url :
       {"http://example.com", "https://hooks.example.com:8443/chroom?app=1&x=%20",
        "http://127.0.0.1:8080/x", "http://[::1]:9000/hook", "https://[2001:db8::1]/",
        "HTTPS://Example.COM/", "http://host.local./p", "http://my_service:80/", "http://h?q=1"}) {
    CAPTURE(url);
    CHECK(webhook_url_problem(url) == std::nullopt);
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
    {"", "empty"},
    {"ftp://example.com/", "scheme"},
    {"example.com/hook", "scheme"},
    {"http://", "no host"},
    {"http:///path", "no host"},
    {"http://user:secret@example.com/", "user:password@"},
    {"http://example.com/hook#part", "fragment"},
    {"http://example.com:0/", "1-65535"},
    {"http://example.com:65536/", "1-65535"},
    {"http://example.com:/", "not a number"},
    {"http://example.com:8a/", "not a number"},
    {"http://example.com/a b", "offset 20"},
    {"http://example.com/\r\nX: y", "control"},
    {"http://example.com/\xc3\xa9", "non-ASCII"},
    {"http://[::1/", "closing"},
    {"http://[fe80::zz]/", "IPv6"},
    {"http://[::1]x/", "after its IPv6"},
    {"http://-bad-.example/", "host name"},
    {"http://a..b/", "host name"},
    {"http://exa$mple.com/", "host name"},
    {"http://example.com/" + std::string(2048, 'a'), "longer than 2048"},
  };
  for (const auto& [url, words] : bad) {
    CAPTURE(url);
    const auto problem = webhook_url_problem(url);
    REQUIRE(problem.has_value());
    CAPTURE(*problem);
    CHECK(problem->find(words) != std::string::npos);
  }
}

// --- delivery -----------------------------------------------------------------------------

TEST_CASE(
  "webhook: a webhook is POSTed with every header and a signature the receiver can verify") {
  receiver rx;
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());
  REQUIRE(dispatcher.set_endpoint("telemedicine", endpoint_for(rx.url("/hooks/chroom?v=1"))));
  REQUIRE(dispatcher.enqueue("telemedicine", event_number(1, "participant.joined")));
  REQUIRE(eventually([&] { return dispatcher.stats("telemedicine").delivered == 1; }));

  const auto requests = rx.requests();
  REQUIRE(requests.size() == 1);
  const received& request = requests[0];
  CHECK(request.target == "/hooks/chroom?v=1");
  CHECK(request.header("Content-Type") == "application/json");
  CHECK(request.header("User-Agent") == "chroom-orchestrator");
  CHECK(request.header("X-Chroom-Event") == "participant.joined");
  CHECK(request.header("X-Chroom-Delivery") == "evt-1");
  CHECK(request.header("X-Chroom-Attempt") == "1");
  CHECK(request.body == R"({"type":"participant.joined","seq":1})");
  check_signature(request);

  webhook_stats expected;
  expected.enqueued = 1;
  expected.delivered = 1;
  expected.attempts = 1;
  CHECK(stats_equal(dispatcher.stats("telemedicine"), expected));
  CHECK(stats_equal(dispatcher.totals(), expected));
  CHECK(log.all().empty());
}

TEST_CASE("webhook: every 2xx is a delivery") {
  for (const int status : {200, 201, 202, 204, 299}) {
    CAPTURE(status);
    receiver rx([status](receiver::call c) {
      c.response.status = status;
      if (status == 204)
        c.response.body.clear();
    });
    webhook_dispatcher dispatcher;
    REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
    REQUIRE(dispatcher.enqueue("app", event_number(1)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));
    CHECK(dispatcher.stats("app").attempts == 1);
  }
}

TEST_CASE("webhook: a connection is reused for events back to back, closed when the app is idle") {
  receiver rx([](receiver::call c) {
    if (c.index == 0)
      c.rx.hold();
  });
  webhook_dispatcher dispatcher;
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  for (int i = 0; i < 3; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  REQUIRE(eventually([&] { return rx.held() == 1; }));
  rx.release(); // the three go out back to back
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 3; }));
  REQUIRE(dispatcher.enqueue("app", event_number(3))); // after the app went idle
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 4; }));
  const auto requests = rx.requests();
  REQUIRE(requests.size() == 4);
  CHECK(requests[1].remote_port == requests[0].remote_port);
  CHECK(requests[2].remote_port == requests[0].remote_port);
  CHECK(requests[3].remote_port != requests[0].remote_port);
}

TEST_CASE(
  "webhook: 500 twice then 200: delivered once, after three attempts with one delivery id") {
  receiver rx([](receiver::call c) {
    if (c.index < 2)
      c.response.status = 500;
  });
  webhook_dispatcher dispatcher;
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  REQUIRE(dispatcher.enqueue("app", event_number(7)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));

  const auto requests = rx.requests();
  REQUIRE(requests.size() == 3);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    CAPTURE(i);
    CHECK(requests[i].header("X-Chroom-Delivery") == "evt-7");
    CHECK(requests[i].attempt() == static_cast<int>(i + 1));
    CHECK(requests[i].body == requests[0].body);
    check_signature(requests[i]);
  }
  const webhook_stats stats = dispatcher.stats("app");
  CHECK(stats.attempts == 3);
  CHECK(stats.failed_attempts == 2);
  CHECK(stats.retried == 2);
  CHECK(stats.delivered == 1);
  CHECK(stats.given_up == 0);
  CHECK(stats.queued == 0);
}

TEST_CASE("webhook: 408, 429, 500, 502, 503 and 504 are retried") {
  for (const int status : {408, 429, 500, 502, 503, 504}) {
    CAPTURE(status);
    receiver rx([status](receiver::call c) {
      if (c.index == 0)
        c.response.status = status;
    });
    webhook_dispatcher dispatcher;
    REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
    REQUIRE(dispatcher.enqueue("app", event_number(1)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));
    CHECK(dispatcher.stats("app").attempts == 2);
    CHECK(rx.requests().back().attempt() == 2);
  }
}

TEST_CASE("webhook: other 4xx, 3xx and 1xx answers give the event up after one attempt") {
  for (const int status : {400, 401, 404, 410, 422, 301, 307}) {
    CAPTURE(status);
    receiver rx([status](receiver::call c) {
      c.response.status = status;
      if (status / 100 == 3)
        c.response.set_header("Location", "http://127.0.0.1:1/elsewhere");
    });
    log_capture log;
    webhook_dispatcher dispatcher(2, log.function());
    REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
    REQUIRE(dispatcher.enqueue("app", event_number(1)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").given_up == 1; }));
    const webhook_stats stats = dispatcher.stats("app");
    CHECK(stats.attempts == 1);
    CHECK(stats.failed_attempts == 1);
    CHECK(stats.retried == 0);
    CHECK(stats.delivered == 0);
    CHECK(stats.queued == 0);
    CHECK(rx.count() == 1);
    // Logged just after the counters moved.
    CHECK(eventually([&] {
      return log.count("gave up event evt-1 (room.started) after 1 attempt(s): HTTP " +
                       std::to_string(status)) == 1;
    }));
  }
}

TEST_CASE("webhook: 429 with Retry-After waits as long as it says, capped by max_backoff") {
  SUBCASE("Retry-After: 1 holds the next attempt for a second, not the 1 ms backoff") {
    receiver rx([](receiver::call c) {
      if (c.index == 0) {
        c.response.status = 429;
        c.response.set_header("Retry-After", "1");
      }
    });
    webhook_dispatcher dispatcher;
    webhook_endpoint endpoint = endpoint_for(rx.url());
    endpoint.max_backoff = 30s;
    REQUIRE(dispatcher.set_endpoint("app", endpoint));
    REQUIRE(dispatcher.enqueue("app", event_number(1)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));
    const auto requests = rx.requests();
    REQUIRE(requests.size() == 2);
    // Only a lower bound: a slow machine makes the gap longer, never shorter.
    CHECK(requests[1].at - requests[0].at >= 950ms);
  }
  SUBCASE("Retry-After: 3600 is capped by max_backoff (20 ms here)") {
    receiver rx([](receiver::call c) {
      if (c.index == 0) {
        c.response.status = 429;
        c.response.set_header("Retry-After", "3600");
      }
    });
    webhook_dispatcher dispatcher;
    REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
    REQUIRE(dispatcher.enqueue("app", event_number(1)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));
    CHECK(dispatcher.stats("app").attempts == 2);
  }
}

TEST_CASE(
  "webhook: a dead endpoint: events are tried max_attempts times, then given up and logged") {
  refusing_port dead;
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());
  webhook_endpoint endpoint = endpoint_for(dead.url());
  endpoint.max_attempts = 3;
  REQUIRE(dispatcher.set_endpoint("app", endpoint));
  constexpr int events = 200;
  for (int i = 0; i < events; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").given_up == events; }, 60s));
  const webhook_stats stats = dispatcher.stats("app");
  CHECK(stats.attempts == 3 * events);
  CHECK(stats.failed_attempts == 3 * events);
  CHECK(stats.retried == 2 * events);
  CHECK(stats.delivered == 0);
  CHECK(stats.queued == 0);
  CHECK(eventually([&] { return log.count("after 3 attempt(s): last: ") == events; }));
  CHECK(log.count("gave up event evt-0 ") == 1);
}

TEST_CASE(
  "webhook: enqueue never waits for the network: 1000 events queue while the receiver hangs") {
  receiver rx([](receiver::call c) {
    if (c.index == 0)
      c.rx.hold();
  });
  webhook_dispatcher dispatcher;
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  REQUIRE(dispatcher.enqueue("app", event_number(0)));
  REQUIRE(eventually([&] { return rx.held() == 1; }));
  // The endpoint is stuck in a request with a 20 s budget: these return all the same, and the
  // receiver is still held when they did (nothing released it).
  for (int i = 1; i <= 1000; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  CHECK(rx.held() == 1);
  CHECK_FALSE(rx.released());
  CHECK(dispatcher.stats("app").queued == 1001);
  CHECK(dispatcher.stats("app").delivered == 0);

  rx.release();
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1001; }, 60s));
  // One connection carried them back to back, in order.
  const auto requests = rx.requests();
  REQUIRE(requests.size() == 1001);
  for (int i = 0; i <= 1000; ++i)
    CHECK(requests[static_cast<std::size_t>(i)].header("X-Chroom-Delivery") ==
          "evt-" + std::to_string(i));
}

TEST_CASE("webhook: the events of one app arrive in order, retries included") {
  // Every third event fails its first two attempts.
  receiver rx([](receiver::call c) {
    const int seq = std::atoi(c.request.get_header_value("X-Chroom-Delivery").substr(4).c_str());
    const int attempt = std::atoi(c.request.get_header_value("X-Chroom-Attempt").c_str());
    if (seq % 3 == 0 && attempt <= 2)
      c.response.status = 503;
  });
  webhook_dispatcher dispatcher(4);
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  constexpr int events = 30;
  for (int i = 0; i < events; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == events; }));

  // The requests are one event after the other: 0 (1, 2, 3), 1 (1), 2 (1), 3 (1, 2, 3), ...
  std::vector<std::pair<std::string, int>> expected;
  for (int i = 0; i < events; ++i)
    for (int attempt = 1; attempt <= (i % 3 == 0 ? 3 : 1); ++attempt)
      expected.emplace_back("evt-" + std::to_string(i), attempt);
  std::vector<std::pair<std::string, int>> seen;
  for (const auto& request : rx.requests())
    seen.emplace_back(request.header("X-Chroom-Delivery"), request.attempt());
  CHECK(seen == expected);
  CHECK(dispatcher.stats("app").retried == 2 * (events / 3));
}

TEST_CASE("webhook: an app whose endpoint hangs does not delay another app") {
  receiver stuck([](receiver::call c) { c.rx.hold(); });
  receiver fine;
  webhook_dispatcher dispatcher(2);
  REQUIRE(dispatcher.set_endpoint("stuck", endpoint_for(stuck.url())));
  REQUIRE(dispatcher.set_endpoint("fine", endpoint_for(fine.url())));
  REQUIRE(dispatcher.enqueue("stuck", event_number(0)));
  REQUIRE(dispatcher.enqueue("stuck", event_number(1)));
  REQUIRE(eventually([&] { return stuck.held() == 1; }));
  for (int i = 0; i < 5; ++i)
    REQUIRE(dispatcher.enqueue("fine", event_number(i)));
  REQUIRE(eventually([&] { return dispatcher.stats("fine").delivered == 5; }));
  CHECK(stuck.held() == 1);
  CHECK_FALSE(stuck.released());
  CHECK(dispatcher.stats("stuck").delivered == 0);
  CHECK(dispatcher.stats("stuck").queued == 2);
  stuck.release();
  REQUIRE(eventually([&] { return dispatcher.stats("stuck").delivered == 2; }));
}

TEST_CASE(
  "webhook: an app in backoff holds no worker; the destructor does not wait for its backoff") {
  receiver failing([](receiver::call c) { c.response.status = 500; });
  receiver fine;
  std::optional<webhook_dispatcher> dispatcher(std::in_place, 1); // one worker only
  webhook_endpoint slow_retry = endpoint_for(failing.url());
  slow_retry.first_backoff = 60s;
  slow_retry.max_backoff = 60s;
  REQUIRE(dispatcher->set_endpoint("failing", slow_retry));
  REQUIRE(dispatcher->set_endpoint("fine", endpoint_for(fine.url())));
  REQUIRE(dispatcher->enqueue("failing", event_number(0)));
  REQUIRE(eventually([&] { return dispatcher->stats("failing").retried == 1; }));
  for (int i = 0; i < 3; ++i)
    REQUIRE(dispatcher->enqueue("fine", event_number(i)));
  REQUIRE(eventually([&] { return dispatcher->stats("fine").delivered == 3; }));
  CHECK(failing.count() == 1); // still waiting out its 30-60 s

  const auto start = steady::now();
  dispatcher.reset();
  CHECK(steady::now() - start < 10s); // far below the backoff it interrupted
}

TEST_CASE("webhook: a full queue refuses new events and counts them as dropped") {
  receiver rx([](receiver::call c) {
    if (c.index == 0)
      c.rx.hold();
  });
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());
  webhook_endpoint endpoint = endpoint_for(rx.url());
  endpoint.max_queued = 3;
  REQUIRE(dispatcher.set_endpoint("app", endpoint));
  // The event in flight still counts against the queue.
  for (int i = 0; i < 3; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  CHECK_FALSE(dispatcher.enqueue("app", event_number(3)));
  CHECK_FALSE(dispatcher.enqueue("app", event_number(4)));
  webhook_stats stats = dispatcher.stats("app");
  CHECK(stats.queued == 3);
  CHECK(stats.enqueued == 3);
  CHECK(stats.dropped == 2);
  CHECK(dispatcher.totals().dropped == 2);
  CHECK(log.count("queue full") == 1); // once per episode, not per event

  REQUIRE(eventually([&] { return rx.held() == 1; }));
  rx.release();
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 3; }));
  CHECK(dispatcher.enqueue("app", event_number(5)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 4; }));
  std::vector<std::string> ids;
  for (const auto& request : rx.requests())
    ids.push_back(request.header("X-Chroom-Delivery"));
  CHECK(ids == std::vector<std::string>{"evt-0", "evt-1", "evt-2", "evt-5"});
}

TEST_CASE("webhook: removing an endpoint drops its queue; apps without endpoint are refused") {
  receiver rx([](receiver::call c) {
    if (c.index == 0)
      c.rx.hold();
  });
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());
  CHECK_FALSE(dispatcher.enqueue("app", event_number(0))); // no endpoint yet
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  for (int i = 0; i < 3; ++i)
    REQUIRE(dispatcher.enqueue("app", event_number(i)));
  REQUIRE(eventually([&] { return rx.held() == 1; }));

  REQUIRE(dispatcher.set_endpoint("app", std::nullopt));
  CHECK(stats_equal(dispatcher.stats("app"), webhook_stats{}));
  CHECK(dispatcher.totals().dropped == 3);
  CHECK(dispatcher.totals().queued == 0);
  CHECK_FALSE(dispatcher.enqueue("app", event_number(3)));
  CHECK(log.count("endpoint removed, 3 queued event(s) dropped") == 1);

  // The request in flight ends (answered 200 once released) and is discarded, not counted
  // as delivered: its event was dropped with the queue.
  rx.release();
  REQUIRE(eventually([&] { return dispatcher.totals().attempts == 1; }));
  CHECK(dispatcher.totals().delivered == 0);

  // Added again: a fresh queue.
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(rx.url())));
  REQUIRE(dispatcher.enqueue("app", event_number(9)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }));
  CHECK(rx.requests().back().header("X-Chroom-Delivery") == "evt-9");
  CHECK(dispatcher.stats("app").enqueued == 1);
}

TEST_CASE(
  "webhook: replacing an endpoint keeps the queue and sends a waiting event to the new URL") {
  receiver old_rx([](receiver::call c) { c.response.status = 500; });
  receiver new_rx;
  webhook_dispatcher dispatcher;
  webhook_endpoint endpoint = endpoint_for(old_rx.url());
  endpoint.first_backoff = 60s; // in backoff until the endpoint changes
  endpoint.max_backoff = 60s;
  REQUIRE(dispatcher.set_endpoint("app", endpoint));
  REQUIRE(dispatcher.enqueue("app", event_number(0)));
  REQUIRE(dispatcher.enqueue("app", event_number(1)));
  REQUIRE(eventually([&] { return dispatcher.stats("app").retried == 1; }));

  // The same endpoint again (a configuration reload) changes nothing: still in backoff.
  REQUIRE(dispatcher.set_endpoint("app", endpoint));
  std::this_thread::sleep_for(200ms);
  CHECK(old_rx.count() == 1);

  endpoint.url = new_rx.url("/v2");
  REQUIRE(dispatcher.set_endpoint("app", endpoint));
  REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 2; }));
  const auto requests = new_rx.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].target == "/v2");
  CHECK(requests[0].header("X-Chroom-Delivery") == "evt-0");
  CHECK(requests[0].attempt() == 2);
  CHECK(requests[1].header("X-Chroom-Delivery") == "evt-1");
  CHECK(requests[1].attempt() == 1);
  CHECK(dispatcher.stats("app").attempts == 3); // counters carried over
  CHECK(old_rx.count() == 1);
}

TEST_CASE("webhook: set_endpoint refuses unusable endpoints; enqueue refuses invalid events") {
  log_capture log;
  webhook_dispatcher dispatcher(1, log.function());
  webhook_endpoint endpoint = endpoint_for("http://user:pw@127.0.0.1:1/");
  CHECK_FALSE(dispatcher.set_endpoint("app", endpoint));
  CHECK(log.count("app app: endpoint refused: the URL has user:password@") == 1);
  endpoint = endpoint_for("https://127.0.0.1:1/");
  endpoint.ca_file = "/nonexistent/ca.pem";
  CHECK_FALSE(dispatcher.set_endpoint("app", endpoint));
  CHECK(log.count("ca_file /nonexistent/ca.pem") == 1);
  CHECK_FALSE(dispatcher.enqueue("app", event_number(1)));

  refusing_port dead;
  REQUIRE(dispatcher.set_endpoint("app", endpoint_for(dead.url())));
  CHECK_FALSE(dispatcher.enqueue("app", webhook_event{"", "room.started", "{}"}));
  CHECK_FALSE(dispatcher.enqueue("app", webhook_event{"evt-1", "", "{}"}));
  CHECK_FALSE(dispatcher.enqueue("app", webhook_event{"evt-1\r\nX-Evil: 1", "room.started", "{}"}));
  CHECK_FALSE(dispatcher.enqueue("app", webhook_event{"evt 1", "room.started", "{}"}));
  CHECK_FALSE(
    dispatcher.enqueue("app", webhook_event{std::string(201, 'a'), "room.started", "{}"}));
  CHECK_FALSE(dispatcher.enqueue(
    "app", webhook_event{"evt-1", "room.started",
                         std::string(chroom::apps::webhook_max_body_bytes + 1, ' ')}));
  CHECK(log.count("event refused") == 6);
  CHECK(dispatcher.stats("app").enqueued == 0);
  CHECK(dispatcher.stats("app").dropped == 0);
}

TEST_CASE(
  "webhook: the destructor interrupts a request in flight instead of waiting for its timeout") {
  receiver rx([](receiver::call c) { c.rx.hold(); });
  log_capture log;
  std::optional<webhook_dispatcher> dispatcher(std::in_place, 2, log.function());
  REQUIRE(dispatcher->set_endpoint("app", endpoint_for(rx.url()))); // 20 s request budget
  REQUIRE(dispatcher->enqueue("app", event_number(0)));
  REQUIRE(dispatcher->enqueue("app", event_number(1)));
  REQUIRE(eventually([&] { return rx.held() == 1; }));

  const auto start = steady::now();
  dispatcher.reset();
  CHECK(steady::now() - start < 10s); // the receiver holds for 30 s, the budget is 20 s
  CHECK_FALSE(rx.released());
  CHECK(log.count("stopping with 2 undelivered event(s), dropped") == 1);
}

TEST_CASE("webhook: a request is cut at request_timeout even while the receiver keeps sending") {
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());
  SUBCASE("headers that never end: the attempt fails") {
    trickling_receiver rx;
    webhook_endpoint endpoint = endpoint_for(rx.url());
    endpoint.request_timeout = 500ms;
    endpoint.max_attempts = 1;
    REQUIRE(dispatcher.set_endpoint("app", endpoint));
    REQUIRE(dispatcher.enqueue("app", event_number(0)));
    // Without the cut this would take the receiver's 30 s.
    REQUIRE(eventually([&] { return dispatcher.stats("app").given_up == 1; }, 15s));
    CHECK(dispatcher.stats("app").delivered == 0);
    CHECK(eventually([&] {
      return log.count("gave up event evt-0 (room.started) after 1 attempt(s): last: ") == 1;
    }));
  }
  SUBCASE("a 200 whose body never ends: delivered (the status said so), at the budget") {
    receiver rx([](receiver::call c) {
      receiver* rx_ptr = &c.rx;
      const auto start = steady::now();
      c.response.set_chunked_content_provider(
        "application/json", [rx_ptr, start](std::size_t, httplib::DataSink& sink) {
          std::this_thread::sleep_for(20ms);
          if (rx_ptr->released() || steady::now() - start > 30s)
            return false;
          return sink.write(" ", 1);
        });
    });
    webhook_endpoint endpoint = endpoint_for(rx.url());
    endpoint.request_timeout = 500ms;
    REQUIRE(dispatcher.set_endpoint("app", endpoint));
    REQUIRE(dispatcher.enqueue("app", event_number(0)));
    REQUIRE(eventually([&] { return dispatcher.stats("app").delivered == 1; }, 15s));
    CHECK(dispatcher.stats("app").attempts == 1);
  }
}

TEST_CASE(
  "webhook: several threads enqueue for several apps at once; each sender's order is kept") {
  receiver rx;
  webhook_dispatcher dispatcher(3);
  constexpr int apps = 3;
  constexpr int senders = 4;
  constexpr int per_sender = 40;
  for (int a = 0; a < apps; ++a)
    REQUIRE(dispatcher.set_endpoint("app" + std::to_string(a),
                                    endpoint_for(rx.url("/app" + std::to_string(a)))));
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      for (int n = 0; n < per_sender; ++n)
        for (int a = 0; a < apps; ++a)
          if (!dispatcher.enqueue("app" + std::to_string(a),
                                  webhook_event{"s" + std::to_string(s) + "-" + std::to_string(n),
                                                "room.finished", "{}"}))
            ++refused;
    });
  for (auto& thread : threads)
    thread.join();
  CHECK(refused.load() == 0);
  REQUIRE(eventually([&] {
    return dispatcher.totals().delivered == static_cast<std::uint64_t>(apps * senders * per_sender);
  }));

  std::map<std::pair<std::string, std::string>, int> last; // (path, sender) -> last n
  for (const auto& request : rx.requests()) {
    const std::string id = request.header("X-Chroom-Delivery");
    const std::string sender = id.substr(0, id.find('-'));
    const int n = std::atoi(id.substr(id.find('-') + 1).c_str());
    const auto key = std::make_pair(request.target, sender);
    const auto found = last.find(key);
    CHECK((found == last.end() ? -1 : found->second) == n - 1);
    last[key] = n;
  }
  CHECK(last.size() == static_cast<std::size_t>(apps * senders));
}

// --- https ----------------------------------------------------------------------------------

struct evp_pkey_deleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct x509_deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};

// A self-signed certificate for 127.0.0.1 and localhost, valid for a day.
std::unique_ptr<X509, x509_deleter> self_signed(EVP_PKEY* key) {
  std::unique_ptr<X509, x509_deleter> cert(X509_new());
  REQUIRE(cert != nullptr);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 60 * 60);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509_EXTENSION* names =
    X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  REQUIRE(names != nullptr);
  X509_add_ext(cert.get(), names, -1);
  X509_EXTENSION_free(names);
  REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
  return cert;
}

TEST_CASE(
  "webhook: https: delivered when the certificate is trusted (ca_file), refused otherwise") {
  // OpenSSL writes with write(): a peer closing first must not kill the test binary (the
  // daemon ignores SIGPIPE too).
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<EVP_PKEY, evp_pkey_deleter> key(EVP_EC_gen("P-256"));
  REQUIRE(key != nullptr);
  const auto cert = self_signed(key.get());
  namespace fs = std::filesystem;
  const fs::path ca_file =
    fs::temp_directory_path() / ("chroom-webhook-test-" + std::to_string(::getpid()) + ".pem");
  {
    BIO* file = BIO_new_file(ca_file.c_str(), "w");
    REQUIRE(file != nullptr);
    CHECK(PEM_write_bio_X509(file, cert.get()) == 1);
    BIO_free(file);
  }
  struct remove_file {
    fs::path path;
    ~remove_file() {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
  } cleanup{ca_file};

  receiver rx({}, cert.get(), key.get());
  REQUIRE(rx.url().rfind("https://127.0.0.1:", 0) == 0);
  log_capture log;
  webhook_dispatcher dispatcher(2, log.function());

  webhook_endpoint trusted = endpoint_for(rx.url());
  trusted.ca_file = ca_file.string();
  REQUIRE(dispatcher.set_endpoint("trusted", trusted));
  REQUIRE(dispatcher.enqueue("trusted", event_number(1)));
  REQUIRE(eventually([&] { return dispatcher.stats("trusted").delivered == 1; }));
  REQUIRE(rx.count() == 1);
  check_signature(rx.requests()[0]);

  // The system bundle does not know this certificate: no request reaches the receiver.
  webhook_endpoint untrusted = endpoint_for(rx.url());
  untrusted.max_attempts = 2;
  REQUIRE(dispatcher.set_endpoint("untrusted", untrusted));
  REQUIRE(dispatcher.enqueue("untrusted", event_number(2)));
  REQUIRE(eventually([&] { return dispatcher.stats("untrusted").given_up == 1; }));
  CHECK(dispatcher.stats("untrusted").attempts == 2);
  CHECK(rx.count() == 1);
  CAPTURE(log.all());
  CHECK(eventually([&] {
    return log.count("gave up event evt-2 (room.started) after 2 attempt(s): last: SSL") == 1;
  }));
}

} // namespace
