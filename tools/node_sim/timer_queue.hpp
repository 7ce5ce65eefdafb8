// One thread that fires the fleet's timers (Stats ticks, reconnect back-offs, thaws,
// delayed acks) in deadline order. 10,000 nodes reporting every second are 10,000 timers
// a second: a binary heap and one thread handle that with a few percent of a core, where
// a thread or a grpc::Alarm per node would cost far more.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "tools/node_sim/node_model.hpp"

namespace chroom::node_sim {

enum class timer_kind : std::uint8_t {
  stats_tick,     // send Stats (and participants' departures) if the tick is current
  reconnect,      // open a new stream after a back-off, a flap or a restart
  thaw,           // end a timed freeze
  delayed_replies // send acks held back by slow-acks
};

struct timer_event {
  sim_clock::time_point when;
  std::uint32_t node = 0;
  timer_kind kind = timer_kind::stats_tick;
  // Compared with the node's current token of that kind: a stale timer (the stream it was
  // for has gone, the freeze was lifted by hand) does nothing when it fires.
  std::uint64_t token = 0;
};

class timer_queue {
public:
  using handler = std::function<void(const timer_event&)>;

  // Starts the thread; `on_fire` runs on it, never concurrently with itself. Timers due
  // within `slack` of the earliest one fire with it, early: one wake-up per burst instead
  // of one per timer (see the constant in fleet.cpp for the figures).
  timer_queue(handler on_fire, sim_clock::duration slack);
  ~timer_queue();
  timer_queue(const timer_queue&) = delete;
  timer_queue& operator=(const timer_queue&) = delete;

  void schedule(const timer_event& event);
  // Fires nothing more; returns once the thread has ended. Pending timers are dropped.
  void stop();

private:
  struct later {
    bool operator()(const timer_event& a, const timer_event& b) const { return a.when > b.when; }
  };
  void run();

  handler on_fire_;
  sim_clock::duration slack_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::priority_queue<timer_event, std::vector<timer_event>, later> heap_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace chroom::node_sim
