// chroomctl nodes list|get|cordon|uncordon|drain
#include <ostream>
#include <set>

#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/output.hpp"

namespace chroom::ctl {

namespace {

namespace v1 = chroom::admin::v1;
using stub = admin_client::stub;

// ListNodes pages asked for, at most (ListNodes allows 5000 per page).
constexpr std::uint32_t list_page_size = 1000;

std::string state_word(v1::NodeState state) {
  return enum_word(v1::NodeState_Name(state), "NODE_STATE_");
}

// "suspect (was draining)"
std::string state_text(const v1::NodeInfo& node) {
  std::string text = state_word(node.state());
  bool after = node.state() == v1::NODE_STATE_SUSPECT || node.state() == v1::NODE_STATE_DEAD;
  if (after && node.previous_state() != v1::NODE_STATE_UNSPECIFIED &&
      node.previous_state() != v1::NODE_STATE_ACTIVE)
    text += std::string(" (was ") + state_word(node.previous_state()) + ")";
  return text;
}

// "37/100": participants reported plus reserved, over capacity.
std::string load_text(const v1::NodeInfo& node) {
  auto used = node.load().last_stats().participants() + node.load().reserved_participants();
  return std::to_string(used) + "/" + std::to_string(node.capacity().max_participants());
}

std::string cpu_text(const v1::NodeInfo& node) {
  if (!node.load().has_last_stats())
    return "-";
  return human_number(node.load().last_stats().cpu_load() * 100.0, 0) + "%";
}

std::string endpoints_text(const v1::NodeInfo& node) {
  std::string text;
  for (const auto& endpoint : node.endpoints()) {
    if (!text.empty())
      text += ", ";
    text += enum_word(medianode::v1::Endpoint::Transport_Name(endpoint.transport()), "TRANSPORT_");
    text += "://";
    text += endpoint.host();
    text += ':';
    text += std::to_string(endpoint.port());
  }
  return text;
}

v1::NodeState parse_state(const std::string& word, const invocation& call) {
  std::string name = "NODE_STATE_";
  for (char c : word)
    name += static_cast<char>(c == '-' ? '_' : std::toupper(static_cast<unsigned char>(c)));
  if (name.starts_with("NODE_STATE_NODE_STATE_"))
    name.erase(0, std::string_view("NODE_STATE_").size());
  v1::NodeState state{};
  if (!v1::NodeState_Parse(name, &state) || state == v1::NODE_STATE_UNSPECIFIED)
    throw usage_error(std::string("--state: unknown state '") + word +
                        "' (joining, active, draining, cordoned, suspect, dead, gone)",
                      call.command);
  return state;
}

void print_nodes(command_context& context, const v1::ListNodesResponse& reply) {
  auto& out = *context.out;
  if (context.format == output_format::json)
    return print_json(out, reply);
  if (context.format == output_format::name) {
    for (const auto& node : reply.nodes())
      out << node.node_id() << '\n';
    return;
  }
  table rows(
    {"node", "state", "region", "country", "load", "cpu", "rooms", "peer", "last seen", "version"});
  for (const auto& node : reply.nodes())
    rows.add_row({node.node_id(), state_text(node), node.location().region(),
                  node.location().country(), load_text(node), cpu_text(node),
                  std::to_string(node.room_ids_size()), node.home_peer_id(),
                  human_duration_ms(node.last_seen_ms_ago()) + " ago", node.software_version()});
  if (rows.empty() && context.headers) {
    *context.err << "no nodes\n";
    return;
  }
  rows.print(out, context.headers);
}

void print_node_details(std::ostream& out, const v1::NodeInfo& node) {
  const auto& stats = node.load().last_stats();
  field_list fields;
  fields.add("Node", node.node_id());
  fields.add("State", state_text(node));
  fields.add("Home peer", node.home_peer_id());
  fields.add("Region", node.location().region());
  fields.add("Country", node.location().country());
  fields.add("Location", human_number(node.location().latitude(), 4) + ", " +
                           human_number(node.location().longitude(), 4));
  fields.add("Endpoints", endpoints_text(node));
  fields.add("Load", load_text(node) + " participants (" +
                       std::to_string(node.load().reserved_participants()) + " reserved, " +
                       std::to_string(node.load().available_participants()) + " available)");
  fields.add("CPU", cpu_text(node));
  fields.add("Bandwidth", std::string("in ") + human_number(stats.bandwidth_in_mbps()) + " / out " +
                            human_number(stats.bandwidth_out_mbps()) + " Mbps (capacity up " +
                            human_number(node.capacity().upload_mbps()) + " / down " +
                            human_number(node.capacity().download_mbps()) + ")");
  fields.add("Network", std::string("loss ") + human_number(stats.packet_loss() * 100.0, 2) +
                          "%, jitter " + human_number(stats.jitter_ms()) + " ms");
  std::string features;
  for (const auto& codec : node.features().codecs()) {
    if (!features.empty())
      features += ',';
    features += codec;
  }
  if (node.features().relay())
    features += " relay";
  if (node.features().recording())
    features += " recording";
  if (node.features().e2ee())
    features += " e2ee";
  fields.add("Features", features);
  fields.add("CPU cores", std::to_string(node.capacity().cpu_cores()));
  std::string rooms = std::to_string(node.room_ids_size());
  for (int i = 0; i < node.room_ids_size() && i < 10; ++i) {
    rooms += i == 0 ? ": " : ", ";
    rooms += node.room_ids(i);
  }
  if (node.room_ids_size() > 10)
    rooms += ", ...";
  fields.add("Rooms", rooms);
  fields.add("Connected", human_time(node.connected_at_unix_ms()) + " (" +
                            human_age(node.connected_at_unix_ms()) + ")");
  fields.add("Last seen", human_duration_ms(node.last_seen_ms_ago()) + " ago");
  fields.add("Registrations", std::to_string(node.registrations()));
  fields.add("Software", node.software_version());
  fields.add("Protocol", node.protocol_version());
  if (node.drain_deadline_unix_ms() != 0)
    fields.add("Drain deadline", human_time(node.drain_deadline_unix_ms()));
  fields.print(out);
}

// What cordon/uncordon/drain print: the node's state after the change.
template <class Response>
int print_changed(command_context& context, const Response& reply, std::string_view verb) {
  const auto& node = reply.node();
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << node.node_id() << '\n';
  else
    *context.out << "node " << node.node_id() << " " << verb << " (state " << state_text(node)
                 << ")\n";
  return exit_ok;
}

} // namespace

int run_nodes_list(command_context& context, const invocation& call) {
  v1::ListNodesRequest request;
  std::set<int> states;
  for (const auto& value : call.values("--state")) {
    std::size_t start = 0;
    while (start <= value.size()) {
      auto comma = value.find(',', start);
      auto word =
        value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!word.empty())
        states.insert(parse_state(word, call));
      if (comma == std::string::npos)
        break;
      start = comma + 1;
    }
  }
  for (int state : states)
    request.add_states(static_cast<v1::NodeState>(state));
  request.set_region(call.value("--region"));
  request.set_page_size(list_page_size);

  auto all =
    context.client().call_all_pages("ListNodes", &stub::ListNodes, request,
                                    [](v1::ListNodesResponse& all, v1::ListNodesResponse& page) {
                                      for (auto& node : *page.mutable_nodes())
                                        *all.add_nodes() = std::move(node);
                                      all.set_total_size(page.total_size());
                                    });
  print_nodes(context, all);
  return exit_ok;
}

int run_nodes_get(command_context& context, const invocation& call) {
  v1::GetNodeRequest request;
  request.set_node_id(call.args[0]);
  auto reply = context.client().call("GetNode", &stub::GetNode, request, node_hints());
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << reply.node().node_id() << '\n';
  else
    print_node_details(*context.out, reply.node());
  return exit_ok;
}

int run_nodes_cordon(command_context& context, const invocation& call) {
  v1::CordonNodeRequest request;
  request.set_node_id(call.args[0]);
  return print_changed(
    context, context.client().call("CordonNode", &stub::CordonNode, request, node_hints()),
    "cordoned");
}

int run_nodes_uncordon(command_context& context, const invocation& call) {
  v1::UncordonNodeRequest request;
  request.set_node_id(call.args[0]);
  return print_changed(
    context, context.client().call("UncordonNode", &stub::UncordonNode, request, node_hints()),
    "uncordoned");
}

int run_nodes_drain(command_context& context, const invocation& call) {
  v1::DrainNodeRequest request;
  request.set_node_id(call.args[0]);
  if (call.has("--deadline-ms"))
    request.set_deadline_ms(parse_uint32_flag(call, "--deadline-ms"));
  auto reply = context.client().call("DrainNode", &stub::DrainNode, request, node_hints());
  std::string verb = "draining";
  if (reply.node().drain_deadline_unix_ms() != 0)
    verb += std::string(" until ") + human_time(reply.node().drain_deadline_unix_ms());
  return print_changed(context, reply, verb);
}

} // namespace chroom::ctl
