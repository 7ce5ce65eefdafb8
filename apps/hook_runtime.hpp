#pragma once

// The hook runtime: an application's Lua 5.4 script, called by the orchestrator at fixed
// points (before a participant is placed, when rooms open and close, when participants come
// and go). Scripts are untrusted: they run in a sandbox (no files, processes, network or
// modules) and every call runs under limits of instructions, memory and wall time. A script
// that errors or exceeds a limit fails that call with a reason; the process keeps running and
// the runtime stays usable for the next call. The script API is documented in docs/hooks.md.
//
// One hook_runtime is used by one thread at a time (the app's policy actor); distinct runtimes
// share nothing and may run on different threads at once.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chroom::apps {

// Limits of one call (and of loading the script: compiling it and running its top level).
struct hook_limits {
  // VM instructions per call, counted every 1000 instructions. A routing decision over a few
  // dozen candidates takes thousands; a million is a few milliseconds of CPU, so a runaway
  // loop costs one call that much and no more. Library work whose cost grows with its input
  // (pattern matching, shifting table elements) counts too: one step, one instruction.
  std::uint64_t max_instructions = 1'000'000;
  // Bytes held by the whole Lua state (the libraries take about 16 KiB, the request of a
  // join with 50 candidates about 15 KiB). Room for lookup tables built at the top level,
  // while a thousand apps with a script each stay under 8 GiB in the worst case.
  std::size_t max_memory_bytes = 8 * 1024 * 1024;
  // Wall time per call. before_allocation sits on a client's join path; the instruction
  // limit stops loops, this stops slow library calls on large strings and a descheduled
  // thread. Checked every 1000 instructions, at every function return and at every
  // allocation of 16 KiB or more.
  std::chrono::milliseconds max_time{50};
  // print() lines forwarded to the log per call; more are dropped (a loop of prints would
  // otherwise flood the orchestrator's log). Lines are cut at 1 KiB.
  std::uint32_t max_log_lines = 20;
};

enum class hook_point : std::uint8_t {
  before_allocation,
  room_created,
  room_closed,
  participant_joined,
  participant_left,
};
inline constexpr std::size_t hook_point_count = 5;

// The name of the script's global function for the point: "before_allocation",
// "on_room_created", "on_room_closed", "on_participant_joined", "on_participant_left".
std::string_view to_string(hook_point point);
// The inverse of to_string (app specs name hooks by their function name).
std::optional<hook_point> hook_point_from_string(std::string_view name);

enum class hook_failure : std::uint8_t {
  none,
  compile_error,     // the script does not compile (loading only)
  runtime_error,     // the script raised an error
  instruction_limit, // more than max_instructions
  memory_limit,      // the Lua state would exceed max_memory_bytes
  time_limit,        // more than max_time
  bad_result,        // before_allocation returned something malformed
};
std::string_view to_string(hook_failure failure);
// The three limits: after one of them the runtime recreates the Lua state for the next call.
bool is_limit(hook_failure failure);

struct hook_candidate {
  std::string node_id;
  std::string region;
  std::string country;
  double rtt_ms = 0;
  double load = 0; // 0..1
};

struct allocation_hook_input {
  std::string app_id;
  std::string room_id;
  std::string client_id;
  std::string role; // "" when the client asked for none (the app's default applies)
  std::vector<std::string> required_features;
  std::string client_country; // "" when unknown
  double latitude = 0;
  double longitude = 0;
  bool has_point = false;                 // latitude/longitude are known
  std::uint32_t room_participants = 0;    // in the room before this one
  std::vector<std::string> room_roles;    // roles of the participants already in
  std::vector<hook_candidate> candidates; // best first
};

struct allocation_hook_result {
  bool deny = false; // veto the allocation
  std::string deny_reason;
  std::optional<std::string> role;               // set or override the role
  std::optional<std::vector<std::string>> nodes; // candidate ids to use, preferred first
};

struct room_event {
  hook_point point = hook_point::room_created; // any point but before_allocation
  std::string app_id;
  std::string room_id;
  std::string client_id; // the participant (joined/left); "" for room events without one
  std::string role;
  std::string node_id;
  std::int64_t unix_ms = 0;
  std::uint32_t participants = 0; // in the room after the event
};

// What a call gave. On failure `value` is the default (no change) and `message` says why.
template <class T> struct hook_outcome {
  hook_failure failure = hook_failure::none;
  std::string message;
  T value{};
  bool ok() const { return failure == hook_failure::none; }
};

class hook_runtime {
public:
  using log_function = std::function<void(std::string_view)>;

  // Compiles `script` (source text only: binary chunks are refused) and runs its top level
  // under `limits`. On failure returns nullptr, sets `error` (the Lua message, with the line,
  // or the limit exceeded) and, when given, `failure`. `chunk_name` names the script in error
  // messages ("hooks.lua:3: ..."). `log` receives what the script prints; it must not throw
  // (what it throws is dropped) nor call back into this runtime.
  static std::unique_ptr<hook_runtime> load(std::string_view script, std::string_view chunk_name,
                                            hook_limits limits, log_function log,
                                            std::string& error, hook_failure* failure = nullptr);

  ~hook_runtime();
  hook_runtime(const hook_runtime&) = delete;
  hook_runtime& operator=(const hook_runtime&) = delete;

  // The script's top level defined the point's global function. Calls at points it does not
  // define are no-ops: they succeed without entering Lua and are not counted.
  bool defines(hook_point point) const;

  // Calls before_allocation(req). The value says what to change; see docs/hooks.md.
  hook_outcome<allocation_hook_result> before_allocation(const allocation_hook_input& input);
  // Calls the event's function (on_room_created, ...); what it returns is ignored.
  // `event.point` must not be before_allocation (runtime_error without calling the script).
  hook_outcome<std::monostate> on_event(const room_event& event);

  std::uint64_t calls() const;    // calls that entered the script
  std::uint64_t failures() const; // those of them that failed
  std::uint64_t reloads() const;  // Lua states recreated after a limit failure
  // Bytes held by the Lua state now; 0 after a limit failure until the next call reloads.
  std::size_t memory_used() const;
  const hook_limits& limits() const;

private:
  struct impl;
  explicit hook_runtime(std::unique_ptr<impl> state);
  std::unique_ptr<impl> impl_;
};

} // namespace chroom::apps
