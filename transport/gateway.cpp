#include "transport/gateway.hpp"

#include "actors/atoms.hpp"
#include "actors/send_later.hpp"
#include "observability/metrics.hpp"
#include "transport/call_protocol.hpp"
#include "transport/json_mapping.hpp"
#include "transport/tls.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <google/protobuf/message.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace chroom::transport {

namespace {

using namespace std::chrono_literals;

/// How long a service may take to name the actor of a new streaming call.
constexpr auto call_open_timeout = 5s;

/// grpc-timeout values beyond this are treated as no deadline (up to 99999999 hours may
/// be sent; a timer that far out only costs memory).
constexpr std::chrono::nanoseconds max_tracked_timeout = std::chrono::hours{24 * 30};

/// Output produced per pass before the gateway yields to other work: keeps one busy
/// stream from starving the rest of the broker's messages.
constexpr size_t produce_budget_bytes = 256u << 10;

/// Slowest housekeeping tick (idle and keepalive checks), and the fastest.
constexpr auto max_tick = 1000ms;
constexpr auto min_tick = 20ms;

/// Bytes read per socket event. CAF 0.17 zero-fills its read buffer to this size before
/// every read: 64 KiB made memset 11% of the peer's CPU with 10,000 nodes each sending a
/// small Stats per second; one HTTP/2 frame's worth costs little and still takes a whole
/// batch of small calls in one read.
constexpr size_t read_chunk_bytes = 16u << 10;

/// A TLS client that has not finished its handshake by then is dropped.
constexpr auto tls_handshake_timeout = 10s;

/// How long a closing connection may take to write its last bytes (a GOAWAY, an error
/// response) to a peer that does not read, before the socket is closed regardless.
constexpr auto close_linger = 2s;

/// Extra time the listener gives connections after the grace period before killing them.
constexpr auto shutdown_slack = 1s;

/// One call as the gateway tracks it.
struct gateway_call {
  const grpc_method* method = nullptr;
  call_encoding encoding = call_encoding::grpc;
  /// The actor that hears about this call; null while a streaming open is pending.
  caf::actor handler;
  call_context context;
  /// Unary: the request, held until half-close.
  std::string unary_request;
  size_t request_count = 0;
  /// Streaming: what arrived before the handler was known.
  std::vector<std::string> early_messages;
  bool early_half_close = false;
  bool handler_ended = false;
  bool dispatched = false; // unary request sent, or streaming handler bound
  uint64_t serial = 0;     // matches deadline timers to this call
};

struct gateway_state : grpc_connection_listener {
  using broker_type = caf::io::stateful_broker<gateway_state>;

  explicit gateway_state(broker_type* self) : self(self) {}

  broker_type* self;
  caf::io::connection_handle hdl;
  std::shared_ptr<const gateway_settings> settings;
  std::unique_ptr<grpc_connection> connection;
  std::unique_ptr<tls_session> tls;
  std::string peer;
  std::unordered_map<int32_t, gateway_call> calls;
  std::unordered_set<caf::actor_addr> monitored;
  /// Unary calls read in the current pass, per service (sent when the pass ends).
  batches_by_actor<unary_call> unary_batches;
  std::vector<char> plain_out;
  std::vector<std::pair<int32_t, size_t>> sent_counts; // scratch of grant_credits
  std::vector<std::byte> plain_in;
  size_t pending_output = 0; // bytes handed to the socket, not written yet
  bool reading = true;
  bool flush_scheduled = false;
  bool draining = false;
  bool refusing = false; // over max_connections: GOAWAY and close
  bool closed = false;   // no more calls; waiting for the socket to drain
  bool released = false; // socket closed, broker quitting
  uint64_t next_serial = 1;
  std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ping_sent{};
  std::chrono::steady_clock::time_point last_ping_due = std::chrono::steady_clock::now();

  // --- grpc_connection_listener ---------------------------------------------------

  void on_call_start(int32_t stream_id, call_head&& head) override {
    const auto* method = settings->router->find(head.path);
    if (method == nullptr) {
      auto slash = head.path.find('/', 1);
      auto service = slash == std::string::npos ? std::string{} : head.path.substr(1, slash - 1);
      connection->finish(
        stream_id, make_status(grpc_code::unimplemented, settings->router->has_service(service)
                                                           ? "unknown method " + head.path
                                                           : "unknown service " + service));
      return;
    }
    if (head.encoding == call_encoding::json && method->kind != call_kind::unary) {
      connection->finish(
        stream_id, make_status(grpc_code::unimplemented, "JSON is accepted for unary methods only; "
                                                         "use application/grpc for " +
                                                           head.path));
      return;
    }
    auto& call = calls[stream_id];
    call.method = method;
    call.encoding = head.encoding;
    call.serial = next_serial++;
    call.context.gateway = caf::actor_cast<caf::actor>(self);
    call.context.stream_id = stream_id;
    call.context.path = std::move(head.path);
    call.context.request_metadata = std::move(head.request_metadata);
    call.context.peer = peer;
    if (head.timeout && *head.timeout <= max_tracked_timeout) {
      call.context.deadline_ns = steady_now_ns() + head.timeout->count();
      send_later(self, *head.timeout, deadline_atom::value, stream_id, call.serial);
    }
    if (method->kind != call_kind::unary)
      open_stream(stream_id, call);
  }

  void on_call_message(int32_t stream_id, std::string&& message) override {
    auto it = calls.find(stream_id);
    if (it == calls.end())
      return;
    auto& call = it->second;
    if (call.method->kind == call_kind::unary) {
      if (++call.request_count > 1) {
        fail(stream_id,
             make_status(grpc_code::internal, "unary call received more than one request message"));
        return;
      }
      // Not consumed: the request stays charged to the connection's memory budget (and
      // its window held) until the call ends; a unary client sends nothing more anyway.
      call.unary_request = std::move(message);
      return;
    }
    if (!call.dispatched) {
      call.early_messages.push_back(std::move(message));
      return;
    }
    self->send(call.handler, call_data_atom::value, stream_id, std::move(message));
  }

  void on_call_half_close(int32_t stream_id) override {
    auto it = calls.find(stream_id);
    if (it == calls.end())
      return;
    auto& call = it->second;
    if (call.method->kind == call_kind::unary) {
      dispatch_unary(stream_id, call);
      return;
    }
    if (!call.dispatched)
      call.early_half_close = true;
    else
      self->send(call.handler, call_close_atom::value, stream_id);
  }

  void on_call_closed(int32_t stream_id) override {
    auto it = calls.find(stream_id);
    if (it == calls.end())
      return;
    auto& call = it->second;
    if (!call.handler_ended && call.handler)
      self->send(call.handler, call_cancel_atom::value, stream_id);
    calls.erase(it);
  }

  // --- calls --------------------------------------------------------------------------

  void watch(const caf::actor& handler) {
    if (monitored.insert(handler.address()).second)
      self->monitor(handler);
  }

  void open_stream(int32_t stream_id, gateway_call& call) {
    auto serial = call.serial;
    self->request(call.method->target, call_open_timeout, call_open_atom::value, call.context)
      .then(
        [this, stream_id, serial](caf::actor handler) {
          auto it = calls.find(stream_id);
          if (it == calls.end() || it->second.serial != serial) {
            // The call ended while its handler was being chosen.
            self->send(handler, call_cancel_atom::value, stream_id);
            return;
          }
          auto& call = it->second;
          call.handler = handler;
          call.dispatched = true;
          watch(handler);
          for (auto& message : call.early_messages)
            self->send(handler, call_data_atom::value, stream_id, std::move(message));
          call.early_messages.clear();
          if (call.early_half_close)
            self->send(handler, call_close_atom::value, stream_id);
        },
        [this, stream_id, serial](caf::error& err) {
          auto it = calls.find(stream_id);
          if (it == calls.end() || it->second.serial != serial)
            return;
          spdlog::warn("gateway: no handler for {}: {}", it->second.context.path,
                       self->system().render(err));
          fail(stream_id, make_status(grpc_code::unavailable, "service did not accept the call"));
        });
  }

  void dispatch_unary(int32_t stream_id, gateway_call& call) {
    if (call.request_count == 0) {
      fail(stream_id, make_status(grpc_code::internal, "unary call ended without a request"));
      return;
    }
    if (call.encoding == call_encoding::json) {
      std::string binary;
      if (auto problem =
            json_request_to_binary(*call.method->request_prototype, call.unary_request, binary)) {
        fail(stream_id,
             make_status(grpc_code::invalid_argument,
                         "request is not valid JSON for " +
                           call.method->request_prototype->GetTypeName() + ": " + *problem));
        return;
      }
      call.unary_request = std::move(binary);
    }
    call.handler = call.method->target;
    call.dispatched = true;
    watch(call.handler);
    batch_for(unary_batches, call.handler)
      .push_back(unary_call{std::move(call.context), std::move(call.unary_request)});
  }

  /// Sends the unary calls of one read pass, one message per service.
  void dispatch_unary_batches() {
    for (auto& [service, batch] : unary_batches)
      if (!batch.empty())
        self->send(service, call_unary_atom::value, std::move(batch));
    unary_batches.clear();
  }

  /// Ends a call from the gateway's side: status to the client, cancel to the handler.
  void fail(int32_t stream_id, const grpc_status& status) {
    auto it = calls.find(stream_id);
    if (it != calls.end()) {
      if (it->second.handler && !it->second.handler_ended)
        self->send(it->second.handler, call_cancel_atom::value, stream_id);
      it->second.handler_ended = true;
    }
    connection->finish(stream_id, status);
    schedule_flush();
  }

  gateway_call* live_call(int32_t stream_id) {
    auto it = calls.find(stream_id);
    if (it == calls.end() || it->second.handler_ended)
      return nullptr;
    return &it->second;
  }

  /// Converts a binary response to JSON for JSON calls; false if the call was failed.
  bool to_wire(int32_t stream_id, gateway_call& call, std::string& message) {
    if (call.encoding != call_encoding::json)
      return true;
    auto json = binary_response_to_json(*call.method->response_prototype, message);
    if (!json) {
      fail(stream_id, make_status(grpc_code::internal, "response could not be converted to JSON"));
      return false;
    }
    message = std::move(*json);
    return true;
  }

  void on_replies(std::vector<unary_reply>& replies) {
    for (auto& reply : replies) {
      auto* call = live_call(reply.stream_id);
      if (call == nullptr)
        continue; // cancelled or timed out meanwhile
      // A JSON error is a whole HTTP response of its own: headers sent first would leave
      // no place for its status.
      if (!reply.headers.empty() && (reply.has_response || call->encoding == call_encoding::grpc))
        connection->send_headers(reply.stream_id, reply.headers);
      if (reply.has_response) {
        if (!to_wire(reply.stream_id, *call, reply.response))
          continue;
        call->handler_ended = true;
        if (connection->send_message(reply.stream_id, std::move(reply.response)))
          connection->finish(reply.stream_id, reply.status);
      } else {
        call->handler_ended = true;
        connection->finish(reply.stream_id, reply.status);
      }
    }
    schedule_flush();
  }

  void on_data(int32_t stream_id, std::string& message) {
    auto* call = live_call(stream_id);
    if (call == nullptr)
      return;
    if (!to_wire(stream_id, *call, message))
      return;
    if (!connection->send_message(stream_id, std::move(message))) {
      // The connection failed the call (response over the size limit): stop the handler.
      self->send(call->handler, call_cancel_atom::value, stream_id);
      call->handler_ended = true;
    }
    schedule_flush();
  }

  void on_end(int32_t stream_id, const grpc_status& status) {
    auto* call = live_call(stream_id);
    if (call == nullptr)
      return;
    call->handler_ended = true;
    connection->finish(stream_id, status);
    schedule_flush();
  }

  void on_handler_down(const caf::actor_addr& source) {
    monitored.erase(source);
    std::vector<int32_t> orphaned;
    for (auto& [id, call] : calls)
      if (call.handler && call.handler.address() == source && !call.handler_ended)
        orphaned.push_back(id);
    for (auto id : orphaned) {
      calls[id].handler = nullptr;
      fail(id, make_status(grpc_code::unavailable, "the actor serving this call stopped"));
    }
  }

  // --- I/O --------------------------------------------------------------------------

  void schedule_flush() {
    // Coalesce: every answer already in the mailbox is handled before the flush runs,
    // so one batch of replies costs one pass through nghttp2 and one socket write.
    if (!flush_scheduled) {
      flush_scheduled = true;
      send_self(self, flush_atom::value);
    }
  }

  void on_bytes(std::span<const uint8_t> bytes) {
    if (refusing) {
      flush(); // the GOAWAY; the connection is then closed
      return;
    }
    bool ok;
    if (tls) {
      plain_in.clear();
      ok = tls->receive(std::as_bytes(bytes), plain_in);
      if (!ok) {
        // Send the alert, if any, then close: nothing more can be read on this connection.
        spdlog::debug("gateway: TLS error from {}: {}", peer, tls->error());
        auto& buf = self->wr_buf(hdl);
        auto before = buf.size();
        tls->take_output(buf);
        if (buf.size() > before) {
          pending_output += buf.size() - before;
          self->flush(hdl);
        }
        close();
        return;
      }
      if (!plain_in.empty())
        ok =
          connection->receive({reinterpret_cast<const uint8_t*>(plain_in.data()), plain_in.size()});
    } else {
      ok = connection->receive(bytes);
    }
    dispatch_unary_batches();
    if (!ok) {
      if (!connection->calm_reason().empty())
        spdlog::warn("gateway: closing connection from {} (GOAWAY ENHANCE_YOUR_CALM): {}", peer,
                     connection->calm_reason());
      else
        spdlog::debug("gateway: connection from {} reads no more (protocol error or GOAWAY done)",
                      peer);
    }
    flush();
  }

  void flush() {
    flush_scheduled = false;
    if (closed)
      return;
    auto limit = settings->limits.max_pending_output_bytes;
    if (pending_output < limit) {
      plain_out.clear();
      connection->produce(plain_out, std::min(produce_budget_bytes, limit - pending_output));
      auto& buf = self->wr_buf(hdl);
      auto before = buf.size();
      if (tls) {
        if (!plain_out.empty())
          tls->send(std::as_bytes(std::span{plain_out}));
        tls->take_output(buf);
      } else {
        buf.insert(buf.end(), plain_out.begin(), plain_out.end());
      }
      if (buf.size() > before) {
        pending_output += buf.size() - before;
        connection->set_socket_backlog(pending_output);
        self->flush(hdl);
      }
      grant_credits();
      if (connection->wants_write() && pending_output < limit)
        schedule_flush(); // budget used up: continue after other messages
    }
    // Backpressure: a peer that does not read stops being read.
    if (pending_output >= limit && reading) {
      reading = false;
      self->halt(hdl);
    } else if (pending_output < limit / 2 && !reading) {
      reading = true;
      self->trigger(hdl);
    }
    if (connection->open_streams() > 0)
      idle_since = std::chrono::steady_clock::now();
    if (!connection->alive() ||
        (draining && connection->open_streams() == 0 && !connection->wants_write()))
      close();
  }

  void grant_credits() {
    sent_counts.clear();
    connection->take_sent_counts(sent_counts);
    for (auto [id, n] : sent_counts) {
      auto it = calls.find(id);
      if (it == calls.end())
        continue;
      auto& call = it->second;
      if (call.method->kind == call_kind::unary || !call.handler || call.handler_ended)
        continue;
      self->send(call.handler, call_credit_atom::value, id, static_cast<uint32_t>(n));
    }
  }

  /// Stops the connection: every call is cancelled, then the socket is closed once what
  /// was queued for it is written (or after close_linger).
  void close() {
    if (closed)
      return;
    closed = true;
    for (auto& [id, call] : calls)
      if (call.handler && !call.handler_ended)
        self->send(call.handler, call_cancel_atom::value, id);
    calls.clear();
    if (reading)
      self->halt(hdl);
    if (pending_output == 0)
      release_socket();
    else
      send_later(self, close_linger, close_atom::value);
  }

  /// The broker ends only when its socket has nothing left to write: CAF 0.17 leaks a
  /// scribe whose broker quits while it still holds unwritten bytes.
  void release_socket() {
    if (released)
      return;
    released = true;
    // A monitor lives in the monitored actor: the services outlive this gateway, and
    // each of their monitors would keep this dead broker's memory referenced.
    for (const auto& handler : monitored)
      self->demonitor(handler);
    monitored.clear();
    self->close(hdl);
    self->quit();
  }

  void tick() {
    if (closed)
      return;
    if (refusing) {
      flush();
      return;
    }
    auto now = std::chrono::steady_clock::now();
    if (tls && !tls->handshake_done() && now - idle_since > tls_handshake_timeout) {
      spdlog::debug("gateway: TLS handshake from {} timed out", peer);
      close();
      return;
    }
    if (connection->open_streams() > 0)
      idle_since = now;
    else if (now - idle_since >= settings->idle_timeout) {
      spdlog::debug("gateway: connection from {} idle, sending GOAWAY", peer);
      connection->go_away();
      draining = true;
    }
    if (connection->ping_outstanding()) {
      if (now - last_ping_sent >= settings->keepalive_timeout) {
        spdlog::debug("gateway: keepalive PING to {} unanswered, closing", peer);
        connection->terminate(h2_error::no_error, "keepalive timeout");
      }
    } else if (now >= last_ping_due) {
      connection->ping();
      last_ping_sent = now;
      last_ping_due = now + settings->keepalive_interval;
    }
    flush();
    if (!closed)
      send_later(self, tick_interval(), tick_atom::value);
  }

  std::chrono::milliseconds tick_interval() const {
    auto shortest = std::min({settings->idle_timeout, settings->keepalive_interval,
                              settings->keepalive_timeout, std::chrono::milliseconds{max_tick}});
    return std::max(std::chrono::milliseconds{min_tick}, shortest / 4);
  }

  void drain(std::chrono::milliseconds grace) {
    if (draining || closed)
      return;
    draining = true;
    connection->go_away();
    send_later(self, grace, shutdown_atom::value, true);
    flush();
  }

  void force_close() {
    flush_scheduled = true; // flushed right below, not by a message to self
    for (auto id : connection->open_calls())
      fail(id, make_status(grpc_code::unavailable, "the orchestrator peer is shutting down"));
    connection->terminate(h2_error::no_error, "shutting down");
    flush();
    close();
  }
};

using gateway_broker = gateway_state::broker_type;

caf::behavior gateway_connection(gateway_broker* self, caf::io::connection_handle hdl,
                                 std::shared_ptr<const gateway_settings> settings, bool refuse) {
  auto& st = self->state;
  st.hdl = hdl;
  st.settings = settings;
  st.peer = self->remote_addr(hdl) + ":" + std::to_string(self->remote_port(hdl));
  st.connection = std::make_unique<grpc_connection>(st, settings->limits, settings->memory.get());
  if (settings->tls)
    st.tls = std::make_unique<tls_session>(settings->tls);
  st.last_ping_due = std::chrono::steady_clock::now() + settings->keepalive_interval;
  self->ack_writes(hdl, true);
  self->configure_read(hdl, caf::io::receive_policy::at_most(read_chunk_bytes));
  // Down messages overtake the handler's last messages (its call_end may still be queued):
  // look at the orphans only once everything already in the mailbox was handled.
  self->set_down_handler(
    [self](caf::down_msg& msg) { send_self(self, handler_down_atom::value, msg.source); });
  if (refuse) {
    observability::metrics().connections_refused.Increment();
    spdlog::debug("gateway: refusing connection from {}: max_connections ({}) reached", st.peer,
                  settings->max_connections);
    st.connection->terminate(h2_error::refused_stream, "too many connections");
    // The GOAWAY goes out when the client's first bytes arrive (or at the first tick),
    // not from here: CAF 0.17 leaks the scribe of a broker that closes it before it has
    // been through the I/O loop once.
    st.refusing = true;
  } else {
    observability::metrics().connections_accepted.Increment();
    spdlog::debug("gateway: connection from {}", st.peer);
  }
  send_later(self, st.tick_interval(), tick_atom::value);
  return {
    [self](const caf::io::new_data_msg& msg) {
      self->state.on_bytes({reinterpret_cast<const uint8_t*>(msg.buf.data()), msg.buf.size()});
    },
    [self](const caf::io::data_transferred_msg& msg) {
      auto& st = self->state;
      st.pending_output -= std::min(st.pending_output, msg.written);
      st.connection->set_socket_backlog(st.pending_output);
      if (st.closed) {
        if (st.pending_output == 0)
          st.release_socket();
      } else if (st.connection->wants_write() || !st.reading) {
        st.flush();
      }
    },
    [self](const caf::io::connection_closed_msg&) {
      auto& st = self->state;
      spdlog::debug("gateway: connection from {} closed by the peer", st.peer);
      st.close();
      st.release_socket(); // nothing more can be written
    },
    [self](close_atom) { self->state.release_socket(); },
    [self](flush_atom) { self->state.flush(); },
    [self](handler_down_atom, const caf::actor_addr& source) {
      self->state.on_handler_down(source);
    },
    [self](tick_atom) { self->state.tick(); },
    [self](deadline_atom, int32_t stream_id, uint64_t serial) {
      auto& st = self->state;
      auto it = st.calls.find(stream_id);
      if (it != st.calls.end() && it->second.serial == serial && !it->second.handler_ended)
        st.fail(stream_id, make_status(grpc_code::deadline_exceeded, "deadline exceeded"));
    },
    [self](call_reply_atom, std::vector<unary_reply>& replies) { self->state.on_replies(replies); },
    [self](call_data_atom, int32_t stream_id, std::string& message) {
      self->state.on_data(stream_id, message);
    },
    [self](call_head_atom, int32_t stream_id, const metadata& headers) {
      if (self->state.live_call(stream_id) != nullptr) {
        self->state.connection->send_headers(stream_id, headers);
        self->state.schedule_flush();
      }
    },
    [self](call_end_atom, int32_t stream_id, const grpc_status& status) {
      self->state.on_end(stream_id, status);
    },
    [self](call_ack_atom, int32_t stream_id, uint32_t count) {
      self->state.connection->consume(stream_id, count);
      self->state.schedule_flush();
    },
    [self](shutdown_atom, std::chrono::milliseconds grace) { self->state.drain(grace); },
    [self](shutdown_atom, bool) { self->state.force_close(); },
  };
}

// --- listener ---------------------------------------------------------------------------

struct listener_state {
  std::shared_ptr<const gateway_settings> settings;
  caf::io::accept_handle acceptor;
  std::unordered_set<caf::actor_addr> connections;
  bool stopping = false;
};

using listener_broker = caf::io::stateful_broker<listener_state>;

using open_atom = caf::atom_constant<caf::atom("open")>;

caf::behavior gateway_acceptor(listener_broker* self,
                               std::shared_ptr<const gateway_settings> settings) {
  self->state.settings = std::move(settings);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.connections.erase(msg.source);
    observability::metrics().connections_open.Set(static_cast<double>(st.connections.size()));
    if (st.stopping && st.connections.empty())
      self->quit();
  });
  return {
    [self](open_atom) -> caf::result<uint16_t> {
      auto& st = self->state;
      auto bound = self->add_tcp_doorman(st.settings->port, st.settings->host.c_str(), true);
      if (!bound)
        return bound.error();
      st.acceptor = bound->first;
      return bound->second;
    },
    [self](const caf::io::new_connection_msg& msg) {
      auto& st = self->state;
      bool refuse = st.stopping || st.connections.size() >= st.settings->max_connections;
      auto gateway = self->fork(gateway_connection, msg.handle, st.settings, refuse);
      self->monitor(gateway);
      st.connections.insert(gateway.address());
      observability::metrics().connections_open.Set(static_cast<double>(st.connections.size()));
    },
    [self](shutdown_atom, std::chrono::milliseconds grace) {
      auto& st = self->state;
      if (st.stopping)
        return;
      st.stopping = true;
      self->close(st.acceptor);
      spdlog::info("gateway: stopped accepting; {} connection(s) draining for up to {} ms",
                   st.connections.size(), grace.count());
      if (st.connections.empty()) {
        self->quit();
        return;
      }
      for (const auto& addr : st.connections)
        self->send(caf::actor_cast<caf::actor>(addr), shutdown_atom::value, grace);
      send_later(self, grace + shutdown_slack, shutdown_atom::value, true);
    },
    [self](shutdown_atom, bool) {
      // Connections that still did not close are killed; the listener ends with the last
      // of them (down handler), so nobody outlives it.
      for (const auto& addr : self->state.connections)
        caf::anon_send_exit(addr, caf::exit_reason::kill);
    },
  };
}

} // namespace

gateway_listener start_gateway(caf::actor_system& system,
                               std::shared_ptr<const gateway_settings> settings) {
  auto listener = system.middleman().spawn_broker(gateway_acceptor, settings);
  caf::scoped_actor self{system};
  gateway_listener result{listener, 0};
  std::string failure;
  self->request(listener, std::chrono::seconds{10}, open_atom::value)
    .receive([&](uint16_t port) { result.port = port; },
             [&](caf::error& err) { failure = system.render(err); });
  if (!failure.empty()) {
    caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
    throw std::runtime_error("cannot listen on " + settings->host + ":" +
                             std::to_string(settings->port) + ": " + failure);
  }
  return result;
}

void stop_gateway(const gateway_listener& listener, std::chrono::milliseconds grace) {
  caf::anon_send(listener.actor, shutdown_atom::value, grace);
}

} // namespace chroom::transport
