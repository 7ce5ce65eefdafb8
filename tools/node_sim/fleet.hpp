// The simulated fleet: one node_model and one Connect stream per node, spread over a few
// gRPC channels (TCP connections), driven by grpc++'s callback API and one timer thread.
//
// Node states (what `status` counts):
//
//   start/restart ──> connecting ──Registered──> registered
//                        ^   │                      │
//        back-off timer  │   └──stream ends─────────┤ (error or OK: back off, reconnect to
//                        └──────────────────────────┘  the next target of the list)
//   any ──crash──> down (until `restart`)          any ──flap──> down ──timer──> connecting
//   stream ends with UNAUTHENTICATED / FAILED_PRECONDITION / INVALID_ARGUMENT / ABORTED
//     ──> down (gave up; counted in `errors`)
//   stream ends OK while draining ──> down (finished)   quit/SIGTERM ──> down (stopped)
//
// Frozen is not a state but a flag on top: a frozen node keeps its stream but sends nothing
// and handles nothing until thawed (like a SIGSTOPped process).
//
// Targets: with several orchestrator peers (--target a,b,...), node i starts on target
// i mod count. A stream that ends in a way that reconnects (above), including one that
// never connected, sends the node to the next target of the list, round robin from its
// current one; a node stays with the target that last accepted it. The node's own faults
// (crash/restart, flap, scheduled crashes) keep its target: its peer did nothing wrong.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chroom/medianode/v1/media_node.grpc.pb.h"
#include "tools/node_sim/node_model.hpp"
#include "tools/node_sim/timer_queue.hpp"

namespace chroom::node_sim {

struct connection_options {
  // host:port of each orchestrator peer (--target a,b,...), in the order nodes fail over.
  std::vector<std::string> targets;
  // PEM files; TLS is used when tls_ca_file is set, mutual TLS when cert and key are too.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Name to check the server certificate against instead of the target's host (every
  // target's).
  std::string tls_server_name;
  // Channels (TCP connections) per target to spread the streams over; 0 = ceil(nodes / 90),
  // which stays under the orchestrator's limit of 100 concurrent streams per connection
  // even when every node failed over to one target.
  std::uint32_t connections = 0;
};

struct fleet_options {
  fleet_parameters parameters;
  connection_options connection;
  // Mean time a participant stays, seconds (sessions are exponentially distributed).
  double mean_session_s = 600;
};

class fleet {
public:
  // Opens no stream yet. Throws std::runtime_error when a TLS file cannot be read.
  fleet(fleet_options options, const city_table& cities);
  ~fleet();
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  // Every node opens its stream.
  void start();

  // One line of the fault protocol (docs/node-sim.md): returns the one line to print,
  // "ok ...", "error <reason>" or, for `status`, the status JSON.
  std::string execute(std::string_view line);

  // {"nodes":..,"registered":..,"connecting":..,"down":..,"rooms":..,"participants":..,
  //  "commands":..,"errors":..,...,"failovers":..,"targets":{"HOST:PORT":registered,..}}
  // on one line.
  std::string status_json();

  // Scheduled faults (--crash-every-s, --freeze-every-s): a random registered node goes
  // down (stream cancelled) for `down`, or freezes for `frozen`. Empty when no node is
  // registered, else the node's id.
  std::string crash_random_for(std::chrono::milliseconds down);
  std::string freeze_random_for(std::chrono::milliseconds frozen);

  // Ends every stream cleanly (WritesDone, then wait for the orchestrator to finish it);
  // streams still open after half the grace are cancelled. False if some stream did not
  // end at all (the process should not run destructors then).
  bool shutdown(std::chrono::milliseconds grace);

  std::uint32_t size() const { return static_cast<std::uint32_t>(nodes_.size()); }

private:
  struct node;
  class session;
  // One orchestrator peer: its channels and a stub on each.
  struct target_channels {
    std::string address;
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    std::vector<std::unique_ptr<v1::MediaNodeService::Stub>> stubs;
  };
  enum class down_reason : std::uint8_t;
  friend class session;

  // All *_locked functions expect the node's mutex held.
  void open_stream_locked(node& n);
  void on_message_locked(node& n, session& s, const v1::OrchestratorMessage& message);
  void handle_message_locked(node& n, session& s, const v1::OrchestratorMessage& message);
  void on_stream_end_locked(node& n, session& s, const grpc::Status& status);
  void schedule_reconnect_locked(node& n, std::chrono::milliseconds delay);
  // The node's streams go to `target` from now on (an index into targets_).
  void use_target_locked(node& n, std::uint32_t target);
  void start_stats_locked(node& n, bool send_now);
  void send_stats_locked(node& n);
  void reply_locked(node& n, v1::NodeMessage reply);
  void flush_delayed_locked(node& n);
  void take_down_locked(node& n, down_reason why);
  void thaw_locked(node& n);
  void on_timer(const timer_event& event);
  void session_ended();

  // Nodes a command names: an id, "random" (among nodes for which `eligible` holds) or
  // "all". Empty with `error` set when none matches.
  std::vector<node*> resolve(std::string_view target, bool (*eligible)(const node&),
                             std::string& error);
  std::string node_json(node& n);

  fleet_options options_;
  std::vector<node_profile> profiles_;
  std::vector<target_channels> targets_;
  std::vector<std::unique_ptr<node>> nodes_;
  std::unordered_map<std::string, std::uint32_t> index_of_;
  timer_queue timers_;
  sim_clock::time_point started_at_;
  std::atomic<bool> stopping_{false};

  std::mutex random_mutex_;
  rng random_; // for "random" targets and scheduled faults

  // Streams whose reactor has not reached OnDone; shutdown waits for zero.
  std::mutex live_mutex_;
  std::condition_variable live_changed_;
  std::uint64_t live_sessions_ = 0;

  // Counters since start (relaxed: they are only read for status lines).
  std::atomic<std::uint64_t> registered_now_{0};
  std::atomic<bool> all_registered_logged_{false};
  std::atomic<std::uint64_t> registrations_{0};
  std::atomic<std::uint64_t> commands_{0};
  std::atomic<std::uint64_t> acks_{0};
  std::atomic<std::uint64_t> nacks_{0};
  std::atomic<std::uint64_t> stats_sent_{0};
  std::atomic<std::uint64_t> stats_dropped_{0};
  std::atomic<std::uint64_t> events_sent_{0};
  std::atomic<std::uint64_t> stream_errors_{0};
  std::atomic<std::uint64_t> gave_up_{0};
  std::atomic<std::uint64_t> protocol_errors_{0};
  std::atomic<std::uint64_t> fault_commands_{0};
  std::atomic<std::uint64_t> failovers_{0};
};

} // namespace chroom::node_sim
