// chroomctl rooms list|get|migrate
#include <ostream>

#include "common/unix_time.hpp"
#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/output.hpp"

namespace chroom::ctl {

namespace {

namespace v1 = chroom::admin::v1;
using stub = admin_client::stub;

constexpr std::uint32_t list_page_size = 1000;
// Nodes named in the NODES column of `rooms list`; more are counted.
constexpr int nodes_shown = 3;

std::string room_name(const allocation::v1::Room& room) {
  return room.app_id() + "/" + room.room_id();
}

// "ber(3) par(2) +1"
std::string nodes_text(const allocation::v1::Room& room) {
  std::string text;
  for (int i = 0; i < room.nodes_size() && i < nodes_shown; ++i) {
    if (!text.empty())
      text += ' ';
    text += room.nodes(i).node_id();
    text += '(';
    text += std::to_string(room.nodes(i).participants());
    text += ')';
  }
  if (room.nodes_size() > nodes_shown) {
    text += " +";
    text += std::to_string(room.nodes_size() - nodes_shown);
  }
  return text;
}

void print_room_details(command_context& context, const v1::RoomInfo& info) {
  auto& out = *context.out;
  const auto& room = info.room();
  field_list fields;
  fields.add("App", room.app_id());
  fields.add("Room", room.room_id());
  fields.add("Owner peer", info.owner_peer_id());
  fields.add("Participants", std::to_string(room.participants()));
  fields.add("Created",
             human_time(room.created_unix_ms()) + " (" + human_age(room.created_unix_ms()) + ")");
  fields.print(out);

  out << '\n';
  table nodes({"node", "participants", "region", "ready", "relays to"});
  for (const auto& node : room.nodes()) {
    std::string relays;
    for (const auto& relay : node.relay_node_ids()) {
      if (!relays.empty())
        relays += ',';
      relays += relay;
    }
    nodes.add_row({node.node_id(), std::to_string(node.participants()), node.region(),
                   node.ready() ? "yes" : "no", relays});
  }
  nodes.print(out, true);

  if (room.members_size() > 0) {
    out << '\n';
    table members({"client", "role", "node", "admitted"});
    for (const auto& member : room.members())
      members.add_row(
        {member.client_id(), member.role(), member.node_id(), member.admitted() ? "yes" : "no"});
    members.print(out, true);
  }
}

} // namespace

int run_rooms_list(command_context& context, const invocation& call) {
  v1::ListRoomsRequest request;
  request.set_app_id(call.value("--app"));
  request.set_node_id(call.value("--node"));
  request.set_page_size(list_page_size);

  auto all =
    context.client().call_all_pages("ListRooms", &stub::ListRooms, request,
                                    [](v1::ListRoomsResponse& all, v1::ListRoomsResponse& page) {
                                      for (auto& room : *page.mutable_rooms())
                                        *all.add_rooms() = std::move(room);
                                      all.set_total_size(page.total_size());
                                    });

  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, all);
    return exit_ok;
  }
  if (context.format == output_format::name) {
    for (const auto& info : all.rooms())
      out << room_name(info.room()) << '\n';
    return exit_ok;
  }
  table rows({"app", "room", "participants", "nodes", "owner", "age"});
  for (const auto& info : all.rooms()) {
    const auto& room = info.room();
    rows.add_row({room.app_id(), room.room_id(), std::to_string(room.participants()),
                  nodes_text(room), info.owner_peer_id(),
                  room.created_unix_ms() ? human_duration_ms(unix_ms_now() - room.created_unix_ms())
                                         : std::string("-")});
  }
  if (rows.empty() && context.headers)
    *context.err << "no rooms\n";
  else
    rows.print(out, context.headers);
  return exit_ok;
}

int run_rooms_get(command_context& context, const invocation& call) {
  v1::GetRoomRequest request;
  request.set_app_id(call.args[0]);
  request.set_room_id(call.args[1]);
  auto reply = context.client().call("GetRoom", &stub::GetRoom, request, room_hints());
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << room_name(reply.room().room()) << '\n';
  else
    print_room_details(context, reply.room());
  return exit_ok;
}

int run_rooms_migrate(command_context& context, const invocation& call) {
  v1::MigrateRoomRequest request;
  request.set_app_id(call.args[0]);
  request.set_room_id(call.args[1]);
  request.set_to_node_id(call.value("--to"));
  request.set_from_node_id(call.value("--from"));
  call_hints hints{"list rooms with `chroomctl rooms list`, their nodes with `chroomctl rooms "
                   "get APP ROOM`, nodes with `chroomctl nodes list`"};
  auto reply = context.client().call("MigrateRoom", &stub::MigrateRoom, request, hints);
  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, reply);
    return exit_ok;
  }
  if (context.format == output_format::name) {
    for (const auto& move : reply.moves())
      out << move.client_id() << '\n';
    return exit_ok;
  }
  out << "room " << room_name(reply.room().room()) << ": " << reply.moves_size()
      << (reply.moves_size() == 1 ? " participant" : " participants") << " moved; now on "
      << (reply.room().room().nodes_size() ? nodes_text(reply.room().room()) : std::string("-"))
      << '\n';
  if (reply.moves_size() > 0) {
    out << '\n';
    table moves({"client", "from", "to"});
    for (const auto& move : reply.moves())
      moves.add_row({move.client_id(), move.from_node_id(), move.to_node_id()});
    moves.print(out, context.headers);
  }
  return exit_ok;
}

} // namespace chroom::ctl
