#pragma once

// Every atom of the orchestrator, in one place (CAF 0.17 atom_constant idiom; atom
// names are at most 10 characters).

#include <caf/atom.hpp>

namespace chroom {

// gRPC calls between a gateway (one per connection) and the actors handling them.
// See transport/call_protocol.hpp for the message shapes and their order.
using call_open_atom = caf::atom_constant<caf::atom("c_open")>;
using call_unary_atom = caf::atom_constant<caf::atom("c_unary")>;
using call_head_atom = caf::atom_constant<caf::atom("c_head")>;
using call_data_atom = caf::atom_constant<caf::atom("c_data")>;
using call_close_atom = caf::atom_constant<caf::atom("c_close")>;
using call_end_atom = caf::atom_constant<caf::atom("c_end")>;
using call_reply_atom = caf::atom_constant<caf::atom("c_reply")>;
using call_cancel_atom = caf::atom_constant<caf::atom("c_cancel")>;
using call_credit_atom = caf::atom_constant<caf::atom("c_credit")>;
using call_ack_atom = caf::atom_constant<caf::atom("c_ack")>;

// Gateway and listener housekeeping.
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using handler_down_atom = caf::atom_constant<caf::atom("h_down")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using close_atom = caf::atom_constant<caf::atom("close")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using stopped_atom = caf::atom_constant<caf::atom("stopped")>;
using get_atom = caf::atom_constant<caf::atom("get")>;
using set_atom = caf::atom_constant<caf::atom("set")>;
using watch_atom = caf::atom_constant<caf::atom("watch")>;

// Media nodes and the registry (actors/media_node.hpp, actors/registry.hpp).
using node_register_atom = caf::atom_constant<caf::atom("n_reg")>;
using node_stats_atom = caf::atom_constant<caf::atom("n_stats")>;
using node_closed_atom = caf::atom_constant<caf::atom("n_closed")>;
using node_event_atom = caf::atom_constant<caf::atom("n_event")>;
using node_end_atom = caf::atom_constant<caf::atom("n_end")>;
using node_command_atom = caf::atom_constant<caf::atom("n_cmd")>;
using node_report_atom = caf::atom_constant<caf::atom("n_report")>;
using list_nodes_atom = caf::atom_constant<caf::atom("n_list")>;
using get_node_atom = caf::atom_constant<caf::atom("n_get")>;
using drain_atom = caf::atom_constant<caf::atom("n_drain")>;
using cordon_atom = caf::atom_constant<caf::atom("n_cordon")>;
using uncordon_atom = caf::atom_constant<caf::atom("n_uncordon")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
using fleet_summary_atom = caf::atom_constant<caf::atom("n_summary")>;
using timeout_atom = caf::atom_constant<caf::atom("timeout")>;

// Allocation (actors/allocation_messages.hpp, actors/room.hpp, actors/client_session.hpp).
using alloc_place_atom = caf::atom_constant<caf::atom("a_place")>;
using alloc_confirm_atom = caf::atom_constant<caf::atom("a_confirm")>;
using alloc_release_atom = caf::atom_constant<caf::atom("a_release")>;
using candidates_atom = caf::atom_constant<caf::atom("a_cands")>;
using room_closed_atom = caf::atom_constant<caf::atom("r_closed")>;
using allocate_atom = caf::atom_constant<caf::atom("allocate")>;
using keep_alive_atom = caf::atom_constant<caf::atom("keepalive")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using get_room_atom = caf::atom_constant<caf::atom("r_get")>;
using watch_room_atom = caf::atom_constant<caf::atom("r_watch")>;
using room_update_atom = caf::atom_constant<caf::atom("r_update")>;
using room_idle_atom = caf::atom_constant<caf::atom("r_idle")>;
using room_for_atom = caf::atom_constant<caf::atom("r_for")>;
using node_lost_atom = caf::atom_constant<caf::atom("n_lost")>;
using lease_open_atom = caf::atom_constant<caf::atom("l_open")>;
using lease_end_atom = caf::atom_constant<caf::atom("l_end")>;
using moved_atom = caf::atom_constant<caf::atom("moved")>;
using admitted_atom = caf::atom_constant<caf::atom("admitted")>;
using migrate_atom = caf::atom_constant<caf::atom("r_migrate")>;
using list_rooms_atom = caf::atom_constant<caf::atom("r_list")>;
using local_rooms_atom = caf::atom_constant<caf::atom("r_local")>;
using admin_room_atom = caf::atom_constant<caf::atom("r_admin")>;
using service_stats_atom = caf::atom_constant<caf::atom("a_stats")>;

// The cluster (actors/cluster_membership.hpp, peer-to-peer messages carry serialized
// chroom.cluster.v1 protobuf).
using hello_atom = caf::atom_constant<caf::atom("p_hello")>;
using heartbeat_atom = caf::atom_constant<caf::atom("p_beat")>;
using leave_atom = caf::atom_constant<caf::atom("p_leave")>;
using probe_atom = caf::atom_constant<caf::atom("p_probe")>;
using cluster_view_atom = caf::atom_constant<caf::atom("p_view")>;
using get_cluster_atom = caf::atom_constant<caf::atom("p_get")>;
using node_updates_atom = caf::atom_constant<caf::atom("p_nodes")>;

// Applications (actors/app_directory.hpp).
using app_catalog_atom = caf::atom_constant<caf::atom("app_cat")>;
using app_records_atom = caf::atom_constant<caf::atom("p_apps")>;
using app_counts_atom = caf::atom_constant<caf::atom("p_counts")>;
using app_definition_atom = caf::atom_constant<caf::atom("app_def")>;
using hook_atom = caf::atom_constant<caf::atom("hook")>;
using hook_points_atom = caf::atom_constant<caf::atom("hook_pts")>;
using app_event_atom = caf::atom_constant<caf::atom("app_event")>;
using audit_atom = caf::atom_constant<caf::atom("audit")>;
using peer_audit_atom = caf::atom_constant<caf::atom("p_audit")>;
using usage_atom = caf::atom_constant<caf::atom("usage")>;
using peer_usage_atom = caf::atom_constant<caf::atom("p_usage")>;
using usage_flush_atom = caf::atom_constant<caf::atom("u_flush")>;
using flush_updates_atom = caf::atom_constant<caf::atom("p_flush")>;
using replicate_atom = caf::atom_constant<caf::atom("p_replica")>;
using absorb_atom = caf::atom_constant<caf::atom("p_absorb")>;
using handoff_atom = caf::atom_constant<caf::atom("p_handoff")>;
using room_opened_atom = caf::atom_constant<caf::atom("r_opened")>;
using join_wait_atom = caf::atom_constant<caf::atom("p_joinwait")>;
using snapshot_atom = caf::atom_constant<caf::atom("p_snap")>;

} // namespace chroom
