// chroomctl cluster status
#include <ostream>

#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/output.hpp"

namespace chroom::ctl {

namespace v1 = chroom::admin::v1;

int run_cluster_status(command_context& context, const invocation&) {
  auto reply =
    context.client().call("GetCluster", &admin_client::stub::GetCluster, v1::GetClusterRequest{});
  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, reply);
    return exit_ok;
  }
  if (context.format == output_format::name) {
    for (const auto& peer : reply.peers())
      out << peer.peer_id() << '\n';
    return exit_ok;
  }
  if (context.headers)
    out << "Answering peer " << reply.peer_id() << ": owns " << reply.rooms_owned()
        << " rooms, keeps " << reply.room_replicas() << " replicas; replication factor "
        << reply.replication_factor() << "\n\n";
  table rows({"self", "peer", "state", "grpc address", "cluster address", "last heard", "started"});
  for (const auto& peer : reply.peers()) {
    std::string heard = peer.self() ? "-" : human_duration_ms(peer.last_heard_ms_ago()) + " ago";
    rows.add_row({peer.self() ? "*" : "", peer.peer_id(),
                  enum_word(v1::PeerState_Name(peer.state()), "PEER_STATE_"), peer.grpc_address(),
                  peer.cluster_address(), heard,
                  human_age(static_cast<std::int64_t>(peer.incarnation()))});
  }
  rows.print(out, context.headers);
  return exit_ok;
}

} // namespace chroom::ctl
