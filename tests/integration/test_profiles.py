"""The shipped app profiles (apps/profiles/*.yaml) end to end: one peer with a simulated
fleet of media nodes around the world (chroom-node-sim), each profile's app created from
its file by its example backend (apps/profiles/examples), stock grpcio clients."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import grpc
import pytest

import chroom_harness as h
import cluster_client as cc

sys.path.insert(0, str(Path(h.SOURCE_DIR) / "apps" / "profiles" / "examples"))
import chroom_client  # noqa: E402
import gaming  # noqa: E402
import telemedicine  # noqa: E402
import virtual_events  # noqa: E402

FLEET = 240


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cluster = cc.make_cluster(tmp_path_factory.mktemp("profiles"), peers=1, nodes=FLEET,
                              fleet_args=["--log-level", "warn", "--seed", "7"])
    with cluster:
        orch = chroom_client.Orchestrator(f"127.0.0.1:{cluster.grpc_port(0)}")
        admin_pb = orch.admin_pb

        def all_active():
            nodes = orch.admin.ListNodes(admin_pb.ListNodesRequest(page_size=5000), timeout=10)
            return [n for n in nodes.nodes if n.state == 2] if len(
                [n for n in nodes.nodes if n.state == 2]) == FLEET else None

        nodes = h.wait_until(all_active, timeout=30)
        assert nodes, "the simulated fleet did not become active"
        yield cluster, orch, {n.node_id: n for n in nodes}
        orch.close()


def node_of(world, node_id):
    return world[2][node_id]


def test_telemedicine(world):
    cluster, orch, nodes = world
    app = chroom_client.profile("telemedicine", "tele")
    allowed = set(app["allowed_countries"])
    eligible = [n for n in nodes.values()
                if n.location.country in allowed and n.features.e2ee]
    assert len(eligible) >= 2, "the fleet (seed 7) has too few e2ee nodes in the profile's countries"
    key = orch.create_app(app)

    # Patients from anywhere: the node is always an e2ee node in an allowed country.
    joined = telemedicine.consultation(orch, key, "tele", "visit-1", "berlin",
                                       ["new-york", "tokyo", "sao-paulo"])
    for client, reply in joined.items():
        node = nodes[reply.node.node_id]
        assert node.location.country in allowed and node.features.e2ee, (client, node)
        claims = chroom_client.claims_of(reply.join_token)
        assert claims["rec"] == 0
        assert claims["pub"] == ("audio video screen" if client == "clinician" else "audio video")
    # Four is the most a consultation holds.
    with pytest.raises(grpc.RpcError) as full:
        telemedicine.join(orch, key, "tele", "visit-1", "relative", "participant", "paris")
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # The audit log has every admission, in order, with times.
    events = telemedicine.audit_log(orch, "tele", "visit-1")
    assert [e.client_id for e in events] == ["clinician", "patient-0", "patient-1", "patient-2"]
    assert all(e.type == "participant.joined" and e.occurred_unix_ms > 0 for e in events)
    assert events[0].role == "host"
    orch.alloc.Release(orch.pb.ReleaseRequest(lease_id=joined["patient-2"].lease_id),
                       metadata=chroom_client.bearer(key, "tele", "visit-1"), timeout=10)
    events = telemedicine.audit_log(orch, "tele", "visit-1")
    assert events[-1].type == "participant.left" and events[-1].client_id == "patient-2"
    assert events[-1].reason == "released"

    # Residency holds when the only nodes with room are elsewhere: every eligible node
    # down, the next consultation is refused, not placed outside.
    for node in eligible:
        cluster.fleet_command(f"crash {node.node_id}")
    try:
        def refused():
            try:
                telemedicine.join(orch, key, "tele", "visit-2", "doctor-2", "host", "berlin")
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
        assert h.wait_until(refused, timeout=10, interval=0.3), \
            "a consultation was placed while no e2ee node in the allowed countries was up"
    finally:
        for node in eligible:
            cluster.fleet_command(f"restart {node.node_id}")


def tree_of(room):
    links = {tuple(sorted((n.node_id, r))) for n in room.nodes for r in n.relay_node_ids}
    return {n.node_id for n in room.nodes}, links


def test_virtual_events(world):
    cluster, orch, nodes = world
    key = orch.create_app(chroom_client.profile("virtual_events", "ev"))
    viewers = ["tokyo", "new-york", "sao-paulo", "sydney", "mumbai", "madrid"]
    joined, room = virtual_events.run_event(orch, key, "ev", "keynote", "berlin", viewers)
    claims = {client: chroom_client.claims_of(reply.join_token) for client, reply in joined.items()}
    # The hook made the first presenter host; viewers who asked for no role watch.
    assert claims["presenter-0"]["role"] == "host"
    assert claims["presenter-1"]["role"] == "presenter"
    stage = joined["presenter-0"].node.node_id
    assert joined["presenter-1"].node.node_id == stage
    for n in range(len(viewers)):
        assert claims[f"viewer-{n}"]["role"] == "viewer"
        assert claims[f"viewer-{n}"]["pub"] == ""
    assert claims[f"viewer-{len(viewers) - 1}"]["tier"] == "audio_only"
    assert "tier" not in claims["viewer-0"]
    # Viewers far apart sit on edge nodes near them, not on the stage's node.
    far = [joined[f"viewer-{n}"].node for n in range(4)]
    assert len({choice.node_id for choice in far} | {stage}) == 5
    for choice in far:
        assert choice.estimated_rtt_ms < 80, choice
    # ... fed through a relay tree that holds the stage, at most 3 hops deep.
    parts, links = tree_of(room)
    assert stage in parts and len(links) == len(parts) - 1
    depth = {stage: 0}
    frontier = [stage]
    while frontier:
        nxt = []
        for node in frontier:
            for a, b in links:
                other = b if a == node else a if b == node else None
                if other is not None and other not in depth:
                    depth[other] = depth[node] + 1
                    nxt.append(other)
        frontier = nxt
    assert set(depth) == parts, "the relay links do not connect every part"
    assert max(depth.values()) <= 3


def test_gaming(world):
    cluster, orch, nodes = world
    key = orch.create_app(chroom_client.profile("gaming", "game"))
    match = gaming.matchmake(orch, key, "game", "match-1", ["berlin", "hamburg", "warsaw"])
    ids = {reply.node.node_id for reply in match.values()}
    assert len(ids) == 1, match                       # pinned to one node
    assert all(reply.node.estimated_rtt_ms <= 60 for reply in match.values())
    assert all(reply.room_nodes == 1 for reply in match.values())
    # A player too far for the budget on the match's node is refused, not relayed.
    far = None
    try:
        gaming.join(orch, key, "game", "match-1", "far-player", "tokyo")
    except grpc.RpcError as e:
        far = e
    assert isinstance(far, grpc.RpcError) and far.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "latency budget" in far.details(), far.details()

    # The match's node fails: the players are moved to another node within seconds.
    node_id = ids.pop()
    cluster.fleet_command(f"crash {node_id}")
    leases = [reply.lease_id for reply in match.values()]
    started = time.monotonic()

    def moved():
        answers = [orch.alloc.KeepAlive(orch.pb.KeepAliveRequest(lease_id=lease),
                                        metadata=chroom_client.bearer(key, "game", "match-1"),
                                        timeout=10) for lease in leases]
        places = {a.node.node_id for a in answers}
        return places if node_id not in places else None
    try:
        places = h.wait_until(moved, timeout=15, interval=0.2)
        assert places and len(places) == 1, "the match was not moved (to one node)"
        print(f"match moved off {node_id} to {places} in {time.monotonic() - started:.1f} s")
    finally:
        cluster.fleet_command(f"restart {node_id}")
