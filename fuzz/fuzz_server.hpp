#pragma once

// A server-side grpc_connection driven by fuzz input, shared by the raw-bytes and the
// frame-sequence targets: a listener that answers calls the way the gateway would (what it
// does is chosen by the method name, so one input reaches echo, streaming, errors, cancels
// and oversized responses), and checks of what the connection promises after every step.
//
// Input header (4 bytes, both targets; make_seeds writes 00 00 00 00 = defaults):
//   [0] limits: bits 0-1 max message bytes, 2-3 max header list, 4-5 connection memory,
//       6-7 concurrent streams (0 = the defaults of connection_limits)
//   [1] bit 0: answers wait for the next server turn (as through an actor hop), else they
//       are given inside the listener's callbacks; bit 1: a small peer-wide budget
//   [2] the largest piece client bytes are cut into (0: whole)
//   [3] seed of the piece sizes and of the output budgets

#include "fuzz/fuzz_check.hpp"
#include "transport/grpc_connection.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace chroom::fuzz {

/// The gateway logs what clients do wrong; a fuzzer does nothing else. With
/// CHROOM_FUZZ_TRACE set (reproducing an input), the logs and the listener's events go to
/// stderr instead.
inline bool tracing() {
  static const bool trace = std::getenv("CHROOM_FUZZ_TRACE") != nullptr;
  return trace;
}

inline void quiet_logs() {
  spdlog::set_level(tracing() ? spdlog::level::debug : spdlog::level::off);
}

struct server_options {
  transport::connection_limits limits;
  bool deferred_answers = false;
  bool small_peer_budget = false;
  size_t max_piece = 0;
  uint32_t seed = 0;
};

inline server_options read_server_options(byte_reader& in) {
  server_options options;
  auto limits = in.u8();
  auto mode = in.u8();
  static constexpr size_t message_bytes[] = {4u << 20, 1000, 64, 16u << 10};
  static constexpr uint32_t header_bytes[] = {16u << 10, 1024, 200, 64u << 10};
  static constexpr size_t memory_bytes[] = {32u << 20, 64u << 10, 256u << 10, 8u << 10};
  static constexpr uint32_t streams[] = {100, 1, 4, 10};
  options.limits.max_message_bytes = message_bytes[limits & 3];
  options.limits.max_header_list_bytes = header_bytes[(limits >> 2) & 3];
  options.limits.max_connection_memory_bytes = memory_bytes[(limits >> 4) & 3];
  options.limits.max_concurrent_streams = streams[(limits >> 6) & 3];
  options.deferred_answers = (mode & 1) != 0;
  options.small_peer_budget = (mode & 2) != 0;
  options.max_piece = in.u8();
  options.seed = in.u8();
  return options;
}

/// Answers calls by method name (the last segment of the path):
///   Echo (and unknown names)  every message back, consumed at once; OK at half-close
///   Unary     the last message back at half-close, nothing consumed (as the gateway)
///   Stream    three responses at half-close, trailers with metadata
///   Fail      an error at once (trailers-only; JSON: an error body)
///   Cancel    RST_STREAM at the first message
///   Hold      nothing, ever (the call stays open, its bytes held)
///   Headers   initial metadata (valid and invalid entries), then as Echo
///   Big       a response over max_message_bytes
/// and checks the listener contract of grpc_connection.hpp.
class fuzz_listener final : public transport::grpc_connection_listener {
public:
  fuzz_listener(const transport::connection_limits& limits, bool deferred)
      : limits_(limits), deferred_(deferred) {}

  transport::grpc_connection* connection = nullptr;

  /// Gives the answers that wait (deferred mode).
  void run_deferred() {
    auto actions = std::move(deferred_actions_);
    deferred_actions_.clear();
    for (auto& action : actions)
      action();
  }

  /// Streams started and not closed, as the listener saw them.
  const std::set<int32_t>& open_calls() const { return open_; }

  void on_call_start(int32_t id, transport::call_head&& head) override {
    trace("start", id, head.path);
    FUZZ_CHECK(id > 0 && id % 2 == 1, "call on stream " + std::to_string(id));
    FUZZ_CHECK(!calls_.contains(id), "second on_call_start for " + std::to_string(id));
    FUZZ_CHECK(head.path.size() <= limits_.max_header_list_bytes, head.path);
    auto& call = calls_[id];
    call.behaviour = behaviour_of(head.path);
    call.json = head.encoding == transport::call_encoding::json;
    open_.insert(id);
    if (call.behaviour == behaviour::fail)
      act([this, id] {
        connection->finish(id, transport::make_status(transport::grpc_code::not_found,
                                                      "no such thing: fuzz\n\"quoted\""));
      });
  }

  void on_call_message(int32_t id, std::string&& message) override {
    trace("message", id, std::to_string(message.size()) + " bytes");
    auto it = calls_.find(id);
    FUZZ_CHECK(it != calls_.end() && open_.contains(id) && !it->second.half_closed,
               "message outside a call on " + std::to_string(id));
    FUZZ_CHECK(message.size() <= limits_.max_message_bytes,
               "message of " + std::to_string(message.size()) + " bytes delivered");
    auto& call = it->second;
    FUZZ_CHECK(!call.json || call.messages == 0, "a second JSON body");
    ++call.messages;
    switch (call.behaviour) {
      case behaviour::echo:
      case behaviour::headers:
        act([this, id, message] {
          if (calls_[id].behaviour == behaviour::headers)
            connection->send_headers(id, {{"x-fuzz", "1"},
                                          {"x-fuzz-bin", std::string{"\0\1\2", 3}},
                                          {"Bad Key", "x"},
                                          {"x-bad-value", "\n"}});
          connection->send_message(id, std::string{message});
          connection->consume(id, 1);
        });
        break;
      case behaviour::unary:
        call.last = std::move(message);
        break;
      case behaviour::cancel:
        act([this, id] { connection->cancel(id); });
        break;
      case behaviour::big:
        act([this, id] {
          connection->send_message(id, std::string(limits_.max_message_bytes + 1, 'x'));
        });
        break;
      case behaviour::stream:
      case behaviour::fail:
      case behaviour::hold:
        break;
    }
  }

  void on_call_half_close(int32_t id) override {
    trace("half close", id, "");
    auto it = calls_.find(id);
    FUZZ_CHECK(it != calls_.end() && open_.contains(id) && !it->second.half_closed,
               "unexpected half close on " + std::to_string(id));
    auto& call = it->second;
    call.half_closed = true;
    switch (call.behaviour) {
      case behaviour::echo:
      case behaviour::headers:
      case behaviour::big:
        act([this, id] { connection->finish(id, transport::grpc_status::ok()); });
        break;
      case behaviour::unary:
        act([this, id, last = call.last] {
          connection->send_message(id, std::string{last});
          connection->finish(id, transport::grpc_status::ok());
        });
        break;
      case behaviour::stream:
        act([this, id] {
          for (int i = 0; i < 3; ++i)
            connection->send_message(id, std::string(static_cast<size_t>(i) * 700, 's'));
          auto status = transport::grpc_status::ok();
          status.trailers = {{"x-trailer", "done"}, {"x-trailer-bin", std::string{"\xff", 1}}};
          connection->finish(id, status);
        });
        break;
      case behaviour::fail:
      case behaviour::cancel:
      case behaviour::hold:
        break;
    }
  }

  void on_call_closed(int32_t id) override {
    trace("closed", id, "");
    FUZZ_CHECK(calls_.contains(id) && open_.erase(id) == 1,
               "unexpected close of " + std::to_string(id));
  }

private:
  enum class behaviour { echo, unary, stream, fail, cancel, hold, headers, big };

  struct call_state {
    behaviour behaviour = behaviour::echo;
    bool json = false;
    bool half_closed = false;
    size_t messages = 0;
    std::string last;
  };

  static void trace(std::string_view what, int32_t id, std::string_view detail) {
    if (tracing())
      std::fprintf(stderr, "listener: %.*s %d %.*s\n", static_cast<int>(what.size()), what.data(),
                   id, static_cast<int>(detail.size()), detail.data());
  }

  static behaviour behaviour_of(std::string_view path) {
    auto method = path.substr(std::min(path.size(), path.rfind('/') + 1));
    if (method == "Unary")
      return behaviour::unary;
    if (method == "Stream")
      return behaviour::stream;
    if (method == "Fail")
      return behaviour::fail;
    if (method == "Cancel")
      return behaviour::cancel;
    if (method == "Hold")
      return behaviour::hold;
    if (method == "Headers")
      return behaviour::headers;
    if (method == "Big")
      return behaviour::big;
    return behaviour::echo;
  }

  void act(std::function<void()> action) {
    if (deferred_)
      deferred_actions_.push_back(std::move(action));
    else
      action();
  }

  transport::connection_limits limits_;
  bool deferred_;
  std::map<int32_t, call_state> calls_; // every call ever started (ids are never reused)
  std::set<int32_t> open_;
  std::vector<std::function<void()>> deferred_actions_;
};

/// The connection, its listener and the checks run after every step.
class fuzz_server {
public:
  explicit fuzz_server(const server_options& options)
      : options_(options), peer_(options.small_peer_budget ? 96u << 10 : size_t{1} << 40),
        listener_(options.limits, options.deferred_answers),
        connection_(
          std::make_unique<transport::grpc_connection>(listener_, options.limits, &peer_)),
        rng_(options.seed * 2654435761u + 1) {
    listener_.connection = connection_.get();
  }

  ~fuzz_server() {
    connection_.reset();
    // Every byte charged was given back: nghttp2's allocations, the calls, the backlog.
    FUZZ_CHECK(peer_.used() == 0, "peer budget holds " + std::to_string(peer_.used()) +
                                    " bytes after the connection ended");
  }

  fuzz_server(const fuzz_server&) = delete;
  fuzz_server& operator=(const fuzz_server&) = delete;

  transport::grpc_connection& connection() { return *connection_; }
  fuzz_listener& listener() { return listener_; }

  /// Client bytes, cut into pieces as the options say; the server answers and writes
  /// (within a budget drawn from the seed) after each piece.
  void feed(std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
      auto take = bytes.size();
      if (options_.max_piece > 0)
        take = std::min<size_t>(bytes.size(), 1 + next_random() % options_.max_piece);
      receive(bytes.first(take));
      bytes = bytes.subspan(take);
      // As the gateway: answers and output after every read.
      turn(budget_choice(next_random()));
    }
  }

  void receive(std::span<const uint8_t> bytes) {
    if (!receiving_)
      return; // the owner stops reading once receive() said the connection is broken
    receiving_ = connection_->receive(bytes);
    if (tracing()) {
      std::fprintf(stderr, "server: received %zu bytes%s:", bytes.size(),
                   receiving_ ? "" : ", connection broken");
      for (size_t i = 0; i < std::min<size_t>(bytes.size(), 64); ++i)
        std::fprintf(stderr, " %02x", bytes[i]);
      std::fprintf(stderr, "%s\n", bytes.size() > 64 ? " ..." : "");
    }
    if (receiving_) {
      // Over its own budget a connection stops calls, then itself: once receive() has
      // returned, what it accounts is within its limit, or it is being closed.
      FUZZ_CHECK(connection_->memory_held() <= options_.limits.max_connection_memory_bytes,
                 "connection holds " + std::to_string(connection_->memory_held()) +
                   " bytes, limit " + std::to_string(options_.limits.max_connection_memory_bytes));
    }
    check();
  }

  /// What the owner does between reads: deferred answers, then output within `budget`.
  void turn(size_t budget) {
    listener_.run_deferred();
    std::vector<char> out;
    connection_->produce(out, budget);
    check_output(out);
    check();
  }

  /// Output until the connection has nothing more to say (bounded).
  void drain() {
    for (int round = 0; round < 64 && connection_->wants_write(); ++round)
      turn(SIZE_MAX);
    listener_.run_deferred();
  }

  void set_socket_backlog(size_t bytes) {
    connection_->set_socket_backlog(bytes);
    check();
  }

  static size_t budget_choice(uint32_t value) {
    static constexpr size_t budgets[] = {SIZE_MAX, 1, 100, 16384, 65536};
    return budgets[value % std::size(budgets)];
  }

  uint32_t next_random() {
    // xorshift32: the piece sizes follow from the input's seed byte alone.
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 17;
    rng_ ^= rng_ << 5;
    return rng_;
  }

private:
  void check() {
    auto held = connection_->memory_held();
    FUZZ_CHECK(held < (size_t{1} << 40), "memory accounting wrapped: " + std::to_string(held));
    FUZZ_CHECK(connection_->stream_memory_held() <= held,
               "streams hold " + std::to_string(connection_->stream_memory_held()) +
                 " of a connection total of " + std::to_string(held));
    // The connection draws from the peer in whole quanta, at most two above what it holds.
    constexpr auto quantum = chroom::transport::peer_draw_quantum;
    FUZZ_CHECK(peer_.used() >= held && peer_.used() <= held + 2 * quantum &&
                 peer_.used() % quantum == 0,
               "peer budget (" + std::to_string(peer_.used()) + ") and connection (" +
                 std::to_string(held) + ") disagree");
    auto calls = connection_->open_calls();
    std::set<int32_t> open(calls.begin(), calls.end());
    FUZZ_CHECK(open == listener_.open_calls(), "connection has " + std::to_string(open.size()) +
                                                 " open calls, listener " +
                                                 std::to_string(listener_.open_calls().size()));
    FUZZ_CHECK(calls.size() <= connection_->open_streams(), "more calls than streams");
  }

  void check_output(const std::vector<char>& out) {
    if (out.empty())
      return;
    if (!frames_started_) {
      frames_started_ = true;
      // An HTTP/1.x client gets one plain response and nothing else.
      if (out.size() >= 9 && std::string_view{out.data(), 9} == "HTTP/1.1 ") {
        http1_ = true;
        return;
      }
    }
    FUZZ_CHECK(!http1_, "output after the HTTP/1.1 response");
    // produce() emits whole HTTP/2 frames.
    std::string_view rest{out.data(), out.size()};
    while (!rest.empty()) {
      FUZZ_CHECK(rest.size() >= 9, "output ends inside a frame header");
      auto u8 = [&](size_t i) { return size_t{static_cast<uint8_t>(rest[i])}; };
      size_t length = (u8(0) << 16) | (u8(1) << 8) | u8(2);
      FUZZ_CHECK(rest.size() >= 9 + length, "output ends inside a frame");
      rest.remove_prefix(9 + length);
    }
  }

  server_options options_;
  transport::peer_memory_budget peer_;
  fuzz_listener listener_;
  std::unique_ptr<transport::grpc_connection> connection_;
  uint32_t rng_;
  bool receiving_ = true;
  bool frames_started_ = false;
  bool http1_ = false;
};

} // namespace chroom::fuzz
