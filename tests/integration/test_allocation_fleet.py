"""Allocation at fleet scale: the real peer with a chroom-node-sim fleet (80 simulated SFUs
in the world's most populous cities, a stock grpc++ client per node), and clients from
random world cities.

Each placement is compared with a brute force over ListNodes using the orchestrator's own
distance model (allocation/geo.hpp, harness.fibre_rtt_ms): the chosen node must be within
a few milliseconds of the best node (balanced scoring adds up to ~7 ms of load and network
health; a shared room may keep a client on a room node up to affinity_slack_ms worse). The
simulator's own view of its nodes (`node ID`: rooms, participants, relays) must match what
the peer says it placed. Crashed and frozen nodes' rooms are placed again."""
from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict

import pytest

import chroom_harness as h
import media_node_client as mnc

SECRET_KEY = "allocation-fleet-key-0123456789"
NODES = 80
# Short enough that a crash plays out in a few seconds, long enough that a sanitizer build
# busy with a burst of Allocates does not judge healthy nodes suspect.
STATS_MS, SUSPECT_MS, DEAD_MS = 250, 1500, 2500
AFFINITY_SLACK_MS = 40
# Balanced scoring: 25 ms x load (here < 1%) + health (1000 x loss + 0.5 x jitter: the
# simulator's "good" nodes span ~1.5 to ~7 ms), so the best-scored node may be this much
# further than the nearest.
SCORE_SLACK_MS = 8.0


def config() -> dict:
    return {"media_nodes": {"secret_key": SECRET_KEY, "stats_interval_ms": STATS_MS,
                            "suspect_after_ms": SUSPECT_MS, "dead_after_ms": DEAD_MS,
                            "command_timeout_ms": 1000, "register_timeout_ms": 2000},
            "allocation": {"geoip_database": "none", "affinity_slack_ms": AFFINITY_SLACK_MS}}


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


@pytest.fixture(scope="module")
def world():
    """Client places: (name, latitude, longitude) of the simulator's cities."""
    with open(h.SOURCE_DIR / "tools" / "data" / "cities.csv", newline="") as f:
        return [(row["name"], float(row["lat"]), float(row["lon"])) for row in csv.DictReader(f)]


@pytest.fixture
def fleet(start_allocation_peer, tmp_path, admin_pb):
    """(NodePeer, NodeSim) with every simulated node ACTIVE."""
    peer = start_allocation_peer(config(), channels=1)
    sim = h.NodeSim(peer.server.target, NODES, SECRET_KEY, seed=11,
                    extra=["--mean-session-s", "1000000"],      # nobody leaves by itself
                    stderr_path=tmp_path / "node-sim.stderr.log")
    try:
        assert h.wait_until(lambda: active_count(peer, admin_pb) == NODES, 20), \
            f"{active_count(peer, admin_pb)} of {NODES} ACTIVE; sim: {sim.status()}"
        yield peer, sim
    finally:
        assert sim.quit() == 0


def active_count(peer, admin_pb) -> int:
    return sum(1 for n in peer.list(page_size=5000).nodes if n.state == admin_pb.NODE_STATE_ACTIVE)


def active_nodes(peer, admin_pb) -> dict:
    return {n.node_id: n for n in peer.list(page_size=5000).nodes
            if n.state == admin_pb.NODE_STATE_ACTIVE}


def best_rtt(point, nodes) -> tuple:
    """(best modelled RTT, node id) over `nodes` (NodeInfo by id)."""
    return min((h.fibre_rtt_ms(point, (n.location.latitude, n.location.longitude)), node_id)
               for node_id, n in nodes.items())


def location(pb, point):
    return pb.ClientLocation(latitude=point[0], longitude=point[1], has_point=True)


def allocate(stub, pb, room, client, point):
    return stub.Allocate(pb.AllocateRequest(app_id="default", room_id=room, client_id=client,
                                            location=location(pb, point)), timeout=10)


def room_parts(stub, pb, room) -> dict:
    state = stub.GetRoom(pb.GetRoomRequest(app_id="default", room_id=room), timeout=5).room
    return {n.node_id: (n.participants, sorted(n.relay_node_ids)) for n in state.nodes}


def sim_rooms(sim, node_id) -> dict:
    """The simulator's rooms on one node: {room id: (participants, sorted relays)}."""
    view = sim.node(node_id)
    return {r["room_id"]: (r["participants"], sorted(r.get("relays", []))) for r in view["rooms"]}


def test_fleet_placements_are_near_the_best_node(fleet, pb, admin_pb, world):
    peer, sim = fleet
    nodes = active_nodes(peer, admin_pb)
    stub = peer.server.allocation()
    rng = random.Random(2024)
    placed = []                                  # (room, client, point, reply)

    # 240 clients alone in their rooms: pure proximity.
    for i in range(240):
        name, lat, lon = rng.choice(world)
        point = (lat + rng.uniform(-0.3, 0.3), lon + rng.uniform(-0.3, 0.3))
        reply = allocate(stub, pb, f"solo-{i}", f"c{i}", point)
        placed.append((f"solo-{i}", f"c{i}", point, reply))
        best, best_id = best_rtt(point, nodes)
        chosen = nodes[reply.node.node_id]
        model = h.fibre_rtt_ms(point, (chosen.location.latitude, chosen.location.longitude))
        assert reply.node.rtt_source == pb.RTT_SOURCE_DISTANCE
        assert reply.node.estimated_rtt_ms == pytest.approx(model, abs=0.01), (name, reply.node)
        assert model <= best + SCORE_SLACK_MS, (
            f"client near {name} {point}: {reply.node.node_id} at {model:.1f} ms, "
            f"best {best_id} at {best:.1f} ms")
        assert len(reply.alternates) == 2
        for alternate in reply.alternates:
            assert alternate.node_id != reply.node.node_id and alternate.node_id in nodes

    # 10 rooms of 6 clients from anywhere: affinity or a cascade part, never a bad choice.
    for r in range(10):
        for k in range(6):
            name, lat, lon = rng.choice(world)
            point = (lat, lon)
            room, client = f"shared-{r}", f"s{r}-{k}"
            reply = allocate(stub, pb, room, client, point)
            placed.append((room, client, point, reply))
            best, best_id = best_rtt(point, nodes)
            assert reply.node.estimated_rtt_ms <= best + AFFINITY_SLACK_MS + SCORE_SLACK_MS, (
                f"{client} near {name}: {reply.node.node_id} at "
                f"{reply.node.estimated_rtt_ms:.1f} ms, best {best_id} at {best:.1f} ms")
        parts = room_parts(stub, pb, f"shared-{r}")
        links = {tuple(sorted((a, b))) for a, (_, peers) in parts.items() for b in peers}
        assert len(links) == len(parts) - 1, (f"shared-{r}", parts)
        assert sum(n for n, _ in parts.values()) == 6

    # Overall quality: the mean excess over the best node is small.
    excess = [reply.node.estimated_rtt_ms - best_rtt(point, nodes)[0]
              for room, _, point, reply in placed if room.startswith("solo-")]
    assert sum(excess) / len(excess) < 1.5, sorted(excess)[-10:]

    # The simulator hosts exactly what the peer placed.
    expected = defaultdict(Counter)              # node -> room -> participants
    for room, _, _, reply in placed:
        expected[reply.node.node_id][f"default/{room}"] += 1
    assert h.wait_until(lambda: sim.status()["participants"] == len(placed), 5), sim.status()
    for node_id in sorted(expected)[:25]:
        rooms = sim_rooms(sim, node_id)
        assert {room: n for room, (n, _) in rooms.items()} == dict(expected[node_id]), node_id
    peer.server.assert_serving()


def test_crashed_and_frozen_nodes_rooms_are_placed_again(fleet, pb, admin_pb, world):
    peer, sim = fleet
    stub = peer.server.allocation()
    rng = random.Random(77)
    # Clients around a few big cities, two per room, so that nodes there host rooms.
    hubs = world[:40]
    leases = {}                                  # (room, client) -> (point, reply)
    for i in range(120):
        name, lat, lon = hubs[i % len(hubs)]
        for k in range(2):
            point = (lat + rng.uniform(-0.2, 0.2), lon + rng.uniform(-0.2, 0.2))
            leases[(f"room-{i}", f"c{i}-{k}")] = (point, allocate(stub, pb, f"room-{i}",
                                                                  f"c{i}-{k}", point))
    hosts = Counter(reply.node.node_id for _, reply in leases.values())
    (crashed, _), (frozen, _) = hosts.most_common(2)
    affected = {room for (room, _), (_, reply) in leases.items()
                if reply.node.node_id in (crashed, frozen)}
    assert len(affected) >= 4, hosts
    assert h.wait_until(lambda: sim.status()["participants"] == len(leases), 5)

    assert sim.command(f"crash {crashed}") == f"ok crash {crashed}"
    assert sim.command(f"freeze {frozen} 30").startswith(f"ok freeze {frozen}")
    for node_id in (crashed, frozen):
        assert peer.wait_state(node_id, admin_pb.NODE_STATE_DEAD, DEAD_MS / 1000 + 4), \
            peer.state_name(node_id)

    def replaced():
        for room in affected:
            parts = room_parts(stub, pb, room)
            if crashed in parts or frozen in parts or sum(n for n, _ in parts.values()) != 2:
                return False
        return True
    assert h.wait_until(replaced, 5), {room: room_parts(stub, pb, room) for room in affected}

    live = active_nodes(peer, admin_pb)
    assert crashed not in live and frozen not in live and len(live) == NODES - 2
    for (room, client), (point, reply) in leases.items():
        kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=reply.lease_id), timeout=5)
        if reply.node.node_id in (crashed, frozen):
            assert kept.moved and kept.node.node_id in live, (room, client, kept.node)
            # Placed again near the client: the best live node, or a room node nearly as good.
            best, best_id = best_rtt(point, live)
            assert kept.node.estimated_rtt_ms <= best + AFFINITY_SLACK_MS + SCORE_SLACK_MS, \
                (room, client, kept.node, best_id, best)
            claims = h.verify_join_token(
                kept.join_token, mnc.derive_secret(SECRET_KEY, kept.node.node_id),
                kept.node.node_id)
            assert (claims["room"], claims["sub"]) == (room, client)
        else:
            assert not kept.moved and kept.node.node_id == reply.node.node_id, (room, client)
    # The new hosts have the moved participants (the simulator agrees with GetRoom).
    for room in sorted(affected)[:10]:
        for node_id, (count, relays) in room_parts(stub, pb, room).items():
            assert h.wait_until(lambda: sim_rooms(sim, node_id).get(f"default/{room}")
                                == (count, relays), 3), (room, node_id, sim_rooms(sim, node_id))
    assert sim.command(f"thaw {frozen}").startswith("ok thaw")
    peer.server.assert_serving()


def test_parallel_allocates_into_one_worldwide_room(fleet, pb, admin_pb, world):
    peer, sim = fleet
    nodes = active_nodes(peer, admin_pb)
    channels = [peer.new_channel() for _ in range(3)]
    stubs = [peer.server.allocation(ch) for ch in channels]
    rng = random.Random(5)
    points = [rng.choice(world)[1:] for _ in range(200)]
    futures = [stubs[i % 3].Allocate.future(pb.AllocateRequest(
        app_id="default", room_id="world", client_id=f"w{i:03d}", location=location(pb, p)),
        timeout=30) for i, p in enumerate(points)]
    replies = [f.result() for f in futures]

    per_node = Counter(r.node.node_id for r in replies)
    parts = room_parts(stubs[0], pb, "world")
    assert {n: c for n, (c, _) in parts.items()} == dict(per_node)
    links = {tuple(sorted((a, b))) for a, (_, peers) in parts.items() for b in peers}
    assert len(links) == len(parts) - 1 and len(parts) >= 5, parts
    for point, reply in zip(points, replies):
        best, _ = best_rtt(point, nodes)
        assert reply.node.estimated_rtt_ms <= best + AFFINITY_SLACK_MS + SCORE_SLACK_MS, \
            (point, reply.node)
    # Every part's node hosts the room with its participants and relays, as the peer says.
    for node_id, (count, relays) in parts.items():
        assert h.wait_until(lambda: sim_rooms(sim, node_id).get("default/world")
                            == (count, relays), 5), (node_id, count, relays,
                                                     sim_rooms(sim, node_id))
