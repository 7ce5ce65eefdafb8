// The Lua hook runtime (see hook_runtime.hpp and docs/hooks.md).
//
// Two rules shape this file, both because Lua (built as C) reports errors with longjmp:
// - No C++ exception may cross a Lua frame, and no C++ object with a destructor may be alive in
//   a frame that a Lua error jumps over. Code that Lua calls (the allocator, the hook, the
//   library functions below) keeps only trivially destructible locals around Lua API calls
//   and catches what C++ code in it could throw.
// - Outside a protected call a Lua error calls the panic function, which aborts. Every Lua API
//   call that can raise (allocating, running metamethods) is made inside lua_pcall: the
//   runtime pushes a C function and a light userdata context (neither allocates) and calls it
//   protected; the C function does the work.

#include "apps/hook_runtime.hpp"

#include <lua.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <utility>

namespace chroom::apps {

namespace {

using steady = std::chrono::steady_clock;

// Instructions between two count-hook calls. Lua 5.4 pays for a count hook at every
// instruction whatever the count (plain loops run about twice as slow); calling ours every
// 1000 adds about 1% to that, and a runaway loop is still seen within microseconds.
constexpr int instruction_tick = 1000;
// Count: instruction and time budget. Return: time again after every function, so one
// expensive library call (an upper() of megabytes) is seen right after it returns rather than
// a thousand instructions later.
constexpr int hook_mask = LUA_MASKCOUNT | LUA_MASKRET;
// Error messages and print lines are cut here: a script controls their length.
constexpr std::size_t max_text_bytes = 1024;
// Allocations at least this large check the deadline: a loop concatenating megabyte strings
// runs few instructions but allocates a lot.
constexpr std::size_t timed_allocation_bytes = 16 * 1024;
// string.rep collects garbage before building a result this large that would not fit.
constexpr std::size_t large_result_bytes = 64 * 1024;
// The pattern matcher charges its steps to the instruction budget in batches of this many.
constexpr std::uint32_t match_steps_per_charge = 1024;

constexpr std::array<std::string_view, 4> allowed_roles{"host", "presenter", "participant",
                                                        "viewer"};
constexpr std::string_view default_deny_reason = "denied by the application's hook";

// The accounting of one Lua state, passed to Lua as the allocator's `ud` so that every
// callback (allocator, hook, library functions) finds it with lua_getallocf: no globals.
struct sandbox {
  // Memory: bytes held, never above `limit`.
  std::size_t limit = 0;
  std::size_t used = 0;
  // The last growth asked for, and refused. Lua's core answers a refusal with an emergency
  // collection and retries the same request at once; if that fits, the script goes on.
  // Anything else after a refusal (another request, a hook event, the end of the call) means
  // the refusal raised an error: the limit is hit, even if the script caught the error.
  // (lauxlib's buffers, behind string.rep, table.concat and gsub, never retry.)
  bool refused = false;
  const void* refused_block = nullptr;
  std::size_t refused_old_size = 0;
  std::size_t refused_new_size = 0;

  // The budget of the running call (or load).
  std::uint64_t max_instructions = 0;
  std::uint64_t executed = 0;
  int tick = instruction_tick;
  steady::time_point deadline = steady::time_point::max();
  // Set once a limit is exceeded, until the call returns: from then on every hook event
  // raises and every growth is refused, so a script that catches the error (pcall, xpcall, a
  // coroutine) cannot go on. It also classifies the failure without reading error text the
  // script controls.
  hook_failure tripped = hook_failure::none;
  bool closing = false; // lua_close: no script code may run
  lua_State* main = nullptr;

  const std::function<void(std::string_view)>* log = nullptr;
  std::uint32_t max_log_lines = 0;
  std::uint32_t log_lines = 0;
};

// The time for the checks on hot paths (every function return, every 1000 instructions):
// CLOCK_MONOTONIC_COARSE costs 5 ns where steady_clock costs 25, and ticks every few
// milliseconds. It is CLOCK_MONOTONIC (libstdc++'s steady_clock) as of the last tick, so against
// a deadline taken from steady_clock it can only see the deadline late, by less than a tick.
steady::time_point coarse_now() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return steady::time_point(std::chrono::duration_cast<steady::duration>(
    std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
}

sandbox& sandbox_of(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return *static_cast<sandbox*>(ud);
}

void limit_hook(lua_State* L, lua_Debug* ar);

// Records the first limit exceeded and makes the hook run at every instruction of this
// thread and of the main thread: a pcall that catches the error returns into Lua code, whose
// next instruction raises again.
void trip(lua_State* L, sandbox& box, hook_failure failure) {
  if (box.tripped == hook_failure::none)
    box.tripped = failure;
  lua_sethook(L, limit_hook, hook_mask, 1);
  if (box.main != nullptr && box.main != L)
    lua_sethook(box.main, limit_hook, hook_mask, 1);
}

// Raises the limit error. Its object is a string made when the state was built and kept in
// the registry, so raising allocates nothing (memory may be what ran out).
int raise_tripped(lua_State* L, sandbox& box) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box);
  return lua_error(L);
}

void limit_hook(lua_State* L, lua_Debug* ar) {
  sandbox& box = sandbox_of(L);
  if (box.tripped == hook_failure::none && !box.closing) {
    if (box.refused) // Lua code runs after a refusal: it was not rescued
      trip(L, box, hook_failure::memory_limit);
    else if (ar->event == LUA_HOOKCOUNT) {
      box.executed += static_cast<std::uint64_t>(box.tick);
      if (box.executed > box.max_instructions)
        trip(L, box, hook_failure::instruction_limit);
    }
    if (box.tripped == hook_failure::none) {
      if (coarse_now() < box.deadline)
        return;
      trip(L, box, hook_failure::time_limit);
    }
  } else {
    trip(L, box, box.tripped); // a coroutine made before the trip still has the long tick
  }
  raise_tripped(L, box);
}

// Charges library work to the instruction budget and checks the time; raises when over.
void charge(lua_State* L, std::uint64_t units) {
  sandbox& box = sandbox_of(L);
  if (box.refused)
    trip(L, box, hook_failure::memory_limit);
  if (box.tripped == hook_failure::none && !box.closing) {
    const std::uint64_t room = std::numeric_limits<std::uint64_t>::max() - box.executed;
    box.executed = units > room ? std::numeric_limits<std::uint64_t>::max() : box.executed + units;
    if (box.executed > box.max_instructions)
      trip(L, box, hook_failure::instruction_limit);
    else if (coarse_now() >= box.deadline)
      trip(L, box, hook_failure::time_limit);
    else
      return;
  }
  raise_tripped(L, box);
}

// The allocator: enforces max_memory_bytes over the whole state. Returning NULL makes Lua
// raise a memory error (after an emergency collection and a retry). Never throws.
void* allocate(void* ud, void* block, std::size_t old_size, std::size_t new_size) noexcept {
  sandbox& box = *static_cast<sandbox*>(ud);
  if (new_size == 0) {
    if (block != nullptr)
      box.used -= old_size;
    std::free(block);
    return nullptr;
  }
  // For a new block Lua passes the object's type in old_size, not a size.
  const std::size_t held = block != nullptr ? old_size : 0;
  if (new_size > held) {
    // Shrinking is always granted: Lua does not expect it to fail.
    if (box.tripped != hook_failure::none)
      return nullptr;
    const std::size_t free_bytes = box.limit - box.used;
    const bool fits = new_size - held <= free_bytes;
    if (box.refused) {
      const bool retry = block == box.refused_block && old_size == box.refused_old_size &&
                         new_size == box.refused_new_size;
      // A collection that leaves little room is no rescue: live data near the limit would
      // run a full collection at nearly every allocation, for seconds, before failing.
      const bool rescued = fits && free_bytes - (new_size - held) >= box.limit / 16;
      box.refused = false;
      if (!retry || !rescued) {
        box.tripped = hook_failure::memory_limit;
        return nullptr;
      }
    } else if (!fits) {
      box.refused = true;
      box.refused_block = block;
      box.refused_old_size = old_size;
      box.refused_new_size = new_size;
      return nullptr;
    }
    if (new_size - held >= timed_allocation_bytes && coarse_now() >= box.deadline) {
      box.tripped = hook_failure::time_limit;
      return nullptr;
    }
  }
  void* resized = std::realloc(block, new_size);
  if (resized == nullptr)
    return nullptr; // the host is out of memory: Lua raises a memory error
  box.used = box.used - held + new_size;
  return resized;
}

int panic(lua_State*) {
  // Unreachable by design (every raising call is protected); Lua aborts after this returns.
  std::fputs("chroom hook runtime: Lua error outside a protected call\n", stderr);
  return 0;
}

// A view of the string at `index`, which must be a string (lua_tolstring would convert a
// number in place, which allocates and confuses lua_next).
std::string_view string_at(lua_State* L, int index) {
  std::size_t length = 0;
  const char* text = lua_tolstring(L, index, &length);
  return {text, length};
}

// ---------------------------------------------------------------------------------------
// Base library replacements.

void emit_log(sandbox& box, std::string_view line) {
  if (box.log == nullptr || !*box.log)
    return;
  try {
    (*box.log)(line);
  } catch (...) {
    // The log is best effort; an exception must not cross the Lua frames below.
  }
}

// print(...): one line to the log callback, values separated by tabs as Lua's own print.
int sandbox_print(lua_State* L) {
  sandbox& box = sandbox_of(L);
  if (box.max_log_lines == 0 || box.log_lines > box.max_log_lines)
    return 0;
  if (box.log_lines++ == box.max_log_lines) {
    emit_log(box, "(further print output of this call is dropped)");
    return 0;
  }
  char line[max_text_bytes + 3];
  std::size_t length = 0;
  bool cut = false;
  const int count = lua_gettop(L);
  for (int i = 1; i <= count && !cut; ++i) {
    std::size_t piece_length = 0;
    const char* piece = luaL_tolstring(L, i, &piece_length); // runs __tostring, under the hook
    if (i > 1) {
      if (length < max_text_bytes)
        line[length++] = '\t';
      else
        cut = true;
    }
    const std::size_t room = max_text_bytes - length;
    if (piece_length > room)
      cut = true;
    const std::size_t taken = std::min(piece_length, room);
    std::memcpy(line + length, piece, taken);
    length += taken;
    lua_pop(L, 1);
  }
  if (cut) {
    std::memcpy(line + length, "...", 3);
    length += 3;
  }
  emit_log(box, std::string_view(line, length));
  return 0;
}

// load(chunk [, chunkname [, mode [, env]]]): source text in a string only. Mode is always
// "t": a binary chunk can crash the VM. A function as chunk is refused (simpler, and nothing
// a hook needs).
int sandbox_load(lua_State* L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_typeerror(L, 1, "string");
  std::size_t length = 0;
  const char* chunk = lua_tolstring(L, 1, &length);
  const char* name = luaL_optstring(L, 2, chunk);
  const bool has_env = !lua_isnone(L, 4);
  if (luaL_loadbufferx(L, chunk, length, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2; // nil, message
  }
  if (has_env) {
    lua_pushvalue(L, 4);
    if (lua_setupvalue(L, -2, 1) == nullptr)
      lua_pop(L, 1);
  }
  return 1;
}

// collectgarbage("count") only: the other options change the collector the limits rely on.
int sandbox_collectgarbage(lua_State* L) {
  const char* option = luaL_optstring(L, 1, "collect");
  if (std::strcmp(option, "count") != 0)
    return luaL_error(L, "collectgarbage: only \"count\" is available to hooks");
  const int kib = lua_gc(L, LUA_GCCOUNT);
  const int rest = lua_gc(L, LUA_GCCOUNTB);
  lua_pushnumber(L, static_cast<lua_Number>(kib) + static_cast<lua_Number>(rest) / 1024.0);
  return 1;
}

// setmetatable without __gc: a finalizer runs when the collector decides, outside any budget
// (and at lua_close), and its errors are swallowed.
int sandbox_setmetatable(lua_State* L) {
  const int type = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, type == LUA_TNIL || type == LUA_TTABLE, 2, "nil or table");
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  if (type == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc metamethods are not available to hooks");
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

// ---------------------------------------------------------------------------------------
// Library functions whose cost is not bounded by memory, replaced by versions that are.

// string.rep: Lua's loops n times even when the result is empty (string.rep("", 1e18)).
int sandbox_rep(lua_State* L) {
  std::size_t length = 0;
  std::size_t separator_length = 0;
  const char* text = luaL_checklstring(L, 1, &length);
  const lua_Integer count = luaL_checkinteger(L, 2);
  const char* separator = luaL_optlstring(L, 3, "", &separator_length);
  if (count <= 0 || length + separator_length == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  const std::size_t max_size = INT_MAX; // Lua's own bound on string.rep
  if (length + separator_length < length ||
      length + separator_length > max_size / static_cast<std::size_t>(count))
    return luaL_error(L, "resulting string too large");
  const std::size_t total = static_cast<std::size_t>(count) * length +
                            static_cast<std::size_t>(count - 1) * separator_length;
  // lauxlib's buffer allocates without Lua's emergency collection, and holds the result twice
  // for a moment (the buffer, then the string): collect first when a large result would not
  // fit beside the garbage. (Large only: a full collection per small rep near the limit
  // would crawl.)
  const sandbox& box = sandbox_of(L);
  if (total >= large_result_bytes && total > (box.limit - box.used) / 2)
    lua_gc(L, LUA_GCCOLLECT);
  luaL_Buffer buffer;
  char* out = luaL_buffinitsize(L, &buffer, total); // over the limit: a memory error
  for (lua_Integer i = 0; i < count; ++i) {
    if (i > 0 && separator_length > 0) {
      std::memcpy(out, separator, separator_length);
      out += separator_length;
    }
    std::memcpy(out, text, length);
    out += length;
  }
  luaL_pushresultsize(&buffer, total);
  return 1;
}

// table.insert, table.remove, table.move: Lua's loop over a length or range the script
// chooses (a __len of 2^62, table.move(t, 1, 2^62, 2)) without allocating. These charge the
// elements they will move before moving them.
int sandbox_insert(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  // Unsigned: a __len of LUA_MAXINTEGER wraps as in Lua instead of overflowing.
  const lua_Integer first_empty =
    static_cast<lua_Integer>(static_cast<lua_Unsigned>(luaL_len(L, 1)) + 1u);
  lua_Integer position = first_empty;
  switch (lua_gettop(L)) {
    case 2:
      break;
    case 3: {
      position = luaL_checkinteger(L, 2);
      luaL_argcheck(
        L, static_cast<lua_Unsigned>(position) - 1u < static_cast<lua_Unsigned>(first_empty), 2,
        "position out of bounds");
      charge(L, static_cast<lua_Unsigned>(first_empty) - static_cast<lua_Unsigned>(position));
      for (lua_Integer i = first_empty; i > position; --i) {
        lua_geti(L, 1, i - 1);
        lua_seti(L, 1, i);
      }
      break;
    }
    default:
      return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, position);
  return 0;
}

int sandbox_remove(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const lua_Integer size = luaL_len(L, 1);
  lua_Integer position = luaL_optinteger(L, 2, size);
  if (position != size)
    luaL_argcheck(L, static_cast<lua_Unsigned>(position) - 1u <= static_cast<lua_Unsigned>(size), 2,
                  "position out of bounds");
  if (position < size)
    charge(L, static_cast<lua_Unsigned>(size) - static_cast<lua_Unsigned>(position));
  lua_geti(L, 1, position);
  for (; position < size; ++position) {
    lua_geti(L, 1, position + 1);
    lua_seti(L, 1, position);
  }
  lua_pushnil(L);
  lua_seti(L, 1, position);
  return 1;
}

int sandbox_move(lua_State* L) {
  const lua_Integer from = luaL_checkinteger(L, 2);
  const lua_Integer end = luaL_checkinteger(L, 3);
  const lua_Integer to = luaL_checkinteger(L, 4);
  const int target = lua_isnoneornil(L, 5) ? 1 : 5;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, target, LUA_TTABLE);
  if (end >= from) {
    luaL_argcheck(L, from > 0 || end < LUA_MAXINTEGER + from, 3, "too many elements to move");
    const lua_Integer count = end - from + 1;
    luaL_argcheck(L, to <= LUA_MAXINTEGER - count + 1, 4, "destination wrap around");
    charge(L, static_cast<std::uint64_t>(count));
    if (to > end || to <= from || (target != 1 && !lua_rawequal(L, 1, target))) {
      for (lua_Integer i = 0; i < count; ++i) {
        lua_geti(L, 1, from + i);
        lua_seti(L, target, to + i);
      }
    } else {
      for (lua_Integer i = count - 1; i >= 0; --i) {
        lua_geti(L, 1, from + i);
        lua_seti(L, target, to + i);
      }
    }
  }
  lua_pushvalue(L, target);
  return 1;
}

// ---------------------------------------------------------------------------------------
// Lua patterns (string.find, match, gmatch, gsub) with a step budget. Lua's matcher
// backtracks without bound: ("a"):rep(1e5):find(".-.-.-b") runs for days inside one C call,
// where no hook can stop it. This one implements the same language (Lua 5.4 manual, 6.4.1)
// and charges every step to the instruction budget. Plain searches use memmem, linear where
// Lua's is quadratic in the worst case.

constexpr int max_captures = 32; // LUA_MAXCAPTURES
constexpr std::ptrdiff_t capture_unfinished = -1;
constexpr std::ptrdiff_t capture_position = -2;
constexpr int max_match_depth = 200; // recursion, as Lua's MAXCCALLS
constexpr char escape = '%';
constexpr std::string_view pattern_specials = "^$*+?.([%-";

struct match_state {
  const char* source_begin;
  const char* source_end;
  const char* pattern_end;
  lua_State* L;
  int depth;
  int level; // captures open or closed so far
  std::uint32_t steps;
  struct {
    const char* begin;
    std::ptrdiff_t length; // or capture_unfinished / capture_position
  } capture[max_captures];
};

void prepare(match_state& ms, lua_State* L, const char* source, std::size_t source_length,
             const char* pattern, std::size_t pattern_length) {
  ms.L = L;
  ms.source_begin = source;
  ms.source_end = source + source_length;
  ms.pattern_end = pattern + pattern_length;
  ms.steps = 0;
}

void restart(match_state& ms) {
  ms.level = 0;
  ms.depth = max_match_depth;
}

void step(match_state& ms, std::uint32_t count = 1) {
  ms.steps += count;
  if (ms.steps >= match_steps_per_charge) {
    const std::uint32_t steps = ms.steps;
    ms.steps = 0;
    charge(ms.L, steps);
  }
}

void flush_steps(match_state& ms) {
  const std::uint32_t steps = ms.steps;
  ms.steps = 0;
  charge(ms.L, steps);
}

int uchar(char c) {
  return static_cast<unsigned char>(c);
}

// The end of the single-character class starting at p.
const char* class_end(match_state& ms, const char* p) {
  switch (*p++) {
    case escape:
      if (p == ms.pattern_end)
        luaL_error(ms.L, "malformed pattern (ends with '%%')");
      return p + 1;
    case '[':
      if (*p == '^')
        ++p;
      do { // the first character of a set may be ']'
        if (p == ms.pattern_end)
          luaL_error(ms.L, "malformed pattern (missing ']')");
        if (*(p++) == escape && p < ms.pattern_end)
          ++p;
      } while (*p != ']');
      return p + 1;
    default:
      return p;
  }
}

bool match_class(int c, int class_letter) {
  bool matches = false;
  switch (std::tolower(class_letter)) {
    case 'a':
      matches = std::isalpha(c) != 0;
      break;
    case 'c':
      matches = std::iscntrl(c) != 0;
      break;
    case 'd':
      matches = std::isdigit(c) != 0;
      break;
    case 'g':
      matches = std::isgraph(c) != 0;
      break;
    case 'l':
      matches = std::islower(c) != 0;
      break;
    case 'p':
      matches = std::ispunct(c) != 0;
      break;
    case 's':
      matches = std::isspace(c) != 0;
      break;
    case 'u':
      matches = std::isupper(c) != 0;
      break;
    case 'w':
      matches = std::isalnum(c) != 0;
      break;
    case 'x':
      matches = std::isxdigit(c) != 0;
      break;
    case 'z':
      matches = c == 0;
      break; // deprecated, but Lua 5.4 still has it
    default:
      return class_letter == c; // %. and the like: the character itself
  }
  return std::isupper(class_letter) != 0 ? !matches : matches;
}

// [set] from p (at '[') to set_end (at its ']').
bool match_set(int c, const char* p, const char* set_end) {
  bool found = true;
  if (*(p + 1) == '^') {
    found = false;
    ++p;
  }
  while (++p < set_end) {
    if (*p == escape) {
      ++p;
      if (match_class(c, uchar(*p)))
        return found;
    } else if (*(p + 1) == '-' && p + 2 < set_end) {
      p += 2;
      if (uchar(*(p - 2)) <= c && c <= uchar(*p))
        return found;
    } else if (uchar(*p) == c) {
      return found;
    }
  }
  return !found;
}

bool single_match(const match_state& ms, const char* s, const char* p, const char* ep) {
  if (s >= ms.source_end)
    return false;
  const int c = uchar(*s);
  switch (*p) {
    case '.':
      return true;
    case escape:
      return match_class(c, uchar(*(p + 1)));
    case '[':
      return match_set(c, p, ep - 1);
    default:
      return uchar(*p) == c;
  }
}

const char* do_match(match_state& ms, const char* s, const char* p);

const char* max_expand(match_state& ms, const char* s, const char* p, const char* ep) {
  std::ptrdiff_t count = 0;
  while (single_match(ms, s + count, p, ep)) {
    ++count;
    step(ms);
  }
  for (; count >= 0; --count) { // the longest first, then back off
    if (const char* end = do_match(ms, s + count, ep + 1))
      return end;
  }
  return nullptr;
}

const char* min_expand(match_state& ms, const char* s, const char* p, const char* ep) {
  for (;;) {
    if (const char* end = do_match(ms, s, ep + 1))
      return end;
    if (!single_match(ms, s, p, ep))
      return nullptr;
    ++s;
  }
}

const char* start_capture(match_state& ms, const char* s, const char* p, std::ptrdiff_t what) {
  if (ms.level >= max_captures)
    luaL_error(ms.L, "too many captures");
  ms.capture[ms.level].begin = s;
  ms.capture[ms.level].length = what;
  ++ms.level;
  const char* end = do_match(ms, s, p);
  if (end == nullptr)
    --ms.level;
  return end;
}

const char* end_capture(match_state& ms, const char* s, const char* p) {
  int open = ms.level - 1;
  while (open >= 0 && ms.capture[open].length != capture_unfinished)
    --open;
  if (open < 0)
    luaL_error(ms.L, "invalid pattern capture");
  ms.capture[open].length = s - ms.capture[open].begin;
  const char* end = do_match(ms, s, p);
  if (end == nullptr)
    ms.capture[open].length = capture_unfinished;
  return end;
}

const char* match_balance(match_state& ms, const char* s, const char* p) {
  if (p + 1 >= ms.pattern_end)
    luaL_error(ms.L, "malformed pattern (missing arguments to '%%b')");
  if (s >= ms.source_end || *s != *p)
    return nullptr;
  const char open = *p;
  const char close = *(p + 1);
  int depth = 1;
  while (++s < ms.source_end) {
    step(ms);
    if (*s == close) {
      if (--depth == 0)
        return s + 1;
    } else if (*s == open) {
      ++depth;
    }
  }
  return nullptr;
}

int capture_index(match_state& ms, int digit) {
  const int index = digit - '1';
  if (index < 0 || index >= ms.level || ms.capture[index].length == capture_unfinished)
    luaL_error(ms.L, "invalid capture index %%%d", index + 1);
  return index;
}

const char* match_back_reference(match_state& ms, const char* s, int digit) {
  const int index = capture_index(ms, digit);
  const std::size_t length = static_cast<std::size_t>(ms.capture[index].length);
  step(ms, 1 + static_cast<std::uint32_t>(std::min<std::size_t>(length / 16, 1u << 20)));
  if (static_cast<std::size_t>(ms.source_end - s) >= length &&
      std::memcmp(ms.capture[index].begin, s, length) == 0)
    return s + length;
  return nullptr;
}

// Matches pattern p against the subject from s; the end of the match or nullptr.
const char* match_body(match_state& ms, const char* s, const char* p) {
  for (;;) {
    step(ms);
    if (p == ms.pattern_end)
      return s;
    if (*p == '(') {
      if (*(p + 1) == ')')
        return start_capture(ms, s, p + 2, capture_position);
      return start_capture(ms, s, p + 1, capture_unfinished);
    }
    if (*p == ')')
      return end_capture(ms, s, p + 1);
    if (*p == '$' && p + 1 == ms.pattern_end)
      return s == ms.source_end ? s : nullptr;
    if (*p == escape && *(p + 1) == 'b') {
      s = match_balance(ms, s, p + 2);
      if (s == nullptr)
        return nullptr;
      p += 4;
      continue;
    }
    if (*p == escape && *(p + 1) == 'f') {
      p += 2;
      if (*p != '[')
        luaL_error(ms.L, "missing '[' after '%%f' in pattern");
      const char* ep = class_end(ms, p);
      const int previous = s == ms.source_begin ? '\0' : uchar(*(s - 1));
      const int current = s < ms.source_end ? uchar(*s) : '\0';
      if (match_set(previous, p, ep - 1) || !match_set(current, p, ep - 1))
        return nullptr;
      p = ep;
      continue;
    }
    if (*p == escape && std::isdigit(uchar(*(p + 1)))) {
      s = match_back_reference(ms, s, uchar(*(p + 1)));
      if (s == nullptr)
        return nullptr;
      p += 2;
      continue;
    }
    // A single-character class, maybe followed by a quantifier.
    const char* ep = class_end(ms, p);
    if (!single_match(ms, s, p, ep)) {
      if (*ep == '*' || *ep == '?' || *ep == '-') { // may match zero times
        p = ep + 1;
        continue;
      }
      return nullptr;
    }
    switch (*ep) {
      case '?': {
        if (const char* end = do_match(ms, s + 1, ep + 1))
          return end;
        p = ep + 1;
        continue;
      }
      case '+':
        return max_expand(ms, s + 1, p, ep);
      case '*':
        return max_expand(ms, s, p, ep);
      case '-':
        return min_expand(ms, s, p, ep);
      default:
        ++s;
        p = ep;
        continue;
    }
  }
}

const char* do_match(match_state& ms, const char* s, const char* p) {
  if (ms.depth-- == 0)
    luaL_error(ms.L, "pattern too complex");
  const char* end = match_body(ms, s, p);
  ++ms.depth;
  return end;
}

// Pushes capture i (or the whole match s..e when the pattern has no captures and i is 0).
void push_capture(match_state& ms, int i, const char* s, const char* e) {
  if (i >= ms.level) {
    if (i != 0)
      luaL_error(ms.L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(ms.L, s, static_cast<std::size_t>(e - s));
    return;
  }
  const std::ptrdiff_t length = ms.capture[i].length;
  if (length == capture_unfinished)
    luaL_error(ms.L, "unfinished capture");
  if (length == capture_position)
    lua_pushinteger(ms.L, ms.capture[i].begin - ms.source_begin + 1);
  else
    lua_pushlstring(ms.L, ms.capture[i].begin, static_cast<std::size_t>(length));
}

// Pushes all captures; the whole match when there are none and s is given.
int push_captures(match_state& ms, const char* s, const char* e) {
  const int count = (ms.level == 0 && s != nullptr) ? 1 : ms.level;
  luaL_checkstack(ms.L, count, "too many captures");
  for (int i = 0; i < count; ++i)
    push_capture(ms, i, s, e);
  return count;
}

// A 1-based start position as Lua's string functions read it (negative: from the end).
std::size_t start_position(lua_Integer position, std::size_t length) {
  if (position > 0)
    return static_cast<std::size_t>(position);
  if (position == 0)
    return 1;
  if (position < -static_cast<lua_Integer>(length))
    return 1;
  return length + static_cast<std::size_t>(position) + 1;
}

int find_or_match(lua_State* L, bool find) {
  std::size_t source_length = 0;
  std::size_t pattern_length = 0;
  const char* source = luaL_checklstring(L, 1, &source_length);
  const char* pattern = luaL_checklstring(L, 2, &pattern_length);
  const std::size_t start = start_position(luaL_optinteger(L, 3, 1), source_length) - 1;
  if (start > source_length) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) ||
               std::string_view(pattern, pattern_length).find_first_of(pattern_specials) ==
                 std::string_view::npos)) {
    const void* found = pattern_length == 0
                          ? source + start
                          : memmem(source + start, source_length - start, pattern, pattern_length);
    if (found != nullptr) {
      const auto offset = static_cast<const char*>(found) - source;
      lua_pushinteger(L, offset + 1);
      lua_pushinteger(L, offset + static_cast<lua_Integer>(pattern_length));
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  match_state ms;
  prepare(ms, L, source, source_length, pattern, pattern_length);
  const bool anchored = *pattern == '^';
  if (anchored)
    ++pattern;
  const char* s = source + start;
  do {
    restart(ms);
    if (const char* end = do_match(ms, s, pattern)) {
      flush_steps(ms);
      if (find) {
        lua_pushinteger(L, s - source + 1);
        lua_pushinteger(L, end - source);
        return push_captures(ms, nullptr, nullptr) + 2;
      }
      return push_captures(ms, s, end);
    }
  } while (s++ < ms.source_end && !anchored);
  flush_steps(ms);
  luaL_pushfail(L);
  return 1;
}

int sandbox_find(lua_State* L) {
  return find_or_match(L, true);
}
int sandbox_match(lua_State* L) {
  return find_or_match(L, false);
}

struct gmatch_state {
  const char* source;
  std::size_t source_length;
  const char* pattern;
  std::size_t pattern_length;
  const char* next;       // where the next search starts
  const char* last_match; // the end of the last match: an empty match there is skipped
};

int gmatch_step(lua_State* L) {
  auto* state = static_cast<gmatch_state*>(lua_touserdata(L, lua_upvalueindex(3)));
  match_state ms;
  prepare(ms, L, state->source, state->source_length, state->pattern, state->pattern_length);
  for (const char* s = state->next; s <= ms.source_end; ++s) {
    restart(ms);
    const char* end = do_match(ms, s, state->pattern);
    if (end != nullptr && end != state->last_match) {
      state->next = state->last_match = end;
      flush_steps(ms);
      return push_captures(ms, s, end);
    }
  }
  state->next = ms.source_end + 1;
  flush_steps(ms);
  return 0;
}

int sandbox_gmatch(lua_State* L) {
  std::size_t source_length = 0;
  std::size_t pattern_length = 0;
  const char* source = luaL_checklstring(L, 1, &source_length);
  const char* pattern = luaL_checklstring(L, 2, &pattern_length);
  std::size_t start = start_position(luaL_optinteger(L, 3, 1), source_length) - 1;
  if (start > source_length)
    start = source_length + 1; // past the end: no match
  lua_settop(L, 2);            // the strings stay alive as upvalues of the iterator
  auto* state = static_cast<gmatch_state*>(lua_newuserdatauv(L, sizeof(gmatch_state), 0));
  *state = gmatch_state{source, source_length, pattern, pattern_length, source + start, nullptr};
  lua_pushcclosure(L, gmatch_step, 3);
  return 1;
}

// Adds the replacement of match s..e to the buffer; false when the match is kept as it was.
bool add_replacement(match_state& ms, luaL_Buffer& buffer, const char* s, const char* e,
                     int replacement_type) {
  lua_State* L = ms.L;
  switch (replacement_type) {
    case LUA_TFUNCTION: {
      lua_pushvalue(L, 3);
      const int count = push_captures(ms, s, e);
      lua_call(L, count, 1);
      break;
    }
    case LUA_TTABLE:
      push_capture(ms, 0, s, e);
      lua_gettable(L, 3);
      break;
    default: { // a string (or a number): %0 to %9 and %%
      std::size_t length = 0;
      const char* text = lua_tolstring(L, 3, &length);
      const char* end = text + length;
      for (const char* p = text; p < end; ++p) {
        if (*p != escape) {
          luaL_addchar(&buffer, *p);
          continue;
        }
        ++p; // *p is '\0' past the end: Lua strings are terminated
        if (*p == escape) {
          luaL_addchar(&buffer, escape);
        } else if (*p == '0') {
          luaL_addlstring(&buffer, s, static_cast<std::size_t>(e - s));
        } else if (std::isdigit(uchar(*p))) {
          push_capture(ms, *p - '1', s, e);
          luaL_tolstring(L, -1, nullptr); // a position capture is a number
          lua_remove(L, -2);
          luaL_addvalue(&buffer);
        } else {
          luaL_error(L, "invalid use of '%c' in replacement string", escape);
        }
      }
      step(ms, static_cast<std::uint32_t>(std::min<std::size_t>(length / 16, 1u << 20)));
      return true;
    }
  }
  if (!lua_toboolean(L, -1)) { // nil or false: keep the original text
    lua_pop(L, 1);
    luaL_addlstring(&buffer, s, static_cast<std::size_t>(e - s));
    return false;
  }
  if (!lua_isstring(L, -1))
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(&buffer);
  return true;
}

int sandbox_gsub(lua_State* L) {
  std::size_t source_length = 0;
  std::size_t pattern_length = 0;
  const char* source = luaL_checklstring(L, 1, &source_length);
  const char* pattern = luaL_checklstring(L, 2, &pattern_length);
  const int replacement_type = lua_type(L, 3);
  const lua_Integer max_replacements =
    luaL_optinteger(L, 4, static_cast<lua_Integer>(source_length) + 1);
  luaL_argexpected(L,
                   replacement_type == LUA_TNUMBER || replacement_type == LUA_TSTRING ||
                     replacement_type == LUA_TFUNCTION || replacement_type == LUA_TTABLE,
                   3, "string/function/table");
  match_state ms;
  prepare(ms, L, source, source_length, pattern, pattern_length);
  const bool anchored = *pattern == '^';
  if (anchored)
    ++pattern;
  luaL_Buffer buffer;
  luaL_buffinit(L, &buffer);
  const char* s = source;
  const char* last_match = nullptr;
  lua_Integer replacements = 0;
  bool changed = false;
  while (replacements < max_replacements) {
    restart(ms);
    const char* end = do_match(ms, s, pattern);
    if (end != nullptr && end != last_match) {
      ++replacements;
      changed = add_replacement(ms, buffer, s, end, replacement_type) || changed;
      s = last_match = end;
    } else if (s < ms.source_end) {
      luaL_addchar(&buffer, *s++);
    } else {
      break;
    }
    if (anchored)
      break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&buffer, s, static_cast<std::size_t>(ms.source_end - s));
    luaL_pushresult(&buffer);
  }
  lua_pushinteger(L, replacements);
  flush_steps(ms);
  return 2;
}

// ---------------------------------------------------------------------------------------
// Building the sandbox (runs protected).

void set_function(lua_State* L, int table, const char* name, lua_CFunction function) {
  lua_pushcfunction(L, function);
  lua_setfield(L, table, name);
}

void remove_field(lua_State* L, int table, const char* name) {
  lua_pushnil(L);
  lua_setfield(L, table, name);
}

int open_sandbox(lua_State* L) {
  sandbox& box = sandbox_of(L);
  // First, so that a limit error can always be raised.
  lua_pushliteral(L, "hook limit exceeded");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &box);

  // Safe libraries. Coroutines are in: they cannot escape the limits (new threads inherit the
  // hook, and a tripped limit raises in every thread).
  const std::pair<const char*, lua_CFunction> libraries[] = {
    {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine},
  };
  for (const auto& [name, open] : libraries) {
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
  }

  lua_pushglobaltable(L);
  const int globals = lua_gettop(L);
  // dofile and loadfile read files; require is absent without the package library; warn
  // writes to stderr when turned on.
  for (const char* name : {"dofile", "loadfile", "require", "warn"})
    remove_field(L, globals, name);
  set_function(L, globals, "print", sandbox_print);
  set_function(L, globals, "load", sandbox_load);
  set_function(L, globals, "collectgarbage", sandbox_collectgarbage);
  set_function(L, globals, "setmetatable", sandbox_setmetatable);

  // os: time and clock only, in a fresh table (the library's other functions run programs,
  // touch files and the environment, or exit).
  luaopen_os(L);
  const int os_library = lua_gettop(L);
  lua_createtable(L, 0, 2);
  for (const char* name : {"time", "clock"}) {
    lua_getfield(L, os_library, name);
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, globals, "os");
  lua_pop(L, 1);

  lua_getfield(L, globals, LUA_STRLIBNAME);
  const int string_library = lua_gettop(L);
  remove_field(L, string_library, "dump"); // its output is a binary chunk
  set_function(L, string_library, "rep", sandbox_rep);
  set_function(L, string_library, "find", sandbox_find);
  set_function(L, string_library, "match", sandbox_match);
  set_function(L, string_library, "gmatch", sandbox_gmatch);
  set_function(L, string_library, "gsub", sandbox_gsub);
  lua_pop(L, 1);

  lua_getfield(L, globals, LUA_TABLIBNAME);
  const int table_library = lua_gettop(L);
  set_function(L, table_library, "insert", sandbox_insert);
  set_function(L, table_library, "remove", sandbox_remove);
  set_function(L, table_library, "move", sandbox_move);
  lua_pop(L, 2);
  return 0;
}

struct defines_context {
  std::array<bool, hook_point_count> defined{};
};

// The global function's name as a C string: to_string's views are of string literals.
const char* function_name(hook_point point) {
  return to_string(point).data();
}

int find_defines(lua_State* L) {
  auto& context = *static_cast<defines_context*>(lua_touserdata(L, 1));
  for (std::size_t i = 0; i < hook_point_count; ++i) {
    context.defined[i] =
      lua_getglobal(L, function_name(static_cast<hook_point>(i))) == LUA_TFUNCTION;
    lua_pop(L, 1);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Calls: the argument table in, the result out (runs protected).

struct call_context {
  const char* function = nullptr;
  const allocation_hook_input* request = nullptr;
  const room_event* event = nullptr;
  allocation_hook_result* result = nullptr;
  std::vector<char> seen; // per candidate, for duplicates in `nodes`; sized before the call
  bool missing = false;   // the global function is gone
  bool host_out_of_memory = false;
  std::string bad; // non-empty: the result is malformed, and why
};

// Pieces of a bad_result message. A script's text is quoted, cut and made printable.
struct quoted {
  std::string_view text;
};

void append_part(std::string& out, const char* part) {
  out.append(part);
}
void append_part(std::string& out, std::uint64_t number) {
  out.append(std::to_string(number));
}
void append_part(std::string& out, quoted part) {
  constexpr std::size_t max_quoted = 64;
  out.push_back('"');
  for (const char c : part.text.substr(0, max_quoted))
    out.push_back(uchar(c) < 0x20 || uchar(c) == 0x7f ? '?' : c);
  if (part.text.size() > max_quoted)
    out.append("...");
  out.push_back('"');
}

// Builds the message in C++ without any Lua call, so nothing here can be jumped over.
template <class... Parts> void set_bad(call_context& context, const Parts&... parts) noexcept {
  try {
    std::string message;
    (append_part(message, parts), ...);
    context.bad = std::move(message);
  } catch (...) {
    context.host_out_of_memory = true;
  }
}

bool assign(call_context& context, std::string& out, std::string_view value) noexcept {
  try {
    out.assign(value);
    return true;
  } catch (...) {
    context.host_out_of_memory = true;
    return false;
  }
}

void set_field(lua_State* L, const char* key, std::string_view value) {
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, key);
}

void set_field(lua_State* L, const char* key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

void set_number(lua_State* L, const char* key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

int size_hint(std::size_t size) {
  return static_cast<int>(std::min<std::size_t>(size, INT_MAX));
}

void set_strings(lua_State* L, const char* key, const std::vector<std::string>& values) {
  lua_createtable(L, size_hint(values.size()), 0);
  lua_Integer index = 0;
  for (const std::string& value : values) {
    lua_pushlstring(L, value.data(), value.size());
    lua_rawseti(L, -2, ++index);
  }
  lua_setfield(L, -2, key);
}

void push_request(lua_State* L, const allocation_hook_input& in) {
  lua_createtable(L, 0, 13);
  set_field(L, "app_id", in.app_id);
  set_field(L, "room_id", in.room_id);
  set_field(L, "client_id", in.client_id);
  set_field(L, "role", in.role);
  set_strings(L, "required_features", in.required_features);
  set_field(L, "client_country", in.client_country);
  lua_pushboolean(L, in.has_point ? 1 : 0);
  lua_setfield(L, -2, "has_point");
  if (in.has_point) {
    set_number(L, "latitude", in.latitude);
    set_number(L, "longitude", in.longitude);
  }
  set_field(L, "room_participants", static_cast<lua_Integer>(in.room_participants));
  set_strings(L, "room_roles", in.room_roles);
  lua_createtable(L, size_hint(in.candidates.size()), 0);
  lua_Integer index = 0;
  for (const hook_candidate& candidate : in.candidates) {
    lua_createtable(L, 0, 5);
    set_field(L, "node_id", candidate.node_id);
    set_field(L, "region", candidate.region);
    set_field(L, "country", candidate.country);
    set_number(L, "rtt_ms", candidate.rtt_ms);
    set_number(L, "load", candidate.load);
    lua_rawseti(L, -2, ++index);
  }
  lua_setfield(L, -2, "candidates");
}

void push_event(lua_State* L, const room_event& event) {
  lua_createtable(L, 0, 8);
  set_field(L, "event", to_string(event.point));
  set_field(L, "app_id", event.app_id);
  set_field(L, "room_id", event.room_id);
  set_field(L, "client_id", event.client_id);
  set_field(L, "role", event.role);
  set_field(L, "node_id", event.node_id);
  set_field(L, "unix_ms", static_cast<lua_Integer>(event.unix_ms));
  set_field(L, "participants", static_cast<lua_Integer>(event.participants));
}

// The field `key` of the result table at `index`, read raw (metatables are ignored: reading
// the result runs no script code). Pushes the value and returns its type.
int raw_field(lua_State* L, int index, const char* key) {
  lua_pushstring(L, key);
  return lua_rawget(L, index);
}

void read_nodes(lua_State* L, call_context& context) {
  const int nodes = lua_gettop(L);
  const std::vector<hook_candidate>& candidates = context.request->candidates;
  const lua_Unsigned count = lua_rawlen(L, nodes);
  lua_Unsigned keys = 0;
  lua_pushnil(L);
  while (lua_next(L, nodes) != 0) {
    ++keys;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
        static_cast<lua_Unsigned>(lua_tointeger(L, -2)) > count)
      return set_bad(context, "field 'nodes' must be an array (a sequence) of node ids");
    lua_pop(L, 1);
  }
  if (keys != count)
    return set_bad(context, "field 'nodes' must be an array (a sequence) of node ids");
  if (count == 0)
    return set_bad(context,
                   "field 'nodes' is empty (to refuse the allocation, return deny instead)");
  try {
    context.result->nodes.emplace();
  } catch (...) {
    context.host_out_of_memory = true;
    return;
  }
  for (lua_Unsigned i = 1; i <= count; ++i) {
    const int type = lua_rawgeti(L, nodes, static_cast<lua_Integer>(i));
    if (type != LUA_TSTRING)
      return set_bad(context, "field 'nodes[", std::uint64_t{i},
                     "]' must be a string (a node id), not a ", luaL_typename(L, -1));
    const std::string_view id = string_at(L, -1);
    const auto candidate = std::find_if(candidates.begin(), candidates.end(),
                                        [&](const hook_candidate& c) { return c.node_id == id; });
    if (candidate == candidates.end())
      return set_bad(context, "field 'nodes' names ", quoted{id},
                     ", which is not one of the candidates");
    char& seen = context.seen[static_cast<std::size_t>(candidate - candidates.begin())];
    if (seen != 0)
      return set_bad(context, "field 'nodes' names ", quoted{id}, " twice");
    seen = 1;
    try {
      context.result->nodes->emplace_back(id);
    } catch (...) {
      context.host_out_of_memory = true;
      return;
    }
    lua_pop(L, 1);
  }
}

void read_result(lua_State* L, int index, call_context& context) {
  const int type = lua_type(L, index);
  if (type == LUA_TNIL)
    return; // no change
  if (type != LUA_TTABLE)
    return set_bad(context, "before_allocation must return nil or a table, not a ",
                   luaL_typename(L, index));
  // Unknown fields are refused: a misspelt field would otherwise do nothing, silently.
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      return set_bad(context, "the result of before_allocation has a ", luaL_typename(L, -2),
                     " key; its fields are deny, role and nodes");
    const std::string_view key = string_at(L, -2);
    if (key != "deny" && key != "role" && key != "nodes")
      return set_bad(context, "the result of before_allocation has an unknown field ", quoted{key},
                     "; its fields are deny, role and nodes");
    lua_pop(L, 1);
  }
  allocation_hook_result& result = *context.result;

  switch (raw_field(L, index, "deny")) {
    case LUA_TNIL:
      break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, -1) != 0) {
        result.deny = true;
        assign(context, result.deny_reason, default_deny_reason);
      }
      break;
    case LUA_TSTRING: {
      const std::string_view reason = string_at(L, -1);
      result.deny = true;
      assign(context, result.deny_reason,
             reason.empty() ? default_deny_reason : reason.substr(0, max_text_bytes));
      break;
    }
    default:
      return set_bad(context, "field 'deny' must be a string (the reason) or a boolean, not a ",
                     luaL_typename(L, -1));
  }
  lua_pop(L, 1);

  switch (raw_field(L, index, "role")) {
    case LUA_TNIL:
      break;
    case LUA_TSTRING: {
      const std::string_view role = string_at(L, -1);
      if (std::find(allowed_roles.begin(), allowed_roles.end(), role) == allowed_roles.end())
        return set_bad(context,
                       "field 'role' must be \"host\", \"presenter\", \"participant\" or "
                       "\"viewer\", not ",
                       quoted{role});
      try {
        result.role.emplace(role);
      } catch (...) {
        context.host_out_of_memory = true;
        return;
      }
      break;
    }
    default:
      return set_bad(context, "field 'role' must be a string, not a ", luaL_typename(L, -1));
  }
  lua_pop(L, 1);

  switch (raw_field(L, index, "nodes")) {
    case LUA_TNIL:
      break;
    case LUA_TTABLE:
      read_nodes(L, context);
      break;
    default:
      return set_bad(context, "field 'nodes' must be an array of node ids, not a ",
                     luaL_typename(L, -1));
  }
}

int call_hook(lua_State* L) {
  auto& context = *static_cast<call_context*>(lua_touserdata(L, 1));
  if (lua_getglobal(L, context.function) != LUA_TFUNCTION) {
    context.missing = true; // the script removed it since loading: nothing to call
    return 0;
  }
  if (context.request != nullptr)
    push_request(L, *context.request);
  else
    push_event(L, *context.event);
  lua_call(L, 1, 1);
  if (context.result != nullptr)
    read_result(L, lua_gettop(L), context);
  return 0;
}

// ---------------------------------------------------------------------------------------

// One Lua state and its accounting; the accounting outlives the state (lua_close frees
// through the allocator).
struct lua_box {
  sandbox accounting;
  lua_State* L = nullptr;

  lua_box() = default;
  lua_box(const lua_box&) = delete;
  lua_box& operator=(const lua_box&) = delete;
  ~lua_box() {
    if (L != nullptr) {
      accounting.closing = true;
      lua_close(L);
    }
  }
};

void arm(lua_box& box, const hook_limits& limits) {
  sandbox& s = box.accounting;
  s.max_instructions = limits.max_instructions;
  s.executed = 0;
  s.tick = static_cast<int>(std::clamp<std::uint64_t>(
    limits.max_instructions, 1, static_cast<std::uint64_t>(instruction_tick)));
  s.tripped = hook_failure::none;
  s.refused = false;
  s.refused_block = nullptr;
  s.log_lines = 0;
  const auto now = steady::now();
  // A deadline beyond a year is no deadline (and now + max_time could overflow).
  s.deadline = limits.max_time > std::chrono::hours(24 * 365) ? steady::time_point::max()
                                                              : now + limits.max_time;
  lua_sethook(box.L, limit_hook, hook_mask, s.tick); // also restarts the count
}

int run_protected(lua_State* L, lua_CFunction function, void* context) {
  lua_settop(L, 0);
  lua_pushcfunction(L, function);
  lua_pushlightuserdata(L, context);
  return lua_pcall(L, 1, 0, 0);
}

std::string cut(std::string_view text) {
  if (text.size() <= max_text_bytes)
    return std::string(text);
  std::string out(text.substr(0, max_text_bytes));
  out.append("...");
  return out;
}

// The error object on top of the stack as text, without running script code or allocating
// in Lua.
std::string error_text(lua_State* L) {
  switch (lua_type(L, -1)) {
    case LUA_TSTRING:
      return cut(string_at(L, -1));
    case LUA_TNUMBER: {
      if (lua_isinteger(L, -1))
        return std::to_string(lua_tointeger(L, -1));
      char number[64];
      std::snprintf(number, sizeof number, "%.14g", static_cast<double>(lua_tonumber(L, -1)));
      return number;
    }
    default:
      return "(error object is a " + std::string(luaL_typename(L, -1)) + " value)";
  }
}

std::string limit_message(hook_failure failure, const hook_limits& limits) {
  switch (failure) {
    case hook_failure::instruction_limit:
      return "instruction limit exceeded (more than " + std::to_string(limits.max_instructions) +
             " instructions)";
    case hook_failure::memory_limit:
      return "memory limit exceeded (more than " + std::to_string(limits.max_memory_bytes) +
             " bytes)";
    case hook_failure::time_limit:
      return "time limit exceeded (more than " + std::to_string(limits.max_time.count()) + " ms)";
    default:
      return std::string(to_string(failure));
  }
}

// Classifies how a protected call ended; sets `message` on failure and empties the stack.
hook_failure finish(lua_box& box, int status, const hook_limits& limits, std::string& message) {
  const sandbox& s = box.accounting;
  hook_failure failure = hook_failure::none;
  if (s.tripped != hook_failure::none)
    failure = s.tripped; // even when the script caught the error and returned
  else if (status == LUA_ERRMEM || s.refused)
    failure = hook_failure::memory_limit;
  else if (status != LUA_OK)
    failure = hook_failure::runtime_error;
  else if (steady::now() > s.deadline)
    failure = hook_failure::time_limit;
  if (is_limit(failure))
    message = limit_message(failure, limits);
  else if (failure == hook_failure::runtime_error)
    message = error_text(box.L);
  lua_settop(box.L, 0);
  return failure;
}

std::string chunk_name_of(std::string_view name) {
  // '=' makes Lua print the name as given ("hooks.lua:3:") instead of [string "..."].
  if (name.empty())
    return "=hook";
  if (name.front() == '=' || name.front() == '@')
    return std::string(name);
  std::string out(1, '=');
  out.append(name);
  return out;
}

} // namespace

std::string_view to_string(hook_point point) {
  switch (point) {
    case hook_point::before_allocation:
      return "before_allocation";
    case hook_point::room_created:
      return "on_room_created";
    case hook_point::room_closed:
      return "on_room_closed";
    case hook_point::participant_joined:
      return "on_participant_joined";
    case hook_point::participant_left:
      return "on_participant_left";
  }
  return "unknown";
}

std::optional<hook_point> hook_point_from_string(std::string_view name) {
  for (std::size_t i = 0; i < hook_point_count; ++i) {
    const auto point = static_cast<hook_point>(i);
    if (to_string(point) == name)
      return point;
  }
  return std::nullopt;
}

std::string_view to_string(hook_failure failure) {
  switch (failure) {
    case hook_failure::none:
      return "none";
    case hook_failure::compile_error:
      return "compile_error";
    case hook_failure::runtime_error:
      return "runtime_error";
    case hook_failure::instruction_limit:
      return "instruction_limit";
    case hook_failure::memory_limit:
      return "memory_limit";
    case hook_failure::time_limit:
      return "time_limit";
    case hook_failure::bad_result:
      return "bad_result";
  }
  return "unknown";
}

bool is_limit(hook_failure failure) {
  return failure == hook_failure::instruction_limit || failure == hook_failure::memory_limit ||
         failure == hook_failure::time_limit;
}

struct hook_runtime::impl {
  std::string script;
  std::string chunk_name;
  hook_limits limits;
  log_function log;
  std::array<bool, hook_point_count> defined{};
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t reloads = 0;
  // Null after a limit failure: the next call builds a fresh state from the script.
  std::unique_ptr<lua_box> box;

  // Builds a state: libraries, the script's top level, the points it defines.
  hook_failure open(std::string& message) {
    auto fresh = std::make_unique<lua_box>();
    sandbox& accounting = fresh->accounting;
    accounting.limit = limits.max_memory_bytes;
    accounting.log = &log;
    accounting.max_log_lines = limits.max_log_lines;
    fresh->L = lua_newstate(allocate, &accounting);
    if (fresh->L == nullptr) {
      message = "memory limit exceeded (a Lua state does not fit in " +
                std::to_string(limits.max_memory_bytes) + " bytes)";
      return hook_failure::memory_limit;
    }
    lua_State* L = fresh->L;
    accounting.main = L;
    lua_atpanic(L, panic);
    arm(*fresh, limits); // one budget for the libraries, compiling and the top level

    hook_failure failure = finish(*fresh, run_protected(L, open_sandbox, nullptr), limits, message);
    if (failure != hook_failure::none)
      return failure;

    const int loaded = luaL_loadbufferx(L, script.data(), script.size(), chunk_name.c_str(), "t");
    if (loaded != LUA_OK) {
      if (accounting.tripped != hook_failure::none || accounting.refused || loaded == LUA_ERRMEM) {
        failure = finish(*fresh, LUA_ERRMEM, limits, message);
      } else {
        message = error_text(L);
        failure = hook_failure::compile_error;
      }
      return failure;
    }
    failure = finish(*fresh, lua_pcall(L, 0, 0, 0), limits, message);
    if (failure != hook_failure::none)
      return failure;

    defines_context context;
    failure = finish(*fresh, run_protected(L, find_defines, &context), limits, message);
    if (failure != hook_failure::none)
      return failure;
    defined = context.defined;
    box = std::move(fresh);
    return hook_failure::none;
  }

  hook_failure invoke(call_context& context, std::string& message) {
    ++calls;
    if (box == nullptr) {
      std::string reason;
      const hook_failure failure = open(reason);
      if (failure != hook_failure::none) {
        ++failures;
        message = "reloading the script after a limit failure: " + reason;
        return failure;
      }
      ++reloads;
    }
    arm(*box, limits);
    hook_failure failure =
      finish(*box, run_protected(box->L, call_hook, &context), limits, message);
    if (failure == hook_failure::none && context.host_out_of_memory) {
      failure = hook_failure::runtime_error;
      message = "the orchestrator ran out of memory reading the hook's result";
    } else if (failure == hook_failure::none && !context.bad.empty()) {
      failure = hook_failure::bad_result;
      message = std::move(context.bad);
    }
    // A limit can stop the script anywhere, even in the middle of a library function: the
    // state is dropped (freeing its memory now) and rebuilt by the next call.
    if (is_limit(failure))
      box.reset();
    if (failure != hook_failure::none)
      ++failures;
    return failure;
  }
};

hook_runtime::hook_runtime(std::unique_ptr<impl> state) : impl_(std::move(state)) {}
hook_runtime::~hook_runtime() = default;

std::unique_ptr<hook_runtime> hook_runtime::load(std::string_view script,
                                                 std::string_view chunk_name, hook_limits limits,
                                                 log_function log, std::string& error,
                                                 hook_failure* failure) {
  auto state = std::make_unique<impl>();
  state->script.assign(script);
  state->chunk_name = chunk_name_of(chunk_name);
  state->limits = limits;
  state->log = std::move(log);
  std::string message;
  const hook_failure result = state->open(message);
  if (failure != nullptr)
    *failure = result;
  if (result != hook_failure::none) {
    error = is_limit(result) ? message + " while loading the script" : message;
    return nullptr;
  }
  error.clear();
  return std::unique_ptr<hook_runtime>(new hook_runtime(std::move(state)));
}

bool hook_runtime::defines(hook_point point) const {
  const auto index = static_cast<std::size_t>(point);
  return index < hook_point_count && impl_->defined[index];
}

hook_outcome<allocation_hook_result>
hook_runtime::before_allocation(const allocation_hook_input& input) {
  hook_outcome<allocation_hook_result> outcome;
  if (!defines(hook_point::before_allocation))
    return outcome;
  call_context context;
  context.function = function_name(hook_point::before_allocation);
  context.request = &input;
  context.result = &outcome.value;
  context.seen.assign(input.candidates.size(), 0);
  outcome.failure = impl_->invoke(context, outcome.message);
  if (!outcome.ok())
    outcome.value = allocation_hook_result{};
  return outcome;
}

hook_outcome<std::monostate> hook_runtime::on_event(const room_event& event) {
  hook_outcome<std::monostate> outcome;
  if (event.point == hook_point::before_allocation) {
    outcome.failure = hook_failure::runtime_error;
    outcome.message = "on_event: before_allocation is not an event";
    return outcome;
  }
  if (!defines(event.point))
    return outcome;
  call_context context;
  context.function = function_name(event.point);
  context.event = &event;
  outcome.failure = impl_->invoke(context, outcome.message);
  return outcome;
}

std::uint64_t hook_runtime::calls() const {
  return impl_->calls;
}
std::uint64_t hook_runtime::failures() const {
  return impl_->failures;
}
std::uint64_t hook_runtime::reloads() const {
  return impl_->reloads;
}
std::size_t hook_runtime::memory_used() const {
  return impl_->box != nullptr ? impl_->box->accounting.used : 0;
}
const hook_limits& hook_runtime::limits() const {
  return impl_->limits;
}

} // namespace chroom::apps
