#include "actors/health_service.hpp"

#include "actors/atoms.hpp"
#include "grpc/health/v1/health.pb.h"
#include "transport/call_protocol.hpp"

#include <caf/all.hpp>

#include <unordered_map>
#include <unordered_set>

namespace chroom::actors {

namespace {

using namespace transport;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using serving_status = HealthCheckResponse::ServingStatus;

/// One open Watch call. The service answers Watch itself: a watcher is a few bytes.
struct watcher {
  call_stream stream;
  std::string service;
  bool has_request = false;
  /// Last status sent, so only changes go out; pending when it could not be sent for
  /// lack of credit (the client reads slowly) and goes out with the next credit.
  serving_status sent = HealthCheckResponse::UNKNOWN;
  bool pending = false;
};

struct health_state {
  std::unordered_map<std::string, serving_status> services;
  std::unordered_map<call_key, watcher, call_key_hash> watchers;
  /// Gateways with watchers, monitored: one that vanishes takes its watchers along.
  std::unordered_set<caf::actor_addr> gateways;
};

using health_actor = caf::stateful_actor<health_state>;

serving_status status_of(const health_state& st, const std::string& service, bool watch) {
  auto it = st.services.find(service);
  if (it != st.services.end())
    return it->second;
  return watch ? HealthCheckResponse::SERVICE_UNKNOWN : HealthCheckResponse::UNKNOWN;
}

void update(health_actor* self, watcher& w) {
  auto current = status_of(self->state, w.service, true);
  if (!w.has_request || (current == w.sent && !w.pending))
    return;
  HealthCheckResponse response;
  response.set_status(current);
  if (w.stream.send(self, response)) {
    w.sent = current;
    w.pending = false;
  } else {
    w.pending = true;
  }
}

caf::behavior health_service(health_actor* self, std::vector<std::string> services) {
  self->state.services[""] = HealthCheckResponse::SERVING;
  for (auto& name : services)
    self->state.services[name] = HealthCheckResponse::SERVING;
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.gateways.erase(msg.source);
    std::erase_if(st.watchers,
                  [&](const auto& entry) { return entry.first.gateway == msg.source; });
  });
  auto sender_key = [self](int32_t stream_id) {
    return call_key{caf::actor_cast<caf::actor_addr>(self->current_sender()), stream_id};
  };
  return {
    [self](call_unary_atom, std::vector<unary_call>& batch) {
      unary_replies replies{self};
      for (auto& call : batch) {
        HealthCheckRequest request;
        if (!replies.parse(call, request))
          continue;
        auto it = self->state.services.find(request.service());
        if (it == self->state.services.end()) {
          replies.fail(call.context, make_status(grpc_code::not_found,
                                                 "unknown service '" + request.service() + "'"));
          continue;
        }
        HealthCheckResponse response;
        response.set_status(it->second);
        replies.reply(call.context, response);
      }
    },
    [self](call_open_atom, const call_context& call) -> caf::actor {
      if (self->state.gateways.insert(call.gateway.address()).second)
        self->monitor(call.gateway);
      self->state.watchers.emplace(
        key_of(call), watcher{call_stream{call}, {}, false, HealthCheckResponse::UNKNOWN, false});
      return caf::actor_cast<caf::actor>(self);
    },
    [self, sender_key](call_data_atom, int32_t stream_id, const std::string& bytes) {
      auto it = self->state.watchers.find(sender_key(stream_id));
      if (it == self->state.watchers.end())
        return;
      auto& w = it->second;
      w.stream.ack(self, bytes.size());
      HealthCheckRequest request;
      if (w.has_request || !request.ParseFromString(bytes)) {
        w.stream.end(self, make_status(grpc_code::invalid_argument,
                                       "Watch takes exactly one HealthCheckRequest"));
        self->state.watchers.erase(it);
        return;
      }
      w.service = request.service();
      w.has_request = true;
      w.pending = true;
      update(self, w);
    },
    [self, sender_key](call_close_atom, int32_t) {
      // The client half-closed after its request; Watch goes on until it cancels.
    },
    [self, sender_key](call_credit_atom, int32_t stream_id, uint32_t credit) {
      auto it = self->state.watchers.find(sender_key(stream_id));
      if (it == self->state.watchers.end())
        return;
      it->second.stream.add_credit(credit);
      update(self, it->second);
    },
    [self, sender_key](call_cancel_atom, int32_t stream_id) {
      self->state.watchers.erase(sender_key(stream_id));
    },
    [self](set_atom, bool serving) {
      for (auto& [name, status] : self->state.services)
        status = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
      for (auto& [key, w] : self->state.watchers)
        update(self, w);
    },
  };
}

} // namespace

caf::actor spawn_health_service(caf::actor_system& system, std::vector<std::string> services) {
  return system.spawn(health_service, std::move(services));
}

void set_serving(const caf::actor& health, bool serving) {
  caf::anon_send(health, set_atom::value, serving);
}

} // namespace chroom::actors
