#include "tools/node_sim/fleet.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "tools/node_sim/json.hpp"

namespace chroom::node_sim {

namespace {

using std::chrono::milliseconds;

// Streams per channel when --connections is not given: under the orchestrator's 100
// concurrent streams per connection, with room for a node's replacement stream during a
// flap while the old one is still closing.
constexpr std::uint32_t default_streams_per_connection = 90;
// Reconnect back-off: doubles per consecutive failure from the first to the last value,
// then a random 50..100% of it so a fleet that lost its peer does not come back in step.
constexpr milliseconds first_backoff{100};
constexpr milliseconds max_backoff{5000};
// Stats interval when Registered gives none, and the range we accept from it: below
// 100 ms a fleet of 10,000 would flood the orchestrator, above 10 min is no heartbeat.
constexpr std::uint32_t default_stats_interval_ms = 1000;
constexpr std::uint32_t min_stats_interval_ms = 100;
constexpr std::uint32_t max_stats_interval_ms = 600'000;
// A stream whose orchestrator stops reading (HTTP/2 flow control) keeps at most this many
// messages queued; Stats beyond it are dropped (a newer one follows), acks and events
// are kept because the orchestrator's state depends on them.
constexpr std::size_t max_queued_messages = 256;
// Messages a frozen node keeps to handle when thawed; beyond, the orchestrator's retries
// are dropped like a full socket buffer would.
constexpr std::size_t max_frozen_inbox = 1024;

// Timers due within this window of the earliest fire with it. Stats are spread evenly in
// time, so without it the timer thread wakes once per Stats (10,000/s at 10,000 nodes).
// Measured at 10,000 nodes against fake_orchestrator.py (abseil's deadlock detector still
// on, see main.cpp): 61% of a core without slack, 40% at 5 ms, 35% from 10 ms up (100 ms
// gives no more). 20 ms is 2% of the default 1 s interval, well inside its +-10% jitter,
// and small next to what else is timed here (back-offs >= 100 ms, slow-acks delays).
// Handlers that compare deadlines with the clock must allow for it (flush_delayed_locked).
constexpr auto timer_slack = milliseconds(20);
// Stream-end warnings and errors logged per second for the whole fleet; the rest go to
// debug with a count. An orchestrator that goes away would otherwise make 10,000 nodes
// print 10,000 lines at once, burying everything else.
constexpr int max_stream_logs_per_s = 20;

std::string_view code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "?";
  }
}

// Statuses after which trying again cannot help: the credential, the protocol version or
// our messages are wrong, or a newer stream of the same node replaced this one.
bool gives_up_on(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::FAILED_PRECONDITION ||
         code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::ABORTED;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(fmt::format("cannot read {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
      ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      ++i;
    if (i > start)
      words.push_back(line.substr(start, i - start));
  }
  return words;
}

template <typename T> bool parse_number(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

milliseconds to_ms(double seconds) {
  return milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

// Decides which stream-end messages are logged at their own level (see
// max_stream_logs_per_s) and reports how many were demoted to debug.
class log_budget {
public:
  // True when this message may be logged at warning/error level.
  bool allow() {
    std::lock_guard lock(mutex_);
    const auto now = sim_clock::now();
    if (now - window_start_ >= std::chrono::seconds(1)) {
      if (demoted_ > 0) {
        spdlog::warn("{} more stream errors in the last {} ms (--log-level debug shows them)",
                     demoted_,
                     std::chrono::duration_cast<milliseconds>(now - window_start_).count());
      }
      window_start_ = now;
      used_ = 0;
      demoted_ = 0;
    }
    if (used_ < max_stream_logs_per_s) {
      ++used_;
      return true;
    }
    ++demoted_;
    return false;
  }

private:
  std::mutex mutex_;
  sim_clock::time_point window_start_{};
  int used_ = 0;
  std::uint64_t demoted_ = 0;
};

log_budget stream_log_budget;

} // namespace

enum class fleet::down_reason : std::uint8_t {
  none,
  crashed,
  flapping,
  gave_up,
  finished,
  stopped
};

namespace {

enum class node_state : std::uint8_t { connecting, registered, down };

std::string_view state_name(node_state state) {
  switch (state) {
    case node_state::connecting:
      return "connecting";
    case node_state::registered:
      return "registered";
    case node_state::down:
      return "down";
  }
  return "?";
}

} // namespace

// One simulated node: its model and everything about its connection. Every field is
// guarded by `mutex` (the timer thread, grpc's callback threads and the command thread
// all touch it).
struct fleet::node {
  node(const node_profile& profile, double mean_session_s, std::uint64_t seed, std::uint32_t target,
       std::uint32_t channel, v1::MediaNodeService::Stub& stub)
      : model(profile, mean_session_s, seed), jitter(seed, profile.index, rng_purpose::faults),
        target(target), channel(channel), stub(&stub) {}

  std::mutex mutex;
  node_model model;
  rng jitter; // back-off and Stats interval jitter
  // The target (index into fleet::targets_) the node's streams go to, its channel there
  // (the same index on every target, so streams stay spread after a failover) and that
  // channel's stub.
  std::uint32_t target;
  std::uint32_t channel;
  v1::MediaNodeService::Stub* stub;

  node_state state = node_state::connecting;
  down_reason why_down = down_reason::none;
  // The stream in use; a stream that was crashed or flapped away is detached at once (its
  // reactor lives on until grpc calls OnDone, but no longer acts for the node).
  session* current = nullptr;
  // Tokens that make timers stale: stream_token changes with every stream opened and every
  // crash/flap/stop (reconnect timers), stats_token with every Stats chain started,
  // freeze_token with every freeze and thaw.
  std::uint64_t stream_token = 0;
  std::uint64_t stats_token = 0;
  std::uint64_t freeze_token = 0;
  // Consecutive streams that ended before or after registration without a Registered in
  // between: the back-off exponent.
  std::uint32_t failures = 0;
  std::uint32_t stats_interval_ms = default_stats_interval_ms;
  bool frozen = false;
  // The stream ended while frozen: reconnect when thawed.
  bool reconnect_on_thaw = false;
  std::deque<v1::OrchestratorMessage> frozen_inbox;
  // slow-acks: replies wait this long before they are sent.
  std::uint32_t reply_delay_ms = 0;
  std::deque<std::pair<sim_clock::time_point, v1::NodeMessage>> delayed_replies;
  // The last stream-end status code logged at warning level; repeats go to debug so a fleet
  // that cannot reach its orchestrator does not print 10,000 lines per back-off round.
  int last_logged_code = -1;
};

// One Connect stream. Reactions run on grpc's threads and take the node's mutex. grpc
// 1.51 runs a callback-API client's reactions on its own executor and poller threads,
// never inline inside the Start* call of an application thread, so calling Start* with
// the node's mutex held cannot re-enter it.
class fleet::session final
    : public grpc::ClientBidiReactor<v1::NodeMessage, v1::OrchestratorMessage> {
public:
  session(fleet& owner, node& n) : fleet_(owner), node_(n) {}

  // Node mutex held. Register is the first write; the read is posted before the call
  // starts so that no Registered can arrive unread.
  void start(v1::NodeMessage registration) {
    node_.stub->async()->Connect(&context_, this);
    // Writes are started from outside reactions (timer and command threads), so the
    // reactor must stay alive until we say no more will come: that is this hold.
    AddHold();
    StartRead(&incoming_);
    outgoing_.push_back(std::move(registration));
    writing_ = true;
    StartWrite(&outgoing_.front());
    StartCall();
  }

  // Node mutex held. False when the stream no longer takes writes.
  bool send(v1::NodeMessage message, bool droppable) {
    if (closed_ || writes_done_wanted_)
      return false;
    if (droppable && outgoing_.size() >= max_queued_messages)
      return false;
    outgoing_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&outgoing_.front());
    }
    return true;
  }

  // Node mutex held. Half-closes once the queued writes are out.
  void finish_writes() {
    if (closed_ || writes_done_wanted_)
      return;
    writes_done_wanted_ = true;
    if (!writing_)
      start_writes_done();
  }

  // Any thread: ends the stream abruptly (RST_STREAM with CANCEL on the wire).
  void cancel() { context_.TryCancel(); }

  bool registered = false;

private:
  void OnReadDone(bool ok) override {
    std::lock_guard lock(node_.mutex);
    if (!ok) {
      // The stream is over (status received or cancelled): no more writes, let it finish.
      closed_ = true;
      drop_unsent();
      release_hold();
      return;
    }
    if (node_.current == this)
      fleet_.on_message_locked(node_, *this, incoming_);
    incoming_.Clear();
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(node_.mutex);
    writing_ = false;
    outgoing_.pop_front();
    if (!ok || closed_) {
      closed_ = true;
      outgoing_.clear();
      return;
    }
    if (!outgoing_.empty()) {
      writing_ = true;
      StartWrite(&outgoing_.front());
    } else if (writes_done_wanted_) {
      start_writes_done();
    }
  }

  void OnDone(const grpc::Status& status) override {
    fleet& owner = fleet_;
    {
      std::lock_guard lock(node_.mutex);
      owner.on_stream_end_locked(node_, *this, status);
    }
    delete this;
    owner.session_ended();
  }

  void start_writes_done() {
    closed_ = true;
    StartWritesDone();
    release_hold();
  }

  void release_hold() {
    if (hold_removed_)
      return;
    hold_removed_ = true;
    RemoveHold();
  }

  // Keeps the message in flight (grpc still reads it until OnWriteDone).
  void drop_unsent() {
    if (writing_) {
      outgoing_.erase(std::next(outgoing_.begin()), outgoing_.end());
    } else {
      outgoing_.clear();
    }
  }

  fleet& fleet_;
  node& node_;
  grpc::ClientContext context_;
  v1::OrchestratorMessage incoming_;
  // front() is the message being written while writing_.
  std::deque<v1::NodeMessage> outgoing_;
  bool writing_ = false;
  // No write may start any more (read side ended, write failed or WritesDone started).
  bool closed_ = false;
  bool writes_done_wanted_ = false;
  bool hold_removed_ = false;
};

fleet::fleet(fleet_options options, const city_table& cities)
    : options_(std::move(options)), profiles_(make_profiles(options_.parameters, cities)),
      timers_([this](const timer_event& event) { on_timer(event); }, timer_slack),
      random_(options_.parameters.seed, 0, rng_purpose::faults) {
  const auto& connection = options_.connection;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (connection.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = read_file(connection.tls_ca_file);
    if (!connection.tls_cert_file.empty()) {
      tls.pem_cert_chain = read_file(connection.tls_cert_file);
      tls.pem_private_key = read_file(connection.tls_key_file);
    }
    credentials = grpc::SslCredentials(tls);
  }
  const std::uint32_t node_count = options_.parameters.nodes;
  const auto target_count = static_cast<std::uint32_t>(connection.targets.size());
  if (target_count == 0)
    throw std::runtime_error("no target");
  // Per target: after a failover every node may be on one target, and its connections must
  // still carry them all.
  std::uint32_t channel_count = connection.connections;
  if (channel_count == 0) {
    channel_count =
      (node_count + default_streams_per_connection - 1) / default_streams_per_connection;
  }
  channel_count = std::clamp<std::uint32_t>(channel_count, 1, node_count);
  // grpc connects a channel at its first call, so a target no node uses costs nothing.
  for (const auto& address : connection.targets) {
    auto& target = targets_.emplace_back();
    target.address = address;
    for (std::uint32_t i = 0; i < channel_count; ++i) {
      grpc::ChannelArguments args;
      // Channels with equal arguments share one subchannel (one TCP connection) through
      // grpc's global pool; a private pool and a distinct argument keep them apart, so the
      // streams really are spread over channel_count connections.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("grpc.chroom_node_sim_channel", static_cast<int>(i));
      // grpc's own reconnect back-off grows to 120 s by default: a channel whose orchestrator
      // was down that long would fail our streams fast for minutes after it is back.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(first_backoff.count()));
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(first_backoff.count()));
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(max_backoff.count()));
      // A stream is a session, never transparently retried: the node decides what to do.
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      if (!connection.tls_server_name.empty()) {
        args.SetSslTargetNameOverride(connection.tls_server_name);
      }
      target.channels.push_back(grpc::CreateCustomChannel(address, credentials, args));
      target.stubs.push_back(v1::MediaNodeService::NewStub(target.channels.back()));
    }
  }
  nodes_.reserve(node_count);
  for (std::uint32_t i = 0; i < node_count; ++i) {
    // Home target i mod count spreads the fleet evenly over the peers; the channel index
    // counts the nodes of one home, so each home's nodes spread over all its channels too.
    const std::uint32_t home = i % target_count;
    const std::uint32_t channel = (i / target_count) % channel_count;
    nodes_.push_back(std::make_unique<node>(profiles_[i], options_.mean_session_s,
                                            options_.parameters.seed, home, channel,
                                            *targets_[home].stubs[channel]));
    index_of_.emplace(profiles_[i].node_id, i);
  }
  std::string addresses;
  for (const auto& target : targets_)
    addresses += (addresses.empty() ? "" : ", ") + target.address;
  spdlog::info("{} nodes over {} connections {}{}{}", node_count, channel_count,
               target_count == 1 ? "to " : "to each of ", addresses,
               connection.tls_ca_file.empty() ? " (h2c)" : " (TLS)");
}

fleet::~fleet() {
  timers_.stop();
}

void fleet::start() {
  started_at_ = sim_clock::now();
  for (auto& n : nodes_) {
    std::lock_guard lock(n->mutex);
    open_stream_locked(*n);
  }
}

void fleet::open_stream_locked(node& n) {
  v1::NodeMessage registration;
  n.model.fill_register(*registration.mutable_register_());
  ++n.stream_token;
  n.state = node_state::connecting;
  n.why_down = down_reason::none;
  n.frozen_inbox.clear();
  n.delayed_replies.clear();
  {
    std::lock_guard lock(live_mutex_);
    ++live_sessions_;
  }
  auto* s = new session(*this, n); // deletes itself in OnDone
  n.current = s;
  s->start(std::move(registration));
}

void fleet::session_ended() {
  {
    std::lock_guard lock(live_mutex_);
    --live_sessions_;
  }
  live_changed_.notify_all();
}

void fleet::on_message_locked(node& n, session& s, const v1::OrchestratorMessage& message) {
  if (message.has_command())
    commands_.fetch_add(1, std::memory_order_relaxed);
  if (n.frozen) {
    // A frozen process reads nothing; the kernel buffers. Handle it all when thawed.
    if (n.frozen_inbox.size() < max_frozen_inbox)
      n.frozen_inbox.push_back(message);
    return;
  }
  handle_message_locked(n, s, message);
}

void fleet::handle_message_locked(node& n, session& s, const v1::OrchestratorMessage& message) {
  const auto& id = n.model.profile().node_id;
  switch (message.message_case()) {
    case v1::OrchestratorMessage::kRegistered: {
      const auto& registered = message.registered();
      if (s.registered) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("{}: second Registered on one stream, ignored", id);
        return;
      }
      s.registered = true;
      // Another minor is fine either way (an older orchestrator just never sends the newer
      // commands, e.g. RemoveParticipant before 1.1); another major should have refused us.
      if (!registered.protocol_version().starts_with("1.")) {
        spdlog::warn("{}: orchestrator speaks protocol {}, we speak {}", id,
                     registered.protocol_version(), protocol_version);
      }
      n.state = node_state::registered;
      n.failures = 0;
      n.last_logged_code = -1;
      std::uint32_t interval = registered.stats_interval_ms();
      if (interval == 0)
        interval = default_stats_interval_ms;
      n.stats_interval_ms = std::clamp(interval, min_stats_interval_ms, max_stats_interval_ms);
      if (registered.close_rooms_size() > 0) {
        spdlog::debug("{}: closing {} rooms the orchestrator does not know", id,
                      registered.close_rooms_size());
        n.model.close_rooms(registered.close_rooms());
      }
      registrations_.fetch_add(1, std::memory_order_relaxed);
      const auto now_registered = registered_now_.fetch_add(1, std::memory_order_relaxed) + 1;
      spdlog::debug("{}: registered with {} (stats every {} ms)", id, registered.peer_id(),
                    n.stats_interval_ms);
      if (now_registered == nodes_.size() &&
          !all_registered_logged_.exchange(true, std::memory_order_relaxed)) {
        spdlog::info(
          "all {} nodes registered in {} ms", nodes_.size(),
          std::chrono::duration_cast<milliseconds>(sim_clock::now() - started_at_).count());
      }
      start_stats_locked(n, /*send_now=*/true);
      return;
    }
    case v1::OrchestratorMessage::kCommand: {
      if (!s.registered) {
        // Out of order, but harmless to obey: count it so tests can see it happened.
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("{}: command {} before Registered", id, message.command().command_id());
      }
      reply_locked(n, n.model.apply(message.command(), sim_clock::now()));
      return;
    }
    case v1::OrchestratorMessage::MESSAGE_NOT_SET:
      // A message type newer than this simulator: ignored, as the protocol asks.
      return;
  }
}

void fleet::reply_locked(node& n, v1::NodeMessage reply) {
  if (reply.has_ack()) {
    acks_.fetch_add(1, std::memory_order_relaxed);
  } else {
    nacks_.fetch_add(1, std::memory_order_relaxed);
  }
  if (n.reply_delay_ms > 0) {
    const auto due = sim_clock::now() + milliseconds(n.reply_delay_ms);
    n.delayed_replies.emplace_back(due, std::move(reply));
    timers_.schedule({due, n.model.profile().index, timer_kind::delayed_replies, 0});
    return;
  }
  if (n.current != nullptr)
    n.current->send(std::move(reply), /*droppable=*/false);
}

void fleet::flush_delayed_locked(node& n) {
  // The timer may fire up to timer_slack early: what is due by then goes now.
  const auto horizon = sim_clock::now() + timer_slack;
  while (!n.delayed_replies.empty() && n.delayed_replies.front().first <= horizon) {
    if (n.current != nullptr) {
      n.current->send(std::move(n.delayed_replies.front().second), /*droppable=*/false);
    }
    n.delayed_replies.pop_front();
  }
  // Each reply armed a timer when queued; re-arming for the front keeps the queue draining
  // when replies are out of order (slow-acks lowered meanwhile: a later reply, due earlier,
  // waits behind the front until the front is due).
  if (!n.delayed_replies.empty()) {
    timers_.schedule(
      {n.delayed_replies.front().first, n.model.profile().index, timer_kind::delayed_replies, 0});
  }
}

void fleet::start_stats_locked(node& n, bool send_now) {
  ++n.stats_token;
  if (send_now)
    send_stats_locked(n);
  const double period_ms = n.stats_interval_ms * n.jitter.uniform(0.9, 1.1);
  timers_.schedule(
    {sim_clock::now() + std::chrono::microseconds(static_cast<std::int64_t>(period_ms * 1000.0)),
     n.model.profile().index, timer_kind::stats_tick, n.stats_token});
}

void fleet::send_stats_locked(node& n) {
  if (n.current == nullptr)
    return;
  std::vector<v1::NodeMessage> events;
  const auto now = sim_clock::now();
  n.model.expire_participants(now, events);
  for (auto& event : events) {
    if (n.current->send(std::move(event), /*droppable=*/false)) {
      events_sent_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  v1::NodeMessage stats;
  n.model.fill_stats(*stats.mutable_stats(), now);
  if (n.current->send(std::move(stats), /*droppable=*/true)) {
    stats_sent_.fetch_add(1, std::memory_order_relaxed);
  } else {
    stats_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void fleet::on_stream_end_locked(node& n, session& s, const grpc::Status& status) {
  if (n.current != &s)
    return; // crashed or flapped away earlier: already accounted for
  n.current = nullptr;
  ++n.stats_token;
  n.frozen_inbox.clear();
  n.delayed_replies.clear();
  if (n.state == node_state::registered) {
    registered_now_.fetch_sub(1, std::memory_order_relaxed);
  }
  const auto& id = n.model.profile().node_id;
  if (stopping_.load()) {
    n.state = node_state::down;
    n.why_down = down_reason::stopped;
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::debug("{}: stream ended at shutdown: {} ({}): {}", id, code_name(status.error_code()),
                    static_cast<int>(status.error_code()), status.error_message());
    }
    return;
  }
  const auto code = status.error_code();
  // A stream that ends and is retried (an error, a failed connect, OK without drain) is
  // retried on the next target of the list: the peer may be gone, and any peer serves the
  // node. The channel to the peer that failed may sit in grpc's reconnect back-off; the
  // next target's channel does not hold the node back.
  const auto next_target = static_cast<std::uint32_t>((n.target + 1) % targets_.size());
  const std::string reconnecting =
    next_target == n.target ? std::string("reconnecting")
                            : fmt::format("reconnecting to {}", targets_[next_target].address);
  if (status.ok()) {
    spdlog::log(stream_log_budget.allow() ? spdlog::level::info : spdlog::level::debug,
                "{}: the orchestrator ended the stream (OK); {}", id,
                n.model.draining() ? "drained, staying down" : reconnecting);
    if (n.model.draining()) {
      n.state = node_state::down;
      n.why_down = down_reason::finished;
      return;
    }
  } else {
    stream_errors_.fetch_add(1, std::memory_order_relaxed);
    // A node that fails the same way again (back-off rounds against a missing peer) logs
    // it at debug; so does everything past the fleet's per-second budget.
    const bool repeat = static_cast<int>(code) == n.last_logged_code;
    n.last_logged_code = static_cast<int>(code);
    const bool loud = !repeat && stream_log_budget.allow();
    if (gives_up_on(code)) {
      gave_up_.fetch_add(1, std::memory_order_relaxed);
      spdlog::log(loud ? spdlog::level::err : spdlog::level::debug,
                  "{}: stream ended: {} ({}): {}; giving up", id, code_name(code),
                  static_cast<int>(code), status.error_message());
      n.state = node_state::down;
      n.why_down = down_reason::gave_up;
      return;
    }
    spdlog::log(loud ? spdlog::level::warn : spdlog::level::debug,
                "{}: stream ended: {} ({}): {}; {}", id, code_name(code), static_cast<int>(code),
                status.error_message(), reconnecting);
  }
  if (next_target != n.target) {
    use_target_locked(n, next_target);
    failovers_.fetch_add(1, std::memory_order_relaxed);
  }
  // The back-off grows once per round over the targets: a node whose peer died tries the
  // others at the first back-off, and waits longer only when none took it.
  const auto exponent =
    std::min<std::uint32_t>(n.failures / static_cast<std::uint32_t>(targets_.size()), 16);
  ++n.failures;
  const milliseconds ceiling =
    std::min<milliseconds>(max_backoff, first_backoff * (std::int64_t{1} << exponent));
  const auto delay = milliseconds(
    static_cast<std::int64_t>(static_cast<double>(ceiling.count()) * n.jitter.uniform(0.5, 1.0)));
  schedule_reconnect_locked(n, delay);
}

void fleet::schedule_reconnect_locked(node& n, milliseconds delay) {
  n.state = node_state::connecting;
  ++n.stream_token;
  timers_.schedule(
    {sim_clock::now() + delay, n.model.profile().index, timer_kind::reconnect, n.stream_token});
}

void fleet::use_target_locked(node& n, std::uint32_t target) {
  n.target = target;
  n.stub = targets_[target].stubs[n.channel].get();
}

void fleet::take_down_locked(node& n, down_reason why) {
  if (n.current != nullptr) {
    n.current->cancel();
    n.current = nullptr; // its OnDone will find itself detached
  }
  if (n.state == node_state::registered) {
    registered_now_.fetch_sub(1, std::memory_order_relaxed);
  }
  n.state = node_state::down;
  n.why_down = why;
  ++n.stream_token;
  ++n.stats_token;
  ++n.freeze_token;
  n.frozen = false;
  n.reconnect_on_thaw = false;
  n.frozen_inbox.clear();
  n.delayed_replies.clear();
}

void fleet::thaw_locked(node& n) {
  n.frozen = false;
  ++n.freeze_token;
  // Handle what arrived while frozen, in order, as the thawed process would.
  std::deque<v1::OrchestratorMessage> inbox;
  inbox.swap(n.frozen_inbox);
  for (const auto& message : inbox) {
    if (n.current == nullptr)
      break;
    handle_message_locked(n, *n.current, message);
  }
  flush_delayed_locked(n);
  if (n.state == node_state::registered && n.current != nullptr) {
    start_stats_locked(n, /*send_now=*/true);
  }
  if (n.reconnect_on_thaw) {
    n.reconnect_on_thaw = false;
    if (n.current == nullptr && n.state == node_state::connecting)
      open_stream_locked(n);
  }
}

void fleet::on_timer(const timer_event& event) {
  node& n = *nodes_[event.node];
  std::lock_guard lock(n.mutex);
  switch (event.kind) {
    case timer_kind::stats_tick:
      if (event.token != n.stats_token || n.state != node_state::registered || n.frozen ||
          n.current == nullptr) {
        return;
      }
      start_stats_locked(n, /*send_now=*/true);
      return;
    case timer_kind::reconnect:
      if (event.token != n.stream_token || n.current != nullptr || stopping_.load())
        return;
      if (n.frozen) {
        n.state = node_state::connecting;
        n.reconnect_on_thaw = true;
        return;
      }
      open_stream_locked(n);
      return;
    case timer_kind::thaw:
      if (event.token == n.freeze_token && n.frozen)
        thaw_locked(n);
      return;
    case timer_kind::delayed_replies:
      if (!n.frozen)
        flush_delayed_locked(n);
      return;
  }
}

std::vector<fleet::node*> fleet::resolve(std::string_view target, bool (*eligible)(const node&),
                                         std::string& error) {
  std::vector<node*> out;
  if (target == "all") {
    for (auto& n : nodes_)
      out.push_back(n.get());
    return out;
  }
  if (target == "random") {
    std::vector<node*> candidates;
    for (auto& n : nodes_) {
      std::lock_guard lock(n->mutex);
      if (eligible(*n))
        candidates.push_back(n.get());
    }
    if (candidates.empty()) {
      error = "no node to pick from";
      return out;
    }
    std::lock_guard lock(random_mutex_);
    out.push_back(candidates[random_.below(candidates.size())]);
    return out;
  }
  auto it = index_of_.find(std::string(target));
  if (it == index_of_.end()) {
    error = fmt::format("unknown node {}", target);
    return out;
  }
  out.push_back(nodes_[it->second].get());
  return out;
}

std::string fleet::execute(std::string_view line) {
  const auto words = split_words(line);
  if (words.empty())
    return {};
  const auto command = words[0];
  auto usage = [](std::string_view text) { return fmt::format("error usage: {}", text); };
  auto is_registered = [](const node& n) { return n.state == node_state::registered; };
  auto is_down = [](const node& n) { return n.state == node_state::down; };
  auto any = [](const node&) { return true; };
  // "ok <command> <node id>" for one node, "ok <command> all <count>" for all.
  auto reply = [&](std::string_view target, const std::vector<node*>& chosen, std::size_t done,
                   std::string_view extra) {
    fault_commands_.fetch_add(1, std::memory_order_relaxed);
    if (target == "all")
      return fmt::format("ok {} all {}{}", command, done, extra);
    return fmt::format("ok {} {}{}", command, chosen[0]->model.profile().node_id, extra);
  };
  std::string error;

  if (command == "status")
    return status_json();
  if (command == "help") {
    return "ok commands: status | node ID | crash ID|random|all | restart ID|random|all "
           "[keep|fresh] | freeze ID|random|all [SECONDS] | thaw ID|all | flap ID|random|all "
           "DOWN_MS | slow-acks ID|random|all DELAY_MS | quit";
  }
  if (command == "node") {
    if (words.size() != 2)
      return usage("node ID");
    auto chosen = resolve(words[1], any, error);
    if (chosen.empty())
      return "error " + error;
    return "ok " + node_json(*chosen[0]);
  }
  if (command == "crash") {
    if (words.size() != 2)
      return usage("crash ID|random|all");
    auto chosen = resolve(words[1], is_registered, error);
    if (chosen.empty())
      return "error " + error;
    std::size_t done = 0;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      if (n->state == node_state::down)
        continue;
      spdlog::info("{}: crash", n->model.profile().node_id);
      take_down_locked(*n, down_reason::crashed);
      ++done;
    }
    if (done == 0)
      return fmt::format("error {} is down already", words[1]);
    return reply(words[1], chosen, done, "");
  }
  if (command == "restart") {
    if (words.size() < 2 || words.size() > 3 ||
        (words.size() == 3 && words[2] != "keep" && words[2] != "fresh")) {
      return usage("restart ID|random|all [keep|fresh]");
    }
    const bool fresh = words.size() == 3 && words[2] == "fresh";
    auto chosen = resolve(words[1], is_down, error);
    if (chosen.empty())
      return "error " + error;
    if (stopping_.load())
      return "error shutting down";
    std::size_t done = 0;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      if (n->state != node_state::down)
        continue;
      spdlog::info("{}: restart{}", n->model.profile().node_id, fresh ? " (fresh)" : "");
      if (fresh) {
        // A new process starts on its home target again.
        n->model.reset();
        use_target_locked(*n,
                          n->model.profile().index % static_cast<std::uint32_t>(targets_.size()));
      }
      n->failures = 0;
      n->last_logged_code = -1;
      open_stream_locked(*n);
      ++done;
    }
    if (done == 0)
      return fmt::format("error {} is not down", words[1]);
    return reply(words[1], chosen, done, fresh ? " fresh" : "");
  }
  if (command == "freeze") {
    double seconds = 0;
    if (words.size() < 2 || words.size() > 3 ||
        (words.size() == 3 && (!parse_number(words[2], seconds) || seconds < 0))) {
      return usage("freeze ID|random|all [SECONDS]");
    }
    auto chosen = resolve(words[1], is_registered, error);
    if (chosen.empty())
      return "error " + error;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      n->frozen = true;
      const auto token = ++n->freeze_token;
      if (seconds > 0) {
        timers_.schedule(
          {sim_clock::now() + to_ms(seconds), n->model.profile().index, timer_kind::thaw, token});
      }
    }
    return reply(words[1], chosen, chosen.size(),
                 seconds > 0 ? fmt::format(" {}s", seconds) : std::string());
  }
  if (command == "thaw") {
    if (words.size() != 2 || words[1] == "random")
      return usage("thaw ID|all");
    auto chosen = resolve(words[1], any, error);
    if (chosen.empty())
      return "error " + error;
    std::size_t done = 0;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      if (!n->frozen)
        continue;
      thaw_locked(*n);
      ++done;
    }
    return reply(words[1], chosen, done, done == 0 ? " (was not frozen)" : "");
  }
  if (command == "flap") {
    std::uint32_t down_ms = 0;
    if (words.size() != 3 || !parse_number(words[2], down_ms)) {
      return usage("flap ID|random|all DOWN_MS");
    }
    auto chosen = resolve(words[1], is_registered, error);
    if (chosen.empty())
      return "error " + error;
    if (stopping_.load())
      return "error shutting down";
    std::size_t done = 0;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      if (n->state == node_state::down)
        continue;
      spdlog::info("{}: flap for {} ms", n->model.profile().node_id, down_ms);
      take_down_locked(*n, down_reason::flapping);
      timers_.schedule({sim_clock::now() + milliseconds(down_ms), n->model.profile().index,
                        timer_kind::reconnect, n->stream_token});
      ++done;
    }
    if (done == 0)
      return fmt::format("error {} is down", words[1]);
    return reply(words[1], chosen, done, fmt::format(" {}", down_ms));
  }
  if (command == "slow-acks") {
    std::uint32_t delay_ms = 0;
    if (words.size() != 3 || !parse_number(words[2], delay_ms)) {
      return usage("slow-acks ID|random|all DELAY_MS");
    }
    auto chosen = resolve(words[1], is_registered, error);
    if (chosen.empty())
      return "error " + error;
    for (node* n : chosen) {
      std::lock_guard lock(n->mutex);
      n->reply_delay_ms = delay_ms;
    }
    return reply(words[1], chosen, chosen.size(), fmt::format(" {}", delay_ms));
  }
  return fmt::format("error unknown command {} (try help)", command);
}

std::string fleet::crash_random_for(milliseconds down) {
  std::string error;
  auto chosen = resolve(
    "random", [](const node& n) { return n.state == node_state::registered; }, error);
  if (chosen.empty())
    return {};
  node& n = *chosen[0];
  std::lock_guard lock(n.mutex);
  if (n.state != node_state::registered || stopping_.load())
    return {};
  take_down_locked(n, down_reason::flapping);
  timers_.schedule(
    {sim_clock::now() + down, n.model.profile().index, timer_kind::reconnect, n.stream_token});
  return n.model.profile().node_id;
}

std::string fleet::freeze_random_for(milliseconds frozen) {
  std::string error;
  auto chosen = resolve(
    "random", [](const node& n) { return n.state == node_state::registered && !n.frozen; }, error);
  if (chosen.empty())
    return {};
  node& n = *chosen[0];
  std::lock_guard lock(n.mutex);
  n.frozen = true;
  timers_.schedule(
    {sim_clock::now() + frozen, n.model.profile().index, timer_kind::thaw, ++n.freeze_token});
  return n.model.profile().node_id;
}

std::string fleet::node_json(node& n) {
  std::lock_guard lock(n.mutex);
  const auto& p = n.model.profile();
  std::string_view why;
  switch (n.why_down) {
    case down_reason::none:
      why = "";
      break;
    case down_reason::crashed:
      why = "crashed";
      break;
    case down_reason::flapping:
      why = "flapping";
      break;
    case down_reason::gave_up:
      why = "gave_up";
      break;
    case down_reason::finished:
      why = "finished";
      break;
    case down_reason::stopped:
      why = "stopped";
      break;
  }
  auto rooms = n.model.rooms_json(); // {"rooms":[..],"participants":..,"draining":..}
  return fmt::format(
    "{{\"node_id\":{},\"state\":\"{}\",\"down_reason\":\"{}\",\"target\":{},\"frozen\":{},"
    "\"reply_delay_ms\":{},\"stats_interval_ms\":{},\"city\":{},\"country\":\"{}\","
    "\"region\":\"{}\",\"latitude\":{:.4f},\"longitude\":{:.4f},\"max_participants\":{},"
    "\"recording\":{},\"e2ee\":{},\"packet_loss\":{:.4f},\"jitter_ms\":{:.1f},{}",
    json_string(p.node_id), state_name(n.state), why, json_string(targets_[n.target].address),
    n.frozen ? "true" : "false", n.reply_delay_ms, n.stats_interval_ms, json_string(p.city),
    p.country, p.region, p.latitude, p.longitude, p.max_participants,
    p.recording ? "true" : "false", p.e2ee ? "true" : "false", p.quality.packet_loss,
    p.quality.jitter_ms, std::string_view(rooms).substr(1));
}

std::string fleet::status_json() {
  std::uint64_t registered = 0, connecting = 0, down = 0, gave_up_now = 0, frozen = 0, rooms = 0,
                participants = 0;
  std::vector<std::uint64_t> registered_at(targets_.size(), 0);
  for (auto& n : nodes_) {
    std::lock_guard lock(n->mutex);
    switch (n->state) {
      case node_state::registered:
        ++registered;
        ++registered_at[n->target];
        break;
      case node_state::connecting:
        ++connecting;
        break;
      case node_state::down:
        ++down;
        if (n->why_down == down_reason::gave_up)
          ++gave_up_now;
        break;
    }
    if (n->frozen)
      ++frozen;
    rooms += n->model.rooms();
    participants += n->model.participants();
  }
  auto count = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  const double uptime_s = started_at_ == sim_clock::time_point{}
                            ? 0.0
                            : std::chrono::duration<double>(sim_clock::now() - started_at_).count();
  // Registered nodes per target, in --target order.
  std::string per_target;
  for (std::size_t t = 0; t < targets_.size(); ++t) {
    per_target +=
      fmt::format("{}{}:{}", t == 0 ? "" : ",", json_string(targets_[t].address), registered_at[t]);
  }
  return fmt::format(
    "{{\"nodes\":{},\"registered\":{},\"connecting\":{},\"down\":{},\"rooms\":{},"
    "\"participants\":{},\"commands\":{},\"errors\":{},\"gave_up\":{},\"frozen\":{},"
    "\"acks\":{},\"nacks\":{},\"stats_sent\":{},\"stats_dropped\":{},\"events_sent\":{},"
    "\"registrations\":{},\"stream_errors\":{},\"protocol_errors\":{},\"faults\":{},"
    "\"uptime_s\":{:.1f},\"failovers\":{},\"targets\":{{{}}}}}",
    nodes_.size(), registered, connecting, down, rooms, participants, count(commands_),
    count(gave_up_), gave_up_now, frozen, count(acks_), count(nacks_), count(stats_sent_),
    count(stats_dropped_), count(events_sent_), count(registrations_), count(stream_errors_),
    count(protocol_errors_), count(fault_commands_), uptime_s, count(failovers_), per_target);
}

bool fleet::shutdown(milliseconds grace) {
  stopping_.store(true);
  for (auto& n : nodes_) {
    std::lock_guard lock(n->mutex);
    ++n->stats_token;
    ++n->stream_token;
    n->frozen = false; // a frozen node is still shut down cleanly
    if (n->current != nullptr)
      n->current->finish_writes();
  }
  auto wait_for_streams = [&](milliseconds limit) {
    std::unique_lock lock(live_mutex_);
    return live_changed_.wait_for(lock, limit, [&] { return live_sessions_ == 0; });
  };
  if (!wait_for_streams(grace / 2)) {
    std::uint64_t left = 0;
    {
      std::lock_guard lock(live_mutex_);
      left = live_sessions_;
    }
    spdlog::warn("{} streams still open after WritesDone; cancelling them", left);
    for (auto& n : nodes_) {
      std::lock_guard lock(n->mutex);
      if (n->current != nullptr)
        n->current->cancel();
    }
    if (!wait_for_streams(grace / 2)) {
      spdlog::error("streams did not end after cancellation");
      return false;
    }
  }
  timers_.stop();
  for (auto& n : nodes_) {
    std::lock_guard lock(n->mutex);
    n->state = node_state::down;
    n->why_down = down_reason::stopped;
  }
  registered_now_.store(0);
  return true;
}

} // namespace chroom::node_sim
