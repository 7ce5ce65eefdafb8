// Tests of the Lua hook runtime (apps/hook_runtime.hpp): loading, the script API (arguments
// and results of every hook point), the limits (instructions, memory, time) and that a script
// cannot escape them, the sandbox, and that the pattern and table functions it replaces behave
// as Lua's own (compared against a stock Lua state).
#include "apps/hook_runtime.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <doctest/doctest.h>
#include <lua5.4/lua.hpp> // a stock Lua state, to compare the replaced library functions with
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using chroom::apps::allocation_hook_input;
using chroom::apps::hook_candidate;
using chroom::apps::hook_failure;
using chroom::apps::hook_limits;
using chroom::apps::hook_point;
using chroom::apps::hook_point_count;
using chroom::apps::hook_runtime;
using chroom::apps::room_event;

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Tests of one limit keep the others far away, so that a loaded machine (the time limit) or
// a slow build cannot make a test fail on the wrong limit.
hook_limits roomy(std::uint64_t instructions = 1'000'000) {
  hook_limits limits;
  limits.max_instructions = instructions;
  limits.max_time = 30s;
  return limits;
}

struct loaded_script {
  std::shared_ptr<std::vector<std::string>> log = std::make_shared<std::vector<std::string>>();
  std::unique_ptr<hook_runtime> runtime;
};

loaded_script load_ok(std::string_view script, hook_limits limits = roomy()) {
  loaded_script loaded;
  std::string error = "unset";
  auto log = loaded.log;
  loaded.runtime = hook_runtime::load(
    script, "hooks.lua", limits, [log](std::string_view line) { log->emplace_back(line); }, error);
  REQUIRE_MESSAGE(loaded.runtime != nullptr, error);
  CHECK(error.empty());
  return loaded;
}

struct load_failure {
  hook_failure failure = hook_failure::none;
  std::string error;
};

load_failure load_fails(std::string_view script, hook_limits limits = roomy()) {
  load_failure result;
  const auto runtime =
    hook_runtime::load(script, "hooks.lua", limits, nullptr, result.error, &result.failure);
  CHECK(runtime == nullptr);
  return result;
}

allocation_hook_input sample_request() {
  allocation_hook_input in;
  in.app_id = "telemedicine";
  in.room_id = "room-42";
  in.client_id = "alice@example.com";
  in.required_features = {"h264", "simulcast"};
  in.client_country = "DE";
  in.latitude = 52.52;
  in.longitude = 13.405;
  in.has_point = true;
  in.room_participants = 2;
  in.room_roles = {"host", "viewer"};
  in.candidates = {{"media-1", "eu-west", "FR", 12.5, 0.25},
                   {"media-2", "eu-central", "DE", 20, 0.5},
                   {"media-3", "us-east", "US", 95, 0.125}};
  return in;
}

room_event sample_event(hook_point point) {
  room_event event;
  event.point = point;
  event.app_id = "telemedicine";
  event.room_id = "room-42";
  event.client_id = "bob";
  event.role = "viewer";
  event.node_id = "media-2";
  event.unix_ms = 1700000000123;
  event.participants = 3;
  return event;
}

// Loads `body` as the body of on_room_created, calls it once and answers what it printed.
std::vector<std::string> printed_by(std::string_view body, hook_limits limits = roomy()) {
  limits.max_log_lines = 10000;
  auto loaded = load_ok("function on_room_created(ev)\n" + std::string(body) + "\nend\n", limits);
  const auto outcome = loaded.runtime->on_event(sample_event(hook_point::room_created));
  REQUIRE_MESSAGE(outcome.ok(), outcome.message);
  return *loaded.log;
}

// Calls on_room_closed, whose body is `body`, and answers the outcome and how long it took.
struct timed_outcome {
  hook_failure failure = hook_failure::none;
  std::string message;
  std::chrono::milliseconds took{};
};

timed_outcome run_closed(std::string_view body, hook_limits limits) {
  auto loaded = load_ok("function on_room_closed(ev)\n" + std::string(body) + "\nend\n", limits);
  const auto start = steady::now();
  const auto outcome = loaded.runtime->on_event(sample_event(hook_point::room_closed));
  timed_outcome result;
  result.took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start);
  result.failure = outcome.failure;
  result.message = outcome.message;
  // Whatever happened, the runtime serves the next call.
  const auto next = loaded.runtime->on_event(sample_event(hook_point::room_closed));
  CHECK(next.failure == outcome.failure);
  return result;
}

// A binary chunk made by a stock Lua, as a Lua string literal of decimal escapes.
std::string binary_chunk_literal() {
  lua_State* L = luaL_newstate();
  REQUIRE(L != nullptr);
  REQUIRE(luaL_loadstring(L, "return 'from a binary chunk'") == LUA_OK);
  std::string bytes;
  lua_dump(
    L,
    [](lua_State*, const void* data, std::size_t size, void* out) {
      static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
      return 0;
    },
    &bytes, 0);
  lua_close(L);
  REQUIRE(bytes.substr(0, 4) == "\x1bLua");
  std::string literal = "\"";
  for (const char c : bytes)
    literal += "\\" + std::to_string(static_cast<unsigned char>(c));
  return literal + "\"";
}

// The line with the chunk and line of an error ("hooks.lua:12: " or "[string "..."]:10: ")
// removed: the cases run under different chunk names and line offsets.
std::string without_position(std::string line) {
  const auto error = line.find("error: ");
  if (error == std::string::npos)
    return line;
  const auto begin = error + 7;
  const auto colon = line.find(':', line.find_first_of("]:", begin));
  if (colon == std::string::npos)
    return line;
  auto end = colon + 1;
  while (end < line.size() && line[end] >= '0' && line[end] <= '9')
    ++end;
  if (end > colon + 1 && line.compare(end, 2, ": ") == 0)
    line.erase(begin, end + 2 - begin);
  return line;
}

// The example of docs/hooks.md, verbatim: keep the two in sync.
constexpr std::string_view docs_example = R"lua(
-- hooks.lua of the app "telemedicine"
local max_participants = 8
local home_region = { DE = "eu-central", AT = "eu-central", FR = "eu-west" }
local joins = 0 -- survives between calls (see "State between calls")

function before_allocation(req)
  if req.room_participants >= max_participants then
    return { deny = "room is full (" .. max_participants .. " participants)" }
  end
  local result = {}
  if req.room_participants == 0 then
    result.role = "host" -- whoever opens the room hosts it
  elseif req.role == "" or req.role == "host" then
    result.role = "participant" -- one host per room
  end
  -- Nodes of the client's home region first, each group in the orchestrator's order.
  local region = home_region[req.client_country]
  if region and #req.candidates > 0 then
    local home, other = {}, {}
    for _, candidate in ipairs(req.candidates) do
      local list = candidate.region == region and home or other
      list[#list + 1] = candidate.node_id
    end
    table.move(other, 1, #other, #home + 1, home)
    result.nodes = home
  end
  return result
end

function on_participant_joined(ev)
  joins = joins + 1
  print(ev.client_id .. " joined " .. ev.room_id .. " on " .. ev.node_id .. " (" .. joins .. ")")
end
)lua";

} // namespace

TEST_SUITE_BEGIN("hook_runtime");

TEST_CASE("hook points and failures have stable names") {
  const std::vector<std::pair<hook_point, std::string_view>> points = {
    {hook_point::before_allocation, "before_allocation"},
    {hook_point::room_created, "on_room_created"},
    {hook_point::room_closed, "on_room_closed"},
    {hook_point::participant_joined, "on_participant_joined"},
    {hook_point::participant_left, "on_participant_left"},
  };
  REQUIRE(points.size() == hook_point_count);
  for (const auto& [point, name] : points) {
    CHECK(to_string(point) == name);
    CHECK(chroom::apps::hook_point_from_string(name) == point);
  }
  CHECK_FALSE(chroom::apps::hook_point_from_string("room_created").has_value());
  CHECK_FALSE(chroom::apps::hook_point_from_string("").has_value());

  CHECK(to_string(hook_failure::none) == "none");
  CHECK(to_string(hook_failure::compile_error) == "compile_error");
  CHECK(to_string(hook_failure::runtime_error) == "runtime_error");
  CHECK(to_string(hook_failure::instruction_limit) == "instruction_limit");
  CHECK(to_string(hook_failure::memory_limit) == "memory_limit");
  CHECK(to_string(hook_failure::time_limit) == "time_limit");
  CHECK(to_string(hook_failure::bad_result) == "bad_result");
  CHECK(is_limit(hook_failure::instruction_limit));
  CHECK(is_limit(hook_failure::memory_limit));
  CHECK(is_limit(hook_failure::time_limit));
  CHECK_FALSE(is_limit(hook_failure::runtime_error));
  CHECK_FALSE(is_limit(hook_failure::bad_result));
  CHECK_FALSE(is_limit(hook_failure::none));
}

TEST_CASE("hook runtime: load: a syntax error names the chunk and the line") {
  const auto result = load_fails("local x = 1\nif x then\n  x = = 2\nend\n");
  CHECK(result.failure == hook_failure::compile_error);
  CHECK_MESSAGE(contains(result.error, "hooks.lua:3:"), result.error);
  CHECK_MESSAGE(contains(result.error, "'='"), result.error);

  const auto unfinished = load_fails("function before_allocation(req)\n  return {}\n");
  CHECK(unfinished.failure == hook_failure::compile_error);
  CHECK_MESSAGE(contains(unfinished.error, "hooks.lua:3:"), unfinished.error);
  CHECK_MESSAGE(contains(unfinished.error, "'end' expected"), unfinished.error);
}

TEST_CASE("hook runtime: load: binary chunks are refused") {
  SUBCASE("a real chunk dumped by Lua") {
    lua_State* L = luaL_newstate();
    REQUIRE(luaL_loadstring(L, "function before_allocation() return {deny = true} end") == LUA_OK);
    std::string bytes;
    lua_dump(
      L,
      [](lua_State*, const void* data, std::size_t size, void* out) {
        static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
        return 0;
      },
      &bytes, 0);
    lua_close(L);
    const auto result = load_fails(bytes);
    CHECK(result.failure == hook_failure::compile_error);
    CHECK_MESSAGE(contains(result.error, "binary chunk"), result.error);
  }
  SUBCASE("anything starting with ESC Lua") {
    const auto result = load_fails("\x1bLua garbage");
    CHECK(result.failure == hook_failure::compile_error);
    CHECK_MESSAGE(contains(result.error, "binary chunk"), result.error);
  }
}

TEST_CASE("hook runtime: load: the top level runs under the limits") {
  SUBCASE("an endless loop") {
    const auto result = load_fails("while true do end", roomy(100'000));
    CHECK(result.failure == hook_failure::instruction_limit);
    CHECK_MESSAGE(contains(result.error, "instruction limit exceeded"), result.error);
    CHECK_MESSAGE(contains(result.error, "while loading the script"), result.error);
  }
  SUBCASE("a table growing forever") {
    const auto result =
      load_fails("local t = {} while true do t[#t + 1] = {} end", roomy(1'000'000'000));
    CHECK(result.failure == hook_failure::memory_limit);
    CHECK_MESSAGE(contains(result.error, "memory limit exceeded"), result.error);
  }
  SUBCASE("too slow") {
    hook_limits limits = roomy(1'000'000'000'000);
    limits.max_time = 30ms;
    const auto start = steady::now();
    const auto result =
      load_fails("local s = ('x'):rep(1000) while true do s = s:upper():lower() end", limits);
    CHECK(result.failure == hook_failure::time_limit);
    CHECK_MESSAGE(contains(result.error, "time limit exceeded"), result.error);
    CHECK(steady::now() - start < 5s);
  }
  SUBCASE("an error") {
    const auto result = load_fails("local x = 1\nerror('no config for ' .. x)\n");
    CHECK(result.failure == hook_failure::runtime_error);
    CHECK(result.error == "hooks.lua:2: no config for 1");
  }
  SUBCASE("a memory limit too small for Lua itself") {
    hook_limits limits = roomy();
    limits.max_memory_bytes = 2048;
    const auto result = load_fails("", limits);
    CHECK(result.failure == hook_failure::memory_limit);
    CHECK_MESSAGE(contains(result.error, "2048"), result.error);
  }
  SUBCASE("the libraries fit in the default limit with room to spare") {
    auto loaded = load_ok("");
    CHECK(loaded.runtime->memory_used() > 0);
    CHECK(loaded.runtime->memory_used() < 100 * 1024);
  }
}

TEST_CASE("hook runtime: defines: the global functions the top level left") {
  auto loaded = load_ok(R"lua(
    function before_allocation(req) end
    on_room_closed = function(ev) print("closed") end
    on_room_created = 42 -- not a function
    local function on_participant_joined(ev) end -- local: not a hook
  )lua");
  const hook_runtime& runtime = *loaded.runtime;
  CHECK(runtime.defines(hook_point::before_allocation));
  CHECK(runtime.defines(hook_point::room_closed));
  CHECK_FALSE(runtime.defines(hook_point::room_created));
  CHECK_FALSE(runtime.defines(hook_point::participant_joined));
  CHECK_FALSE(runtime.defines(hook_point::participant_left));

  // A point the script does not define: a no-op that does not enter Lua.
  const auto outcome = loaded.runtime->on_event(sample_event(hook_point::room_created));
  CHECK(outcome.ok());
  CHECK(loaded.runtime->calls() == 0);
  CHECK(loaded.runtime->on_event(sample_event(hook_point::room_closed)).ok());
  CHECK(loaded.runtime->calls() == 1);
  CHECK(*loaded.log == std::vector<std::string>{"closed"});

  auto empty = load_ok("-- nothing");
  const auto allocation = empty.runtime->before_allocation(sample_request());
  CHECK(allocation.ok());
  CHECK_FALSE(allocation.value.deny);
  CHECK_FALSE(allocation.value.nodes.has_value());
  CHECK(empty.runtime->calls() == 0);
}

TEST_CASE("hook runtime: before_allocation: the request table mirrors the input") {
  auto loaded = load_ok(R"lua(
    function before_allocation(req)
      print(req.app_id, req.room_id, req.client_id, "[" .. req.role .. "]", req.client_country)
      print(table.concat(req.required_features, ","), table.concat(req.room_roles, ","),
            req.room_participants, math.type(req.room_participants))
      print(req.has_point, req.latitude, req.longitude)
      for i, c in ipairs(req.candidates) do
        print(i, c.node_id, c.region, c.country, c.rtt_ms, c.load)
      end
      print(#req.candidates)
    end
  )lua");
  allocation_hook_input in = sample_request();
  REQUIRE(loaded.runtime->before_allocation(in).ok());
  CHECK(*loaded.log == std::vector<std::string>{
                         "telemedicine\troom-42\talice@example.com\t[]\tDE",
                         "h264,simulcast\thost,viewer\t2\tinteger",
                         "true\t52.52\t13.405",
                         "1\tmedia-1\teu-west\tFR\t12.5\t0.25",
                         "2\tmedia-2\teu-central\tDE\t20.0\t0.5",
                         "3\tmedia-3\tus-east\tUS\t95.0\t0.125",
                         "3",
                       });

  SUBCASE("no location, no candidates, text that looks like code") {
    loaded.log->clear();
    in.has_point = false;
    in.candidates.clear();
    in.required_features.clear();
    in.room_roles.clear();
    in.room_participants = 0;
    in.role = "viewer";
    in.client_country = "";
    in.client_id = "\"); os.exit(1) --\n]] print('pwned') --[[";
    REQUIRE(loaded.runtime->before_allocation(in).ok());
    CHECK(*loaded.log == std::vector<std::string>{
                           "telemedicine\troom-42\t\"); os.exit(1) --\n]] print('pwned') "
                           "--[[\t[viewer]\t",
                           "\t\t0\tinteger",
                           "false\tnil\tnil",
                           "0",
                         });
  }
}

TEST_CASE("hook runtime: before_allocation: results") {
  const auto call = [](std::string_view body) {
    auto loaded = load_ok("function before_allocation(req)\n" + std::string(body) + "\nend\n");
    auto outcome = loaded.runtime->before_allocation(sample_request());
    REQUIRE_MESSAGE(outcome.ok(), outcome.message);
    return outcome.value;
  };
  SUBCASE("nil: no change") {
    const auto result = call("return nil");
    CHECK_FALSE(result.deny);
    CHECK(result.deny_reason.empty());
    CHECK_FALSE(result.role.has_value());
    CHECK_FALSE(result.nodes.has_value());
    CHECK_FALSE(call("").deny); // no return at all
    CHECK_FALSE(call("return {}").nodes.has_value());
  }
  SUBCASE("deny with a reason") {
    const auto result = call("return { deny = 'room ' .. req.room_id .. ' is full' }");
    CHECK(result.deny);
    CHECK(result.deny_reason == "room room-42 is full");
  }
  SUBCASE("deny = true, deny = '' and deny = false") {
    const auto denied = call("return { deny = true }");
    CHECK(denied.deny);
    CHECK(denied.deny_reason == "denied by the application's hook");
    CHECK(call("return { deny = '' }").deny_reason == "denied by the application's hook");
    CHECK_FALSE(call("return { deny = false }").deny);
  }
  SUBCASE("a long reason is cut") {
    const auto result = call("return { deny = string.rep('r', 5000) }");
    CHECK(result.deny);
    CHECK(result.deny_reason == std::string(1024, 'r'));
  }
  SUBCASE("role") {
    for (const char* role : {"host", "presenter", "participant", "viewer"}) {
      CAPTURE(role);
      const auto result = call("return { role = '" + std::string(role) + "' }");
      CHECK(result.role == role);
      CHECK_FALSE(result.deny);
    }
  }
  SUBCASE("nodes: reordered, a subset") {
    CHECK(call("return { nodes = { 'media-3', 'media-1', 'media-2' } }").nodes ==
          std::vector<std::string>{"media-3", "media-1", "media-2"});
    CHECK(call("return { nodes = { 'media-2' } }").nodes == std::vector<std::string>{"media-2"});
    const auto cheapest = call(R"lua(
      local best = req.candidates[1]
      for _, c in ipairs(req.candidates) do if c.load < best.load then best = c end end
      return { nodes = { best.node_id }, role = "viewer" }
    )lua");
    CHECK(cheapest.nodes == std::vector<std::string>{"media-3"});
    CHECK(cheapest.role == "viewer");
  }
}

TEST_CASE("hook runtime: before_allocation: a malformed result is bad_result naming the field") {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
    {"return 42", {"before_allocation must return nil or a table, not a number"}},
    {"return 'deny'", {"not a string"}},
    {"return true", {"not a boolean"}},
    {"return { deny = 1 }", {"field 'deny'", "not a number"}},
    {"return { deny = {} }", {"field 'deny'", "not a table"}},
    {"return { role = 'admin' }", {"field 'role'", "\"admin\""}},
    {"return { role = 'Host' }", {"field 'role'", "\"Host\""}},
    {"return { role = 7 }", {"field 'role' must be a string, not a number"}},
    {"return { nodes = 'media-1' }", {"field 'nodes' must be an array", "not a string"}},
    {"return { nodes = { 'media-1', 'media-9' } }",
     {"field 'nodes'", "\"media-9\"", "not one of the candidates"}},
    {"return { nodes = { 'media-1', 5 } }", {"field 'nodes[2]' must be a string", "number"}},
    {"return { nodes = { 'media-2', 'media-2' } }", {"field 'nodes'", "\"media-2\" twice"}},
    {"return { nodes = {} }", {"field 'nodes' is empty"}},
    {"return { nodes = { first = 'media-1' } }", {"field 'nodes' must be an array"}},
    {"return { nodes = { [1] = 'media-1', [3] = 'media-2' } }", {"field 'nodes' must be an array"}},
    {"return { deny = true, nods = { 'media-1' } }", {"unknown field \"nods\""}},
    {"return { 'media-1' }", {"number key"}},
    {"return { nodes = { '\\n\\0' .. string.rep('x', 100) } }", {"\"??xxx", "...\""}},
  };
  for (const auto& [body, parts] : cases) {
    CAPTURE(body);
    auto loaded = load_ok("function before_allocation(req)\n" + body + "\nend\n");
    const auto outcome = loaded.runtime->before_allocation(sample_request());
    CHECK(outcome.failure == hook_failure::bad_result);
    for (const std::string& part : parts)
      CHECK_MESSAGE(contains(outcome.message, part), outcome.message);
    // A bad result changes nothing, and the runtime is not reloaded for it.
    CHECK_FALSE(outcome.value.deny);
    CHECK_FALSE(outcome.value.role.has_value());
    CHECK_FALSE(outcome.value.nodes.has_value());
    CHECK(loaded.runtime->failures() == 1);
    CHECK(loaded.runtime->reloads() == 0);
  }
}

TEST_CASE("hook runtime: before_allocation: the example of docs/hooks.md") {
  auto loaded = load_ok(docs_example);
  CHECK(loaded.runtime->defines(hook_point::before_allocation));
  CHECK(loaded.runtime->defines(hook_point::participant_joined));
  CHECK_FALSE(loaded.runtime->defines(hook_point::room_closed));

  allocation_hook_input in = sample_request(); // from DE, two in the room
  auto outcome = loaded.runtime->before_allocation(in);
  REQUIRE_MESSAGE(outcome.ok(), outcome.message);
  CHECK_FALSE(outcome.value.deny);
  CHECK(outcome.value.role == "participant");
  CHECK(outcome.value.nodes == std::vector<std::string>{"media-2", "media-1", "media-3"});

  in.room_participants = 0;
  in.client_country = "US";
  in.role = "viewer";
  outcome = loaded.runtime->before_allocation(in);
  REQUIRE(outcome.ok());
  CHECK(outcome.value.role == "host");
  CHECK_FALSE(outcome.value.nodes.has_value());

  in.room_participants = 3;
  outcome = loaded.runtime->before_allocation(in);
  REQUIRE(outcome.ok());
  CHECK_FALSE(outcome.value.role.has_value()); // asked for viewer: kept

  in.room_participants = 8;
  outcome = loaded.runtime->before_allocation(in);
  REQUIRE(outcome.ok());
  CHECK(outcome.value.deny);
  CHECK(outcome.value.deny_reason == "room is full (8 participants)");

  CHECK(loaded.runtime->on_event(sample_event(hook_point::participant_joined)).ok());
  CHECK(loaded.runtime->on_event(sample_event(hook_point::participant_joined)).ok());
  CHECK(*loaded.log == std::vector<std::string>{"bob joined room-42 on media-2 (1)",
                                                "bob joined room-42 on media-2 (2)"});
}

TEST_CASE("hook runtime: events: each point calls its function with the event's fields") {
  auto loaded = load_ok(R"lua(
    local function show(ev)
      print(ev.event, ev.app_id, ev.room_id, ev.client_id, ev.role, ev.node_id, ev.unix_ms,
            math.type(ev.unix_ms), ev.participants)
      return "ignored", 42
    end
    on_room_created, on_room_closed = show, show
    on_participant_joined, on_participant_left = show, show
  )lua");
  for (const hook_point point : {hook_point::room_created, hook_point::room_closed,
                                 hook_point::participant_joined, hook_point::participant_left}) {
    CAPTURE(to_string(point));
    loaded.log->clear();
    room_event event = sample_event(point);
    if (point == hook_point::room_closed) {
      event.client_id.clear();
      event.role.clear();
      event.participants = 0;
    }
    const auto outcome = loaded.runtime->on_event(event);
    CHECK(outcome.ok());
    REQUIRE(loaded.log->size() == 1);
    const std::string expected =
      std::string(to_string(point)) +
      (point == hook_point::room_closed
         ? "\ttelemedicine\troom-42\t\t\tmedia-2\t1700000000123\tinteger\t0"
         : "\ttelemedicine\troom-42\tbob\tviewer\tmedia-2\t1700000000123\tinteger\t3");
    CHECK(loaded.log->front() == expected);
  }
  CHECK(loaded.runtime->calls() == 4);

  // before_allocation is not an event: refused without calling anything.
  const auto misuse = loaded.runtime->on_event(sample_event(hook_point::before_allocation));
  CHECK(misuse.failure == hook_failure::runtime_error);
  CHECK(loaded.runtime->calls() == 4);
}

TEST_CASE("hook runtime: instruction limit: an endless loop fails the call; the next call works") {
  auto loaded = load_ok(R"lua(
    local created = 0 -- state between calls
    function on_room_created(ev) created = created + 1; print("created", created) end
    function on_room_closed(ev) while true do end end
  )lua",
                        roomy(100'000));
  hook_runtime& runtime = *loaded.runtime;
  CHECK(runtime.on_event(sample_event(hook_point::room_created)).ok());
  CHECK(runtime.on_event(sample_event(hook_point::room_created)).ok());

  const auto start = steady::now();
  const auto outcome = runtime.on_event(sample_event(hook_point::room_closed));
  CHECK(steady::now() - start < 5s);
  CHECK(outcome.failure == hook_failure::instruction_limit);
  CHECK(outcome.message == "instruction limit exceeded (more than 100000 instructions)");
  CHECK(runtime.memory_used() == 0); // the state was dropped

  CHECK(runtime.on_event(sample_event(hook_point::room_created)).ok());
  CHECK(runtime.reloads() == 1);
  // The script was loaded again: its state started over.
  CHECK(*loaded.log == std::vector<std::string>{"created\t1", "created\t2", "created\t1"});
  CHECK(runtime.calls() == 4);
  CHECK(runtime.failures() == 1);
}

TEST_CASE(
  "hook runtime: instruction limit: pcall, xpcall, coroutines and metamethods cannot swallow it") {
  const std::vector<std::string> escapes = {
    "while true do pcall(function() while true do end end) end",
    "local function f() while true do pcall(f) end end f()",
    "while true do xpcall(function() while true do end end, function() while true do end end) "
    "end",
    "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    "while true do pcall(coroutine.wrap(function() while true do end end)) end",
    // Nested coroutines, each catching the one inside.
    "local function nest(n) return function() while true do if n > 0 then "
    "coroutine.resume(coroutine.create(nest(n - 1))) end end end end "
    "while true do pcall(nest(5)) end",
    // Catches once and returns right away: the call fails all the same.
    "return pcall(function() while true do end end)",
    "local ok = pcall(function() while true do end end) return ok",
    "while true do pcall(string.gsub, 'abc', '.', function() while true do end end) end",
    "while true do pcall(table.sort, {3, 2, 1}, function(a, b) while true do end end) end",
    "local t = setmetatable({}, {__index = function() while true do end end}) "
    "while true do pcall(function() return t.x end) end",
    "while true do pcall(function() local x <close> = setmetatable({}, {__close = function() "
    "while true do end end}) while true do end end) end",
    "while true do pcall(load('while true do end')) end",
  };
  for (const std::string& body : escapes) {
    CAPTURE(body);
    const auto result = run_closed(body, roomy(100'000));
    CHECK(result.failure == hook_failure::instruction_limit);
    CHECK(result.took < 5s);
  }
}

TEST_CASE(
  "hook runtime: memory limit: huge strings and tables fail the call; the next call works") {
  const std::vector<std::string> hogs = {
    "local s = string.rep('x', 1e9)",
    "local s = ('x'):rep(1e6) .. ('y'):rep(1e6) .. ('z'):rep(1e7)",
    "local t = {} while true do t[#t + 1] = ('x'):rep(64) .. #t end",
    "local t = {} local i = 0 while true do i = i + 1 t['k' .. i] = i end",
    "local t = {} while true do t = {t, t} end",
    // Caught, and caught again: the limit still stops the call.
    "while true do pcall(string.rep, 'x', 1e8) end",
    "local ok = pcall(string.rep, 'x', 1e9) return ok",
    "local keep = {} while true do pcall(function() keep[#keep + 1] = ('x'):rep(1e5) end) end",
    "local s = table.concat({('x'):rep(3e6), ('x'):rep(3e6), ('x'):rep(3e6)})",
  };
  for (const std::string& body : hogs) {
    CAPTURE(body);
    const auto result = run_closed(body, roomy(1'000'000'000));
    CHECK(result.failure == hook_failure::memory_limit);
    CHECK(result.message == "memory limit exceeded (more than 8388608 bytes)");
    CHECK(result.took < 10s);
  }

  SUBCASE("garbage near the limit is collected, not counted against the script") {
    // (string.rep holds its result twice for a moment: 3 + 2 + 2 MB at the peak.)
    for (const std::string body : {
           "local keep = ('k'):rep(3e6) for i = 1, 40 do local tmp = keep .. i end",
           "local keep = ('k'):rep(3e6) for i = 1, 40 do local tmp = ('y'):rep(2e6) end",
           "local keep = ('k'):rep(3e6) for i = 1, 40 do local t = {} for j = 1, 3e4 do t[j] = j "
           "end end",
         }) {
      CAPTURE(body);
      const auto result = run_closed(body, roomy(1'000'000'000));
      CHECK_MESSAGE(result.failure == hook_failure::none, result.message);
    }
  }
  SUBCASE("the state is rebuilt: memory and globals start over") {
    auto loaded = load_ok(R"lua(
      big = {}
      function on_room_created(ev) big[#big + 1] = ('x'):rep(1e6); print(#big) end
    )lua",
                          roomy(1'000'000'000));
    hook_runtime& runtime = *loaded.runtime;
    const std::size_t initial = runtime.memory_used();
    std::size_t before_failure = 0;
    hook_failure failure = hook_failure::none;
    for (int i = 0; i < 20 && failure == hook_failure::none; ++i) {
      before_failure = runtime.memory_used();
      failure = runtime.on_event(sample_event(hook_point::room_created)).failure;
    }
    CHECK(failure == hook_failure::memory_limit);
    CHECK(before_failure > 6 * 1000 * 1000);
    CHECK(before_failure <= 8 * 1024 * 1024);
    CHECK(runtime.on_event(sample_event(hook_point::room_created)).ok());
    CHECK(loaded.log->back() == "1");
    CHECK(runtime.memory_used() < initial + 3 * 1024 * 1024);
  }
}

TEST_CASE("hook runtime: time limit: slow calls fail on wall time") {
  hook_limits limits = roomy(1'000'000'000'000);
  limits.max_time = 30ms;
  const std::vector<std::string> slow = {
    "local s = ('x'):rep(10000) while true do s = s:upper():lower() end",
    "while true do end",
    "while true do pcall(function() while true do end end) end",
    "local s = ('x'):rep(1e6) while true do local t = s .. 'y' end",
  };
  for (const std::string& body : slow) {
    CAPTURE(body);
    const auto result = run_closed(body, limits);
    CHECK(result.failure == hook_failure::time_limit);
    CHECK(result.message == "time limit exceeded (more than 30 ms)");
    CHECK(result.took >= 30ms);
    CHECK(result.took < 3s);
  }
}

TEST_CASE("hook runtime: library calls whose work Lua does not bound stop at the limits") {
  SUBCASE("loops that Lua's own functions would run for years") {
    const std::vector<std::string> runaway = {
      "table.move({}, 1, math.maxinteger - 1, 1)",
      "table.move({}, 1, 1e15, 2, {})",
      "table.insert(setmetatable({}, {__len = function() return math.maxinteger // 2 end}), 1, "
      "'x')",
      "table.remove(setmetatable({}, {__len = function() return math.maxinteger // 2 end}), 1)",
      "local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 100 do table.insert(t, 1, i) end",
      "('a'):rep(1e5):find('.-.-.-b')",
      "('a'):rep(1e5):gsub('.-.-b', '')",
      "for m in ('a'):rep(1e5):gmatch('.-.-b') do end",
      "('('):rep(3e5):find('%b()')",
      "(('a'):rep(1e4)):find('(a-)(a-)(a-)%3%2%1b')",
    };
    for (const std::string& body : runaway) {
      CAPTURE(body);
      const auto result = run_closed(body, roomy());
      CHECK(result.failure == hook_failure::instruction_limit);
      CHECK(result.took < 5s);
    }
  }
  SUBCASE("and work that is only slow in Lua's own is fast") {
    const auto start = steady::now();
    const auto lines = printed_by(R"lua(
      print(#string.rep("", math.maxinteger), #string.rep("", 1e15, ""))
      local hay, needle = ("a"):rep(2e6), ("a"):rep(5e5) .. "b"
      print(hay:find(needle, 1, true), hay:find(needle))
      print(hay:find(("a"):rep(5e5), 2e6 - 5e5 + 1, true))
    )lua");
    CHECK(lines == std::vector<std::string>{"0\t0", "nil\tnil", "1500001\t2000000"});
    CHECK(steady::now() - start < 5s);
  }
}

TEST_CASE("hook runtime: runtime errors: the message with its line, any error object") {
  const std::vector<std::pair<std::string, std::string>> cases = {
    {"error('boom')", "hooks.lua:3: boom"},
    {"local x = nil\nreturn x.field", "hooks.lua:4: attempt to index a nil value (local 'x')"},
    {"error('no position', 0)", "no position"},
    {"error({code = 1})", "(error object is a table value)"},
    {"error(setmetatable({}, {__tostring = function() return 'x' end}))",
     "(error object is a table value)"},
    {"error()", "(error object is a nil value)"},
    {"error(42)", "42"},
    {"error(2.5)", "2.5"},
    {"error(true)", "(error object is a boolean value)"},
    {"error(coroutine.create(print))", "(error object is a thread value)"},
    {"error(('e'):rep(5000), 0)", std::string(1024, 'e') + "..."},
    {"local t = {} t.x.y = 1", "hooks.lua:3: attempt to index a nil value (field 'x')"},
    {"return 1 < 'x'", "hooks.lua:3: attempt to compare number with string"},
  };
  for (const auto& [body, message] : cases) {
    CAPTURE(body);
    // The body starts on line 3.
    auto loaded = load_ok("x = 0\nfunction on_room_closed(ev)\n" + body + "\nend\n" +
                          "function on_room_created(ev) x = x + 1 print(x) end\n");
    const auto outcome = loaded.runtime->on_event(sample_event(hook_point::room_closed));
    CHECK(outcome.failure == hook_failure::runtime_error);
    CHECK(outcome.message == message);
    // A runtime error does not reload the script: its globals survive.
    CHECK(loaded.runtime->on_event(sample_event(hook_point::room_created)).ok());
    CHECK(loaded.runtime->on_event(sample_event(hook_point::room_created)).ok());
    CHECK(*loaded.log == std::vector<std::string>{"1", "2"});
    CHECK(loaded.runtime->reloads() == 0);
  }
}

TEST_CASE("hook runtime: sandbox: no files, processes, modules, debug or bytecode") {
  const auto lines = printed_by(R"lua(
    print(io, os.execute, os.getenv, os.exit, os.remove, os.rename, os.tmpname, os.date)
    print(require, package, dofile, loadfile, debug, string.dump, warn, ("").dump)
    print(rawget(_G, "io"), _ENV.debug, getmetatable("").__index.dump)
    print(math.type(os.time()), type(os.clock()), type(coroutine.create), type(utf8.char))
    print(pcall(collectgarbage))
    print(pcall(collectgarbage, "collect"))
    print(pcall(collectgarbage, "stop"))
    print(type(collectgarbage("count")), collectgarbage("count") > 10)
  )lua");
  REQUIRE(lines.size() == 8);
  CHECK(lines[0] == "nil\tnil\tnil\tnil\tnil\tnil\tnil\tnil");
  CHECK(lines[1] == "nil\tnil\tnil\tnil\tnil\tnil\tnil\tnil");
  CHECK(lines[2] == "nil\tnil\tnil");
  CHECK(lines[3] == "integer\tnumber\tfunction\tfunction");
  for (std::size_t i = 4; i < 7; ++i) {
    CAPTURE(lines[i]);
    CHECK(contains(lines[i], "false\t"));
    CHECK(contains(lines[i], "only \"count\""));
  }
  CHECK(lines[7] == "number\ttrue");

  SUBCASE("load: source text only") {
    const auto loaded = printed_by("local chunk = " + binary_chunk_literal() + R"lua(
      print(#chunk > 20, chunk:sub(2, 4))
      print(load(chunk))
      print(load(chunk, "dumped", "b"))
      print(load(chunk, "dumped", "bt"))
      print(pcall(load, function() return nil end))
      print(load("return 1 + 2")())
      print(load("return x", "=env", "t", { x = 5 })())
      print(load("syntax error here", "=broken"))
    )lua");
    REQUIRE(loaded.size() == 8);
    CHECK(loaded[0] == "true\tLua");
    for (std::size_t i = 1; i < 4; ++i) {
      CAPTURE(loaded[i]);
      CHECK(contains(loaded[i], "nil\t"));
      CHECK(contains(loaded[i], "attempt to load a binary chunk"));
    }
    CHECK(contains(loaded[4], "false\t"));
    CHECK(contains(loaded[4], "string expected"));
    CHECK(loaded[5] == "3");
    CHECK(loaded[6] == "5");
    CHECK(contains(loaded[7], "nil\tbroken:1:"));
  }
  SUBCASE("no finalizers") {
    const auto gc = printed_by(R"lua(
      print(pcall(setmetatable, {}, { __gc = function() end }))
      local mt = {}
      local t = setmetatable({}, mt)
      mt.__gc = function() end -- too late to mark t: never finalized
      print(getmetatable(t) == mt)
      print(pcall(setmetatable, setmetatable({}, { __metatable = "locked" }), {}))
      print(setmetatable({}, nil) ~= nil, pcall(setmetatable, {}, 5))
    )lua");
    REQUIRE(gc.size() == 4);
    CHECK(contains(gc[0], "false\t"));
    CHECK(contains(gc[0], "__gc metamethods are not available"));
    CHECK(gc[1] == "true");
    CHECK(contains(gc[2], "cannot change a protected metatable"));
    CHECK(contains(gc[3], "true\tfalse\t"));
    CHECK(contains(gc[3], "nil or table expected"));
  }
}

TEST_CASE("hook runtime: print goes to the log callback, cut and rate limited") {
  hook_limits limits = roomy();
  limits.max_log_lines = 3;
  auto loaded = load_ok(R"lua(
    function on_room_created(ev)
      print("a", 1, 2.5, nil, true)
      print(("x"):rep(5000))
      print(setmetatable({}, { __tostring = function() return "custom" end }))
      for i = 1, 100 do print("flood", i) end
    end
  )lua",
                        limits);
  REQUIRE(loaded.runtime->on_event(sample_event(hook_point::room_created)).ok());
  const std::vector<std::string> expected = {
    "a\t1\t2.5\tnil\ttrue",
    std::string(1024, 'x') + "...",
    "custom",
    "(further print output of this call is dropped)",
  };
  CHECK(*loaded.log == expected);
  // The allowance is per call.
  REQUIRE(loaded.runtime->on_event(sample_event(hook_point::room_created)).ok());
  CHECK(loaded.log->size() == 8);

  SUBCASE("a log callback that throws, or none") {
    std::string error;
    auto throwing = hook_runtime::load(
      "function on_room_created(ev) print('x') print('y') end", "t.lua", roomy(),
      [](std::string_view) { throw std::runtime_error("log is down"); }, error);
    REQUIRE(throwing != nullptr);
    CHECK(throwing->on_event(sample_event(hook_point::room_created)).ok());
    auto silent = hook_runtime::load("function on_room_created(ev) print('x') end", "t.lua",
                                     roomy(), nullptr, error);
    REQUIRE(silent != nullptr);
    CHECK(silent->on_event(sample_event(hook_point::room_created)).ok());
  }
}

TEST_CASE("hook runtime: counters: calls, failures, reloads") {
  auto loaded = load_ok(R"lua(
    function before_allocation(req)
      if req.room_id == "error" then error("x") end
      if req.room_id == "bad" then return 1 end
      if req.room_id == "loop" then while true do end end
      return nil
    end
  )lua",
                        roomy(100'000));
  hook_runtime& runtime = *loaded.runtime;
  CHECK(runtime.calls() == 0);
  allocation_hook_input in = sample_request();
  const std::vector<std::pair<std::string, hook_failure>> sequence = {
    {"ok", hook_failure::none},        {"error", hook_failure::runtime_error},
    {"bad", hook_failure::bad_result}, {"loop", hook_failure::instruction_limit},
    {"ok", hook_failure::none},        {"loop", hook_failure::instruction_limit},
  };
  for (const auto& [room, failure] : sequence) {
    in.room_id = room;
    CHECK(runtime.before_allocation(in).failure == failure);
  }
  CHECK(runtime.calls() == 6);
  CHECK(runtime.failures() == 4);
  CHECK(runtime.reloads() == 1); // the second loop's state is rebuilt by the next call
  in.room_id = "ok";
  CHECK(runtime.before_allocation(in).ok());
  CHECK(runtime.reloads() == 2);
  CHECK(runtime.limits().max_instructions == 100'000);
}

TEST_CASE("hook runtime: a script whose top level fails on reload fails the calls after a limit") {
  // The top level passes during the current second only (os.time is the same clock as
  // std::time): loaded in it, reloaded after it.
  std::unique_ptr<hook_runtime> first;
  std::time_t expiry = 0;
  for (int attempt = 0; attempt < 3 && first == nullptr; ++attempt) { // a second may tick
    expiry = std::time(nullptr);
    std::string error;
    first = hook_runtime::load("if os.time() > " + std::to_string(expiry) +
                                 " then error('configuration expired') end\n"
                                 "function on_room_closed(ev) while true do end end\n"
                                 "function on_room_created(ev) end\n",
                               "hooks.lua", roomy(100'000), nullptr, error);
  }
  REQUIRE(first != nullptr);
  hook_runtime& runtime = *first;
  while (std::time(nullptr) <= expiry)
    std::this_thread::sleep_for(50ms);
  CHECK(runtime.on_event(sample_event(hook_point::room_created)).ok()); // the first state lives
  CHECK(runtime.on_event(sample_event(hook_point::room_closed)).failure ==
        hook_failure::instruction_limit);
  for (int i = 0; i < 2; ++i) { // each call tries again
    const auto outcome = runtime.on_event(sample_event(hook_point::room_created));
    CHECK(outcome.failure == hook_failure::runtime_error);
    CHECK(outcome.message ==
          "reloading the script after a limit failure: hooks.lua:1: configuration expired");
  }
  CHECK(runtime.calls() == 4);
  CHECK(runtime.failures() == 3);
  CHECK(runtime.reloads() == 0);
  CHECK(runtime.memory_used() == 0);
}

TEST_CASE("hook runtime: runtimes on different threads share nothing") {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&wrong, t] {
      std::string error;
      auto runtime = hook_runtime::load(
        "n = 0\nfunction on_room_created(ev) n = n + 1 if n % 3 == 0 then while true do end end "
        "end\nfunction before_allocation(req) return { nodes = { req.candidates[" +
          std::to_string(t % 3 + 1) + "].node_id } } end",
        "t.lua", roomy(50'000), nullptr, error);
      if (runtime == nullptr) {
        ++wrong;
        return;
      }
      const allocation_hook_input in = sample_request();
      for (int i = 0; i < 30; ++i) {
        const auto event = runtime->on_event(sample_event(hook_point::room_created));
        // n restarts at 1 after each reload: calls 1, 2 pass and 3 loops, again and again.
        const bool should_fail = i % 3 == 2;
        if (event.ok() == should_fail)
          ++wrong;
        const auto allocation = runtime->before_allocation(in);
        if (!allocation.ok() || !allocation.value.nodes ||
            allocation.value.nodes->front() != in.candidates[t % 3].node_id)
          ++wrong;
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  CHECK(wrong == 0);
}

// The pattern functions, string.rep and table.insert/remove/move are reimplemented (with a
// budget); they must answer what Lua's own answer, errors included.
TEST_CASE("hook runtime: replaced library functions behave as Lua's own") {
  const std::string cases = R"lua(
    local function show(...)
      local out = {}
      for i = 1, select("#", ...) do
        local v = select(i, ...)
        out[#out + 1] = (math.type(v) or type(v)) .. ":" .. tostring(v)
      end
      return table.concat(out, ",")
    end
    local function try(f, ...)
      local r = table.pack(pcall(f, ...))
      if r[1] then return show(table.unpack(r, 2, r.n)) end
      return "error: " .. tostring(r[2])
    end
    local lines = {}
    local function add(...) lines[#lines + 1] = table.concat({...}, " ") end

    local finds = {
      {"hello world", "o w"}, {"hello world", "o", 6}, {"hello", "l+"}, {"hello", "^h"},
      {"hello", "^e"}, {"hello", "lo$"}, {"hello", "l$"}, {"hello", ""}, {"hello", "", 10},
      {"hello", "", 6}, {"hello", "", -2}, {"hello", "l", -2}, {"hello", "l", -100},
      {"hello", "l", 100}, {"hello", "l", 0}, {"a.b", ".", 1, true}, {"a+b", "+", 1, true},
      {"a+b", "a+", 1, false}, {"key = value", "(%w+)%s*=%s*(%w+)"},
      {"THE (quick) fox", "%((%a+)%)"}, {"  trim me  ", "^%s*(.-)%s*$"},
      {"x = [[long]]", "%[%[(.-)%]%]"}, {"f(a(b)c)d", "%b()"}, {"f(a(b)c", "%b()"},
      {"THE quick", "%f[%a]%a+"}, {"THE quick", "%f[%l]%a+"}, {"end", "%f[%z]"},
      {"hello", "()ll()"}, {"abcabc", "(abc)%1"}, {"abcabd", "(abc)%1"}, {"abc", "[a-b]+"},
      {"a]b", "[]]"}, {"a-b", "[a-]+"}, {"a^b", "[%^]"}, {"a^b", "[b^]+"}, {"abc", "[^a]+"},
      {"abc", "[^]a]+"}, {"0x1F!", "%x+", 3}, {"tab\there", "%c"}, {"tab\there", "%C+"},
      {"Uni\195\169", "[\128-\255]+"}, {"aaa", "a-b"}, {"aaa", "a-"}, {"aaab", "a-b"},
      {"aaab", "a*b"}, {"b", "a*b"}, {"a", "a?a?a"}, {"", "x*"}, {"", ""}, {"", "^$"},
      {"a\0b", "\0"}, {"a\0b", "[\0]"}, {"a\0b", "%z"}, {"a.b", "%."}, {"a$b", "$b"},
      {"ab$", "b$"}, {"x$", "x$$"}, {"x", "^x$"}, {"punct!?", "%p+"}, {"MiXeD", "%u%l"},
      {"a1 b2", "%w%d"}, {"a b\tc", "%s"}, {"a b", "%S+", 2}, {"12ab", "%D+"}, {"g h", "%g"},
      {"abc", "%"}, {"abc", "[a"}, {"abc", "[a%"}, {"abc", "(a"}, {"abc", "a)"}, {"abc", "%1"},
      {"abc", "(a)%2"}, {"abc", "%0"}, {"abc", "%f"}, {"abc", "%fa"}, {"abc", "%b"},
      {"abc", "%bx"}, {"abc", "(()"}, {"abc", "()"}, {"abc", "(a)(b)(c)"},
      {("x"):rep(40), ("(x)"):rep(33)}, {"aaa", "(a*(.)%w(%s*))"}, {"hello", "(h)(e)(l)(l)(o)"},
      {"one", "o(n)(e)", 1}, {12345, 34}, {"x", 5},
    }
    for i, c in ipairs(finds) do
      add("find", i, try(string.find, c[1], c[2], c[3], c[4]))
      add("match", i, try(string.match, c[1], c[2], c[3]))
    end

    local gmatches = {
      {"one two  three", "%a+"}, {"k=v, a=b", "(%w+)=(%w+)"}, {"abc", ""}, {"abc", "x*"},
      {"hello world", "o", 6}, {"abc", "()"}, {"^a^a", "^a"}, {"abc", "", 10}, {"abc", "%w", -1},
      {"a,b,,c", "([^,]*)"}, {"abc", "(", 1}, {"aaa", "a-"},
    }
    for i, c in ipairs(gmatches) do
      add("gmatch", i, try(function()
        local out = {}
        for a, b in string.gmatch(c[1], c[2], c[3]) do out[#out + 1] = show(a, b) end
        return table.concat(out, ";")
      end))
    end

    local gsubs = {
      {"hello world", "o", "0"}, {"hello world", "(o)", "[%1]"}, {"hello", "", "-"},
      {"abc", "%w", "%0%0"}, {"abc", "%w", "%%"}, {"hello world", "%w+", "<%0>", 1},
      {"abc", "b", {b = "B"}}, {"abc", "%w", {a = 1, b = false}},
      {"abc", "%w", function(c) return c:upper() end},
      {"abc", "%w", function(c) if c == "b" then return nil end return c .. c end},
      {"abc", "(b)()", "%2"}, {"abc", "b", "%2"}, {"abc", "b", "%"}, {"abc", "b", "%x"},
      {"abc", "^a", "X"}, {"aaa", "^a", "X"}, {"abc", "x*", "-"}, {"abc", "b", 5},
      {"abc", "b", true}, {"abc", "%w", function() return {} end},
      {"hello world", "l+", "L", 0}, {"hello world", "l+", "L", -1}, {"abc", "", ""},
      {"a b c", "%s", "%1"}, {"x=1, y=2", "(%w+)=(%w+)", "%2=%1"}, {"abc", "b", "%0%0%0"},
      {"abc", "(b)", function(a, b) return tostring(b) end}, {"hello", "l", "%", 1},
    }
    for i, c in ipairs(gsubs) do
      add("gsub", i, try(string.gsub, c[1], c[2], c[3], c[4]))
    end

    local reps = {
      {"ab", 3}, {"ab", 3, ","}, {"", 5}, {"x", 0}, {"x", -1}, {"", 3, "-"}, {"ab", 1, ","},
      {"x", 2.0}, {"x", 2.5}, {"x", "3"}, {5, 2}, {"x", 1e10}, {{}, 2},
    }
    for i, c in ipairs(reps) do add("rep", i, try(string.rep, c[1], c[2], c[3])) end

    local function dump(t) return show(t[0], t[1], t[2], t[3], t[4], t[5], t[6]) end
    local function tables(name, f)
      add(name, try(function() local t = {1, 2, 3} local r = show(f(t)) return r .. " " .. dump(t) end))
    end
    tables("insert end", function(t) return table.insert(t, 4) end)
    tables("insert 1", function(t) return table.insert(t, 1, 0) end)
    tables("insert last+1", function(t) return table.insert(t, 4, "x") end)
    tables("insert 0", function(t) return table.insert(t, 0, "x") end)
    tables("insert 5", function(t) return table.insert(t, 5, "x") end)
    tables("insert none", function(t) return table.insert(t) end)
    tables("insert many", function(t) return table.insert(t, 1, 2, 3) end)
    tables("insert nil", function(t) return table.insert(t, 2, nil) end)
    tables("insert float", function(t) return table.insert(t, 1.5, 0) end)
    tables("insert not a table", function(t) return table.insert(nil, 1) end)
    tables("remove", function(t) return table.remove(t) end)
    tables("remove 1", function(t) return table.remove(t, 1) end)
    tables("remove 4", function(t) return table.remove(t, 4) end)
    tables("remove 5", function(t) return table.remove(t, 5) end)
    tables("remove 0", function(t) return table.remove(t, 0) end)
    tables("remove empty", function() local e = {} return table.remove(e), table.remove(e, 0) end)
    tables("remove empty 1", function() return table.remove({}, 1) end)
    tables("remove empty 2", function() return table.remove({}, 2) end)
    tables("move up", function(t) return #table.move(t, 1, 3, 2) end)
    tables("move down", function(t) return #table.move(t, 2, 3, 1) end)
    tables("move copy", function(t) return dump(table.move(t, 1, 3, 3, {})) end)
    tables("move empty range", function(t) return #table.move(t, 3, 1, 5) end)
    tables("move wrap", function(t) return table.move(t, 1, math.maxinteger, 2) end)
    tables("move too many", function(t) return table.move(t, -1, math.maxinteger, 2) end)
    tables("move bad", function(t) return table.move(t, 1, 2) end)
    tables("move to nil", function(t) return #table.move(t, 1, 3, 2, nil) end)
    tables("len", function(t)
      local p = setmetatable({}, {__len = function() return 2 end})
      table.insert(p, "a") table.insert(p, 1, "b") return dump(p), table.remove(p)
    end)
    return lines
  )lua";

  // Lua's own answers.
  std::vector<std::string> expected;
  {
    lua_State* L = luaL_newstate();
    REQUIRE(L != nullptr);
    luaL_openlibs(L);
    REQUIRE(luaL_loadstring(L, cases.c_str()) == LUA_OK);
    REQUIRE_MESSAGE(lua_pcall(L, 0, 1, 0) == LUA_OK, lua_tostring(L, -1));
    const lua_Integer count = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= count; ++i) {
      lua_rawgeti(L, -1, i);
      std::size_t length = 0;
      const char* line = lua_tolstring(L, -1, &length); // some hold NUL bytes
      expected.emplace_back(line, length);
      lua_pop(L, 1);
    }
    lua_close(L);
  }
  REQUIRE(expected.size() > 250);

  hook_limits limits = roomy(100'000'000);
  const auto lines = printed_by("local lines = (function()\n" + cases +
                                  "\nend)()\nfor _, line in ipairs(lines) do print(line) end",
                                limits);
  REQUIRE(lines.size() == expected.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string stock = without_position(expected[i]);
    // Lua 5.4.4 blames argument #1 for table.remove's position; ours names #2, the position.
    if (const auto at = stock.find("bad argument #1 to 'remove' (position");
        at != std::string::npos)
      stock[at + 14] = '2';
    CAPTURE(expected[i]);
    CHECK(without_position(lines[i]) == stock);
  }
}

TEST_SUITE_END();
