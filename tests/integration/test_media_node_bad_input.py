"""Bad input on the Media Node RPC: each case gets a clear error, the offending stream ends
with the right gRPC status, and nothing else is disturbed: a healthy node stays registered
and ACTIVE on its first stream through every test, and the peer keeps serving.

The peer lists its nodes (no secret_key), so an unlisted node is unknown."""
from __future__ import annotations

import math
import time

import grpc
import pytest

import media_node_client as mnc

HEALTHY = "healthy-1"
STATS_MS, SUSPECT_MS, DEAD_MS, COMMAND_MS, REGISTER_MS = 200, 600, 1200, 300, 1000
NODE_IDS = [HEALTHY] + [f"node-{i:02d}" for i in range(1, 21)]


def secret_of(node_id: str) -> str:
    return f"secret-of-{node_id}-0123456789"


def config(**media_nodes) -> dict:
    base = {
        "credentials": [{"node_id": n, "secret": secret_of(n)} for n in NODE_IDS],
        "stats_interval_ms": STATS_MS,
        "suspect_after_ms": SUSPECT_MS,
        "dead_after_ms": DEAD_MS,
        "command_timeout_ms": COMMAND_MS,
        "register_timeout_ms": REGISTER_MS,
    }
    base.update(media_nodes)
    return {"peer_id": "bad-input-peer", "media_nodes": base}


@pytest.fixture
def peer(start_node_peer):
    """A peer with one healthy node heartbeating on it (peer.healthy)."""
    p = start_node_peer(config())
    p.healthy = p.active_node(HEALTHY)
    return p


def ended_with(node, code: grpc.StatusCode, *fragments: str, timeout: float = 5.0):
    end = node.wait_end(timeout)
    assert end is not None, f"{node.node_id}: stream still open after {timeout} s"
    assert end.code == code, f"{node.node_id}: expected {code.name}, got {end}"
    for fragment in fragments:
        assert fragment in end.details, f"{fragment!r} not in {end.details!r}"
    return end


def refused_register(node, code: grpc.StatusCode, *fragments: str, **overrides):
    with pytest.raises(mnc.RegisterRefused) as refused:
        node.register(**overrides)
    assert refused.value.end is not None, str(refused.value)
    return ended_with(node, code, *fragments)


def assert_unknown(peer, node_id: str) -> None:
    """A refused registration leaves no trace in the node table."""
    with pytest.raises(grpc.RpcError) as err:
        peer.get(node_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value


# ------------------------------------------------------------------ order

def test_stats_before_register_is_invalid_argument(peer, node_pb):
    node = peer.node("node-01")
    node.send_stats()
    ended_with(node, grpc.StatusCode.INVALID_ARGUMENT, "Register")
    assert_unknown(peer, "node-01")
    peer.assert_undisturbed(peer.healthy)


def test_second_register_is_invalid_argument(peer):
    node = peer.node("node-01")
    node.register()
    node.send_register()
    ended_with(node, grpc.StatusCode.INVALID_ARGUMENT, "Register", "twice")
    peer.assert_undisturbed(peer.healthy)


def test_empty_message_after_register_is_invalid_argument(peer, node_pb):
    node = peer.node("node-01")
    node.register()
    node.send(node_pb.NodeMessage())
    ended_with(node, grpc.StatusCode.INVALID_ARGUMENT, "empty")
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ who

def test_unknown_node_is_unauthenticated(peer):
    node = peer.node("stranger-1", credential="whatever-secret-0123456789")
    refused_register(node, grpc.StatusCode.UNAUTHENTICATED, "stranger-1")
    assert_unknown(peer, "stranger-1")
    peer.assert_undisturbed(peer.healthy)


def test_wrong_secret_is_unauthenticated(peer):
    wrong = "not-the-secret-0123456789"
    node = peer.node("node-01", credential=wrong)
    end = refused_register(node, grpc.StatusCode.UNAUTHENTICATED, "node-01")
    assert wrong not in end.details and secret_of("node-01") not in end.details, end
    assert_unknown(peer, "node-01")
    # Someone else's (valid) secret is just as wrong.
    other = peer.node("node-02", credential=secret_of("node-03"))
    refused_register(other, grpc.StatusCode.UNAUTHENTICATED, "node-02")
    # Nor can anyone take over the healthy node's id without its secret.
    thief = peer.node(HEALTHY, credential=secret_of("node-04"))
    refused_register(thief, grpc.StatusCode.UNAUTHENTICATED)
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ protocol version

def test_other_major_version_is_failed_precondition(peer):
    node = peer.node("node-01", protocol_version="2.0")
    refused_register(node, grpc.StatusCode.FAILED_PRECONDITION, "2.0", "1.1")
    assert_unknown(peer, "node-01")
    peer.assert_undisturbed(peer.healthy)


@pytest.mark.parametrize("version", ["banana", "", "1", "1.x", "-1.0"])
def test_malformed_version_is_invalid_argument(peer, version):
    node = peer.node("node-01", protocol_version=version)
    refused_register(node, grpc.StatusCode.INVALID_ARGUMENT, "protocol_version")
    assert_unknown(peer, "node-01")
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ absurd values

ABSURD_REGISTER = {
    "max_participants_0": ({"capacity": {"max_participants": 0, "upload_mbps": 100.0,
                                         "download_mbps": 100.0, "cpu_cores": 4}},
                           "capacity.max_participants"),
    "latitude_123": ({"location": {"latitude": 123.0, "longitude": 10.0, "country": "DE"}},
                     "location.latitude"),
    "latitude_nan": ({"location": {"latitude": math.nan, "longitude": 10.0}},
                     "location.latitude"),
    "longitude_-200": ({"location": {"latitude": 10.0, "longitude": -200.0, "country": "DE"}},
                       "location.longitude"),
    "port_70000": ({"endpoints": [{"host": "192.0.2.1", "port": 70000}]}, "port"),
    "port_0": ({"endpoints": [{"host": "192.0.2.1", "port": 0}]}, "port"),
    "country_Germany": ({"location": {"latitude": 52.5, "longitude": 13.4,
                                      "country": "Germany"}}, "location.country"),
    "no_endpoints": ({"endpoints": []}, "endpoints"),
}


@pytest.mark.parametrize("case", list(ABSURD_REGISTER))
def test_absurd_register_values_are_invalid_argument(peer, case):
    fields, named = ABSURD_REGISTER[case]
    node = peer.node("node-01", **fields)
    end = refused_register(node, grpc.StatusCode.INVALID_ARGUMENT, named)
    assert end.details.startswith("Register"), end
    assert_unknown(peer, "node-01")
    peer.assert_undisturbed(peer.healthy)


def test_bad_node_id_is_invalid_argument(peer):
    node = peer.node("Bad Node!", credential="whatever-secret-0123456789")
    refused_register(node, grpc.StatusCode.INVALID_ARGUMENT, "node_id")
    peer.assert_undisturbed(peer.healthy)


@pytest.mark.parametrize("field,value", [("cpu_load", math.nan), ("cpu_load", 1.5),
                                         ("packet_loss", 7.0), ("bandwidth_in_mbps", -1.0),
                                         ("jitter_ms", math.inf)])
def test_absurd_stats_values_are_invalid_argument(peer, field, value):
    node = peer.node("node-01")
    node.register()
    node.send_stats(**{field: value})
    ended_with(node, grpc.StatusCode.INVALID_ARGUMENT, "Stats", field)
    # The bad Stats were not taken: the node never reported.
    assert not peer.get("node-01").load.HasField("last_stats")
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ size, bytes, silence

def test_ten_megabyte_message_is_resource_exhausted(peer):
    channel = peer.server.new_channel([("grpc.max_send_message_length", -1),
                                       ("grpc.use_local_subchannel_pool", 1)])
    node = peer.node("node-01", channel=channel, software_version="x" * (10 * 1024 * 1024))
    refused_register(node, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert_unknown(peer, "node-01")
    peer.assert_undisturbed(peer.healthy)


def test_undecodable_bytes_are_invalid_argument(peer):
    node = peer.node("node-01")
    node.send(b"\xff\xff\xff\xff\xff\xff")        # not a NodeMessage (a generic bytes call)
    ended_with(node, grpc.StatusCode.INVALID_ARGUMENT, "NodeMessage")
    # ... and after a good Register too.
    later = peer.node("node-02")
    later.register()
    later.send(b"\x0a\xff\xff\xff\xff\x0f")        # field 1, a length past the end
    ended_with(later, grpc.StatusCode.INVALID_ARGUMENT, "NodeMessage")
    peer.assert_undisturbed(peer.healthy)


def test_silent_stream_ends_with_deadline_exceeded(peer):
    node = peer.node("node-01")
    opened = time.monotonic()
    node.open()                                    # HEADERS, no message
    end = ended_with(node, grpc.StatusCode.DEADLINE_EXCEEDED, "Register",
                     timeout=(REGISTER_MS + 3000) / 1000)
    elapsed_ms = (end.at - opened) * 1000
    assert REGISTER_MS - 50 <= elapsed_ms <= REGISTER_MS + 700, f"ended after {elapsed_ms:.0f} ms"
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ commands

def test_ack_for_unknown_command_is_not_fatal(peer, admin_pb):
    node = peer.active_node("node-01")
    node.ack(424242)
    node.nack(777, "REASON_FULL", "no such command either")
    time.sleep(0.4)
    assert not node.ended, node.end
    assert peer.state("node-01") == admin_pb.NODE_STATE_ACTIVE, peer.state_name("node-01")
    assert peer.get("node-01").registrations == 1
    # Commands still work on that stream.
    reply = peer.admin.DrainNode(admin_pb.DrainNodeRequest(node_id="node-01"), timeout=5)
    assert reply.node.state in (admin_pb.NODE_STATE_DRAINING, admin_pb.NODE_STATE_GONE)
    command = node.next_command(3)
    assert command is not None and command.HasField("drain"), (node.received, node.end)
    assert peer.wait_state("node-01", admin_pb.NODE_STATE_GONE, 3), peer.state_name("node-01")
    ended_with(node, grpc.StatusCode.OK)
    peer.assert_undisturbed(peer.healthy)


# ------------------------------------------------------------------ limits

def test_max_nodes_refuses_the_third_distinct_node(start_node_peer, admin_pb):
    peer = start_node_peer(config(max_nodes=2))
    healthy = peer.active_node(HEALTHY)
    second = peer.active_node("node-01")
    third = peer.node("node-02")
    refused_register(third, grpc.StatusCode.RESOURCE_EXHAUSTED, "2")
    assert_unknown(peer, "node-02")
    assert sorted(n.node_id for n in peer.list().nodes) == [HEALTHY, "node-01"]
    # A node already known may still come back on a new stream (it replaces its old one).
    again = peer.node("node-01", channel=peer.new_channel())
    again.register()
    ended_with(second, grpc.StatusCode.ABORTED, "replaced")
    peer.assert_undisturbed(healthy)
