#include "actors/client_session.hpp"

#include "actors/allocation_messages.hpp"
#include "actors/atoms.hpp"
#include "transport/join_token.hpp"

#include <caf/all.hpp>

namespace chroom::actors {

namespace {

using chroom::allocation::v1::KeepAliveResponse;
using chroom::allocation::v1::NodeChoice;

struct session_state {
  lease_holder holder;
  NodeChoice node;
  std::shared_ptr<const room_settings> settings;
  caf::actor room;
  /// The node changed since the client last heard (KeepAlive tells it once).
  bool moved = false;
  /// The node's secret (tokens are signed with it); derived when first needed.
  std::string node_secret;
};

using session_actor = caf::stateful_actor<session_state>;

void end_lease(session_actor* self, const std::string& reason) {
  auto& st = self->state;
  self->send(st.room, release_atom::value, st.holder.client_id, st.holder.lease_id, reason);
  self->quit();
}

caf::behavior client_session(session_actor* self, lease_holder holder, NodeChoice node,
                             std::shared_ptr<const room_settings> settings, caf::actor room) {
  auto& st = self->state;
  st.holder = std::move(holder);
  st.node = std::move(node);
  st.settings = std::move(settings);
  st.room = std::move(room);
  self->monitor(st.room);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  return {
    [self](keep_alive_atom) {
      auto& st = self->state;
      KeepAliveResponse response;
      response.set_lease_ttl_ms(static_cast<uint32_t>(st.holder.ttl(*st.settings).count()));
      *response.mutable_node() = st.node;
      response.set_moved(st.moved);
      st.moved = false;
      if (st.node_secret.empty())
        st.node_secret = st.settings->credentials->secret_of(st.node.node_id());
      auto token = join_token_for(*st.settings, st.holder, st.node.node_id(), st.node_secret);
      response.set_join_token(std::move(token.token));
      response.set_join_token_expires_unix_ms(token.expires_unix_ms);
      return response;
    },
    [self](release_atom) {
      end_lease(self, "released");
      return transport::grpc_status::ok();
    },
    [self](timeout_atom) { end_lease(self, "lease expired"); },
    [self](moved_atom, NodeChoice& node) {
      auto& st = self->state;
      if (node.node_id() != st.node.node_id()) {
        st.moved = true;
        st.node_secret.clear();
      }
      st.node = std::move(node);
    },
    [self](lease_end_atom, const std::string&) { self->quit(); },
  };
}

} // namespace

signed_join_token join_token_for(const room_settings& settings, const lease_holder& holder,
                                 const std::string& node_id, const std::string& node_secret) {
  auto now = std::chrono::system_clock::now();
  auto expires = now + settings.join_token_ttl;
  transport::join_claims claims;
  claims.client_id = holder.client_id;
  claims.app_id = holder.app_id;
  claims.room_id = holder.room_id;
  claims.node_id = node_id;
  claims.role = holder.role;
  claims.lease_id = holder.lease_id;
  claims.publish = holder.publish;
  claims.recording = holder.recording;
  claims.tier = holder.tier;
  claims.issued_at_s =
    std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  claims.expires_at_s =
    std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count();
  return {transport::sign_join_token(claims, node_secret), claims.expires_at_s * 1000};
}

caf::actor spawn_client_session(caf::local_actor* room, lease_holder holder, NodeChoice node,
                                std::shared_ptr<const room_settings> settings) {
  return room->spawn(client_session, std::move(holder), std::move(node), std::move(settings),
                     caf::actor_cast<caf::actor>(room));
}

} // namespace chroom::actors
