#pragma once

// An actor that throws ends; without this it ends silently (CAF 0.17 turns the exception
// into an exit reason). This logs what was thrown, by whom, before the actor goes.

#include <caf/error.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/sec.hpp>
#include <spdlog/spdlog.h>

#include <exception>
#include <string>

namespace chroom {

inline void log_exceptions(caf::scheduled_actor* self, std::string what) {
  self->set_exception_handler(
    [what = std::move(what)](caf::scheduled_actor*, std::exception_ptr& thrown) -> caf::error {
      try {
        std::rethrow_exception(thrown);
      } catch (const std::exception& e) {
        spdlog::error("{} failed: {}", what, e.what());
      } catch (...) {
        spdlog::error("{} failed with an unknown exception", what);
      }
      return caf::make_error(caf::sec::runtime_error, what);
    });
}

} // namespace chroom
