// grpc_connection driven back to back against a real nghttp2 client session, in memory:
// client bytes → server.receive(), server.produce() → client, until neither side has
// anything to say. No sockets, no actors. Every fixture checks at the end that no stream,
// no call and no byte is left over on either side.
#include "transport/grpc_connection.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <doctest/doctest.h>
#include <functional>
#include <map>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using chroom::transport::call_encoding;
using chroom::transport::call_head;
using chroom::transport::connection_limits;
using chroom::transport::grpc_code;
using chroom::transport::grpc_connection;
using chroom::transport::grpc_connection_listener;
using chroom::transport::grpc_status;
using chroom::transport::make_status;
using chroom::transport::metadata;

using header_list = std::vector<std::pair<std::string, std::string>>;

/// A DATA frame carries at most this much payload unless the peer raises
/// SETTINGS_MAX_FRAME_SIZE and the sender opts in; nghttp2 does not, so it is the
/// granularity of produce().
constexpr size_t data_frame_overshoot = 16384 + 9;

constexpr std::string_view echo_path = "/chroom.test.v1.EchoService/Echo";

// --- bytes ---------------------------------------------------------------------------

/// A 5-byte gRPC prefix announcing `size` bytes with `flag`.
std::string grpc_prefix(uint32_t size, uint8_t flag = 0) {
  return {static_cast<char>(flag), static_cast<char>(size >> 24), static_cast<char>(size >> 16),
          static_cast<char>(size >> 8), static_cast<char>(size)};
}

/// One gRPC message as the client puts it on the wire (built here rather than with
/// grpc_wire's append_grpc_frame so these tests do not trust the code they check).
std::string grpc_frame(std::string_view message, uint8_t flag = 0) {
  return grpc_prefix(static_cast<uint32_t>(message.size()), flag) + std::string(message);
}

/// Splits response DATA into messages; nullopt when it does not end on a message boundary
/// or a message is flagged compressed.
std::optional<std::vector<std::string>> split_messages(std::string_view data) {
  std::vector<std::string> messages;
  while (!data.empty()) {
    if (data.size() < 5 || data[0] != 0)
      return std::nullopt;
    auto size = (uint32_t{static_cast<uint8_t>(data[1])} << 24) |
                (uint32_t{static_cast<uint8_t>(data[2])} << 16) |
                (uint32_t{static_cast<uint8_t>(data[3])} << 8) |
                uint32_t{static_cast<uint8_t>(data[4])};
    if (data.size() - 5 < size)
      return std::nullopt;
    messages.emplace_back(data.substr(5, size));
    data.remove_prefix(5 + size);
  }
  return messages;
}

std::vector<std::string> messages_of(std::string_view data) {
  auto messages = split_messages(data);
  CHECK_MESSAGE(messages.has_value(), "response DATA does not end on a message boundary");
  return messages.value_or(std::vector<std::string>{});
}

std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

/// An HTTP/2 frame parsed from raw bytes, for connections the client session cannot follow.
struct raw_frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream_id = 0;
  std::string payload;
};

std::vector<raw_frame> parse_frames(std::string_view bytes) {
  std::vector<raw_frame> frames;
  while (bytes.size() >= 9) {
    auto u8 = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])); };
    size_t length = (u8(0) << 16) | (u8(1) << 8) | u8(2);
    if (bytes.size() < 9 + length)
      break;
    raw_frame frame;
    frame.type = static_cast<uint8_t>(u8(3));
    frame.flags = static_cast<uint8_t>(u8(4));
    frame.stream_id = ((u8(5) << 24) | (u8(6) << 16) | (u8(7) << 8) | u8(8)) & 0x7FFFFFFF;
    frame.payload = std::string(bytes.substr(9, length));
    frames.push_back(std::move(frame));
    bytes.remove_prefix(9 + length);
  }
  return frames;
}

uint32_t be32(std::string_view bytes) {
  auto u8 = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])); };
  return (u8(0) << 24) | (u8(1) << 16) | (u8(2) << 8) | u8(3);
}

std::string header_value(const header_list& headers, std::string_view name) {
  for (const auto& [key, value] : headers)
    if (key == name)
      return value;
  return "<absent>";
}

std::string metadata_value(const metadata& entries, std::string_view name) {
  for (const auto& [key, value] : entries)
    if (key == name)
      return value;
  return "<absent>";
}

header_list grpc_request(std::string_view path = echo_path) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", std::string(path)},
          {":authority", "localhost"},
          {"content-type", "application/grpc"},
          {"te", "trailers"}};
}

/// `headers` with `name` set to `value` (replaced in place, or appended).
header_list with(header_list headers, std::string_view name, std::string_view value) {
  for (auto& [key, old] : headers)
    if (key == name) {
      old = value;
      return headers;
    }
  headers.emplace_back(name, value);
  return headers;
}

header_list without(header_list headers, std::string_view name) {
  std::erase_if(headers, [&](const auto& entry) { return entry.first == name; });
  return headers;
}

// --- the client ----------------------------------------------------------------------

/// What the client sent and saw on one stream.
struct client_stream {
  // Request body still to hand to nghttp2.
  std::string body;
  size_t offset = 0;
  bool end = false;            // END_STREAM once `body` is drained
  size_t max_chunk = SIZE_MAX; // largest DATA payload, to split messages
  bool deferred = false;
  header_list request_trailers; // sent after the body instead of END_STREAM on DATA
  size_t data_frames_sent = 0;
  // Response.
  header_list headers;
  header_list trailers;
  std::string data;
  size_t data_frames = 0;
  bool headers_ended_stream = false; // a trailers-only response
  bool closed = false;
  uint32_t close_error = 0;
  std::optional<uint32_t> rst_error; // RST_STREAM received

  std::string header(std::string_view name) const { return header_value(headers, name); }
  std::string trailer(std::string_view name) const { return header_value(trailers, name); }
  /// grpc-status from the trailers, or from the headers of a trailers-only response.
  std::string grpc_status() const {
    return headers_ended_stream ? header("grpc-status") : trailer("grpc-status");
  }
  std::string grpc_message() const {
    return headers_ended_stream ? header("grpc-message") : trailer("grpc-message");
  }
};

/// A plain nghttp2 client session whose bytes go through strings.
class h2_client {
public:
  h2_client() {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_header_callback(
      callbacks,
      [](nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
         const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
        self(user_data).on_header(frame, {reinterpret_cast<const char*>(name), namelen},
                                  {reinterpret_cast<const char*>(value), valuelen});
        return 0;
      });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        self(user_data).on_frame_recv(frame);
        return 0;
      });
    nghttp2_session_callbacks_set_on_frame_send_callback(
      callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        if (frame->hd.type == NGHTTP2_DATA)
          ++self(user_data).streams_[frame->hd.stream_id].data_frames_sent;
        return 0;
      });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      callbacks, [](nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                    void* user_data) {
        self(user_data).streams_[stream_id].data.append(reinterpret_cast<const char*>(data), len);
        return 0;
      });
    nghttp2_session_callbacks_set_on_stream_close_callback(
      callbacks, [](nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
        auto& s = self(user_data).streams_[stream_id];
        s.closed = true;
        s.close_error = error_code;
        return 0;
      });
    nghttp2_session_client_new(&session_, callbacks, this);
    nghttp2_session_callbacks_del(callbacks);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~h2_client() { nghttp2_session_del(session_); }
  h2_client(const h2_client&) = delete;
  h2_client& operator=(const h2_client&) = delete;

  /// A request with END_STREAM on its HEADERS.
  int32_t request(const header_list& headers) { return submit(headers, false); }

  /// A request whose body is `body`, in DATA frames of at most `max_chunk` bytes; with
  /// `end` false the stream stays open for send().
  int32_t open(const header_list& headers, std::string body = {}, bool end = false,
               size_t max_chunk = SIZE_MAX) {
    auto id = submit(headers, true);
    auto& s = streams_[id];
    s.body = std::move(body);
    s.end = end;
    s.max_chunk = max_chunk;
    return id;
  }

  /// More request body for an open stream.
  void send(int32_t id, std::string_view bytes, bool end) {
    auto& s = streams_.at(id);
    s.body.append(bytes);
    s.end = end;
    if (s.deferred) {
      s.deferred = false;
      nghttp2_session_resume_data(session_, id);
    }
  }

  void reset(int32_t id, uint32_t error_code) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
  }

  std::string take_output() {
    std::string out;
    for (;;) {
      const uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(session_, &data);
      if (n < 0)
        ++errors;
      if (n <= 0)
        return out;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
  }

  void receive(std::string_view bytes) {
    auto n = nghttp2_session_mem_recv(session_, as_bytes(bytes).data(), bytes.size());
    if (n != static_cast<ssize_t>(bytes.size()))
      ++errors;
  }

  client_stream& stream(int32_t id) { return streams_.at(id); }
  nghttp2_session* session() { return session_; }

  size_t open_streams() const {
    return static_cast<size_t>(std::count_if(
      streams_.begin(), streams_.end(), [](const auto& entry) { return !entry.second.closed; }));
  }
  size_t unsent_body_bytes() const {
    size_t bytes = 0;
    for (const auto& [id, s] : streams_)
      if (!s.closed)
        bytes += s.body.size() - s.offset;
    return bytes;
  }
  bool wants_write() const { return nghttp2_session_want_write(session_) != 0; }

  // Connection-level events.
  std::optional<uint32_t> goaway_error;
  int32_t goaway_last_stream_id = -1;
  std::string goaway_debug;
  size_t pings_received = 0;
  size_t errors = 0; // nghttp2 calls that failed on the client side

private:
  static h2_client& self(void* user_data) { return *static_cast<h2_client*>(user_data); }

  static std::vector<nghttp2_nv> to_nv(const header_list& headers) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : headers)
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                     value.size(), NGHTTP2_NV_FLAG_NONE});
    return nva;
  }

  int32_t submit(const header_list& headers, bool with_body) {
    auto nva = to_nv(headers);
    nghttp2_data_provider provider{};
    provider.read_callback = [](nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                                uint32_t* data_flags, nghttp2_data_source*,
                                void* user_data) -> ssize_t {
      return self(user_data).read_body(stream_id, buf, length, data_flags);
    };
    auto id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                     with_body ? &provider : nullptr, nullptr);
    REQUIRE(id > 0);
    streams_[id];
    return id;
  }

  ssize_t read_body(int32_t id, uint8_t* buf, size_t length, uint32_t* data_flags) {
    auto& s = streams_[id];
    auto take = std::min({length, s.max_chunk, s.body.size() - s.offset});
    std::memcpy(buf, s.body.data() + s.offset, take);
    s.offset += take;
    if (s.offset == s.body.size() && s.end) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s.request_trailers.empty()) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nva = to_nv(s.request_trailers);
        nghttp2_submit_trailer(session_, id, nva.data(), nva.size());
      }
      return static_cast<ssize_t>(take);
    }
    if (take == 0) {
      s.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(take);
  }

  void on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value) {
    if (frame->hd.type != NGHTTP2_HEADERS)
      return;
    auto& s = streams_[frame->hd.stream_id];
    auto& target = frame->headers.cat == NGHTTP2_HCAT_RESPONSE ? s.headers : s.trailers;
    target.emplace_back(name, value);
  }

  void on_frame_recv(const nghttp2_frame* frame) {
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
          streams_[frame->hd.stream_id].headers_ended_stream = true;
        break;
      case NGHTTP2_DATA:
        ++streams_[frame->hd.stream_id].data_frames;
        break;
      case NGHTTP2_RST_STREAM:
        streams_[frame->hd.stream_id].rst_error = frame->rst_stream.error_code;
        break;
      case NGHTTP2_GOAWAY:
        goaway_error = frame->goaway.error_code;
        goaway_last_stream_id = frame->goaway.last_stream_id;
        goaway_debug.assign(reinterpret_cast<const char*>(frame->goaway.opaque_data),
                            frame->goaway.opaque_data_len);
        break;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0)
          ++pings_received;
        break;
      default:
        break;
    }
  }

  nghttp2_session* session_ = nullptr;
  std::map<int32_t, client_stream> streams_; // node-based: references stay valid
};

// --- the listener --------------------------------------------------------------------

/// Records every event and can be scripted to answer, as the gateway's owner would.
class recording_listener final : public grpc_connection_listener {
public:
  grpc_connection* connection = nullptr;

  std::map<int32_t, call_head> heads;
  std::map<int32_t, std::vector<std::string>> messages;
  std::set<int32_t> half_closed;
  std::set<int32_t> closed;
  std::vector<std::string> log;        // "start 1", "message 1", ...
  std::vector<std::string> violations; // events that break the listener contract

  std::function<void(int32_t, const call_head&)> on_start;
  std::function<void(int32_t, const std::string&)> on_message;
  std::function<void(int32_t)> on_half_close;

  /// Echo every message and end with OK when the client half-closes.
  void echo() {
    on_message = [this](int32_t id, const std::string& message) {
      connection->send_message(id, std::string(message));
    };
    on_half_close = [this](int32_t id) { connection->finish(id, grpc_status::ok()); };
  }

  void on_call_start(int32_t id, call_head&& head) override {
    record("start", id);
    if (heads.contains(id))
      violations.push_back("second on_call_start for " + std::to_string(id));
    auto& stored = heads[id] = std::move(head);
    if (on_start)
      on_start(id, stored);
  }
  void on_call_message(int32_t id, std::string&& message) override {
    record("message", id);
    if (!heads.contains(id) || half_closed.contains(id))
      violations.push_back("message outside a call on " + std::to_string(id));
    auto& list = messages[id];
    list.push_back(std::move(message));
    if (on_message)
      on_message(id, std::string(list.back()));
  }
  void on_call_half_close(int32_t id) override {
    record("half_close", id);
    if (!heads.contains(id) || !half_closed.insert(id).second)
      violations.push_back("unexpected half close on " + std::to_string(id));
    if (on_half_close)
      on_half_close(id);
  }
  void on_call_closed(int32_t id) override {
    record("closed", id);
    if (!heads.contains(id) || !closed.insert(id).second)
      violations.push_back("unexpected close of " + std::to_string(id));
  }

private:
  void record(std::string_view what, int32_t id) {
    if (closed.contains(id))
      violations.push_back(std::string(what) + " after close on " + std::to_string(id));
    log.push_back(std::string(what) + " " + std::to_string(id));
  }
};

// --- fixtures ------------------------------------------------------------------------

connection_limits limits_with(size_t max_message_bytes, uint32_t max_header_list_bytes = 16u << 10,
                              size_t max_connection_memory_bytes = 32u << 20) {
  connection_limits limits;
  limits.max_message_bytes = max_message_bytes;
  limits.max_header_list_bytes = max_header_list_bytes;
  limits.max_connection_memory_bytes = max_connection_memory_bytes;
  return limits;
}

/// A server connection and a client session, connected (prefaces and SETTINGS exchanged)
/// before the test starts, so the server's windows are in force from the first request.
class back_to_back {
public:
  explicit back_to_back(const connection_limits& limits = {})
      : server(std::make_unique<grpc_connection>(listener, limits)) {
    listener.connection = server.get();
    pump();
  }

  ~back_to_back() {
    // Leftovers are bugs: a stream that never closed, bytes that never went out, memory
    // still charged to a call.
    CHECK(server->open_streams() == 0);
    CHECK(server->stream_memory_held() == 0);
    CHECK(server->open_calls().empty());
    CHECK_FALSE(server->wants_write());
    CHECK(client.open_streams() == 0);
    CHECK_FALSE(client.wants_write());
    CHECK(client.unsent_body_bytes() == 0);
    CHECK(client.errors == 0);
    CHECK(server_receive_failures == 0);
    std::string violations;
    for (const auto& v : listener.violations)
      violations += v + "; ";
    CHECK(violations == "");
    for (const auto& [id, head] : listener.heads) {
      CAPTURE(id);
      CHECK(listener.closed.contains(id));
    }
  }

  back_to_back(const back_to_back&) = delete;
  back_to_back& operator=(const back_to_back&) = delete;

  /// Moves bytes both ways until neither side has anything to send. With `max_piece`
  /// set, client bytes reach the server in random pieces of 1..max_piece bytes.
  void pump() {
    for (int round = 0; round < 100000; ++round) {
      bool moved = false;
      auto to_server = client.take_output();
      if (!to_server.empty()) {
        moved = true;
        feed_server(to_server);
      }
      std::vector<char> to_client;
      server->produce(to_client, SIZE_MAX);
      if (!to_client.empty()) {
        moved = true;
        client.receive({to_client.data(), to_client.size()});
      }
      if (!moved)
        return;
    }
    FAIL("the connection did not become quiescent");
  }

  void feed_server(std::string_view bytes) {
    while (!bytes.empty()) {
      auto take = bytes.size();
      if (max_piece > 0)
        take = std::min(bytes.size(), std::uniform_int_distribution<size_t>(1, max_piece)(rng));
      if (!server->receive(as_bytes(bytes.substr(0, take))))
        ++server_receive_failures;
      bytes.remove_prefix(take);
    }
  }

  recording_listener listener;
  std::unique_ptr<grpc_connection> server;
  h2_client client;
  size_t server_receive_failures = 0;
  size_t max_piece = 0;
  std::mt19937 rng{20240611};
};

struct small_messages : back_to_back {
  /// Windows of 1005 bytes per stream: flow control is visible after ten messages.
  small_messages() : back_to_back(limits_with(1000)) {}
};

struct small_headers : back_to_back {
  small_headers() : back_to_back(limits_with(4u << 20, 1024)) {}
};

/// A server alone, for peers that are not HTTP/2 clients.
class server_only {
public:
  server_only() : server(listener, connection_limits{}) { listener.connection = &server; }
  ~server_only() {
    CHECK(server.open_streams() == 0);
    CHECK_FALSE(server.wants_write());
    CHECK_FALSE(server.alive());
    CHECK(listener.heads.empty());
  }
  server_only(const server_only&) = delete;
  server_only& operator=(const server_only&) = delete;

  std::string produce_all() {
    std::vector<char> out;
    for (int i = 0; i < 100 && server.wants_write(); ++i)
      server.produce(out, SIZE_MAX);
    return {out.begin(), out.end()};
  }

  recording_listener listener;
  grpc_connection server;
};

} // namespace

// --- unary calls and metadata --------------------------------------------------------

TEST_CASE_FIXTURE(back_to_back, "unary call: 200, application/grpc, one message, grpc-status 0") {
  listener.echo();
  auto id = client.open(grpc_request(), grpc_frame("ping"), true);
  pump();

  REQUIRE(listener.heads.contains(id));
  const auto& head = listener.heads[id];
  CHECK(head.path == echo_path);
  CHECK(head.encoding == call_encoding::grpc);
  CHECK_FALSE(head.timeout.has_value());
  CHECK(listener.messages[id] == std::vector<std::string>{"ping"});
  CHECK(listener.log ==
        std::vector<std::string>{"start 1", "message 1", "half_close 1", "closed 1"});

  auto& response = client.stream(id);
  CHECK(response.header(":status") == "200");
  CHECK(response.header("content-type") == "application/grpc");
  CHECK_FALSE(response.headers_ended_stream);
  CHECK(messages_of(response.data) == std::vector<std::string>{"ping"});
  CHECK(response.trailer("grpc-status") == "0");
  CHECK(response.trailer("grpc-message") == "<absent>");
  CHECK(response.closed);
  CHECK(response.close_error == NGHTTP2_NO_ERROR);
}

TEST_CASE_FIXTURE(back_to_back, "request metadata reaches the listener, -bin values decoded") {
  listener.on_start = [this](int32_t id, const call_head&) {
    server->finish(id, grpc_status::ok());
  };
  auto headers = grpc_request();
  headers.emplace_back("x-user", "alice");
  headers.emplace_back("x-token-bin", "AP8Q");  // unpadded base64 of 00 FF 10
  headers.emplace_back("x-padded-bin", "Zm8="); // padded base64 of "fo"
  headers.emplace_back("user-agent", "grpc-c++/1.60");
  headers.emplace_back("grpc-accept-encoding", "identity,gzip");
  auto id = client.request(headers);
  pump();

  REQUIRE(listener.heads.contains(id));
  const auto& md = listener.heads[id].request_metadata;
  CHECK(metadata_value(md, "x-user") == "alice");
  CHECK(metadata_value(md, "x-token-bin") == "\x00\xFF\x10"s);
  CHECK(metadata_value(md, "x-padded-bin") == "fo");
  CHECK(metadata_value(md, "user-agent") == "grpc-c++/1.60");
  // What the gateway consumes itself is not passed on.
  for (auto consumed : {":path", ":method", ":authority", ":scheme", "content-type", "te",
                        "grpc-accept-encoding"}) {
    CAPTURE(consumed);
    CHECK(metadata_value(md, consumed) == "<absent>");
  }
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(back_to_back,
                  "response metadata and trailers: -bin in unpadded base64, invalid keys dropped") {
  const auto header_bytes = "\x00\x01\xFE\xFF"s;
  const auto trailer_bytes = "\xFF\x00"s;
  listener.on_start = [&](int32_t id, const call_head&) {
    server->send_headers(id, {{"x-resp", "v1"},
                              {"x-resp-bin", header_bytes},
                              {"Bad-Key", "dropped"},
                              {"grpc-status", "7"},
                              {"x-not-ascii", "caf\xC3\xA9"}});
  };
  listener.on_half_close = [&](int32_t id) {
    grpc_status status;
    status.trailers = {{"x-trail", "t"}, {"x-trail-bin", trailer_bytes}, {"grpc-foo", "no"}};
    server->finish(id, status);
  };
  auto id = client.open(grpc_request(), {}, true);
  pump();

  auto& r = client.stream(id);
  CHECK(r.header(":status") == "200");
  CHECK(r.header("x-resp") == "v1");
  CHECK(r.header("x-resp-bin") == "AAH+/w");
  CHECK(r.header("bad-key") == "<absent>");
  CHECK(r.header("Bad-Key") == "<absent>");
  CHECK(r.header("grpc-status") == "<absent>");
  CHECK(r.header("x-not-ascii") == "<absent>");
  CHECK(r.trailer("grpc-status") == "0");
  CHECK(r.trailer("x-trail") == "t");
  CHECK(r.trailer("x-trail-bin") == "/wA");
  CHECK(r.trailer("grpc-foo") == "<absent>");
  CHECK(r.data.empty());
}

TEST_CASE_FIXTURE(back_to_back,
                  "an error after the headers goes in trailers, grpc-message percent-encoded") {
  listener.on_start = [&](int32_t id, const call_head&) { server->send_headers(id, {}); };
  listener.on_half_close = [&](int32_t id) {
    server->finish(id, make_status(grpc_code::not_found, "no such thing: 100% caf\xC3\xA9\n"));
  };
  auto id = client.open(grpc_request(), grpc_frame("x"), true);
  pump();

  auto& r = client.stream(id);
  CHECK_FALSE(r.headers_ended_stream);
  CHECK(r.header(":status") == "200");
  CHECK(r.header("grpc-status") == "<absent>");
  CHECK(r.trailer("grpc-status") == "5");
  CHECK(r.trailer("grpc-message") == "no such thing: 100%25 caf%C3%A9%0A");
}

TEST_CASE_FIXTURE(back_to_back, "status details go in grpc-status-details-bin, base64, with "
                                "trailers-only errors and after headers") {
  // Unpadded base64 like every -bin value: "\x08\x08" is google.rpc.Status{code: 8}.
  const auto details = "\x08\x08"s;
  listener.on_start = [&](int32_t id, const call_head& head) {
    if (head.path == "/after/headers")
      server->send_headers(id, {});
  };
  listener.on_half_close = [&](int32_t id) {
    auto status = make_status(grpc_code::resource_exhausted, "slow down");
    status.details = details;
    server->finish(id, status);
  };
  auto only = client.open(grpc_request(), {}, true);
  auto after = client.open(grpc_request("/after/headers"), {}, true);
  pump();

  auto& trailers_only = client.stream(only);
  CHECK(trailers_only.headers_ended_stream);
  CHECK(trailers_only.header("grpc-status") == "8");
  CHECK(trailers_only.header("grpc-message") == "slow down");
  CHECK(trailers_only.header("grpc-status-details-bin") == "CAg");
  auto& with_headers = client.stream(after);
  CHECK_FALSE(with_headers.headers_ended_stream);
  CHECK(with_headers.trailer("grpc-status") == "8");
  CHECK(with_headers.trailer("grpc-status-details-bin") == "CAg");
}

TEST_CASE_FIXTURE(back_to_back, "a status without details sends no grpc-status-details-bin") {
  listener.on_half_close = [&](int32_t id) {
    server->finish(id, make_status(grpc_code::not_found, "no"));
  };
  auto id = client.open(grpc_request(), {}, true);
  pump();
  CHECK(client.stream(id).header("grpc-status") == "5");
  CHECK(client.stream(id).header("grpc-status-details-bin") == "<absent>");
}

// --- message framing across DATA frames ----------------------------------------------

TEST_CASE_FIXTURE(back_to_back, "a message split across many DATA frames is reassembled") {
  listener.echo();
  std::string message(40000, '\0');
  for (size_t i = 0; i < message.size(); ++i)
    message[i] = static_cast<char>(i * 7 + i / 256);
  auto id = client.open(grpc_request(), grpc_frame(message), true, 1000);
  pump();

  CHECK(client.stream(id).data_frames_sent >= 40);
  REQUIRE(listener.messages[id].size() == 1);
  CHECK(listener.messages[id][0] == message);
  // The echo is larger than a DATA frame too.
  auto& r = client.stream(id);
  CHECK(r.data_frames >= 3);
  CHECK(messages_of(r.data) == std::vector<std::string>{message});
  CHECK(r.grpc_status() == "0");
}

TEST_CASE_FIXTURE(back_to_back, "several messages in one DATA frame are delivered in order") {
  listener.echo();
  auto body = grpc_frame("a") + grpc_frame("") + grpc_frame("ccc");
  auto id = client.open(grpc_request(), body, true);
  pump();

  CHECK(client.stream(id).data_frames_sent == 1);
  CHECK(listener.messages[id] == std::vector<std::string>{"a", "", "ccc"});
  CHECK(messages_of(client.stream(id).data) == std::vector<std::string>{"a", "", "ccc"});
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE("client bytes in random pieces (the preface too) give the same calls") {
  for (size_t max_piece : {1, 2, 3, 7, 13, 64}) {
    CAPTURE(max_piece);
    back_to_back t;
    t.max_piece = max_piece;
    t.listener.echo();
    std::vector<int32_t> ids;
    for (int i = 0; i < 3; ++i)
      ids.push_back(t.client.open(
        grpc_request(), grpc_frame("m" + std::to_string(i)) + grpc_frame(std::string(300, 'z')),
        true, 97));
    t.pump();
    for (size_t i = 0; i < ids.size(); ++i) {
      auto expected = std::vector<std::string>{"m" + std::to_string(i), std::string(300, 'z')};
      CHECK(t.listener.messages[ids[i]] == expected);
      CHECK(messages_of(t.client.stream(ids[i]).data) == expected);
      CHECK(t.client.stream(ids[i]).grpc_status() == "0");
    }
  }
}

TEST_CASE("the client preface byte by byte, before any other frame") {
  recording_listener listener;
  grpc_connection server(listener, connection_limits{});
  listener.connection = &server;
  h2_client client;
  auto bytes = client.take_output();
  REQUIRE(bytes.size() > 24);
  for (char c : bytes)
    CHECK(server.receive(as_bytes(std::string_view(&c, 1))));
  std::vector<char> out;
  server.produce(out, SIZE_MAX);
  client.receive({out.data(), out.size()});
  CHECK(client.errors == 0);
  CHECK(server.alive());
}

// --- answers from the connection and the handler -------------------------------------

TEST_CASE_FIXTURE(back_to_back, "finish with an error before any message is a trailers-only "
                                "response") {
  listener.on_start = [&](int32_t id, const call_head&) {
    server->finish(id, make_status(grpc_code::unimplemented, "no method /x: 100%"));
  };
  auto id = client.open(grpc_request("/x"), grpc_frame("ignored"), true);
  pump();

  auto& r = client.stream(id);
  CHECK(r.headers_ended_stream);
  CHECK(r.header(":status") == "200");
  CHECK(r.header("content-type") == "application/grpc");
  CHECK(r.header("grpc-status") == "12");
  CHECK(r.header("grpc-message") == "no method /x: 100%25");
  CHECK(r.trailers.empty());
  CHECK(r.data.empty());
  CHECK(listener.messages[id].empty());
}

TEST_CASE_FIXTURE(back_to_back, "a finished gRPC call whose client still sends is reset with "
                                "NO_ERROR") {
  listener.on_start = [&](int32_t id, const call_head&) {
    server->finish(id, make_status(grpc_code::unavailable, "draining"));
  };
  auto id = client.open(grpc_request(), grpc_frame("more to come"));
  pump();
  auto& r = client.stream(id);
  CHECK(r.headers_ended_stream);
  CHECK(r.header("grpc-status") == "14");
  CHECK(r.rst_error == std::optional<uint32_t>{NGHTTP2_NO_ERROR});
  CHECK(r.closed);
}

TEST_CASE_FIXTURE(back_to_back, "request trailers end the request like END_STREAM on DATA") {
  listener.echo();
  auto id = client.open(grpc_request(), grpc_frame("with trailers"), true);
  client.stream(id).request_trailers = {{"x-checksum", "abc"}};
  pump();
  CHECK(listener.messages[id] == std::vector<std::string>{"with trailers"});
  CHECK(listener.half_closed.contains(id));
  CHECK(messages_of(client.stream(id).data) == std::vector<std::string>{"with trailers"});
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE("more calls than max_concurrent_streams wait their turn and all complete") {
  connection_limits limits;
  limits.max_concurrent_streams = 2;
  back_to_back t(limits);
  t.listener.echo();
  t.listener.on_start = [&](int32_t, const call_head&) { CHECK(t.server->open_streams() <= 2); };
  std::vector<int32_t> ids;
  for (int i = 0; i < 7; ++i)
    ids.push_back(t.client.open(grpc_request(), grpc_frame("c" + std::to_string(i)), true));
  t.pump();
  for (size_t i = 0; i < ids.size(); ++i) {
    CAPTURE(i);
    CHECK(messages_of(t.client.stream(ids[i]).data) ==
          std::vector<std::string>{"c" + std::to_string(i)});
    CHECK(t.client.stream(ids[i]).grpc_status() == "0");
  }
}

TEST_CASE_FIXTURE(back_to_back, "content-type text/plain is 415 and no call starts") {
  auto id = client.open(with(grpc_request(), "content-type", "text/plain"), "hello", true);
  pump();
  auto& r = client.stream(id);
  CHECK(r.header(":status") == "415");
  CHECK(r.header("grpc-status") == "3");
  CHECK(r.header("grpc-message").find("text/plain") != std::string::npos);
  CHECK(r.headers_ended_stream);
  CHECK(listener.heads.empty());
}

TEST_CASE_FIXTURE(back_to_back, "a missing content-type is 415") {
  auto id = client.request(without(grpc_request(), "content-type"));
  pump();
  CHECK(client.stream(id).header(":status") == "415");
  CHECK(client.stream(id).header("grpc-status") == "3");
  CHECK(listener.heads.empty());
}

TEST_CASE_FIXTURE(back_to_back, ":method GET is 405 with grpc-status UNIMPLEMENTED") {
  auto id = client.request(with(grpc_request(), ":method", "GET"));
  pump();
  CHECK(client.stream(id).header(":status") == "405");
  CHECK(client.stream(id).header("grpc-status") == "12");
  CHECK(listener.heads.empty());
}

TEST_CASE_FIXTURE(back_to_back, "JSON call: the whole body once at END_STREAM, reply unframed") {
  listener.on_message = [&](int32_t id, const std::string&) {
    server->send_message(id, R"({"ok":true})");
  };
  listener.on_half_close = [&](int32_t id) { server->finish(id, grpc_status::ok()); };
  auto id = client.open(with(grpc_request(), "content-type", "application/json; charset=utf-8"),
                        R"({"name":)", false, 3);
  pump();
  REQUIRE(listener.heads.contains(id));
  CHECK(listener.heads[id].encoding == call_encoding::json);
  CHECK(listener.messages[id].empty()); // nothing before END_STREAM

  client.send(id, R"("x"})", true);
  pump();
  CHECK(listener.messages[id] == std::vector<std::string>{R"({"name":"x"})"});
  auto& r = client.stream(id);
  CHECK(r.header(":status") == "200");
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.data == R"({"ok":true})");
  CHECK(r.trailers.empty());
}

TEST_CASE_FIXTURE(back_to_back, "JSON call refused by the handler: HTTP status and a JSON body") {
  listener.on_start = [&](int32_t id, const call_head&) {
    server->finish(id, make_status(grpc_code::not_found, "no \"x\""));
  };
  auto id = client.open(with(grpc_request(), "content-type", "application/json"), "{}", true);
  pump();
  auto& r = client.stream(id);
  CHECK(r.header(":status") == "404");
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("grpc-status") == "5");
  CHECK(r.data == R"({"code":5,"message":"no \"x\""})");
}

TEST_CASE_FIXTURE(back_to_back, "JSON call refused while the client still sends: no reset") {
  // curl reports an RST_STREAM after a complete response as an error, so JSON clients
  // may finish their upload; the server drops it.
  listener.on_start = [&](int32_t id, const call_head&) {
    server->finish(id, make_status(grpc_code::permission_denied, "no"));
  };
  auto id = client.open(with(grpc_request(), "content-type", "application/json"), "{\"a\":");
  pump();
  CHECK(client.stream(id).header(":status") == "403");
  client.send(id, std::string(100000, ' ') + "1}", true);
  pump();
  CHECK_FALSE(client.stream(id).rst_error.has_value());
  CHECK(client.stream(id).closed);
  CHECK(listener.closed.contains(id));
}

TEST_CASE_FIXTURE(back_to_back, "a JSON call finished early gets no truncated body at END_STREAM") {
  auto id = client.open(with(grpc_request(), "content-type", "application/json"), R"({"name":)");
  pump();
  REQUIRE(listener.heads.contains(id));
  // The owner ends the call before the body is complete, e.g. at its deadline.
  server->finish(id, make_status(grpc_code::deadline_exceeded, "too slow"));
  pump();
  CHECK(client.stream(id).header(":status") == "504");
  client.send(id, R"("x"})", true);
  pump();
  CAPTURE(listener.messages[id].empty() ? std::string("<none>") : listener.messages[id][0]);
  CHECK(listener.messages[id].empty());
  CHECK_FALSE(listener.half_closed.contains(id));
}

TEST_CASE_FIXTURE(back_to_back,
                  "a client finishing its message after the handler finished does not change "
                  "the status") {
  auto message = grpc_frame(std::string(1000, 'u'));
  auto id = client.open(grpc_request(), message.substr(0, 500));
  pump();
  REQUIRE(listener.heads.contains(id));
  // The handler has its answer before the upload is complete.
  server->send_message(id, "enough");
  server->finish(id, grpc_status::ok());
  // The rest of the message and END_STREAM arrive before the answer went out.
  client.send(id, message.substr(500), true);
  feed_server(client.take_output());
  pump();
  auto& r = client.stream(id);
  CHECK(r.grpc_status() == "0");
  CHECK(messages_of(r.data) == std::vector<std::string>{"enough"});
}

TEST_CASE_FIXTURE(small_messages, "a JSON body over the limit is 413 and the stream ends") {
  auto id = client.open(with(grpc_request(), "content-type", "application/json"),
                        "[" + std::string(1500, '1') + "]", true);
  pump();
  auto& r = client.stream(id);
  CHECK(r.header(":status") == "413");
  CHECK(r.header("grpc-status") == "8");
  CHECK(r.closed);
  CHECK(server->open_streams() == 0);
  if (!r.closed) {
    client.reset(id, NGHTTP2_CANCEL); // leave the fixture clean
    pump();
  }
}

// --- grpc-timeout --------------------------------------------------------------------

TEST_CASE_FIXTURE(back_to_back, "grpc-timeout is parsed into head.timeout") {
  listener.echo();
  auto id = client.open(with(grpc_request(), "grpc-timeout", "250m"), grpc_frame("t"), true);
  pump();
  REQUIRE(listener.heads.contains(id));
  CHECK(listener.heads[id].timeout == std::chrono::nanoseconds(250ms));
  CHECK(metadata_value(listener.heads[id].request_metadata, "grpc-timeout") == "<absent>");
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE("a malformed or empty grpc-timeout is INTERNAL and no call starts") {
  for (std::string_view bad : {"", "1", "S", "abc", "123456789S", "-1S", "1x", "1.5S"}) {
    CAPTURE(bad);
    back_to_back t;
    auto id = t.client.open(with(grpc_request(), "grpc-timeout", bad), grpc_frame("x"), true);
    t.pump();
    auto& r = t.client.stream(id);
    CHECK(r.headers_ended_stream);
    CHECK(r.header("grpc-status") == "13");
    CHECK(r.header("grpc-message").find("grpc-timeout") != std::string::npos);
    CHECK(t.listener.heads.empty());
  }
}

// --- request message errors ----------------------------------------------------------

TEST_CASE_FIXTURE(small_messages, "a length prefix over max_message_bytes is RESOURCE_EXHAUSTED") {
  auto id = client.open(grpc_request(), grpc_frame("fine") + grpc_prefix(2000) + "partial", true);
  pump();
  CHECK(listener.messages[id] == std::vector<std::string>{"fine"});
  auto& r = client.stream(id);
  CHECK(r.headers_ended_stream);
  CHECK(r.header(":status") == "200");
  CHECK(r.header("grpc-status") == "8");
  CHECK(r.header("grpc-message").find("2000") != std::string::npos);
  CHECK(listener.closed.contains(id));
  CHECK_FALSE(listener.half_closed.contains(id));
}

TEST_CASE_FIXTURE(back_to_back, "a compressed message with grpc-encoding gzip is UNIMPLEMENTED") {
  auto id = client.open(with(grpc_request(), "grpc-encoding", "gzip"), grpc_frame("zip", 1), true);
  pump();
  CHECK(client.stream(id).grpc_status() == "12");
  CHECK(client.stream(id).grpc_message().find("gzip") != std::string::npos);
  CHECK(listener.messages[id].empty());
}

TEST_CASE_FIXTURE(back_to_back, "a compressed message without grpc-encoding is INTERNAL") {
  auto a = client.open(grpc_request(), grpc_frame("zip", 1), true);
  auto b =
    client.open(with(grpc_request(), "grpc-encoding", "identity"), grpc_frame("zip", 1), true);
  auto c = client.open(grpc_request(), grpc_frame("bad", 2), true);
  pump();
  CHECK(client.stream(a).grpc_status() == "13");
  CHECK(client.stream(b).grpc_status() == "13");
  CHECK(client.stream(c).grpc_status() == "13");
  CHECK(listener.messages.empty());
}

TEST_CASE_FIXTURE(back_to_back, "a message truncated at END_STREAM is INTERNAL, no half close") {
  auto in_body = client.open(grpc_request(), grpc_frame("ok") + grpc_prefix(10) + "abc", true);
  auto in_prefix = client.open(grpc_request(), grpc_prefix(10).substr(0, 3), true);
  pump();
  for (auto id : {in_body, in_prefix}) {
    CAPTURE(id);
    CHECK(client.stream(id).grpc_status() == "13");
    CHECK(listener.heads.contains(id));
    CHECK_FALSE(listener.half_closed.contains(id));
  }
  CHECK(listener.messages[in_body] == std::vector<std::string>{"ok"});
}

TEST_CASE_FIXTURE(small_headers, "a header list over the limit is reset with ENHANCE_YOUR_CALM "
                                 "(RESOURCE_EXHAUSTED in gRPC clients); the connection lives") {
  listener.echo();
  auto big = client.request(with(grpc_request(), "x-big", std::string(2000, 'b')));
  pump();
  auto& r = client.stream(big);
  CHECK(r.rst_error == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(r.headers.empty());
  CHECK(listener.heads.empty());

  auto next = client.open(grpc_request(), grpc_frame("after"), true);
  pump();
  CHECK(listener.messages[next] == std::vector<std::string>{"after"});
  CHECK(client.stream(next).grpc_status() == "0");
  CHECK(server->alive());
}

TEST_CASE_FIXTURE(back_to_back, "invalid base64 in -bin request metadata refuses the call") {
  auto id = client.request(with(grpc_request(), "x-token-bin", "not base64!"));
  pump();
  CHECK(client.stream(id).header("grpc-status") == "13");
  CHECK(listener.heads.empty());
}

TEST_CASE_FIXTURE(back_to_back, "comma-joined -bin values are each decoded") {
  listener.on_start = [&](int32_t id, const call_head&) { server->finish(id, grpc_status::ok()); };
  auto id = client.request(with(grpc_request(), "x-pair-bin", "AAE,AgM="));
  pump();
  REQUIRE(listener.heads.contains(id));
  std::string joined;
  for (const auto& [key, value] : listener.heads[id].request_metadata)
    if (key == "x-pair-bin")
      joined += value;
  CHECK(joined == "\x00\x01\x02\x03"s);
  CHECK(client.stream(id).grpc_status() == "0");
}

// --- resets --------------------------------------------------------------------------

TEST_CASE_FIXTURE(back_to_back, "a client RST_STREAM mid-call closes the call") {
  auto id = client.open(grpc_request(), grpc_frame("first"));
  pump();
  REQUIRE(listener.messages[id].size() == 1);
  CHECK(server->open_calls() == std::vector<int32_t>{id});

  client.reset(id, NGHTTP2_CANCEL);
  pump();
  CHECK(listener.closed.contains(id));
  CHECK_FALSE(listener.half_closed.contains(id));
  // The stream is gone: the handler's late answers are refused quietly.
  CHECK_FALSE(server->send_message(id, "late"));
  server->finish(id, grpc_status::ok());
  CHECK(server->take_sent_messages(id) == 0);
  CHECK_FALSE(server->wants_write());
}

TEST_CASE_FIXTURE(back_to_back, "cancel() resets the stream with CANCEL") {
  auto id = client.open(grpc_request(), grpc_frame("first"));
  pump();
  REQUIRE(listener.heads.contains(id));
  server->cancel(id);
  pump();
  auto& r = client.stream(id);
  CHECK(r.rst_error == std::optional<uint32_t>{NGHTTP2_CANCEL});
  CHECK(r.closed);
  CHECK(r.close_error == NGHTTP2_CANCEL);
  CHECK(listener.closed.contains(id));
}

TEST_CASE_FIXTURE(back_to_back, "calls on unknown streams are no-ops") {
  CHECK_FALSE(server->send_message(99, "x"));
  server->send_headers(99, {{"x", "y"}});
  server->finish(99, grpc_status::ok());
  server->cancel(99);
  server->consume(99, 3);
  CHECK(server->take_sent_messages(99) == 0);
  CHECK_FALSE(server->wants_write());
  CHECK(server->open_streams() == 0);
}

// --- flow control and output ---------------------------------------------------------

TEST_CASE_FIXTURE(small_messages,
                  "flow control: unconsumed messages hold the stream window; consume() reopens") {
  // 100 bytes on the wire per message; the stream window is 2 * (1000 + 5 + ack_batch_bytes)
  // = 133082 bytes: 1330 whole messages and 82 bytes of the next.
  std::string many;
  for (int i = 0; i < 1400; ++i)
    many += grpc_frame(std::string(95, static_cast<char>('a' + i % 26)));
  auto id = client.open(grpc_request(), many);
  pump();
  CHECK(listener.messages[id].size() == 1330);
  CHECK(nghttp2_session_get_stream_remote_window_size(client.session(), id) == 0);
  CHECK(client.unsent_body_bytes() == 140000 - 133082);

  server->consume(id, 1330);
  pump();
  CHECK(listener.messages[id].size() == 1400);
  CHECK(client.unsent_body_bytes() == 0);

  listener.on_half_close = [&](int32_t call) { server->finish(call, grpc_status::ok()); };
  client.send(id, {}, true);
  pump();
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(small_messages,
                  "flow control: consume(1) reopens the window of one message only") {
  std::string many;
  for (int i = 0; i < 1400; ++i)
    many += grpc_frame(std::string(95, 'x'));
  auto id = client.open(grpc_request(), many);
  pump();
  REQUIRE(listener.messages[id].size() == 1330);

  server->consume(id, 1);
  pump();
  // 1329 messages are still unconsumed: at most one more fits the window.
  CHECK(listener.messages[id].size() <= 1331);

  server->consume(id, 1400);
  listener.on_half_close = [&](int32_t call) { server->finish(call, grpc_status::ok()); };
  client.send(id, {}, true);
  pump();
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(small_messages,
                  "flow control: a maximal message after a consumed small one completes") {
  listener.on_message = [&](int32_t id, const std::string&) { server->consume(id, 1); };
  listener.on_half_close = [&](int32_t id) { server->finish(id, grpc_status::ok()); };
  auto id = client.open(grpc_request(),
                        grpc_frame("tiny tiny!") + grpc_frame(std::string(1000, 'B')), true);
  pump();
  CHECK(listener.messages[id].size() == 2);
  CHECK(client.stream(id).grpc_status() == "0");
  if (!client.stream(id).closed) {
    client.reset(id, NGHTTP2_CANCEL); // leave the fixture clean
    pump();
  }
}

TEST_CASE("connection window is never leaked, however a call ends") {
  // Each way a call can end gets its own connection and pushes 20 MiB through it, more
  // than the 16 MiB connection window: a path that forgets to give request bytes back to
  // the connection stalls it, and the next call never completes.
  enum path { echoed, never_consumed, handler_refuses, too_large, client_reset, server_cancel };
  const std::string body = grpc_frame(std::string(1u << 20, 'w'));
  for (int p = echoed; p <= server_cancel; ++p) {
    CAPTURE(p);
    back_to_back t(limits_with(1u << 20));
    t.listener.on_half_close = [&](int32_t id) { t.server->finish(id, grpc_status::ok()); };
    if (p == echoed)
      t.listener.on_message = [&](int32_t id, const std::string& m) {
        t.server->consume(id, 1);
        t.server->send_message(id, m.substr(0, 10));
      };
    if (p == handler_refuses)
      t.listener.on_start = [&](int32_t id, const call_head&) {
        t.server->finish(id, make_status(grpc_code::permission_denied, "no"));
      };
    for (int call = 0; call < 20; ++call) {
      CAPTURE(call);
      auto request = p == too_large ? grpc_prefix(2u << 20) + body.substr(5) : body;
      bool end = p != client_reset && p != server_cancel;
      auto id = t.client.open(grpc_request(), request, end);
      t.pump();
      if (p == client_reset)
        t.client.reset(id, NGHTTP2_CANCEL);
      if (p == server_cancel)
        t.server->cancel(id);
      t.pump();
      CHECK(t.client.stream(id).data_frames_sent >= (1u << 20) / 16384); // all of it went out
      REQUIRE(t.client.stream(id).closed);
      REQUIRE(t.listener.closed.contains(id));
    }
  }
}

TEST_CASE_FIXTURE(back_to_back, "produce() respects its budget to within one frame") {
  const std::string big(40000, 'r');
  listener.on_half_close = [&](int32_t id) {
    server->send_message(id, std::string(big));
    server->finish(id, grpc_status::ok());
  };
  auto id = client.open(grpc_request(), grpc_frame("go"), true);
  feed_server(client.take_output());
  REQUIRE(listener.half_closed.contains(id));

  size_t rounds = 0;
  while (server->wants_write()) {
    std::vector<char> out;
    server->produce(out, 1000);
    CHECK_FALSE(out.empty());
    CHECK(out.size() <= 1000 + data_frame_overshoot);
    client.receive({out.data(), out.size()});
    REQUIRE(++rounds < 1000);
  }
  CHECK(rounds >= 3); // 40 KiB leave in 16 KiB DATA frames
  pump();
  CHECK(messages_of(client.stream(id).data) == std::vector<std::string>{big});
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(back_to_back, "a response larger than the client's window waits for it") {
  // 50 x 4 KiB is three times the client's default 64 KiB window: the server must stop and
  // resume on the client's WINDOW_UPDATEs.
  listener.on_half_close = [&](int32_t id) {
    for (int i = 0; i < 50; ++i)
      server->send_message(id, std::string(4096, static_cast<char>('A' + i % 26)));
    server->finish(id, grpc_status::ok());
  };
  auto id = client.open(grpc_request(), grpc_frame("stream please"), true);
  pump();
  auto messages = messages_of(client.stream(id).data);
  REQUIRE(messages.size() == 50);
  for (int i = 0; i < 50; ++i)
    CHECK(messages[static_cast<size_t>(i)] == std::string(4096, static_cast<char>('A' + i % 26)));
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(back_to_back, "take_sent_messages counts messages handed to HTTP/2, once") {
  listener.on_message = [&](int32_t id, const std::string& m) {
    CHECK(server->send_message(id, std::string(m)));
  };
  auto id = client.open(grpc_request(), grpc_frame("1") + grpc_frame("2") + grpc_frame("3"));
  feed_server(client.take_output());
  REQUIRE(listener.messages[id].size() == 3);
  CHECK(server->take_sent_messages(id) == 0); // queued, not yet handed over

  pump();
  CHECK(server->take_sent_messages(id) == 3);
  CHECK(server->take_sent_messages(id) == 0);
  CHECK(messages_of(client.stream(id).data) == std::vector<std::string>{"1", "2", "3"});

  server->finish(id, grpc_status::ok());
  pump();
  client.send(id, {}, true);
  pump();
  CHECK(client.stream(id).grpc_status() == "0");
}

TEST_CASE_FIXTURE(small_messages, "a response message over the limit fails the call") {
  bool accepted = true;
  listener.on_start = [&](int32_t id, const call_head&) {
    accepted = server->send_message(id, std::string(1001, 'o'));
  };
  auto id = client.open(grpc_request(), grpc_frame("x"), true);
  pump();
  CHECK_FALSE(accepted);
  CHECK(client.stream(id).grpc_status() == "8");
  CHECK(client.stream(id).data.empty());
}

TEST_CASE_FIXTURE(back_to_back,
                  "a request error while a response message is half sent keeps framing intact") {
  listener.on_start = [&](int32_t id, const call_head&) {
    server->send_message(id, std::string(100000, 'h'));
  };
  auto id = client.open(grpc_request());
  feed_server(client.take_output());
  // Hand out frames one at a time until the client holds part of the message.
  for (int i = 0; i < 100 && client.stream(id).data.empty(); ++i) {
    std::vector<char> out;
    server->produce(out, 1);
    client.receive({out.data(), out.size()});
    feed_server(client.take_output());
  }
  REQUIRE_FALSE(client.stream(id).data.empty());
  REQUIRE(client.stream(id).data.size() < 100005);

  client.send(id, grpc_prefix(0xFFFFFFFF), true); // makes the connection reject the call
  pump();
  auto& r = client.stream(id);
  CHECK(r.grpc_status() == "8");
  CHECK(split_messages(r.data).has_value());
}

// --- connection level ----------------------------------------------------------------

TEST_CASE_FIXTURE(server_only, "garbage instead of a preface: receive fails, GOAWAY follows") {
  // The start of a TLS ClientHello: a TLS client on the cleartext port.
  const std::string hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s;
  CHECK_FALSE(server.receive(as_bytes(hello)));
  CHECK(server.wants_write());
  auto frames = parse_frames(produce_all());
  auto goaway = std::find_if(frames.begin(), frames.end(),
                             [](const raw_frame& f) { return f.type == NGHTTP2_GOAWAY; });
  REQUIRE(goaway != frames.end());
  REQUIRE(goaway->payload.size() >= 8);
  CHECK(goaway->stream_id == 0);
  CHECK(be32(goaway->payload.substr(4)) == NGHTTP2_PROTOCOL_ERROR);
  CHECK_FALSE(server.receive(as_bytes("more")));
}

TEST_CASE("an HTTP/1.1 request gets a 505 and the connection ends") {
  recording_listener listener;
  grpc_connection server(listener, connection_limits{});
  CHECK_FALSE(server.receive(as_bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")));
  CHECK(server.alive()); // the answer still has to go out
  CHECK(server.wants_write());
  std::vector<char> out;
  server.produce(out, SIZE_MAX);
  std::string text(out.begin(), out.end());
  CHECK(text.starts_with("HTTP/1.1 505 "));
  CHECK(text.find("\r\nconnection: close\r\n") != std::string::npos);
  CHECK_FALSE(server.alive());
  CHECK_FALSE(server.receive(as_bytes("more")));
  CHECK(server.open_streams() == 0);
  CHECK(listener.heads.empty());
}

TEST_CASE("the 505 body is as long as its content-length") {
  recording_listener listener;
  grpc_connection server(listener, connection_limits{});
  server.receive(as_bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::vector<char> out;
  server.produce(out, SIZE_MAX);
  std::string text(out.begin(), out.end());
  auto split = text.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  auto head = text.substr(0, split);
  auto length_at = head.find("content-length: ");
  REQUIRE(length_at != std::string::npos);
  auto announced = std::stoul(head.substr(length_at + 16));
  CHECK(text.size() - split - 4 == announced);
}

TEST_CASE("after the 505 there is nothing more to write") {
  recording_listener listener;
  grpc_connection server(listener, connection_limits{});
  server.receive(as_bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::vector<char> out;
  server.produce(out, SIZE_MAX);
  REQUIRE_FALSE(server.alive());
  CHECK_FALSE(server.wants_write());
  std::vector<char> more;
  server.produce(more, SIZE_MAX);
  CHECK(more.empty());
}

TEST_CASE_FIXTURE(back_to_back, "a protocol error after the preface ends with GOAWAY") {
  // DATA on stream 0 is a connection error (RFC 9113 §6.1).
  server->receive(as_bytes("\x00\x00\x01\x00\x00\x00\x00\x00\x00x"s));
  std::vector<char> out;
  server->produce(out, SIZE_MAX);
  client.receive({out.data(), out.size()});
  CHECK(client.goaway_error == std::optional<uint32_t>{NGHTTP2_PROTOCOL_ERROR});
  CHECK_FALSE(server->alive());
  CHECK_FALSE(server->wants_write());
}

TEST_CASE_FIXTURE(back_to_back, "receive() returns false once a connection error's GOAWAY is out") {
  // nghttp2 answers this error itself; the GOAWAY it queues is what marks the end.
  server->receive(as_bytes("\x00\x00\x01\x00\x00\x00\x00\x00\x00x"s));
  std::vector<char> out;
  server->produce(out, SIZE_MAX);
  client.receive({out.data(), out.size()});
  CHECK_FALSE(server->receive(as_bytes("\x00\x00\x00\x04\x01\x00\x00\x00\x00"s)));
  CHECK_FALSE(server->alive());
}

TEST_CASE_FIXTURE(back_to_back, "ping() is outstanding until the client's ACK arrives") {
  CHECK_FALSE(server->ping_outstanding());
  server->ping();
  CHECK(server->ping_outstanding());
  std::vector<char> out;
  server->produce(out, SIZE_MAX);
  client.receive({out.data(), out.size()});
  CHECK(client.pings_received == 1);
  CHECK(server->ping_outstanding()); // the ACK has not reached the server yet
  pump();
  CHECK_FALSE(server->ping_outstanding());
}

TEST_CASE_FIXTURE(back_to_back, "go_away(): GOAWAY NO_ERROR, open calls still complete") {
  listener.echo();
  auto id = client.open(grpc_request(), grpc_frame("before"));
  pump();
  REQUIRE(listener.heads.contains(id));

  server->go_away();
  pump();
  CHECK(client.goaway_error == std::optional<uint32_t>{NGHTTP2_NO_ERROR});
  CHECK(client.goaway_last_stream_id == id);
  CHECK(server->alive()); // a call is still open

  client.send(id, grpc_frame("after"), true);
  pump();
  CHECK(listener.messages[id] == std::vector<std::string>{"before", "after"});
  CHECK(messages_of(client.stream(id).data) == std::vector<std::string>{"before", "after"});
  CHECK(client.stream(id).grpc_status() == "0");
  CHECK_FALSE(server->alive()); // GOAWAY sent and nothing open: close
}

TEST_CASE_FIXTURE(back_to_back, "terminate(): GOAWAY with the code and debug text, then done") {
  listener.echo();
  auto id = client.open(grpc_request(), grpc_frame("one"), true);
  pump();
  REQUIRE(client.stream(id).closed);

  server->terminate(chroom::transport::h2_error::enhance_your_calm, "too many pings");
  CHECK(server->alive()); // until the GOAWAY is out
  CHECK_FALSE(server->receive(as_bytes(client.take_output())));
  pump();
  CHECK(client.goaway_error == std::optional<uint32_t>{NGHTTP2_ENHANCE_YOUR_CALM});
  CHECK(client.goaway_last_stream_id == id);
  CHECK(client.goaway_debug == "too many pings");
  CHECK_FALSE(server->alive());
}

TEST_CASE_FIXTURE(back_to_back, "concurrent calls end in any order; stream state is recycled") {
  for (int batch = 0; batch < 2; ++batch) {
    CAPTURE(batch);
    std::vector<int32_t> ids;
    for (int i = 0; i < 5; ++i) {
      auto headers = grpc_request();
      if (batch == 0) {
        headers.emplace_back("x-batch", "first");
        headers.emplace_back("grpc-timeout", "1S");
      }
      ids.push_back(client.open(headers, grpc_frame("q" + std::to_string(i)), true, 3));
    }
    pump();
    CHECK(server->open_streams() == 5);
    CHECK(server->open_calls().size() == 5);
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& head = listener.heads[ids[i]];
      CHECK(listener.messages[ids[i]] == std::vector<std::string>{"q" + std::to_string(i)});
      // Nothing of the previous batch's streams leaks into recycled state.
      CHECK(metadata_value(head.request_metadata, "x-batch") ==
            (batch == 0 ? "first" : "<absent>"));
      CHECK(head.timeout.has_value() == (batch == 0));
    }
    size_t open = 5;
    for (size_t i : {2, 0, 4, 1, 3}) {
      server->send_message(ids[i], "reply-" + std::to_string(i));
      server->finish(ids[i], make_status(static_cast<grpc_code>(i), i == 0 ? "" : "code"));
      pump();
      CHECK(server->open_streams() == --open);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      auto& r = client.stream(ids[i]);
      CHECK(messages_of(r.data) == std::vector<std::string>{"reply-" + std::to_string(i)});
      CHECK(r.grpc_status() == std::to_string(i));
    }
  }
}

// --- abuse limits ----------------------------------------------------------------------

namespace {

/// One HTTP/2 frame as raw bytes.
std::string raw_frame_bytes(uint8_t type, uint8_t flags, uint32_t stream_id,
                            std::string_view payload) {
  std::string out;
  auto length = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(length >> 16));
  out.push_back(static_cast<char>(length >> 8));
  out.push_back(static_cast<char>(length));
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0})
    out.push_back(static_cast<char>(stream_id >> shift));
  out.append(payload);
  return out;
}

std::string be32_bytes(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

/// A header block of literal fields without indexing (names and values under 127 bytes),
/// so tests control every byte a client sends.
std::string hpack_literals(const header_list& headers) {
  std::string block;
  for (const auto& [name, value] : headers) {
    REQUIRE(name.size() < 127);
    REQUIRE(value.size() < 127);
    block.push_back(0);
    block.push_back(static_cast<char>(name.size()));
    block += name;
    block.push_back(static_cast<char>(value.size()));
    block += value;
  }
  return block;
}

/// A client made of raw frames, for abuse a well-behaved client session will not send.
class raw_client {
public:
  explicit raw_client(const connection_limits& limits = {},
                      chroom::transport::peer_memory_budget* peer = nullptr)
      : server(listener, limits, peer) {
    listener.connection = &server;
    send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"s + raw_frame_bytes(NGHTTP2_SETTINGS, 0, 0, ""));
  }

  /// Feeds bytes; false once the server reads no more.
  bool send(std::string_view bytes) {
    bool ok = server.receive(as_bytes(bytes));
    std::vector<char> out;
    server.produce(out, SIZE_MAX);
    received.append(out.begin(), out.end());
    return ok;
  }

  /// HEADERS of a gRPC request on `stream_id`, END_STREAM when `end`.
  bool open(uint32_t stream_id, bool end = false) {
    return send(raw_frame_bytes(NGHTTP2_HEADERS,
                                NGHTTP2_FLAG_END_HEADERS | (end ? NGHTTP2_FLAG_END_STREAM : 0),
                                stream_id, hpack_literals(grpc_request())));
  }

  std::vector<raw_frame> frames() const { return parse_frames(received); }

  /// The GOAWAY's error code, if one was sent.
  std::optional<uint32_t> goaway_error() const {
    for (const auto& f : frames())
      if (f.type == NGHTTP2_GOAWAY && f.payload.size() >= 8)
        return be32(std::string_view{f.payload}.substr(4));
    return std::nullopt;
  }
  std::string goaway_debug() const {
    for (const auto& f : frames())
      if (f.type == NGHTTP2_GOAWAY && f.payload.size() >= 8)
        return f.payload.substr(8);
    return {};
  }

  recording_listener listener;
  grpc_connection server;
  std::string received;
};

} // namespace

TEST_CASE("rapid reset: streams opened and reset at once close the connection") {
  raw_client c;
  // Half of the first 500 streams reset within 1 s of opening is the limit (Envoy's).
  uint32_t id = 1;
  for (int i = 0; i < 249; ++i, id += 2) {
    REQUIRE(c.open(id));
    REQUIRE(c.send(raw_frame_bytes(NGHTTP2_RST_STREAM, 0, id, be32_bytes(NGHTTP2_CANCEL))));
  }
  CHECK_FALSE(c.goaway_error().has_value());
  CHECK(c.listener.closed.size() == 249);
  REQUIRE(c.open(id));
  CHECK_FALSE(c.send(raw_frame_bytes(NGHTTP2_RST_STREAM, 0, id, be32_bytes(NGHTTP2_CANCEL))));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.goaway_debug().find("250 of 250 streams reset by the client") != std::string::npos);
  CHECK(c.server.calm_reason() == c.goaway_debug());
}

TEST_CASE("streams the client resets after their answer are not premature") {
  raw_client c;
  c.listener.on_start = [&](int32_t id, const call_head&) {
    c.server.finish(id, make_status(grpc_code::not_found, "no"));
  };
  uint32_t id = 1;
  for (int i = 0; i < 600; ++i, id += 2) {
    REQUIRE(c.open(id));
    c.send(raw_frame_bytes(NGHTTP2_RST_STREAM, 0, id, be32_bytes(NGHTTP2_CANCEL)));
  }
  CHECK_FALSE(c.goaway_error().has_value());
  CHECK(c.server.alive());
}

TEST_CASE("empty DATA frames in a row close the connection") {
  raw_client c;
  REQUIRE(c.open(1));
  // One empty frame is tolerated (a client flushing an empty write); two in a row are not.
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, "")));
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, grpc_frame("x").substr(0, 3))));
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, "")));
  CHECK_FALSE(c.goaway_error().has_value());
  CHECK_FALSE(c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, "")));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.goaway_debug().find("without payload") != std::string::npos);
}

TEST_CASE("WINDOW_UPDATE frames that answer no data close the connection") {
  raw_client c;
  REQUIRE(c.open(1));
  // 5 + 2 x (1 stream + 10 x 0 DATA frames sent) = 7 are allowed.
  for (int i = 0; i < 7; ++i)
    REQUIRE(c.send(raw_frame_bytes(NGHTTP2_WINDOW_UPDATE, 0, 0, be32_bytes(1))));
  CHECK_FALSE(c.goaway_error().has_value());
  CHECK_FALSE(c.send(raw_frame_bytes(NGHTTP2_WINDOW_UPDATE, 0, 1, be32_bytes(1))));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.goaway_debug().find("WINDOW_UPDATE") != std::string::npos);
}

TEST_CASE("WINDOW_UPDATE frames for data received are fine") {
  back_to_back t;
  t.listener.on_half_close = [&](int32_t id) {
    for (int i = 0; i < 40; ++i)
      t.server->send_message(id, std::string(16000, 'w'));
    t.server->finish(id, grpc_status::ok());
  };
  // 640 KB answered through the client's 64 KiB window: many WINDOW_UPDATEs, all earned.
  for (int call = 0; call < 5; ++call) {
    auto id = t.client.open(grpc_request(), grpc_frame("go"), true);
    t.pump();
    CHECK(t.client.stream(id).grpc_status() == "0");
  }
  CHECK_FALSE(t.client.goaway_error.has_value());
}

TEST_CASE("a PRIORITY flood closes the connection") {
  raw_client c;
  REQUIRE(c.open(1));
  // 100 per stream opened, plus 100.
  const std::string priority = be32_bytes(0) + "\x0f"s;
  for (int i = 0; i < 200; ++i)
    REQUIRE(
      c.send(raw_frame_bytes(NGHTTP2_PRIORITY, 0, 3 + 2 * static_cast<uint32_t>(i), priority)));
  CHECK_FALSE(c.goaway_error().has_value());
  CHECK_FALSE(c.send(raw_frame_bytes(NGHTTP2_PRIORITY, 0, 1001, priority)));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.goaway_debug().find("PRIORITY") != std::string::npos);
}

TEST_CASE("header lists over the limit: each stream reset, then the connection closes") {
  raw_client c(limits_with(4u << 20, 1024));
  auto big = with(grpc_request(), "x-big", std::string(100, 'b'));
  for (int i = 0; i < 12; ++i)
    big.emplace_back("x-pad-" + std::to_string(i), std::string(100, 'p'));
  uint32_t id = 1;
  for (int i = 0; i < 8; ++i, id += 2)
    REQUIRE(
      c.send(raw_frame_bytes(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
                             id, hpack_literals(big))));
  CHECK(c.listener.heads.empty());
  CHECK_FALSE(c.goaway_error().has_value());
  size_t refused = 0;
  for (const auto& f : c.frames())
    refused += f.type == NGHTTP2_RST_STREAM && be32(f.payload) == NGHTTP2_ENHANCE_YOUR_CALM ? 1 : 0;
  CHECK(refused == 8); // one RST_STREAM each, and no second one from nghttp2
  CHECK_FALSE(c.send(raw_frame_bytes(
    NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, id, hpack_literals(big))));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.goaway_debug().find("header lists over SETTINGS_MAX_HEADER_LIST_SIZE") !=
        std::string::npos);
}

TEST_CASE("an HPACK bomb: the block stops being delivered at the limit") {
  // One 100-byte field into the dynamic table, then a block of 20,000 one-byte references
  // to it (2.6 MB decoded): the header callback sees the fields up to the limit only, the
  // stream is refused, the connection lives.
  raw_client c(limits_with(4u << 20, 1024));
  std::string block = hpack_literals(grpc_request());
  block.push_back(0x40); // literal with incremental indexing, new name
  block.push_back(6);
  block += "x-bomb";
  block.push_back(100);
  block += std::string(100, 'b');
  block += std::string(4000, '\xbe'); // indexed: dynamic table entry 1 (index 62)
  std::string first = block.substr(0, 4000);
  std::string rest = block.substr(4000);
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, first)));
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, rest)));
  CHECK(c.listener.heads.empty());
  auto frames = c.frames();
  CHECK(std::any_of(frames.begin(), frames.end(), [](const raw_frame& f) {
    return f.type == NGHTTP2_RST_STREAM && f.stream_id == 1 &&
           be32(f.payload) == NGHTTP2_ENHANCE_YOUR_CALM;
  }));
  // The HPACK state is intact: a normal call on the same connection works.
  c.listener.on_start = [&](int32_t id, const call_head&) {
    c.server.finish(id, grpc_status::ok());
  };
  REQUIRE(c.open(3, true));
  CHECK(c.listener.heads.contains(3));
  CHECK(c.server.alive());
}

TEST_CASE("too many CONTINUATION frames for one header block end the connection") {
  raw_client c(limits_with(4u << 20, 16u << 10));
  // A 16 KiB header list needs at most two frames; nghttp2 is told to allow 2 CONTINUATIONs.
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_HEADERS, 0, 1, hpack_literals(grpc_request()))));
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_CONTINUATION, 0, 1, "")));
  REQUIRE(c.send(raw_frame_bytes(NGHTTP2_CONTINUATION, 0, 1, "")));
  CHECK_FALSE(c.send(raw_frame_bytes(NGHTTP2_CONTINUATION, 0, 1, "")));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.server.calm_reason() == c.goaway_debug());
  CHECK(c.goaway_debug().find("CONTINUATION") != std::string::npos);
}

TEST_CASE("a SETTINGS flood read at once closes the connection") {
  raw_client c;
  // nghttp2 ends the session once more than 1,000 ACKs wait to be sent (one read's worth of
  // SETTINGS frames: 15 bytes each, 1,092 in 16 KiB).
  std::string flood;
  for (int i = 0; i < 1100; ++i)
    flood += raw_frame_bytes(NGHTTP2_SETTINGS, 0, 0, "\x00\x03\x00\x00\x00\x64"s);
  CHECK_FALSE(c.send(flood));
  CHECK(c.goaway_error() == NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(c.server.calm_reason() == c.goaway_debug());
  CHECK(c.goaway_debug().find("Flooding") != std::string::npos);
}

// --- the memory budget -------------------------------------------------------------------

TEST_CASE_FIXTURE(back_to_back, "a prefix announcing a large message reserves what arrived") {
  auto id = client.open(grpc_request(), grpc_prefix(4u << 20) + std::string(10, 'x'));
  pump();
  CHECK(server->stream_memory_held() < (256u << 10));
  client.reset(id, NGHTTP2_CANCEL);
  pump();
}

TEST_CASE("partial messages past the connection budget: the largest calls are stopped") {
  // Ten streams each half-way through a 64 KiB message: 320 KiB held, the budget is 200 KiB.
  back_to_back t(limits_with(64u << 10, 16u << 10, 200u << 10));
  std::vector<int32_t> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(
      t.client.open(grpc_request(), grpc_prefix(64u << 10) + std::string(32u << 10, 'p')));
    t.pump();
  }
  CHECK(t.server->memory_held() <= (200u << 10));
  size_t stopped = 0;
  for (auto id : ids)
    if (t.client.stream(id).grpc_status() == "8") {
      ++stopped;
      CHECK(t.client.stream(id).grpc_message().find("memory budget") != std::string::npos);
    }
  CHECK(stopped >= 4);
  CHECK(stopped < 10);
  // The others complete.
  t.listener.on_half_close = [&](int32_t id) { t.server->finish(id, grpc_status::ok()); };
  for (auto id : ids)
    if (!t.client.stream(id).closed)
      t.client.send(id, std::string(32u << 10, 'q'), true);
  t.pump();
  for (auto id : ids)
    if (t.client.stream(id).grpc_status() != "8")
      CHECK(t.client.stream(id).grpc_status() == "0");
  for (auto id : ids)
    if (!t.client.stream(id).closed) {
      t.client.reset(id, NGHTTP2_CANCEL);
      t.pump();
    }
}

TEST_CASE("responses to a client that grants no window: stopped at the connection budget") {
  back_to_back t(limits_with(64u << 10, 16u << 10, 256u << 10));
  nghttp2_settings_entry no_window{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
  REQUIRE(nghttp2_submit_settings(t.client.session(), NGHTTP2_FLAG_NONE, &no_window, 1) == 0);
  t.pump();
  std::vector<bool> accepted;
  t.listener.on_half_close = [&](int32_t id) {
    for (int i = 0; i < 8; ++i)
      accepted.push_back(t.server->send_message(id, std::string(60u << 10, 'r')));
  };
  std::vector<int32_t> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(t.client.open(grpc_request(), grpc_frame("go"), true));
    t.pump();
  }
  CHECK(t.server->memory_held() <= (256u << 10));
  CHECK(std::count(accepted.begin(), accepted.end(), false) > 0);
  // A stopped call's response had begun: it is reset with ENHANCE_YOUR_CALM (gRPC clients
  // report RESOURCE_EXHAUSTED), which needs no window.
  size_t stopped = 0;
  for (auto id : ids)
    stopped += t.client.stream(id).rst_error == NGHTTP2_ENHANCE_YOUR_CALM ? 1 : 0;
  CHECK(stopped >= 1);
  for (auto id : ids)
    if (!t.client.stream(id).closed) {
      t.client.reset(id, NGHTTP2_CANCEL);
      t.pump();
    }
}

TEST_CASE("the peer-wide budget: calls are stopped beyond a connection's floor") {
  chroom::transport::peer_memory_budget peer{256u << 10};
  auto limits = limits_with(200u << 10, 16u << 10, 1u << 20);
  raw_client big(limits, &peer);
  raw_client small(limits, &peer);
  const size_t floor_bytes = chroom::transport::connection_memory_floor;
  // `big` holds partial messages on several streams until the peer is over its budget.
  for (uint32_t id = 1; id <= 9; id += 2) {
    REQUIRE(big.open(id));
    big.send(
      raw_frame_bytes(NGHTTP2_DATA, 0, id, grpc_prefix(150u << 10) + std::string(16000, 'b')));
    for (int k = 0; k < 5; ++k)
      big.send(raw_frame_bytes(NGHTTP2_DATA, 0, id, std::string(16000, 'b')));
  }
  CHECK(peer.used() <= peer.limit() + floor_bytes);
  CHECK(big.server.memory_held() <= std::max(floor_bytes, peer.limit()));
  // A small call on the other connection still goes through.
  small.listener.on_half_close = [&](int32_t id) {
    small.server.send_message(id, "ok");
    small.server.finish(id, grpc_status::ok());
  };
  REQUIRE(small.open(1));
  REQUIRE(small.send(raw_frame_bytes(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, grpc_frame("hi"))));
  CHECK(small.listener.messages[1] == std::vector<std::string>{"hi"});
  CHECK(small.server.alive());
}

TEST_CASE("the memory account returns to nothing when connections end") {
  chroom::transport::peer_memory_budget peer{64u << 20};
  {
    back_to_back t(limits_with(64u << 10));
    raw_client c({}, &peer);
    REQUIRE(c.open(1));
    c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, grpc_prefix(40000) + std::string(15000, 'z')));
    c.send(raw_frame_bytes(NGHTTP2_DATA, 0, 1, std::string(15000, 'z')));
    CHECK(c.server.stream_memory_held() >= 30005);
    // The peer's figure is what the connection drew: whole quanta, at most two above
    // what it holds.
    CHECK(peer.used() >= c.server.memory_held());
    CHECK(peer.used() <= c.server.memory_held() + 2 * chroom::transport::peer_draw_quantum);
  }
  CHECK(peer.used() == 0);
}

TEST_CASE("a connection draws from the peer's budget in quanta") {
  using chroom::transport::peer_draw_quantum;
  chroom::transport::peer_memory_budget peer{1u << 20};
  {
    chroom::transport::connection_memory account(1u << 20, &peer);
    account.charge(100);
    CHECK(peer.used() == peer_draw_quantum);
    account.charge(peer_draw_quantum); // crosses into a second quantum
    CHECK(peer.used() == 2 * peer_draw_quantum);
    // Small ups and downs inside the slack leave the shared counter alone.
    for (int i = 0; i < 100; ++i) {
      account.release(500);
      account.charge(500);
    }
    CHECK(peer.used() == 2 * peer_draw_quantum);
    account.charge(5 * peer_draw_quantum);
    CHECK(peer.used() == 7 * peer_draw_quantum);
    CHECK(account.held() == 100 + 6 * peer_draw_quantum);
    // Falling far below what it drew gives the excess back, keeping one quantum of slack.
    account.release(6 * peer_draw_quantum);
    CHECK(account.held() == 100);
    CHECK(peer.used() == 2 * peer_draw_quantum);
    CHECK_FALSE(account.over_budget());
  }
  CHECK(peer.used() == 0);
}
