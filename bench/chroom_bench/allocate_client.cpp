#include "bench/chroom_bench/allocate_client.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <memory>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>

namespace chroom::bench {

namespace {

// Bytes read per read(): a pass of 32 answers of ~600 bytes fits, so one syscall serves
// many calls.
constexpr std::size_t read_buffer_bytes = 64 * 1024;
// Serialized frames gathered before a write(): bounds the buffer when the peer reads
// slowly, and above it the client stops producing (backpressure).
constexpr std::size_t max_pending_output_bytes = 256 * 1024;
// Largest response kept; a bigger one still counts (by its status) but is not looked into.
constexpr std::size_t max_response_bytes = 1 << 20;
// Connection-level receive window: large, so nghttp2 sends a WINDOW_UPDATE rarely instead
// of every 32 KiB of answers.
constexpr std::int32_t connection_window_bytes = 1 << 30;
// poll() timeout: the longest the driver's give_up() waits to be asked.
constexpr auto poll_timeout = std::chrono::milliseconds(100);

// One call in flight (or a free place for one) on a connection.
struct slot {
  std::size_t id = 0;
  std::string framed; // the request: gRPC prefix + message
  std::size_t framed_sent = 0;
  std::string response;   // DATA received: gRPC prefix + message
  bool truncated = false; // response passed max_response_bytes; the rest was dropped
  std::string grpc_message;
  int http_status = 0;
  int grpc_status = -1;
  bool busy = false;
  load_clock::time_point written_at{};
};

struct connection {
  int fd = -1;
  nghttp2_session* session = nullptr;
  call_driver* driver = nullptr;
  const std::vector<std::vector<nghttp2_nv>>* headers = nullptr;
  std::unique_ptr<slot[]> slots;
  std::size_t slot_count = 0;
  std::size_t busy = 0;
  std::vector<slot*> free_slots; // ended calls whose slot asks the driver for the next
  std::vector<slot*> waiting;    // slots the driver asked to wait (rate limit)
  std::vector<slot*> just_sent;  // requests serialized since the last write()
  std::string out;               // serialized frames not yet written
  std::size_t out_offset = 0;
  bool output_capped = false; // mem_send stopped at max_pending_output_bytes
  bool closed = false;
  // Set right after each read(): when the answers in that read arrived.
  load_clock::time_point read_at{};
  // Scratch for a failure's text, reused.
  std::string failure;
  std::string failure_detail;
  // A C++ exception caught in a callback, rethrown after nghttp2 returned.
  std::exception_ptr error;
};

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  // The strings outlive the session (they belong to the headers table of the run), so
  // nghttp2 need not copy them.
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
          value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

int parse_int(std::string_view text) {
  int value = -1;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && ptr == text.data() + text.size() ? value : -1;
}

// The call of `s` ended: tell the driver, then offer the slot for the next call.
void finish(connection& c, slot& s, std::uint32_t error_code) {
  call_result r;
  if (s.written_at != load_clock::time_point{} && c.read_at > s.written_at) {
    r.latency_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(c.read_at - s.written_at).count());
  }
  if (s.grpc_status >= 0 && s.http_status == 200) {
    r.grpc_status = s.grpc_status;
    r.grpc_message = s.grpc_message;
    if (s.grpc_status == 0) {
      std::string_view body = s.response;
      const bool framed =
        body.size() >= grpc_prefix_bytes && body[0] == 0 &&
        (std::size_t{static_cast<unsigned char>(body[1])} << 24 |
         std::size_t{static_cast<unsigned char>(body[2])} << 16 |
         std::size_t{static_cast<unsigned char>(body[3])} << 8 |
         std::size_t{static_cast<unsigned char>(body[4])}) == body.size() - grpc_prefix_bytes;
      if (framed) {
        r.response = body.substr(grpc_prefix_bytes);
      } else if (!s.truncated) {
        // OK without exactly one uncompressed message: not an answer the benchmark can use.
        r.grpc_status = -1;
        r.failure = "OK without one uncompressed message";
        c.failure_detail = fmt::format("{} bytes of DATA", body.size());
        r.failure_detail = c.failure_detail;
      }
    }
  } else if (error_code != NGHTTP2_NO_ERROR) {
    r.failure = "stream reset";
    c.failure_detail = nghttp2_http2_strerror(error_code);
    r.failure_detail = c.failure_detail;
  } else if (s.http_status != 200) {
    c.failure = s.http_status > 0 ? fmt::format("HTTP {}", s.http_status) : "no :status";
    r.failure = c.failure;
  } else {
    r.failure = "no grpc-status";
  }
  s.busy = false;
  --c.busy;
  c.driver->call_done(s.id, r);
  c.free_slots.push_back(&s);
}

// --- nghttp2 callbacks: captureless, user_data is the connection, no exception escapes --

template <typename F> int guarded(connection& c, F&& body) {
  try {
    return body();
  } catch (...) {
    c.error = std::current_exception();
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
}

int on_header(nghttp2_session* session, const nghttp2_frame* frame, const std::uint8_t* name,
              std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
              std::uint8_t, void* user_data) {
  auto& c = *static_cast<connection*>(user_data);
  return guarded(c, [&] {
    if (frame->hd.type != NGHTTP2_HEADERS)
      return 0;
    auto* s =
      static_cast<slot*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (s == nullptr)
      return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), name_length);
    const std::string_view v(reinterpret_cast<const char*>(value), value_length);
    if (n == ":status")
      s->http_status = parse_int(v);
    else if (n == "grpc-status")
      s->grpc_status = parse_int(v);
    else if (n == "grpc-message")
      s->grpc_message.assign(v);
    return 0;
  });
}

int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                  const std::uint8_t* data, std::size_t length, void* user_data) {
  auto& c = *static_cast<connection*>(user_data);
  return guarded(c, [&] {
    // DATA may arrive for a stream already closed on our side: then there is no slot.
    auto* s = static_cast<slot*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (s == nullptr)
      return 0;
    if (s->response.size() + length <= max_response_bytes)
      s->response.append(reinterpret_cast<const char*>(data), length);
    else
      s->truncated = true;
    return 0;
  });
}

int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  auto& c = *static_cast<connection*>(user_data);
  return guarded(c, [&] {
    // The request's last frame: its time is stamped once the bytes are written.
    if (frame->hd.type == NGHTTP2_DATA && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      if (auto* s =
            static_cast<slot*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id)))
        c.just_sent.push_back(s);
    }
    return 0;
  });
}

int on_stream_close(nghttp2_session* session, std::int32_t stream_id, std::uint32_t error_code,
                    void* user_data) {
  auto& c = *static_cast<connection*>(user_data);
  return guarded(c, [&] {
    auto* s = static_cast<slot*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (s != nullptr && s->busy && !c.closed)
      finish(c, *s, error_code);
    return 0;
  });
}

ssize_t read_request(nghttp2_session*, std::int32_t, std::uint8_t* buffer, std::size_t length,
                     std::uint32_t* flags, nghttp2_data_source* source, void*) {
  auto& s = *static_cast<slot*>(source->ptr);
  const std::size_t n = std::min(length, s.framed.size() - s.framed_sent);
  std::memcpy(buffer, s.framed.data() + s.framed_sent, n);
  s.framed_sent += n;
  if (s.framed_sent == s.framed.size())
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

nghttp2_session_callbacks* make_callbacks() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0)
    return nullptr;
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  return callbacks;
}

// --- the connection's life -----------------------------------------------------------

// Ends the connection; its calls in flight end with `why`.
void close_connection(connection& c, std::string_view why, std::string_view detail) {
  if (c.closed)
    return;
  c.closed = true;
  for (std::size_t i = 0; i < c.slot_count; ++i) {
    slot& s = c.slots[i];
    if (!s.busy)
      continue;
    s.busy = false;
    --c.busy;
    call_result r;
    r.failure = why;
    r.failure_detail = detail;
    c.driver->call_done(s.id, r);
  }
  c.free_slots.clear();
  c.waiting.clear();
  if (c.session != nullptr) {
    nghttp2_session_del(c.session);
    c.session = nullptr;
  }
  if (c.fd >= 0) {
    ::close(c.fd);
    c.fd = -1;
  }
}

// Starts the next call on every free slot the driver still has work for.
void refill(connection& c) {
  for (slot* s : c.free_slots) {
    s->framed.assign(grpc_prefix_bytes, '\0');
    s->framed_sent = 0;
    s->response.clear();
    s->truncated = false;
    s->grpc_message.clear();
    s->http_status = 0;
    s->grpc_status = -1;
    s->written_at = {};
    call_request call{0, &s->framed};
    const call_decision decision = c.driver->next_call(s->id, call);
    if (decision == call_decision::wait)
      c.waiting.push_back(s);
    if (decision != call_decision::start)
      continue;
    const auto length = static_cast<std::uint32_t>(s->framed.size() - grpc_prefix_bytes);
    s->framed[1] = static_cast<char>(length >> 24);
    s->framed[2] = static_cast<char>(length >> 16);
    s->framed[3] = static_cast<char>(length >> 8);
    s->framed[4] = static_cast<char>(length);
    nghttp2_data_provider provider{};
    provider.source.ptr = s;
    provider.read_callback = read_request;
    const auto& nva = (*c.headers)[call.path];
    const std::int32_t stream =
      nghttp2_submit_request(c.session, nullptr, nva.data(), nva.size(), &provider, s);
    if (stream < 0) {
      // Out of stream ids (2^31 per connection) or a broken session: the slot ends here.
      call_result r;
      r.failure = "submit failed";
      r.failure_detail = nghttp2_strerror(stream);
      c.driver->call_done(s->id, r);
      continue;
    }
    s->busy = true;
    ++c.busy;
  }
  c.free_slots.clear();
}

// Serializes what nghttp2 has queued and writes it; returns false when the socket broke.
bool flush(connection& c) {
  c.output_capped = false;
  while (c.out.size() - c.out_offset < max_pending_output_bytes) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(c.session, &data);
    if (c.error)
      std::rethrow_exception(c.error);
    if (n < 0) {
      close_connection(c, "connection lost", nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0)
      break;
    c.out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  c.output_capped = c.out.size() - c.out_offset >= max_pending_output_bytes;
  while (c.out_offset < c.out.size()) {
    const ssize_t n = ::write(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0) {
      close_connection(c, "connection lost", std::strerror(errno));
      return false;
    }
    c.out_offset += static_cast<std::size_t>(n);
  }
  if (c.out_offset == c.out.size()) {
    c.out.clear();
    c.out_offset = 0;
  } else if (c.out_offset > c.out.size() / 2) {
    c.out.erase(0, c.out_offset);
    c.out_offset = 0;
  }
  if (!c.just_sent.empty()) {
    const auto now = load_clock::now();
    for (slot* s : c.just_sent)
      s->written_at = now;
    c.just_sent.clear();
  }
  return true;
}

// Reads what the socket has (a few reads at most, so one busy connection cannot starve
// the others) and feeds it to nghttp2; returns false when the connection ended.
bool receive(connection& c, std::uint8_t* buffer) {
  for (int round = 0; round < 4; ++round) {
    const ssize_t n = ::read(c.fd, buffer, read_buffer_bytes);
    c.read_at = load_clock::now();
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    if (n <= 0) {
      close_connection(c, "connection lost", n == 0 ? "closed by the peer" : std::strerror(errno));
      return false;
    }
    const ssize_t used = nghttp2_session_mem_recv(c.session, buffer, static_cast<std::size_t>(n));
    if (c.error)
      std::rethrow_exception(c.error);
    if (used < 0) {
      close_connection(c, "connection lost", nghttp2_strerror(static_cast<int>(used)));
      return false;
    }
    if (static_cast<std::size_t>(n) < read_buffer_bytes)
      return true;
  }
  return true;
}

std::string connect_to(const h2_target& target, int& fd) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(target.host.c_str(), target.port.c_str(), &hints, &found);
      rc != 0) {
    return fmt::format("cannot resolve {}: {}", target.authority, ::gai_strerror(rc));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0)
      break;
    error = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0)
    return fmt::format("cannot connect to {}: {}", target.authority, error);
  // Requests are small and latency is measured: no Nagle delay.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return {};
}

} // namespace

std::string run_h2_client(const h2_client_settings& settings, call_driver& driver) {
  if (settings.targets.empty())
    return "no target";
  // The request headers of each method, per target, built once; nghttp2's HPACK makes them
  // a few bytes per request after the first.
  std::vector<std::vector<std::vector<nghttp2_nv>>> headers(settings.targets.size());
  for (std::size_t t = 0; t < settings.targets.size(); ++t) {
    for (const auto& path : settings.paths) {
      headers[t].push_back({make_nv(":method", "POST"), make_nv(":scheme", "http"),
                            make_nv(":path", path),
                            make_nv(":authority", settings.targets[t].authority),
                            make_nv("content-type", "application/grpc"), make_nv("te", "trailers"),
                            make_nv("user-agent", "chroom-bench")});
    }
  }
  std::unique_ptr<nghttp2_session_callbacks, decltype(&nghttp2_session_callbacks_del)> callbacks(
    make_callbacks(), nghttp2_session_callbacks_del);
  if (!callbacks)
    return "out of memory for nghttp2 callbacks";

  std::vector<std::unique_ptr<connection>> connections;
  auto close_all = [&](std::string_view why) {
    for (auto& c : connections)
      close_connection(*c, why, "");
  };
  for (std::uint32_t i = 0; i < settings.connections; ++i) {
    auto c = std::make_unique<connection>();
    c->driver = &driver;
    const std::size_t t = i % settings.targets.size();
    c->headers = &headers[t];
    if (auto error = connect_to(settings.targets[t], c->fd); !error.empty()) {
      close_all("connection lost");
      return error;
    }
    if (nghttp2_session_client_new(&c->session, callbacks.get(), c.get()) != 0) {
      ::close(c->fd);
      close_all("connection lost");
      return "out of memory for an nghttp2 session";
    }
    const nghttp2_settings_entry entries[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, entries, std::size(entries));
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                          connection_window_bytes);
    c->slot_count = settings.streams_per_connection;
    c->slots = std::make_unique<slot[]>(c->slot_count);
    for (std::size_t k = 0; k < c->slot_count; ++k) {
      slot& s = c->slots[k];
      s.id = i * c->slot_count + k;
      c->free_slots.push_back(&s);
    }
    connections.push_back(std::move(c));
  }

  std::vector<std::uint8_t> read_buffer(read_buffer_bytes);
  std::vector<pollfd> fds(connections.size());
  for (auto& c : connections) {
    refill(*c);
    flush(*c);
  }
  for (;;) {
    bool working = false;
    bool waiting = false;
    for (std::size_t i = 0; i < connections.size(); ++i) {
      connection& c = *connections[i];
      if (!c.closed && c.busy == 0 && c.free_slots.empty() && c.waiting.empty() &&
          c.out_offset == c.out.size()) {
        // Every call of this connection is done and no slot wants another: end politely.
        nghttp2_session_terminate_session(c.session, NGHTTP2_NO_ERROR);
        flush(c);
        close_connection(c, "", "");
      }
      working = working || !c.closed;
      waiting = waiting || !c.waiting.empty();
      fds[i].fd = c.closed ? -1 : c.fd;
      fds[i].events = POLLIN;
      if (!c.closed && (c.out_offset < c.out.size() || c.output_capped))
        fds[i].events |= POLLOUT;
      fds[i].revents = 0;
    }
    if (!working)
      break;
    // ppoll, not poll: under a rate limit the loop wakes every few tens of microseconds.
    auto timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(poll_timeout);
    if (waiting) {
      const auto until = driver.wake_at() - load_clock::now();
      timeout = std::clamp(std::chrono::duration_cast<std::chrono::nanoseconds>(until),
                           std::chrono::nanoseconds(0), timeout);
    }
    const timespec wait_for{static_cast<time_t>(timeout.count() / 1'000'000'000),
                            static_cast<long>(timeout.count() % 1'000'000'000)};
    const int ready = ::ppoll(fds.data(), fds.size(), &wait_for, nullptr);
    if (ready < 0 && errno != EINTR) {
      close_all("unfinished at exit");
      return fmt::format("poll: {}", std::strerror(errno));
    }
    const auto now = load_clock::now();
    if (driver.give_up(now)) {
      close_all("unfinished at exit");
      break;
    }
    const bool wake = waiting && now >= driver.wake_at();
    for (std::size_t i = 0; i < connections.size(); ++i) {
      connection& c = *connections[i];
      if (c.closed)
        continue;
      if (wake && !c.waiting.empty()) {
        c.free_slots.insert(c.free_slots.end(), c.waiting.begin(), c.waiting.end());
        c.waiting.clear();
      }
      // Slots freed outside a read (a stream reset while sending) are refilled here too.
      if (fds[i].revents == 0 && c.free_slots.empty())
        continue;
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !receive(c, read_buffer.data()))
        continue;
      refill(c);
      if (!flush(c))
        continue;
      if (!nghttp2_session_want_read(c.session) && !nghttp2_session_want_write(c.session) &&
          c.out_offset == c.out.size()) {
        // The peer ended the session (GOAWAY) and every stream it allowed is done.
        close_connection(c, "connection lost", "GOAWAY from the peer");
      }
    }
  }
  return {};
}

} // namespace chroom::bench
