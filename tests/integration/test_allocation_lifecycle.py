"""AllocationService over time: room affinity and cascades growing and shrinking, nodes
that die, freeze, drain or refuse participants (their participants move: KeepAlive and
WatchRoom tell the clients), leases that are renewed, released or expire, and the peer
stopping with rooms. Real peer, media nodes from media_node_client.py tracked by
harness.HostedRooms, stock grpcio clients; the shared world is harness.AllocationWorld.

Timers are short (stats 200 ms, suspect 600 ms, dead 1200 ms, commands 300 ms) so node
failures play out in about a second."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

import chroom_harness as h

W = h.AllocationWorld
SECRET_KEY, LISTED_ID, LISTED_SECRET = W.SECRET_KEY, W.LISTED_ID, W.LISTED_SECRET
STATS_MS, SUSPECT_MS, DEAD_MS = W.STATS_MS, W.SUSPECT_MS, W.DEAD_MS
CITY, NODE, ENDPOINT_PORT = W.CITY, W.NODE, W.ENDPOINT_PORT
config, node_kw, start_nodes, where, allocate = (W.config, W.node_kw, W.start_nodes, W.where,
                                                 W.allocate)
rpc_error, rtt, nearest, get_room = W.rpc_error, W.rtt, W.nearest, W.get_room
parts, secret, node_room = W.parts, W.secret, W.node_room


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


# ------------------------------------------------------------------ affinity and cascades

def test_room_affinity_cascade_and_shrink(start_allocation_peer, pb):
    # A wide affinity slack (the default is 5 ms) so that a Lyon client stays on Berlin.
    peer = start_allocation_peer(config(allocation={"affinity_slack_ms": 40}))
    nodes = start_nodes(peer, ["ber", "par", "nyc", "tyo"])
    stub = peer.server.allocation()
    room = node_room("cascade")

    first = allocate(stub, pb, "cascade", "hamburg-1", "hamburg")
    assert first.node.node_id == "ber" and first.room_nodes == 1
    # Lyon is nearer Paris, but Berlin (the room's node) is within the 40 ms slack.
    assert rtt("lyon", "par") < rtt("lyon", "ber") < rtt("lyon", "par") + 40
    second = allocate(stub, pb, "cascade", "lyon-1", "lyon")
    assert second.node.node_id == "ber" and second.room_nodes == 1
    assert second.node.estimated_rtt_ms == pytest.approx(rtt("lyon", "ber"), abs=0.01)
    assert [p.node_id for p in nodes["par"].commands_of("prepare_room")] == []

    # Boston is ~95 ms from Berlin: the room extends to New York, linked to Berlin.
    third = allocate(stub, pb, "cascade", "boston-1", "boston")
    assert third.node.node_id == "nyc" and third.room_nodes == 2
    assert h.wait_until(lambda: nodes["ber"].relay_peers(room) == {"nyc"}
                        and nodes["nyc"].relay_peers(room) == {"ber"}, 3)
    (attach_at_ber,) = nodes["ber"].commands_of("attach_relay")
    (attach_at_nyc,) = nodes["nyc"].commands_of("attach_relay")
    assert attach_at_ber.peer_endpoint.port == ENDPOINT_PORT["nyc"]
    assert attach_at_nyc.peer_endpoint.port == ENDPOINT_PORT["ber"]
    assert [p.room_id for p in nodes["nyc"].commands_of("prepare_room")] == [room]
    assert h.wait_until(lambda: nodes["nyc"].participants(room) == {"boston-1"}, 3)

    # Osaka: Tokyo, linked to the nearest room node (Berlin, not New York).
    assert h.fibre_rtt_ms(CITY["tokyo"], CITY["berlin"]) < h.fibre_rtt_ms(CITY["tokyo"],
                                                                          CITY["new-york"])
    fourth = allocate(stub, pb, "cascade", "osaka-1", "osaka")
    assert fourth.node.node_id == "tyo" and fourth.room_nodes == 3
    state = get_room(stub, pb, "cascade")
    assert [n.node_id for n in state.nodes] == ["ber", "nyc", "tyo"]   # first is where it began
    assert parts(state) == {"ber": (2, ["nyc", "tyo"]), "nyc": (1, ["ber"]),
                            "tyo": (1, ["ber"])}
    assert state.participants == 4
    assert abs(state.created_unix_ms - time.time() * 1000) < 60000
    assert {m.client_id: m.node_id for m in state.members} == {
        "hamburg-1": "ber", "lyon-1": "ber", "boston-1": "nyc", "osaka-1": "tyo"}
    assert all(m.role == "participant" for m in state.members)
    assert h.wait_until(lambda: all(n.ready for n in get_room(stub, pb, "cascade").nodes)
                        and all(m.admitted for m in get_room(stub, pb, "cascade").members), 3)

    # Boston leaves: New York's part closes, Berlin detaches from it.
    stub.Release(pb.ReleaseRequest(lease_id=third.lease_id), timeout=5)
    assert h.wait_until(lambda: room in nodes["nyc"].closed, 3), nodes["nyc"].node.commands
    assert nodes["nyc"].removed == [(room, "boston-1", "released")]
    assert h.wait_until(lambda: nodes["ber"].relay_peers(room) == {"tyo"}, 3)
    assert (room, "nyc") in nodes["ber"].detached
    assert parts(get_room(stub, pb, "cascade")) == {"ber": (2, ["tyo"]), "tyo": (1, ["ber"])}

    # Osaka leaves too: the room is one node again.
    stub.Release(pb.ReleaseRequest(lease_id=fourth.lease_id), timeout=5)
    assert h.wait_until(lambda: room in nodes["tyo"].closed, 3)
    state = get_room(stub, pb, "cascade")
    assert parts(state) == {"ber": (2, [])} and state.participants == 2
    assert h.wait_until(lambda: nodes["ber"].relay_peers(room) == set(), 3)
    assert nodes["ber"].participants(room) == {"hamburg-1", "lyon-1"}
    assert room not in nodes["ber"].closed

    # A new far client starts a fresh cascade; allocating a holder again gives its lease.
    again = allocate(stub, pb, "cascade", "hamburg-1", "hamburg")
    assert again.lease_id == first.lease_id and again.node.node_id == "ber"
    assert any("already holds a lease" in w for w in again.warnings), again.warnings


# ------------------------------------------------------------------ node death, refusal and drain

def test_dead_node_participants_move_keepalive_and_watchroom(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par", "nyc"])
    stub = peer.server.allocation()
    room = node_room("death")
    a = allocate(stub, pb, "death", "alice", "hamburg", role="host")
    b = allocate(stub, pb, "death", "bob", "munich")
    assert a.node.node_id == b.node.node_id == "ber"
    kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=a.lease_id), timeout=5)
    assert not kept.moved and kept.node.node_id == "ber"

    with h.RoomWatcher(peer.server, "default", "death") as watcher:
        first = watcher.snapshot()[0]
        assert first.reason == "current state"
        assert parts(first.room) == {"ber": (2, [])}

        # Berlin's stream is lost: suspect at once, dead after dead_after_ms; its
        # participants are placed again, on Paris (the nearest left to both).
        lost_at = time.monotonic()
        nodes["ber"].node.cancel()
        assert peer.wait_state("ber", admin_pb.NODE_STATE_DEAD, DEAD_MS / 1000 + 3)
        update = watcher.wait_for(lambda u: len(u.moves) > 0, 5)
        assert update is not None, [u.reason for u in watcher.snapshot()]
        assert time.monotonic() - lost_at >= DEAD_MS / 1000 - 0.3
        assert "lost" in update.reason or "dead" in update.reason, update.reason
        assert sorted((m.client_id, m.from_node_id, m.to_node_id) for m in update.moves) == [
            ("alice", "ber", "par"), ("bob", "ber", "par")]
        assert parts(update.room) == {"par": (2, [])}

    state = get_room(stub, pb, "death")
    assert parts(state) == {"par": (2, [])}
    assert {m.client_id: m.node_id for m in state.members} == {"alice": "par", "bob": "par"}
    assert h.wait_until(lambda: nodes["par"].participants(room) == {"alice", "bob"}, 3)
    (admit_alice,) = [c for c in nodes["par"].commands_of("admit_participant")
                      if c.participant_id == "alice"]
    assert admit_alice.role == "host"

    # KeepAlive tells each client once, with a token for its new node.
    moved = stub.KeepAlive(pb.KeepAliveRequest(lease_id=a.lease_id), timeout=5)
    assert moved.moved and moved.node.node_id == "par"
    assert moved.node.endpoints[0].port == ENDPOINT_PORT["par"]
    claims = h.verify_join_token(moved.join_token, secret("par"), "par")
    assert (claims["sub"], claims["lease"], claims["role"]) == ("alice", a.lease_id, "host")
    assert moved.join_token_expires_unix_ms == claims["exp"] * 1000
    again = stub.KeepAlive(pb.KeepAliveRequest(lease_id=a.lease_id), timeout=5)
    assert not again.moved and again.node.node_id == "par"
    assert stub.KeepAlive(pb.KeepAliveRequest(lease_id=b.lease_id), timeout=5).moved


def test_frozen_node_is_dead_after_silence_and_its_room_moves(start_allocation_peer, pb,
                                                              admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "waw", "par"])
    stub = peer.server.allocation()
    reply = allocate(stub, pb, "frozen", "carol", "warsaw")
    assert reply.node.node_id == "waw"
    # No more Stats (the stream stays open): suspect, then dead; the peer ends the stream.
    nodes["waw"].node.stop_heartbeat()
    assert peer.wait_state("waw", admin_pb.NODE_STATE_DEAD, DEAD_MS / 1000 + 3)
    assert h.wait_until(lambda: parts(get_room(stub, pb, "frozen")) == {"ber": (1, [])}, 3)
    kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=reply.lease_id), timeout=5)
    assert kept.moved and kept.node.node_id == "ber"
    assert nodes["waw"].node.wait_end(3) is not None


def test_drained_node_room_moves_at_its_next_change(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par"])
    stub = peer.server.allocation()
    room = node_room("drain")
    a = allocate(stub, pb, "drain", "dave", "hamburg")
    assert a.node.node_id == "ber"
    assert h.wait_until(lambda: nodes["ber"].participants(room) == {"dave"}, 3)

    reply = peer.admin.DrainNode(admin_pb.DrainNodeRequest(node_id="ber"), timeout=5)
    assert reply.node.state == admin_pb.NODE_STATE_DRAINING      # it has a room
    assert h.wait_until(lambda: nodes["ber"].drained, 3)
    # Nothing moves until the room changes.
    time.sleep(0.3)
    assert parts(get_room(stub, pb, "drain")) == {"ber": (1, [])}

    with h.RoomWatcher(peer.server, "default", "drain") as watcher:
        b = allocate(stub, pb, "drain", "erin", "hamburg")
        assert b.node.node_id == "par"                       # draining takes no one new
        update = watcher.wait_for(lambda u: len(u.moves) > 0, 5)
        assert update is not None, [(u.reason, parts(u.room)) for u in watcher.snapshot()]
        assert [(m.client_id, m.from_node_id, m.to_node_id) for m in update.moves] == [
            ("dave", "ber", "par")]
        assert "drain" in update.reason, update.reason

    assert h.wait_until(lambda: parts(get_room(stub, pb, "drain")) == {"par": (2, [])}, 3)
    assert h.wait_until(lambda: room in nodes["ber"].closed, 3)
    assert (room, "dave", "moved") in nodes["ber"].removed
    assert h.wait_until(lambda: nodes["par"].participants(room) == {"dave", "erin"}, 3)
    kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=a.lease_id), timeout=5)
    assert kept.moved and kept.node.node_id == "par"
    # Its last room closed: the drained node is gone.
    assert peer.wait_state("ber", admin_pb.NODE_STATE_GONE, 3), peer.state_name("ber")


@pytest.mark.parametrize("answer", ["nack", "silence"])
def test_node_refusing_a_participant_gets_it_placed_elsewhere(start_allocation_peer, pb, answer):
    """A node that Nacks AdmitParticipant (REASON_FULL), or never answers it (after the
    command's retry), loses the participant to the next node; the client learns it from
    KeepAlive and WatchRoom."""
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["par"])
    refusing = peer.active_node("ber", auto_ack=False, **node_kw("ber"))
    stop = threading.Event()

    def answer_commands():      # acks everything but AdmitParticipant
        while not stop.is_set() and not refusing.ended:
            command = refusing.next_command(0.1)
            if command is None:
                continue
            if command.WhichOneof("command") != "admit_participant":
                refusing.ack(command.command_id)
            elif answer == "nack":
                refusing.nack(command.command_id, "REASON_FULL", "no seat left")

    thread = threading.Thread(target=answer_commands, name="refusing-node", daemon=True)
    thread.start()
    try:
        stub = peer.server.allocation()
        room = node_room("refused")
        with h.RoomWatcher(peer.server, "default", "refused") as watcher:
            reply = allocate(stub, pb, "refused", "rita", "hamburg")
            assert reply.node.node_id == "ber"        # answered before the node refused
            update = watcher.wait_for(lambda u: len(u.moves) > 0, 5)
            assert update is not None, [u.reason for u in watcher.snapshot()]
            assert [(m.client_id, m.from_node_id, m.to_node_id) for m in update.moves] == [
                ("rita", "ber", "par")]
        assert h.wait_until(lambda: parts(get_room(stub, pb, "refused")) == {"par": (1, [])}, 3)
        assert h.wait_until(lambda: nodes["par"].participants(room) == {"rita"}, 3)
        assert h.wait_until(lambda: any(c.WhichOneof("command") == "close_room"
                                        for _, c in refusing.commands), 3)
        admits = [c for _, c in refusing.commands if c.WhichOneof("command") == "admit_participant"]
        assert len({c.command_id for c in admits}) == 1, admits   # one admit (maybe retried)
        kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=reply.lease_id), timeout=5)
        assert kept.moved and kept.node.node_id == "par"
        assert h.verify_join_token(kept.join_token, secret("par"), "par")["sub"] == "rita"
        member = get_room(stub, pb, "refused").members[0]
        assert (member.client_id, member.node_id) == ("rita", "par")
        assert h.wait_until(lambda: get_room(stub, pb, "refused").members[0].admitted, 3)
    finally:
        stop.set()
        thread.join(2)


def test_cascade_hub_death_mends_the_relay_tree(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par", "nyc", "tyo"])
    stub = peer.server.allocation()
    room = node_room("hub")
    allocate(stub, pb, "hub", "hanna", "hamburg")
    allocate(stub, pb, "hub", "bo", "boston")
    allocate(stub, pb, "hub", "oki", "osaka")
    assert parts(get_room(stub, pb, "hub")) == {"ber": (1, ["nyc", "tyo"]), "nyc": (1, ["ber"]),
                                                "tyo": (1, ["ber"])}
    with h.RoomWatcher(peer.server, "default", "hub") as watcher:
        nodes["ber"].node.cancel()                 # the hub of the relay tree dies
        assert peer.wait_state("ber", admin_pb.NODE_STATE_DEAD, DEAD_MS / 1000 + 3)
        update = watcher.wait_for(lambda u: len(u.moves) > 0, 5)
        assert update is not None, [u.reason for u in watcher.snapshot()]
        assert [(m.client_id, m.from_node_id, m.to_node_id) for m in update.moves] == [
            ("hanna", "ber", "par")]
    # New York and Tokyo are linked directly; Paris joins the nearest part, New York.
    expected = {"nyc": (1, ["par", "tyo"]), "tyo": (1, ["nyc"]), "par": (1, ["nyc"])}
    assert h.wait_until(lambda: parts(get_room(stub, pb, "hub")) == expected, 3), \
        parts(get_room(stub, pb, "hub"))
    assert h.wait_until(lambda: {n: nodes[n].relay_peers(room) for n in expected} == {
        "nyc": {"par", "tyo"}, "tyo": {"nyc"}, "par": {"nyc"}}, 3)
    assert (room, "ber") in nodes["nyc"].detached and (room, "ber") in nodes["tyo"].detached


def test_drain_deadline_moves_the_room_without_a_change(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par"])
    stub = peer.server.allocation()
    reply = allocate(stub, pb, "deadline", "dina", "hamburg")
    assert reply.node.node_id == "ber"
    drained = peer.admin.DrainNode(admin_pb.DrainNodeRequest(node_id="ber", deadline_ms=500),
                                   timeout=5)
    assert drained.node.state == admin_pb.NODE_STATE_DRAINING
    assert peer.wait_state("ber", admin_pb.NODE_STATE_GONE, 3), peer.state_name("ber")
    assert h.wait_until(lambda: parts(get_room(stub, pb, "deadline")) == {"par": (1, [])}, 3)
    assert h.wait_until(lambda: nodes["par"].participants(node_room("deadline")) == {"dina"}, 3)
    kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=reply.lease_id), timeout=5)
    assert kept.moved and kept.node.node_id == "par"


def test_unplaceable_participant_loses_its_lease_and_watchers_hear(start_allocation_peer, pb,
                                                                   admin_pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber"])
    stub = peer.server.allocation()
    reply = allocate(stub, pb, "alone", "ali", "hamburg")
    with h.RoomWatcher(peer.server, "default", "alone") as watcher:
        nodes["ber"].node.cancel()                 # the only node dies: nowhere to go
        assert peer.wait_state("ber", admin_pb.NODE_STATE_DEAD, DEAD_MS / 1000 + 3)
        # The lease ends and the room is empty...
        assert h.wait_until(lambda: _status(stub.GetRoom, pb.GetRoomRequest(
            app_id="default", room_id="alone")) == grpc.StatusCode.NOT_FOUND, 3)
        error = rpc_error(stub.KeepAlive, pb.KeepAliveRequest(lease_id=reply.lease_id))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        # ... and a watcher is told so.
        update = watcher.wait_for(lambda u: u.room.participants == 0, 2)
        assert update is not None, (
            "WatchRoom sent no update after the participant lost its place: "
            f"{[(u.reason, u.room.participants) for u in watcher.snapshot()]}")


def _status(call, request) -> grpc.StatusCode:
    try:
        call(request, timeout=5)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


# ------------------------------------------------------------------ leases and WatchRoom

def test_lease_keepalive_expiry_and_release(start_allocation_peer, pb):
    ttl_ms = 1500
    peer = start_allocation_peer(config(allocation={"lease_ttl_ms": ttl_ms}))
    nodes = start_nodes(peer, ["ber", "par"])
    stub = peer.server.allocation()
    room = node_room("lease")
    kept = allocate(stub, pb, "lease", "kept", "hamburg")
    lapsed = allocate(stub, pb, "lease", "lapsed", "hamburg")
    lapsed_at = time.monotonic()
    assert kept.lease_ttl_ms == lapsed.lease_ttl_ms == ttl_ms
    assert kept.lease_id != lapsed.lease_id
    assert h.wait_until(lambda: nodes["ber"].participants(room) == {"kept", "lapsed"}, 3)
    started = time.monotonic()

    # Renew one lease every 400 ms for 2.6 s: it outlives the TTL; the other ends.
    while time.monotonic() - started < 2.6:
        reply = stub.KeepAlive(pb.KeepAliveRequest(lease_id=kept.lease_id), timeout=5)
        assert reply.lease_ttl_ms == ttl_ms and not reply.moved
        assert reply.node.node_id == "ber"
        h.verify_join_token(reply.join_token, secret("ber"), "ber")
        if time.monotonic() - lapsed_at < ttl_ms / 1000 - 0.3:     # not before its TTL
            assert "lapsed" in nodes["ber"].participants(room), nodes["ber"].removed
        time.sleep(0.4)
    assert h.wait_until(lambda: ("default/lease", "lapsed", "lease expired")
                        in nodes["ber"].removed, 2), nodes["ber"].removed
    assert nodes["ber"].participants(room) == {"kept"}
    state = get_room(stub, pb, "lease")
    assert [m.client_id for m in state.members] == ["kept"] and parts(state) == {"ber": (1, [])}
    error = rpc_error(stub.KeepAlive, pb.KeepAliveRequest(lease_id=lapsed.lease_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND and lapsed.lease_id in error.details()
    error = rpc_error(stub.Release, pb.ReleaseRequest(lease_id=lapsed.lease_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # Release: the node hears the participant left, and the emptied room closes.
    stub.Release(pb.ReleaseRequest(lease_id=kept.lease_id), timeout=5)
    assert h.wait_until(lambda: room in nodes["ber"].closed, 3)
    assert ("default/lease", "kept", "released") in nodes["ber"].removed
    for call, request in [(stub.Release, pb.ReleaseRequest(lease_id=kept.lease_id)),
                          (stub.KeepAlive, pb.KeepAliveRequest(lease_id=kept.lease_id)),
                          (stub.KeepAlive, pb.KeepAliveRequest(lease_id="no-such-lease")),
                          (stub.Release, pb.ReleaseRequest(lease_id=""))]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND, (request, error.details())
        assert "lease" in error.details()
    error = rpc_error(stub.GetRoom, pb.GetRoomRequest(app_id="default", room_id="lease"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no participant" in error.details()


def test_no_active_node_and_watchroom_reasons(start_allocation_peer, pb):
    peer = start_allocation_peer(config(allocation={"lease_ttl_ms": 1000}))
    stub = peer.server.allocation()
    error = rpc_error(stub.Allocate, pb.AllocateRequest(app_id="default", room_id="w",
                                                        client_id="early",
                                                        location=where(pb, "hamburg")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no media node is active" in error.details(), error.details()
    candidates = stub.Candidates(pb.CandidatesRequest(app_id="default"), timeout=5)
    assert list(candidates.candidates) == [] and len(candidates.warnings) == 1

    with h.RoomWatcher(peer.server, "default", "w") as watcher:
        first = watcher.snapshot()[0]
        assert first.reason == "current state"
        assert first.room.participants == 0 and list(first.room.nodes) == []
        start_nodes(peer, ["ber"])
        a = allocate(stub, pb, "w", "a", "hamburg")
        allocate(stub, pb, "w", "b", "hamburg")       # not renewed: expires after 1 s
        stub.Release(pb.ReleaseRequest(lease_id=a.lease_id), timeout=5)
        assert watcher.wait_for(lambda u: "expired" in u.reason, 4) is not None, \
            [u.reason for u in watcher.snapshot()]
        updates = watcher.snapshot()
    assert [u.reason for u in updates[:4]] == ["current state", "joined", "joined", "left"]
    assert [u.room.participants for u in updates] == [0, 1, 2, 1, 0]
    assert [parts(u.room) for u in updates[1:]] == [{"ber": (1, [])}, {"ber": (2, [])},
                                                    {"ber": (1, [])}, {}]
    assert [[m.client_id for m in u.room.members] for u in updates] == [
        [], ["a"], ["a", "b"], ["b"], []]


# ------------------------------------------------------------------ shutdown

def test_sigterm_with_live_leases_exits_promptly(start_allocation_peer, pb):
    peer = start_allocation_peer(config())
    start_nodes(peer, ["ber"])
    reply = allocate(peer.server.allocation(), pb, "shutdown", "c1", "hamburg")
    assert reply.node.node_id == "ber"
    peer.close()
    server = peer.server
    server.close_channels()
    server.sigterm()
    # grace 2 s with no connection left: well within 5 s.
    rc = server.wait_exit(5)      # the fixture's teardown kills it if it still runs
    assert rc == 0, f"still running 5 s after SIGTERM\n{server.log_tail(15)}"


# ------------------------------------------------------------------ reconnect with rooms

def test_node_reconnecting_with_its_rooms_keeps_them(start_allocation_peer, pb):
    """A node that reconnects lists the rooms it hosts, as the orchestrator named them
    ("app/room", upper case allowed): it is accepted, nothing is closed, the room stays."""
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber"])
    stub = peer.server.allocation()
    reply = allocate(stub, pb, "Room-A", "hamburg-1", "hamburg")
    assert reply.node.node_id == "ber"
    room = node_room("Room-A")
    assert room == "default/Room-A"
    assert h.wait_until(lambda: nodes["ber"].participants(room) == {"hamburg-1"}, 3)

    old = nodes["ber"].node
    again = peer.node("ber", rooms=[(room, 1)], **W.node_kw("ber"))
    registered = again.register()           # replaces the old stream (ABORTED for it)
    assert list(registered.close_rooms) == []
    again.start_heartbeat()
    assert h.wait_until(lambda: peer.state("ber") == h.stubs().admin_pb2.NODE_STATE_ACTIVE, 5)
    assert old.wait_end(5).code == grpc.StatusCode.ABORTED
    state = get_room(stub, pb, "Room-A")
    assert [n.node_id for n in state.nodes] == ["ber"] and state.participants == 1
    assert room in peer.get("ber").room_ids
