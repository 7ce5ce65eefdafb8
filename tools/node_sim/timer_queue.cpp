#include "tools/node_sim/timer_queue.hpp"

namespace chroom::node_sim {

timer_queue::timer_queue(handler on_fire, sim_clock::duration slack)
    : on_fire_(std::move(on_fire)), slack_(slack), thread_([this] { run(); }) {}

timer_queue::~timer_queue() {
  stop();
}

void timer_queue::schedule(const timer_event& event) {
  bool earliest = false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_)
      return;
    earliest = heap_.empty() || event.when < heap_.top().when;
    heap_.push(event);
  }
  // Only a new earliest deadline changes how long the thread must sleep.
  if (earliest)
    wake_.notify_one();
}

void timer_queue::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
    thread_.join();
}

void timer_queue::run() {
  std::vector<timer_event> due;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (heap_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto now = sim_clock::now();
    // A copy: wait_until keeps reading its deadline while the lock is released, and a
    // schedule() meanwhile may reallocate the heap under a reference to top().
    const sim_clock::time_point next = heap_.top().when;
    if (next > now) {
      wake_.wait_until(lock, next);
      continue;
    }
    // Take everything due in one go and fire it unlocked: handlers schedule new timers.
    due.clear();
    const auto horizon = now + slack_;
    while (!heap_.empty() && heap_.top().when <= horizon) {
      due.push_back(heap_.top());
      heap_.pop();
    }
    lock.unlock();
    for (const auto& event : due)
      on_fire_(event);
    lock.lock();
  }
}

} // namespace chroom::node_sim
