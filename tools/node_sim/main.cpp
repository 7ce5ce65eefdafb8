// chroom-node-sim: simulates a fleet of media nodes against an orchestrator. See
// docs/node-sim.md. Threads: main (run loop: duration, status lines, scheduled faults),
// one reading commands from stdin, one waiting for SIGINT/SIGTERM, the fleet's timer
// thread, and grpc's own threads.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include <absl/synchronization/mutex.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "tools/node_sim/fleet.hpp"
#include "tools/node_sim/options.hpp"

namespace chroom::node_sim {

namespace {

using std::chrono::milliseconds;

// How long quit waits for the orchestrator to end the streams after WritesDone (half of
// it), then after cancelling them (the other half).
constexpr milliseconds shutdown_grace{6000};
// How often the stdin and signal threads look up from their wait to see whether the
// process is ending: the longest a clean exit waits for them.
constexpr int poll_period_ms = 200;

// Replies and status lines: one whole line per write, flushed, so that a test reading
// our stdout line by line never sees two replies interleaved.
void print_line(std::string_view line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Why the run loop should stop; the first reason wins.
class stop_request {
public:
  void request(const char* why, bool reply_ok) {
    {
      std::lock_guard lock(mutex_);
      if (why_ != nullptr)
        return;
      why_ = why;
      reply_ok_ = reply_ok;
    }
    changed_.notify_all();
  }
  // Waits up to `timeout`; true when a stop was requested.
  bool wait_for(milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return why_ != nullptr; });
  }
  bool requested() {
    std::lock_guard lock(mutex_);
    return why_ != nullptr;
  }
  const char* why() {
    std::lock_guard lock(mutex_);
    return why_;
  }
  bool reply_ok() {
    std::lock_guard lock(mutex_);
    return reply_ok_;
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  const char* why_ = nullptr;
  bool reply_ok_ = false;
};

// Reads commands from stdin until the process ends. EOF only stops reading: a test that
// gives no stdin (or closes it) still gets a fleet that runs for --duration-s.
void read_commands(fleet& nodes, stop_request& stop, const std::atomic<bool>& ending) {
  std::string buffer;
  char chunk[4096];
  while (!ending.load()) {
    pollfd fd{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&fd, 1, poll_period_ms);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready < 0)
      return;
    if (ready == 0)
      continue;
    const ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (got <= 0) {
      spdlog::debug("stdin closed; no more commands");
      return;
    }
    buffer.append(chunk, static_cast<std::size_t>(got));
    for (auto end = buffer.find('\n'); end != std::string::npos; end = buffer.find('\n')) {
      std::string line = buffer.substr(0, end);
      buffer.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos)
        continue;
      if (line == "quit" || line.starts_with("quit ")) {
        stop.request("quit command", /*reply_ok=*/true);
        return;
      }
      if (stop.requested()) {
        print_line("error shutting down");
        continue;
      }
      print_line(nodes.execute(line));
    }
  }
}

void wait_for_signals(stop_request& stop, const std::atomic<bool>& ending) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const timespec period{0, poll_period_ms * 1'000'000L};
  while (!ending.load()) {
    const int signal = sigtimedwait(&set, nullptr, &period);
    if (signal == SIGINT || signal == SIGTERM) {
      spdlog::info("{}: shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
      stop.request(signal == SIGINT ? "SIGINT" : "SIGTERM", /*reply_ok=*/false);
    }
  }
}

std::string default_cities_file() {
  return (std::filesystem::path(CHROOM_DATA_DIR) / "cities.csv").string();
}

int run(const options& opts) {
  city_table cities;
  if (!opts.cities_file.empty()) {
    if (auto error = cities.load(opts.cities_file); !error.empty()) {
      spdlog::error("--cities: {}", error);
      return 1;
    }
  } else if (auto error = cities.load(default_cities_file()); !error.empty()) {
    // The binary was moved away from its source tree: still usable, with fewer places.
    spdlog::warn("{}; using {} built-in cities (give --cities FILE)", error, 14);
    cities.load_fallback();
  }
  spdlog::debug("{} cities", cities.size());

  std::unique_ptr<fleet> nodes;
  try {
    nodes = std::make_unique<fleet>(opts.fleet, cities);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  nodes->start();

  stop_request stop;
  std::atomic<bool> ending{false};
  std::thread signals([&] { wait_for_signals(stop, ending); });
  std::thread commands([&] { read_commands(*nodes, stop, ending); });

  const auto started = std::chrono::steady_clock::now();
  auto next_status = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(opts.status_interval_s));
  auto seconds = [](double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
  };
  auto next_crash = started + seconds(opts.crash_every_s);
  auto next_freeze = started + seconds(opts.freeze_every_s);
  // The run loop wakes at least this often to check the clock-driven duties.
  constexpr milliseconds tick{100};
  while (!stop.wait_for(tick)) {
    const auto now = std::chrono::steady_clock::now();
    if (opts.duration_s > 0 && now - started >= seconds(opts.duration_s)) {
      spdlog::info("--duration-s {} reached", opts.duration_s);
      stop.request("duration", /*reply_ok=*/false);
      break;
    }
    if (opts.status_interval_s > 0 && now >= next_status) {
      print_line(nodes->status_json());
      next_status += seconds(opts.status_interval_s);
    }
    if (opts.crash_every_s > 0 && now >= next_crash) {
      auto id = nodes->crash_random_for(
        std::chrono::duration_cast<milliseconds>(seconds(opts.crash_down_s)));
      if (!id.empty())
        spdlog::info("{}: scheduled crash for {} s", id, opts.crash_down_s);
      next_crash += seconds(opts.crash_every_s);
    }
    if (opts.freeze_every_s > 0 && now >= next_freeze) {
      auto id =
        nodes->freeze_random_for(std::chrono::duration_cast<milliseconds>(seconds(opts.freeze_s)));
      if (!id.empty())
        spdlog::info("{}: scheduled freeze for {} s", id, opts.freeze_s);
      next_freeze += seconds(opts.freeze_every_s);
    }
  }

  spdlog::info("stopping ({})", stop.why());
  const bool clean = nodes->shutdown(shutdown_grace);
  if (opts.status_interval_s > 0)
    print_line(nodes->status_json());
  if (stop.reply_ok())
    print_line(clean ? "ok quit" : "error streams did not end");
  ending.store(true);
  signals.join();
  commands.join();
  if (!clean) {
    // Reactors are still live inside grpc: running destructors now would free them under
    // grpc's feet. Leave without them.
    spdlog::default_logger()->flush();
    std::fflush(stdout);
    std::_Exit(1);
  }
  nodes.reset();
  return 0;
}

} // namespace

} // namespace chroom::node_sim

int main(int argc, char** argv) {
  using namespace chroom::node_sim;
  // Before any thread exists (grpc starts its own), so that every thread inherits the mask
  // and SIGINT/SIGTERM reach only the thread that waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A test that stops reading our stdout must not kill us with SIGPIPE mid-shutdown.
  signal(SIGPIPE, SIG_IGN);
  // Debian builds abseil (and grpc on it) without NDEBUG, so every grpc-internal mutex
  // acquisition feeds absl's lock-order graph: 7% of the simulator's CPU at 10,000 nodes.
  // grpc's locking is not ours to debug here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto parsed = parse_options(argc, argv);
  if (auto* text = std::get_if<print_and_exit>(&parsed)) {
    std::fputs(text->text.c_str(), stdout);
    return 0;
  }
  if (auto* error = std::get_if<usage_error>(&parsed)) {
    std::fprintf(stderr, "chroom-node-sim: %s (see --help)\n", error->message.c_str());
    return 2;
  }
  const auto& opts = std::get<options>(parsed);

  auto logger = spdlog::stderr_color_mt("node-sim");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(opts.log_level));
  if (opts.fleet.parameters.secret_key.empty() && opts.fleet.parameters.credential.empty()) {
    spdlog::warn("neither --secret-key nor --credential: nodes present an empty credential");
  }
  return run(opts);
}
