#pragma once

// What clients can make the gateway hold, accounted and bounded: per connection, and for
// the whole peer. A connection charges its account for everything a client can make it
// keep: header lists being decoded, request messages arriving and delivered but not yet
// consumed by their handler, responses queued for a client that does not read, bytes
// waiting for the socket, and nghttp2's own allocations (through a counting allocator).
// The connection enforces the budget (grpc_connection.cpp): it stops the calls that hold
// the most, and closes the connection when that is not enough.

#include <atomic>
#include <cstddef>

namespace chroom::transport {

/// The peer-wide budget, shared by every connection of a gateway (all of them run on the
/// middleman's I/O thread; the gauge is read from the metrics thread, hence atomic).
class peer_memory_budget {
public:
  /// @param limit bytes all connections together may hold.
  explicit peer_memory_budget(size_t limit) : limit_(limit) {}

  void add(size_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  void remove(size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t limit() const { return limit_; }
  bool exceeded() const { return used() > limit_; }

private:
  std::atomic<size_t> used_{0};
  size_t limit_;
};

/// A connection holding no more than this is never stopped for the peer-wide budget: an
/// attacker filling the peer's budget must not stop the small calls of everyone else. A
/// connection's fixed cost (nghttp2's session, HPACK tables, one frame of output) stays
/// below it. The peer-wide total can therefore exceed its limit by at most this much per
/// connection (64 KiB x 10,000 connections = 640 MiB with the defaults).
inline constexpr size_t connection_memory_floor = 64u << 10;

/// What a connection draws from the peer-wide budget at a time. The shared counter is
/// touched when a connection's holdings cross a quantum rather than at every allocation
/// (nghttp2 allocates a dozen times per call: an atomic add each cost ~0.2 us of a 6 us
/// Echo). The peer-wide figure is what connections drew: at most two quanta per connection
/// above what they hold, well inside connection_memory_floor.
inline constexpr size_t peer_draw_quantum = 16u << 10;

/// One connection's account.
class connection_memory {
public:
  /// @param limit bytes this connection may hold.
  /// @param peer the peer-wide budget it draws from, or null (no peer-wide bound).
  connection_memory(size_t limit, peer_memory_budget* peer) : limit_(limit), peer_(peer) {}
  ~connection_memory() {
    if (peer_ != nullptr)
      peer_->remove(drawn_);
  }
  connection_memory(const connection_memory&) = delete;
  connection_memory& operator=(const connection_memory&) = delete;

  void charge(size_t bytes) {
    held_ += bytes;
    if (peer_ != nullptr && held_ > drawn_) {
      auto needed = round_up(held_);
      peer_->add(needed - drawn_);
      drawn_ = needed;
    }
  }
  void release(size_t bytes) {
    held_ -= bytes;
    // Given back only past a quantum of slack, so a connection going up and down by one
    // call's bytes does not touch the shared counter every time.
    if (peer_ != nullptr && drawn_ > held_ + 2 * peer_draw_quantum) {
      auto keep = round_up(held_) + peer_draw_quantum;
      peer_->remove(drawn_ - keep);
      drawn_ = keep;
    }
  }

  size_t held() const { return held_; }
  size_t limit() const { return limit_; }

  /// Over this connection's own limit.
  bool over_connection_limit() const { return held_ > limit_; }
  /// Holding more than the floor while the peer as a whole is over its limit.
  bool over_peer_limit() const {
    return peer_ != nullptr && held_ > connection_memory_floor && peer_->exceeded();
  }
  bool over_budget() const { return over_connection_limit() || over_peer_limit(); }

private:
  static size_t round_up(size_t bytes) {
    return (bytes + peer_draw_quantum - 1) / peer_draw_quantum * peer_draw_quantum;
  }

  size_t held_ = 0;
  /// What this connection drew from the peer's budget (a multiple of the quantum).
  size_t drawn_ = 0;
  size_t limit_;
  peer_memory_budget* peer_;
};

} // namespace chroom::transport
