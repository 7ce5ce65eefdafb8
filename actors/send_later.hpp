#pragma once

// Timers: messages an actor schedules for itself.

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <utility>

namespace chroom {

/// Delivers `xs` to `self` after `delay`. Anonymous on purpose: a scheduled message that
/// names its sender holds a strong reference to it, and with CAF 0.17 such a message
/// still pending when a broker terminates keeps the broker, and everything its state
/// referenced, alive for good (LeakSanitizer shows the cycle).
template <class Self, class Rep, class Period, class... Ts>
void send_later(Self* self, std::chrono::duration<Rep, Period> delay, Ts&&... xs) {
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), delay, std::forward<Ts>(xs)...);
}

/// Delivers `xs` to `self` once the messages already in its mailbox are handled.
/// Anonymous for the same reason as send_later.
template <class Self, class... Ts> void send_self(Self* self, Ts&&... xs) {
  caf::anon_send(caf::actor_cast<caf::actor>(self), std::forward<Ts>(xs)...);
}

} // namespace chroom
