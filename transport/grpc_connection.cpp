#include "transport/grpc_connection.hpp"

#include "observability/metrics.hpp"
#include "observability/request_id.hpp"
#include "transport/call_protocol.hpp"
#include "transport/grpc_wire.hpp"

#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace chroom::transport {

namespace {

/// The client connection preface every HTTP/2 connection starts with (RFC 9113 §3.4).
constexpr std::string_view client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What an HTTP/1.x client gets on this port: it cannot speak to us, so say why.
constexpr std::string_view http1_body =
  "This port speaks HTTP/2 only (gRPC, or h2c with prior knowledge for JSON calls)\n";

std::string http1_response() {
  return "HTTP/1.1 505 HTTP Version Not Supported\r\n"
         "content-type: text/plain\r\n"
         "content-length: " +
         std::to_string(http1_body.size()) +
         "\r\n"
         "connection: close\r\n"
         "\r\n" +
         std::string{http1_body};
}

/// Headers accounted per field on top of name and value (RFC 9113 §6.5.2).
constexpr size_t header_field_overhead = 32;

using namespace std::chrono_literals;

// Abuse limits: a connection breaking one is closed with GOAWAY ENHANCE_YOUR_CALM. The
// frame-flood limits are Envoy's defaults (its http2_protocol_options), which production
// HTTP/2 clients stay far below; Debian's nghttp2 1.52 has none of them (its stream reset
// rate limit, 1000 then 33/s, stays in force beside these).

/// A stream its client resets within this long of opening, before our response ended, was
/// reset "prematurely" (the rapid-reset attack opens and resets at once).
constexpr auto premature_reset_lifetime = 1s;
/// Premature resets are judged over a connection's closed streams: reaching half of this
/// many closes it at once; past this many streams, so does a share of one half.
constexpr size_t premature_reset_streams = 500;
/// Frames in a row that carry nothing (DATA without payload and without END_STREAM).
constexpr size_t max_consecutive_empty_frames = 1;
/// WINDOW_UPDATE frames per DATA frame we sent (a client grants window because it got
/// data): more than 5 + 2 (streams + this x DATA frames sent) is a flood.
constexpr size_t window_updates_per_data_frame = 10;
/// PRIORITY frames per stream opened (more than this x (1 + streams) is a flood; we do not
/// use priorities at all).
constexpr size_t priority_frames_per_stream = 100;
/// Header lists over the advertised SETTINGS_MAX_HEADER_LIST_SIZE a connection may send:
/// each costs decoding the rest of its block (bounded by max_continuations), and a client
/// that keeps doing it did not read our SETTINGS.
constexpr size_t max_oversized_header_lists = 8;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which we do not raise: a header block of L
/// bytes takes L / this frames.
constexpr size_t max_frame_bytes = 16384;

/// nghttp2 allocates through this, so its buffers count in the connection's budget. Each
/// block carries its size in a header that keeps the payload aligned for any type.
struct alignas(std::max_align_t) allocation_header {
  size_t size;
};

connection_memory& account_of(void* user_data) {
  return *static_cast<connection_memory*>(user_data);
}

void* counted_malloc(size_t size, void* user_data) {
  auto* block = static_cast<allocation_header*>(std::malloc(sizeof(allocation_header) + size));
  if (block == nullptr)
    return nullptr;
  block->size = size;
  account_of(user_data).charge(size);
  return block + 1;
}

void counted_free(void* ptr, void* user_data) {
  if (ptr == nullptr)
    return;
  auto* block = static_cast<allocation_header*>(ptr) - 1;
  account_of(user_data).release(block->size);
  std::free(block);
}

void* counted_calloc(size_t count, size_t size, void* user_data) {
  if (size != 0 && count > SIZE_MAX / size)
    return nullptr;
  auto* ptr = counted_malloc(count * size, user_data);
  if (ptr != nullptr)
    std::memset(ptr, 0, count * size);
  return ptr;
}

void* counted_realloc(void* ptr, size_t size, void* user_data) {
  if (ptr == nullptr)
    return counted_malloc(size, user_data);
  auto* block = static_cast<allocation_header*>(ptr) - 1;
  auto old_size = block->size;
  auto* grown =
    static_cast<allocation_header*>(std::realloc(block, sizeof(allocation_header) + size));
  if (grown == nullptr)
    return nullptr;
  grown->size = size;
  account_of(user_data).release(old_size);
  account_of(user_data).charge(size);
  return grown + 1;
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

/// nghttp2's own abuse limits end the session inside nghttp2_session_mem_recv: a header
/// block with more CONTINUATIONs than set by nghttp2_option_set_max_continuations, or more
/// than 1,000 SETTINGS/PING ACKs waiting to be sent (its outbound-ACK flood limit). They are
/// counted and answered like ours (an empty reason: any other error, a protocol error).
std::string_view nghttp2_limit_reason(ssize_t error) {
  switch (error) {
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      return "continuations";
    case NGHTTP2_ERR_FLOODED:
      return "ack_flood";
    default:
      return {};
  }
}

bool starts_like_http1(std::span<const uint8_t> bytes) {
  // A request line begins with an uppercase method token and a space.
  size_t i = 0;
  while (i < bytes.size() && i < 16 && bytes[i] >= 'A' && bytes[i] <= 'Z')
    ++i;
  return i > 0 && i < bytes.size() && bytes[i] == ' ';
}

} // namespace

/// A FIFO on a vector: unlike std::deque it allocates nothing until first used, which
/// matters at one stream per call.
template <class T> class vector_fifo {
public:
  bool empty() const { return head_ == items_.size(); }
  T& front() { return items_[head_]; }
  void push_back(T value) { items_.push_back(std::move(value)); }
  void pop_front() {
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    }
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }
  auto begin() const { return items_.begin() + static_cast<ptrdiff_t>(head_); }
  auto end() const { return items_.end(); }

private:
  std::vector<T> items_;
  size_t head_ = 0;
};

/// One response message waiting for HTTP/2: the gRPC prefix is kept beside the body so
/// the body is never copied to frame it.
struct outbound_message {
  std::string body;
  uint8_t prefix[grpc_prefix_bytes]{};
  size_t prefix_bytes = 0; // 0 for JSON bodies, which have no prefix

  size_t size() const { return prefix_bytes + body.size(); }
};

/// Request bytes of one delivered message still held against flow-control windows.
struct held_bytes {
  size_t stream = 0;     // the whole message on the wire, prefix included
  size_t connection = 0; // the part not yet given back to the connection window
};

/// What a request's content-type announces.
enum class content_kind { missing, grpc, json, other };

content_kind classify_content_type(std::string_view value) {
  if (value == "application/grpc" || value.starts_with("application/grpc+") ||
      value.starts_with("application/grpc;"))
    return content_kind::grpc;
  if (value.starts_with("application/json"))
    return content_kind::json;
  return content_kind::other;
}

/// Per-stream state, attached to the nghttp2 stream as user data. Recycled through a
/// per-connection pool, so a call allocates no stream state of its own.
struct stream_state {
  stream_state(int32_t id, size_t max_message_bytes) : id(id), decoder(max_message_bytes) {}

  /// Prepares a used state for a new stream: everything reset, buffer capacity kept.
  void recycle(int32_t new_id, size_t max_message_bytes) {
    auto metadata_buffer = std::move(request_metadata);
    auto decoded_buffer = std::move(decoded);
    auto unconsumed_buffer = std::move(unconsumed_sizes);
    auto outbound_buffer = std::move(outbound);
    *this = stream_state{new_id, max_message_bytes};
    metadata_buffer.clear();
    decoded_buffer.clear();
    unconsumed_buffer.clear();
    outbound_buffer.clear();
    request_metadata = std::move(metadata_buffer);
    decoded = std::move(decoded_buffer);
    unconsumed_sizes = std::move(unconsumed_buffer);
    outbound = std::move(outbound_buffer);
  }

  int32_t id;
  size_t open_index = 0; // position in impl::open_streams
  std::chrono::steady_clock::time_point opened_at;
  // Request head, filled by on_header.
  std::string method;
  /// The call's request id (observability/request_id.hpp), echoed in the response headers.
  std::string request_id;
  std::string path;
  content_kind content = content_kind::missing;
  std::string unsupported_content_type; // kept only to name it in the error
  bool has_timeout = false;
  std::string grpc_timeout;
  std::string grpc_encoding;
  metadata request_metadata;
  size_t header_bytes = 0;
  bool bad_metadata = false;
  // Request body.
  grpc_message_decoder decoder;
  std::vector<std::string> decoded; // scratch, reused per DATA chunk
  std::string json_body;
  call_encoding encoding = call_encoding::grpc;
  /// Flow-control bytes of messages delivered but not consumed by the handler yet.
  vector_fifo<held_bytes> unconsumed_sizes;
  size_t unconsumed_bytes = 0; // sum of unconsumed_sizes[].stream
  /// Bytes received of the message in progress: held against the stream window, already
  /// given back to the connection window (so partial messages of several streams can
  /// never block each other).
  size_t pending_wire_bytes = 0;
  // Lifecycle.
  bool started = false;  // on_call_start was called
  bool rejected = false; // answered by the connection itself; ignore further input
  bool response_submitted = false;
  bool finished = false; // final status queued
  bool remote_closed = false;
  bool reset_by_client = false;
  bool cut = false; // stopped to bring the connection back within its memory budget
  // Response body.
  vector_fifo<outbound_message> outbound;
  size_t outbound_offset = 0; // bytes of outbound.front() already handed to nghttp2
  size_t outbound_bytes = 0;  // bytes of outbound not handed to nghttp2 yet
  /// What this stream has charged to the connection's memory account (sync_charge).
  size_t charged = 0;
  size_t sent_messages = 0; // not yet reported by take_sent_messages
  std::optional<grpc_status> trailers;
  bool data_deferred = false;
};

struct grpc_connection::impl {
  impl(grpc_connection& self, grpc_connection_listener& listener, const connection_limits& limits,
       peer_memory_budget* peer_memory);
  ~impl();

  grpc_connection& self;
  grpc_connection_listener& listener;
  connection_limits limits;
  /// Before the session: nghttp2 allocates through it until the session is deleted.
  connection_memory memory;
  nghttp2_mem allocator;
  nghttp2_session* session = nullptr;
  size_t socket_backlog = 0;
  // Abuse accounting (the limits at the top of this file).
  size_t streams_opened = 0;
  size_t streams_closed = 0;
  size_t premature_resets = 0;
  /// When the bytes being processed arrived: one clock read per receive() rather than one
  /// per stream (a stream's age only matters at the scale of premature_reset_lifetime).
  std::chrono::steady_clock::time_point received_at;
  size_t oversized_header_lists = 0;
  size_t consecutive_empty_frames = 0;
  size_t window_update_frames = 0;
  size_t priority_frames = 0;
  size_t data_frames_sent = 0;
  /// Why the connection is being closed for abuse; empty while it is not.
  std::string calm_reason;
  /// Streams open now (owned), and used states kept for reuse.
  std::vector<std::unique_ptr<stream_state>> open_streams;
  std::vector<std::unique_ptr<stream_state>> spare_streams;
  /// Bytes to send outside nghttp2 (the HTTP/1.1 rejection).
  std::string raw_output;
  size_t preface_checked = 0; // how many bytes of the client preface were verified
  bool broken = false;
  bool http1_rejected = false;
  /// Streams whose sent_messages went above 0 since take_sent_counts last ran: credits
  /// are granted per stream that sent something, not by scanning every stream.
  std::vector<int32_t> streams_with_sent;
  // Header scratch space reused by every response (nghttp2 copies what it is given).
  std::vector<nghttp2_nv> nv_scratch;
  std::vector<std::string> encoded_scratch;

  stream_state* find(int32_t id) {
    return static_cast<stream_state*>(nghttp2_session_get_stream_user_data(session, id));
  }

  // nghttp2 event handlers (called through the captureless callbacks below).
  int on_begin_headers(const nghttp2_frame* frame);
  int on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  int on_frame_recv(const nghttp2_frame* frame);
  int on_data_chunk(uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len);
  int on_stream_close(int32_t stream_id, uint32_t error_code);
  int on_frame_send(const nghttp2_frame* frame);
  ssize_t read_body(int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags);

  void start_call(stream_state& s);
  void half_close(stream_state& s);
  /// Answers a stream from the connection itself (bad request): status and stop.
  void reject(stream_state& s, int http_status, const grpc_status& status);
  void submit_response_head(stream_state& s, const metadata& headers);
  void submit_trailers(stream_state& s);
  /// Appends valid custom metadata to nv_scratch (-bin values base64-encoded into
  /// encoded_scratch, which must have room for them: nv_scratch points into it).
  void append_metadata(const metadata& entries);
  void resume(stream_state& s);
  /// Brings the stream's charge to the connection's account in line with what it holds.
  void sync_charge(stream_state& s);
  /// Stops the calls holding the most while the connection is over its memory budget.
  void enforce_budget();
  /// Ends one call to give its memory back.
  void cut(stream_state& s, bool own_limit);
  /// Records an abuse that closes the connection (GOAWAY ENHANCE_YOUR_CALM once receive()
  /// returns). The first reason counts.
  void calm(std::string_view reason, std::string reason_text);
  int header_list_too_large(stream_state& s);
  /// Drops queued responses, except one nghttp2 has begun to send (its frame must end).
  void drop_unsent(stream_state& s);
  void consume_now(int32_t stream_id, size_t bytes);
  /// Gives back the window of `count` delivered messages (all with count == SIZE_MAX)
  /// and, with `include_partial`, of the message in progress.
  void release(stream_state& s, size_t count, bool include_partial);
};

namespace {

template <class Fn> int guarded(Fn&& fn) noexcept {
  // No exception may cross into nghttp2's C code.
  try {
    return fn();
  } catch (const std::exception& e) {
    spdlog::error("gateway: exception in HTTP/2 callback: {}", e.what());
  } catch (...) {
    spdlog::error("gateway: unknown exception in HTTP/2 callback");
  }
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

grpc_connection::impl& self_of(void* user_data) {
  return *static_cast<grpc_connection::impl*>(user_data);
}

/// The callbacks are the same for every connection: built once.
const nghttp2_session_callbacks* server_callbacks() {
  static nghttp2_session_callbacks* callbacks = [] {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(
      cbs, [](nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        return guarded([&] { return self_of(user_data).on_begin_headers(frame); });
      });
    nghttp2_session_callbacks_set_on_header_callback(
      cbs, [](nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
        return guarded([&] {
          return self_of(user_data).on_header(frame, {reinterpret_cast<const char*>(name), namelen},
                                              {reinterpret_cast<const char*>(value), valuelen});
        });
      });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
      cbs, [](nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        return guarded([&] { return self_of(user_data).on_frame_recv(frame); });
      });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cbs, [](nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
              void* user_data) {
        return guarded(
          [&] { return self_of(user_data).on_data_chunk(flags, stream_id, data, len); });
      });
    nghttp2_session_callbacks_set_on_stream_close_callback(
      cbs, [](nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
        return guarded([&] { return self_of(user_data).on_stream_close(stream_id, error_code); });
      });
    nghttp2_session_callbacks_set_on_frame_send_callback(
      cbs, [](nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        return guarded([&] { return self_of(user_data).on_frame_send(frame); });
      });
    return cbs;
  }();
  return callbacks;
}

/// Session options; the caller deletes them (nghttp2 copies them into the session).
nghttp2_option* server_options(const connection_limits& limits) {
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0)
    throw std::bad_alloc{};
  // Request bytes are acknowledged only when the handling actor has consumed the
  // message, so a slow handler slows the client instead of growing our buffers.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // A header block the size of the largest header list we accept needs this many
  // CONTINUATION frames (HPACK never makes a list much larger than its fields): more is
  // a connection error in nghttp2 itself, so one block costs a bounded decode.
  nghttp2_option_set_max_continuations(opt, limits.max_header_list_bytes / max_frame_bytes + 1);
  return opt;
}

ssize_t read_body_callback(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
  try {
    return self_of(user_data).read_body(stream_id, buf, length, data_flags);
  } catch (...) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
}

} // namespace

grpc_connection::impl::impl(grpc_connection& self, grpc_connection_listener& listener,
                            const connection_limits& limits, peer_memory_budget* peer_memory)
    : self(self), listener(listener), limits(limits),
      memory(limits.max_connection_memory_bytes, peer_memory), allocator{&memory, counted_malloc,
                                                                         counted_free,
                                                                         counted_calloc,
                                                                         counted_realloc} {
  auto* options = server_options(limits);
  auto created =
    nghttp2_session_server_new3(&session, server_callbacks(), this, options, &allocator);
  nghttp2_option_del(options);
  if (created != 0)
    throw std::runtime_error{std::string{"cannot create an HTTP/2 session: "} +
                             nghttp2_strerror(created)};
  // Stream window W: the largest message (M, with its prefix) must always fit. Held
  // against W are messages the handler consumed but has not acknowledged yet (less than
  // ack_batch_bytes, B) and bytes consumed but not yet announced (less than W/2: nghttp2
  // sends WINDOW_UPDATE at half). W = 2 (M + B) leaves W - B - W/2 = M free.
  auto stream_window = static_cast<uint32_t>(std::min<size_t>(
    2 * (limits.max_message_bytes + grpc_prefix_bytes + ack_batch_bytes), NGHTTP2_MAX_WINDOW_SIZE));
  // Connection window: bounds the delivered messages that handlers have not consumed
  // yet, summed over streams (partial messages do not count, see on_data_chunk).
  auto connection_window = static_cast<int32_t>(std::min<size_t>(
    std::max<size_t>(2 * size_t{stream_window}, 16u << 20), NGHTTP2_MAX_WINDOW_SIZE));
  nghttp2_settings_entry settings[] = {
    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window},
    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list_bytes},
  };
  // Both only queue frames in a session that was just made: they fail on memory only.
  if (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
      nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, connection_window) != 0)
    throw std::bad_alloc{};
}

grpc_connection::impl::~impl() {
  nghttp2_session_del(session);
  // nghttp2 has given back every allocation: what is left is the streams' charges and the
  // socket backlog, or the account drifted (checked by fuzz/, which builds with asserts).
  [[maybe_unused]] size_t streams = 0;
  for (const auto& s : open_streams)
    streams += s->charged;
  assert(memory.held() == streams + socket_backlog);
}

int grpc_connection::impl::on_begin_headers(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  auto id = frame->hd.stream_id;
  std::unique_ptr<stream_state> state;
  if (spare_streams.empty()) {
    state = std::make_unique<stream_state>(id, limits.max_message_bytes);
  } else {
    state = std::move(spare_streams.back());
    spare_streams.pop_back();
    state->recycle(id, limits.max_message_bytes);
  }
  state->open_index = open_streams.size();
  state->opened_at = received_at;
  ++streams_opened;
  observability::metrics().streams_open.Increment();
  nghttp2_session_set_stream_user_data(session, id, state.get());
  open_streams.push_back(std::move(state));
  return 0;
}

int grpc_connection::impl::on_header(const nghttp2_frame* frame, std::string_view name,
                                     std::string_view value) {
  auto* s = find(frame->hd.stream_id);
  if (frame->hd.type != NGHTTP2_HEADERS || s == nullptr)
    return 0;
  // Request trailers count too: every field costs nghttp2 a validation pass over it.
  s->header_bytes += name.size() + value.size() + header_field_overhead;
  if (s->header_bytes > limits.max_header_list_bytes)
    return header_list_too_large(*s);
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; // request trailers carry nothing gRPC uses
  if (name == ":path")
    s->path = value;
  else if (name == ":method")
    s->method = value;
  else if (name == "content-type") {
    s->content = classify_content_type(value);
    if (s->content == content_kind::other)
      s->unsupported_content_type = value;
  } else if (name == "grpc-timeout") {
    s->has_timeout = true;
    s->grpc_timeout = value;
  } else if (name == "grpc-encoding")
    s->grpc_encoding = value;
  else if (name.starts_with(reserved_metadata_prefix)) {
    // Metadata the peers set on calls they pass on to each other (forwarding hops, lease
    // retries): a client sending it could skip rate limits or forwarding. Dropped.
  } else if (!is_transport_header(name)) {
    if (is_binary_metadata_key(name)) {
      // Several values of one -bin key may arrive comma-joined; each is base64.
      // Several values of one key may arrive joined by commas; each is base64 and
      // becomes an entry of its own.
      for (size_t begin = 0; begin <= value.size();) {
        auto end = std::min(value.find(',', begin), value.size());
        auto part = value.substr(begin, end - begin);
        while (!part.empty() && part.front() == ' ')
          part.remove_prefix(1);
        auto decoded = base64_decode(part);
        if (!decoded) {
          s->bad_metadata = true;
          return 0;
        }
        s->request_metadata.emplace_back(std::string{name}, std::move(*decoded));
        begin = end + 1;
      }
    } else {
      s->request_metadata.emplace_back(std::string{name}, std::string{value});
    }
  }
  return 0;
}

int grpc_connection::impl::header_list_too_large(stream_state& s) {
  // Stop at once: returning the temporal failure makes nghttp2 skip the rest of the block
  // (it still decodes it for the HPACK state, cheaply: without validating and delivering
  // every field, which is what made an HPACK bomb cost 125 ms of the I/O thread per
  // block). A response cannot go out any more (nghttp2 closes the stream), so our own
  // RST_STREAM goes first with ENHANCE_YOUR_CALM, which gRPC clients report as
  // RESOURCE_EXHAUSTED, instead of nghttp2's INTERNAL_ERROR.
  observability::metrics().gateway_enforcements("header_list").Increment();
  if (++oversized_header_lists > max_oversized_header_lists) {
    calm("header_lists", std::to_string(oversized_header_lists) +
                           " header lists over SETTINGS_MAX_HEADER_LIST_SIZE (" +
                           std::to_string(limits.max_header_list_bytes) + " bytes)");
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (!s.rejected) {
    spdlog::debug("gateway: stream {}: header list over {} bytes, reset", s.id,
                  limits.max_header_list_bytes);
    if (!s.started)
      observability::metrics().streams_started.Increment();
    observability::metrics().responses(static_cast<int>(grpc_code::resource_exhausted)).Increment();
    s.rejected = true;
    release(s, SIZE_MAX, true);
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

void grpc_connection::impl::calm(std::string_view reason, std::string reason_text) {
  if (!calm_reason.empty())
    return;
  observability::metrics().gateway_enforcements(reason).Increment();
  calm_reason = std::move(reason_text);
}

int grpc_connection::impl::on_frame_recv(const nghttp2_frame* frame) {
  if (frame->hd.length > 0)
    consecutive_empty_frames = 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* s = find(frame->hd.stream_id);
      if (s == nullptr)
        return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        start_call(*s);
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
        half_close(*s);
      return 0;
    }
    case NGHTTP2_DATA: {
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
        if (frame->hd.length == 0 && ++consecutive_empty_frames > max_consecutive_empty_frames)
          calm("empty_frames", std::to_string(consecutive_empty_frames) +
                                 " DATA frames in a row without payload or END_STREAM");
        return 0;
      }
      if (auto* s = find(frame->hd.stream_id))
        half_close(*s);
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      if (auto* s = find(frame->hd.stream_id))
        s->reset_by_client = true;
      return 0;
    case NGHTTP2_WINDOW_UPDATE:
      if (++window_update_frames >
          5 + 2 * (streams_opened + window_updates_per_data_frame * data_frames_sent))
        calm("window_updates", std::to_string(window_update_frames) + " WINDOW_UPDATE frames for " +
                                 std::to_string(data_frames_sent) + " DATA frames sent");
      return 0;
    case NGHTTP2_PRIORITY:
      if (++priority_frames > priority_frames_per_stream * (1 + streams_opened))
        calm("priority_frames", std::to_string(priority_frames) + " PRIORITY frames for " +
                                  std::to_string(streams_opened) + " streams");
      return 0;
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0)
        self.ping_outstanding_ = false;
      return 0;
    default:
      return 0;
  }
}

/// The call's request id: the client's usable x-request-id, or a new one in its metadata.
void assign_request_id(stream_state& s) {
  using observability::request_id_key;
  auto it = std::find_if(s.request_metadata.begin(), s.request_metadata.end(),
                         [](const auto& entry) { return entry.first == request_id_key; });
  if (it == s.request_metadata.end())
    it = s.request_metadata.emplace(s.request_metadata.end(), std::string{request_id_key},
                                    std::string{});
  if (!observability::usable_request_id(it->second))
    it->second = observability::new_request_id();
  s.request_id = it->second;
}

void grpc_connection::impl::start_call(stream_state& s) {
  observability::metrics().streams_started.Increment();
  sync_charge(s); // the header list, kept with the call until it closes
  if (s.content != content_kind::grpc && s.content != content_kind::json) {
    reject(s, 415,
           make_status(grpc_code::invalid_argument,
                       s.content == content_kind::missing
                         ? "missing content-type: use application/grpc or application/json"
                         : "unsupported content-type '" + s.unsupported_content_type +
                             "': use application/grpc or application/json"));
    return;
  }
  s.encoding = s.content == content_kind::json ? call_encoding::json : call_encoding::grpc;
  if (s.method != "POST") {
    reject(s, 405,
           make_status(grpc_code::unimplemented,
                       "method " + s.method + " not allowed: gRPC calls use POST"));
    return;
  }
  if (s.bad_metadata) {
    reject(s, 200, make_status(grpc_code::internal, "invalid base64 in -bin request metadata"));
    return;
  }
  call_head head;
  if (s.has_timeout) {
    head.timeout = parse_grpc_timeout(s.grpc_timeout);
    if (!head.timeout) {
      reject(s, 200,
             make_status(grpc_code::internal, "malformed grpc-timeout '" + s.grpc_timeout + "'"));
      return;
    }
  }
  assign_request_id(s);
  head.path = std::move(s.path);
  head.encoding = s.encoding;
  head.request_metadata = std::move(s.request_metadata);
  s.started = true;
  listener.on_call_start(s.id, std::move(head));
}

void grpc_connection::impl::half_close(stream_state& s) {
  s.remote_closed = true;
  if (!s.started || s.rejected || s.finished)
    return; // answered already: whatever the client still sent is of no interest
  if (s.encoding == call_encoding::json) {
    s.unconsumed_sizes.push_back(held_bytes{s.pending_wire_bytes, 0});
    s.unconsumed_bytes += s.pending_wire_bytes;
    s.pending_wire_bytes = 0;
    listener.on_call_message(s.id, std::move(s.json_body));
    sync_charge(s);
  } else if (!s.decoder.at_boundary()) {
    reject(s, 200,
           make_status(grpc_code::internal,
                       "request ended inside a message: length prefix or body truncated"));
    return;
  }
  listener.on_call_half_close(s.id);
}

int grpc_connection::impl::on_data_chunk(uint8_t, int32_t stream_id, const uint8_t* data,
                                         size_t len) {
  auto* s = find(stream_id);
  if (s == nullptr || !s->started || s->rejected || s->finished) {
    consume_now(stream_id, len); // nobody will read it: give the window back at once
    return 0;
  }
  if (s->encoding == call_encoding::json) {
    nghttp2_session_consume_connection(session, len);
    s->pending_wire_bytes += len;
    if (s->json_body.size() + len > limits.max_message_bytes) {
      reject(*s, 413,
             make_status(grpc_code::resource_exhausted, "JSON request body exceeds " +
                                                          std::to_string(limits.max_message_bytes) +
                                                          " bytes"));
      return 0;
    }
    s->json_body.append(reinterpret_cast<const char*>(data), len);
    sync_charge(*s);
    return 0;
  }
  s->decoded.clear();
  auto error = s->decoder.feed({data, len}, s->decoded);
  // Each completed message holds its own bytes against the stream window until the
  // handler consumes it; at the connection level it holds only what this chunk brought
  // (its earlier bytes were given back while it was partial). The new partial tail goes
  // back to the connection window at once.
  if (s->decoded.empty()) {
    nghttp2_session_consume_connection(session, len);
    s->pending_wire_bytes += len;
  } else {
    for (size_t i = 0; i < s->decoded.size(); ++i) {
      size_t wire = grpc_prefix_bytes + s->decoded[i].size();
      size_t earlier = i == 0 ? s->pending_wire_bytes : 0;
      s->unconsumed_sizes.push_back(held_bytes{wire, wire - earlier});
      s->unconsumed_bytes += wire;
    }
    auto tail = s->decoder.buffered_bytes();
    nghttp2_session_consume_connection(session, tail);
    s->pending_wire_bytes = tail;
  }
  sync_charge(*s);
  for (auto& message : s->decoded) {
    listener.on_call_message(stream_id, std::move(message));
    if (find(stream_id) != s || s->rejected || s->finished)
      return 0; // the owner ended the call while handling the message
  }
  using decode_error = grpc_message_decoder::error;
  switch (error) {
    case decode_error::none:
      break;
    case decode_error::too_large:
      reject(*s, 200,
             make_status(grpc_code::resource_exhausted,
                         "request message of " + std::to_string(s->decoder.announced_bytes()) +
                           " bytes exceeds the limit of " +
                           std::to_string(limits.max_message_bytes) + " bytes"));
      break;
    case decode_error::compressed:
      if (s->grpc_encoding.empty() || s->grpc_encoding == "identity") {
        reject(*s, 200,
               make_status(grpc_code::internal, "compressed message without a grpc-encoding"));
      } else {
        reject(*s, 200,
               make_status(grpc_code::unimplemented,
                           "grpc-encoding '" + s->grpc_encoding +
                             "' is not supported; this server accepts identity"));
      }
      break;
    case decode_error::bad_flag:
      reject(*s, 200, make_status(grpc_code::internal, "invalid compressed-flag byte"));
      break;
    case decode_error::discarded:
      break; // a cut stream: not fed any more
  }
  return 0;
}

int grpc_connection::impl::on_stream_close(int32_t stream_id, uint32_t) {
  auto* s = find(stream_id);
  if (s == nullptr)
    return 0;
  ++streams_closed;
  if (s->reset_by_client && !s->finished &&
      received_at - s->opened_at < premature_reset_lifetime) {
    ++premature_resets;
    // As Envoy: half of the first 500 streams, or half of all once past 500.
    if (premature_resets * 2 >= std::max(streams_closed, premature_reset_streams))
      calm("premature_resets", std::to_string(premature_resets) + " of " +
                                 std::to_string(streams_closed) +
                                 " streams reset by the client within 1 s of opening");
  }
  memory.release(s->charged);
  s->charged = 0;
  // Window held for messages the handler never consumed goes back to the connection.
  size_t held = 0;
  for (const auto& message : s->unconsumed_sizes)
    held += message.connection;
  if (held > 0)
    nghttp2_session_consume_connection(session, held);
  bool started = s->started;
  observability::metrics().streams_open.Decrement();
  nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
  // Swap-remove from the open list; the state goes to the spares (a few suffice: the
  // pool only has to cover the streams that are open at once).
  auto index = s->open_index;
  auto owned = std::move(open_streams[index]);
  if (index + 1 != open_streams.size()) {
    open_streams[index] = std::move(open_streams.back());
    open_streams[index]->open_index = index;
  }
  open_streams.pop_back();
  if (spare_streams.size() < limits.max_concurrent_streams)
    spare_streams.push_back(std::move(owned));
  if (started)
    listener.on_call_closed(stream_id);
  return 0;
}

int grpc_connection::impl::on_frame_send(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_DATA)
    ++data_frames_sent;
  // A GOAWAY with an error ends the connection, whether we or nghttp2 (answering a
  // connection error on its own) sent it.
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    broken = true;
    return 0;
  }
  // Once our response is complete, stop a gRPC client that keeps sending (RFC 9113
  // §8.1.1 allows RST_STREAM NO_ERROR). Not other clients: curl 7.88 reports such a reset
  // as a framing error even after a complete response, so their remaining request bytes
  // are read and dropped instead.
  bool ends_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!ends_stream || (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
    return 0;
  if (auto* s = find(frame->hd.stream_id);
      s != nullptr && !s->remote_closed && s->content == content_kind::grpc)
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
  return 0;
}

void grpc_connection::impl::release(stream_state& s, size_t count, bool include_partial) {
  size_t stream_bytes = include_partial ? std::exchange(s.pending_wire_bytes, 0) : 0;
  size_t connection_bytes = 0;
  for (; count > 0 && !s.unconsumed_sizes.empty(); --count) {
    stream_bytes += s.unconsumed_sizes.front().stream;
    connection_bytes += s.unconsumed_sizes.front().connection;
    s.unconsumed_bytes -= s.unconsumed_sizes.front().stream;
    s.unconsumed_sizes.pop_front();
  }
  if (stream_bytes > 0)
    nghttp2_session_consume_stream(session, s.id, stream_bytes);
  if (connection_bytes > 0)
    nghttp2_session_consume_connection(session, connection_bytes);
  sync_charge(s);
}

void grpc_connection::impl::sync_charge(stream_state& s) {
  size_t holds = s.header_bytes + s.decoder.held_bytes() + s.json_body.capacity() +
                 s.unconsumed_bytes + s.outbound_bytes;
  if (holds > s.charged)
    memory.charge(holds - s.charged);
  else
    memory.release(s.charged - holds);
  s.charged = holds;
}

void grpc_connection::impl::enforce_budget() {
  while (memory.over_budget() && calm_reason.empty() && !broken) {
    bool own_limit = memory.over_connection_limit();
    // The call holding the most goes first (what a call holds beyond its header list
    // is what stopping it gives back).
    stream_state* victim = nullptr;
    for (const auto& s : open_streams)
      if (!s->cut && s->charged > s->header_bytes &&
          (victim == nullptr || s->charged > victim->charged))
        victim = s.get();
    if (victim != nullptr) {
      cut(*victim, own_limit);
      continue;
    }
    // What is left is the connection's own (nghttp2's buffers, header lists, the socket
    // backlog). Over the peer-wide budget that is its fixed cost: keep it. Over its own
    // limit, the connection goes.
    if (own_limit)
      calm("connection_memory", "connection holds " + std::to_string(memory.held()) +
                                  " bytes, over its budget of " + std::to_string(memory.limit()) +
                                  " bytes");
    return;
  }
}

void grpc_connection::impl::cut(stream_state& s, bool own_limit) {
  s.cut = true;
  observability::metrics()
    .gateway_enforcements(own_limit ? "connection_memory" : "peer_memory")
    .Increment();
  spdlog::debug("gateway: stream {} stopped holding {} bytes: over the {} memory budget", s.id,
                s.charged, own_limit ? "connection's" : "peer's");
  s.decoder.discard();
  s.json_body = std::string{};
  if (s.response_submitted || !s.started) {
    // Once the response began, its status could only follow in trailers, and those wait
    // behind the queued DATA (for a client that grants no window: forever); without a
    // call there is nobody to answer. A reset ends the stream at once; gRPC clients map
    // ENHANCE_YOUR_CALM to RESOURCE_EXHAUSTED.
    s.rejected = true;
    release(s, SIZE_MAX, true);
    s.outbound.clear();
    s.outbound_offset = 0;
    s.outbound_bytes = 0;
    sync_charge(s);
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_ENHANCE_YOUR_CALM);
    return;
  }
  auto status = make_status(grpc_code::resource_exhausted,
                            own_limit ? "call stopped: the connection holds more than its memory "
                                        "budget of " +
                                          std::to_string(memory.limit()) + " bytes"
                                      : std::string{"call stopped: the server holds more than "
                                                    "its memory budget for all connections"});
  reject(s, s.encoding == call_encoding::json ? http_status_for(status.code) : 200, status);
  sync_charge(s);
}

void grpc_connection::impl::consume_now(int32_t stream_id, size_t bytes) {
  if (bytes == 0)
    return;
  if (nghttp2_session_consume(session, stream_id, bytes) != 0)
    nghttp2_session_consume_connection(session, bytes);
}

void grpc_connection::impl::submit_response_head(stream_state& s, const metadata& headers) {
  if (s.response_submitted)
    return;
  s.response_submitted = true;
  auto& nva = nv_scratch;
  auto& encoded = encoded_scratch; // keeps base64 values alive until nghttp2 copies them
  nva.clear();
  encoded.clear();
  encoded.reserve(headers.size()); // no reallocation: nva points into it
  nva.push_back(make_nv(":status", "200"));
  nva.push_back(make_nv("content-type", s.encoding == call_encoding::json ? "application/json"
                                                                          : "application/grpc"));
  if (s.encoding == call_encoding::grpc)
    nva.push_back(make_nv("grpc-accept-encoding", "identity"));
  if (!s.request_id.empty())
    nva.push_back(make_nv(observability::request_id_key, s.request_id));
  append_metadata(headers);
  nghttp2_data_provider provider{};
  provider.read_callback = read_body_callback;
  nghttp2_submit_response(session, s.id, nva.data(), nva.size(), &provider);
}

ssize_t grpc_connection::impl::read_body(int32_t stream_id, uint8_t* buf, size_t length,
                                         uint32_t* data_flags) {
  auto* s = find(stream_id);
  if (s == nullptr)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t written = 0;
  while (written < length && !s->outbound.empty()) {
    auto& front = s->outbound.front();
    if (s->outbound_offset < front.prefix_bytes) {
      auto take = std::min(length - written, front.prefix_bytes - s->outbound_offset);
      std::memcpy(buf + written, front.prefix + s->outbound_offset, take);
      written += take;
      s->outbound_offset += take;
      s->outbound_bytes -= take;
    }
    auto body_offset = s->outbound_offset - std::min(s->outbound_offset, front.prefix_bytes);
    if (s->outbound_offset >= front.prefix_bytes) {
      auto take = std::min(length - written, front.body.size() - body_offset);
      std::memcpy(buf + written, front.body.data() + body_offset, take);
      written += take;
      s->outbound_offset += take;
      s->outbound_bytes -= take;
    }
    if (s->outbound_offset == front.size()) {
      s->outbound.pop_front();
      s->outbound_offset = 0;
      if (s->sent_messages++ == 0)
        streams_with_sent.push_back(s->id);
    }
  }
  sync_charge(*s);
  if (s->outbound.empty() && s->finished) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->trailers) {
      *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      submit_trailers(*s);
    }
    return static_cast<ssize_t>(written);
  }
  if (written == 0) {
    s->data_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(written);
}

void grpc_connection::impl::append_metadata(const metadata& entries) {
  for (const auto& [key, value] : entries) {
    if (!is_valid_custom_metadata_key(key)) {
      spdlog::warn("gateway: dropping response metadata with invalid key '{}'", key);
    } else if (is_binary_metadata_key(key)) {
      encoded_scratch.push_back(base64_encode(value));
      nv_scratch.push_back(make_nv(key, encoded_scratch.back()));
    } else if (is_valid_ascii_metadata_value(value)) {
      nv_scratch.push_back(make_nv(key, value));
    } else {
      spdlog::warn("gateway: dropping response metadata '{}' with a non-ASCII value", key);
    }
  }
}

void grpc_connection::impl::submit_trailers(stream_state& s) {
  auto& status = *s.trailers;
  observability::metrics().responses(static_cast<int>(status.code)).Increment();
  std::string code = std::to_string(static_cast<int>(status.code));
  std::string message = percent_encode(status.message);
  auto& nva = nv_scratch;
  auto& encoded = encoded_scratch;
  nva.clear();
  encoded.clear();
  // Its strings must not move while nva points into them.
  encoded.reserve(status.trailers.size() + 1);
  nva.push_back(make_nv("grpc-status", code));
  if (!message.empty())
    nva.push_back(make_nv("grpc-message", message));
  if (!status.details.empty()) {
    encoded.push_back(base64_encode(status.details));
    nva.push_back(make_nv(status_details_key, encoded.back()));
  }
  append_metadata(status.trailers);
  nghttp2_submit_trailer(session, s.id, nva.data(), nva.size());
  s.trailers.reset();
}

void grpc_connection::impl::drop_unsent(stream_state& s) {
  if (s.outbound_offset == 0) {
    s.outbound.clear();
    s.outbound_bytes = 0;
  } else {
    auto started = std::move(s.outbound.front());
    s.outbound.clear();
    s.outbound_bytes = started.size() - s.outbound_offset;
    s.outbound.push_back(std::move(started));
  }
  sync_charge(s);
}

void grpc_connection::impl::resume(stream_state& s) {
  if (s.data_deferred) {
    s.data_deferred = false;
    nghttp2_session_resume_data(session, s.id);
  }
}

void grpc_connection::impl::reject(stream_state& s, int http_status, const grpc_status& status) {
  s.rejected = true;
  release(s, SIZE_MAX, true); // nothing more of this request will be read
  drop_unsent(s);
  if (s.response_submitted) {
    // Headers are out already: the status can only go in trailers.
    s.finished = true;
    s.trailers = status;
    resume(s);
    return;
  }
  s.response_submitted = true;
  s.finished = true;
  observability::metrics().responses(static_cast<int>(status.code)).Increment();
  std::string code_text = std::to_string(http_status);
  std::string grpc_code_text = std::to_string(static_cast<int>(status.code));
  std::string message = percent_encode(status.message);
  std::string details = status.details.empty() ? std::string{} : base64_encode(status.details);
  nghttp2_nv nva[] = {
    make_nv(":status", code_text),
    make_nv("content-type",
            s.encoding == call_encoding::json ? "application/json" : "application/grpc"),
    make_nv("grpc-accept-encoding", "identity"),
    make_nv("grpc-status", grpc_code_text),
    make_nv("grpc-message", message),
    make_nv(status_details_key, details),
  };
  // An empty grpc-message or details is left out rather than sent empty.
  size_t header_count = 4;
  if (!message.empty())
    nva[header_count++] = nva[4];
  if (!details.empty())
    nva[header_count++] = nva[5];
  if (s.encoding == call_encoding::json) {
    // JSON clients get the error in the body too, shaped like google.rpc.Status.
    std::string body = "{\"code\":" + grpc_code_text + ",\"message\":\"";
    for (char c : status.message) {
      if (c == '"' || c == '\\')
        body.push_back('\\');
      if (static_cast<unsigned char>(c) < 0x20)
        continue;
      body.push_back(c);
    }
    body += "\"}";
    s.outbound_bytes += body.size();
    s.outbound.push_back(outbound_message{std::move(body)});
    sync_charge(s);
    nghttp2_data_provider provider{};
    provider.read_callback = read_body_callback;
    nghttp2_submit_response(session, s.id, nva, header_count, &provider);
    return;
  }
  nghttp2_submit_response(session, s.id, nva, header_count, nullptr);
}

// --- grpc_connection ------------------------------------------------------------

grpc_connection::grpc_connection(grpc_connection_listener& listener,
                                 const connection_limits& limits, peer_memory_budget* peer_memory)
    : impl_(std::make_unique<impl>(*this, listener, limits, peer_memory)) {}

grpc_connection::~grpc_connection() = default;

bool grpc_connection::receive(std::span<const uint8_t> bytes) {
  auto& d = *impl_;
  if (d.broken)
    return false;
  if (d.preface_checked < client_preface.size()) {
    auto n = std::min(bytes.size(), client_preface.size() - d.preface_checked);
    if (std::memcmp(bytes.data(), client_preface.data() + d.preface_checked, n) != 0) {
      d.broken = true;
      if (d.preface_checked == 0 && starts_like_http1(bytes)) {
        d.raw_output = http1_response();
        d.http1_rejected = true;
        spdlog::debug("gateway: HTTP/1.x request on the HTTP/2 port, answered 505");
      } else {
        terminate(h2_error::protocol_error, "not an HTTP/2 connection preface");
      }
      return false;
    }
    d.preface_checked += n;
  }
  d.received_at = std::chrono::steady_clock::now();
  auto rv = nghttp2_session_mem_recv(d.session, bytes.data(), bytes.size());
  if (!d.calm_reason.empty() && !d.broken) {
    spdlog::debug("gateway: connection closed for abuse: {}", d.calm_reason);
    terminate(h2_error::enhance_your_calm, d.calm_reason);
    return false;
  }
  if (auto reason = nghttp2_limit_reason(rv); !reason.empty()) {
    d.calm(reason, nghttp2_strerror(static_cast<int>(rv)));
    terminate(h2_error::enhance_your_calm, d.calm_reason);
    return false;
  }
  if (rv < 0) {
    spdlog::debug("gateway: HTTP/2 error from peer: {}", nghttp2_strerror(static_cast<int>(rv)));
    d.broken = true;
    if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
      terminate(h2_error::protocol_error, nghttp2_strerror(static_cast<int>(rv)));
    return false;
  }
  d.enforce_budget();
  if (!d.calm_reason.empty() && !d.broken) {
    terminate(h2_error::enhance_your_calm, d.calm_reason);
    return false;
  }
  return !d.broken;
}

void grpc_connection::produce(std::vector<char>& out, size_t budget) {
  auto& d = *impl_;
  if (d.http1_rejected) {
    out.insert(out.end(), d.raw_output.begin(), d.raw_output.end());
    d.raw_output.clear();
    return;
  }
  size_t produced = 0;
  while (produced < budget) {
    const uint8_t* data = nullptr;
    auto n = nghttp2_session_mem_send(d.session, &data);
    if (n <= 0) {
      if (n < 0) {
        spdlog::warn("gateway: HTTP/2 send failed: {}", nghttp2_strerror(static_cast<int>(n)));
        d.broken = true;
      }
      break;
    }
    out.insert(out.end(), reinterpret_cast<const char*>(data),
               reinterpret_cast<const char*>(data) + n);
    produced += static_cast<size_t>(n);
  }
}

bool grpc_connection::alive() const {
  const auto& d = *impl_;
  if (d.http1_rejected)
    return !d.raw_output.empty();
  if (d.broken)
    return nghttp2_session_want_write(d.session) != 0;
  return nghttp2_session_want_read(d.session) != 0 || nghttp2_session_want_write(d.session) != 0;
}

bool grpc_connection::wants_write() const {
  const auto& d = *impl_;
  if (d.http1_rejected)
    return !d.raw_output.empty();
  return !d.raw_output.empty() || nghttp2_session_want_write(d.session) != 0;
}

void grpc_connection::send_headers(int32_t stream_id, const metadata& headers) {
  auto* s = impl_->find(stream_id);
  if (s == nullptr || s->rejected || s->finished)
    return;
  impl_->submit_response_head(*s, headers);
}

bool grpc_connection::send_message(int32_t stream_id, std::string&& message) {
  auto& d = *impl_;
  auto* s = d.find(stream_id);
  if (s == nullptr || s->rejected || s->finished)
    return false;
  if (message.size() > d.limits.max_message_bytes) {
    finish(stream_id, make_status(grpc_code::resource_exhausted,
                                  "response message of " + std::to_string(message.size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(d.limits.max_message_bytes) + " bytes"));
    return false;
  }
  d.submit_response_head(*s, {});
  outbound_message out{std::move(message)};
  if (s->encoding == call_encoding::grpc) {
    auto size = static_cast<uint32_t>(out.body.size());
    out.prefix[1] = static_cast<uint8_t>(size >> 24);
    out.prefix[2] = static_cast<uint8_t>(size >> 16);
    out.prefix[3] = static_cast<uint8_t>(size >> 8);
    out.prefix[4] = static_cast<uint8_t>(size);
    out.prefix_bytes = grpc_prefix_bytes;
  }
  s->outbound_bytes += out.size();
  s->outbound.push_back(std::move(out));
  d.sync_charge(*s);
  d.resume(*s);
  d.enforce_budget();
  if (!d.calm_reason.empty() && !d.broken)
    terminate(h2_error::enhance_your_calm, d.calm_reason);
  return !s->cut;
}

void grpc_connection::finish(int32_t stream_id, const grpc_status& status) {
  auto& d = *impl_;
  auto* s = d.find(stream_id);
  if (s == nullptr || s->rejected || s->finished)
    return;
  if (!s->response_submitted && !status.is_ok() && status.trailers.empty()) {
    // Trailers-only response (errors), or for JSON the error body.
    d.reject(*s, s->encoding == call_encoding::json ? http_status_for(status.code) : 200, status);
    s->rejected = false; // the handler ended the call: this is not the connection's refusal
    return;
  }
  d.submit_response_head(*s, {});
  s->finished = true;
  if (s->encoding == call_encoding::grpc)
    s->trailers = status;
  d.resume(*s);
}

void grpc_connection::cancel(int32_t stream_id) {
  auto& d = *impl_;
  if (auto* s = d.find(stream_id)) {
    s->rejected = true;
    nghttp2_submit_rst_stream(d.session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  }
}

void grpc_connection::consume(int32_t stream_id, size_t count) {
  auto& d = *impl_;
  if (auto* s = d.find(stream_id))
    d.release(*s, count, false);
}

void grpc_connection::take_sent_counts(std::vector<std::pair<int32_t, size_t>>& counts) {
  auto& d = *impl_;
  for (auto id : d.streams_with_sent)
    if (auto* s = d.find(id); s != nullptr && s->sent_messages > 0)
      counts.emplace_back(id, std::exchange(s->sent_messages, 0));
  d.streams_with_sent.clear();
}

size_t grpc_connection::take_sent_messages(int32_t stream_id) {
  auto* s = impl_->find(stream_id);
  if (s == nullptr)
    return 0;
  return std::exchange(s->sent_messages, 0);
}

void grpc_connection::ping() {
  if (nghttp2_submit_ping(impl_->session, NGHTTP2_FLAG_NONE, nullptr) == 0)
    ping_outstanding_ = true;
}

void grpc_connection::go_away() {
  auto& d = *impl_;
  nghttp2_submit_goaway(d.session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(d.session), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void grpc_connection::terminate(h2_error code, std::string_view debug) {
  auto& d = *impl_;
  nghttp2_submit_goaway(
    d.session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(d.session),
    static_cast<uint32_t>(code), reinterpret_cast<const uint8_t*>(debug.data()), debug.size());
  d.broken = true;
}

void grpc_connection::set_socket_backlog(size_t bytes) {
  auto& d = *impl_;
  if (bytes > d.socket_backlog)
    d.memory.charge(bytes - d.socket_backlog);
  else
    d.memory.release(d.socket_backlog - bytes);
  d.socket_backlog = bytes;
  d.enforce_budget();
  if (!d.calm_reason.empty() && !d.broken)
    terminate(h2_error::enhance_your_calm, d.calm_reason);
}

size_t grpc_connection::memory_held() const {
  return impl_->memory.held();
}

size_t grpc_connection::stream_memory_held() const {
  size_t held = 0;
  for (const auto& s : impl_->open_streams)
    held += s->charged;
  return held;
}

const std::string& grpc_connection::calm_reason() const {
  return impl_->calm_reason;
}

size_t grpc_connection::open_streams() const {
  return impl_->open_streams.size();
}

std::vector<int32_t> grpc_connection::open_calls() const {
  std::vector<int32_t> ids;
  for (const auto& s : impl_->open_streams)
    if (s->started)
      ids.push_back(s->id);
  return ids;
}

} // namespace chroom::transport
