"""AllocationService placement end to end: a real peer, media nodes written from the
.proto alone (media_node_client.py) at exact places with exact capacity and features, and
clients calling Allocate and Candidates with stock grpcio. Nearest healthy node, RTT
sources, capacity (Stats and reservations), strategies, features, app region/country
policy, join tokens, hundreds of concurrent joins, IP location.
(test_allocation_lifecycle.py covers what happens over time: cascades, node failures,
drains, leases; the shared world is harness.AllocationWorld.)

Each node keeps what its acknowledged commands gave it (harness.HostedRooms) and reports
those participants in its Stats, as a real SFU does. Timers are short (stats 200 ms,
suspect 600 ms, dead 1200 ms, commands 300 ms).

Expected RTTs come from the orchestrator's fibre model (allocation/geo.hpp, re-implemented
in harness.fibre_rtt_ms): 5 ms + great circle x 1.5 / 200 km per ms, both ways."""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

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
GEOIP = Path("/usr/share/GeoIP/GeoIP.dat")


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


# ------------------------------------------------------------------ nearest healthy node

def test_nearest_healthy_node_with_model_rtts_and_alternates(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(config())
    four = ["ber", "par", "nyc", "tyo"]
    nodes = start_nodes(peer, four)
    stub = peer.server.allocation()

    for i, (city, expected) in enumerate([("hamburg", "ber"), ("lyon", "par"),
                                          ("boston", "nyc"), ("chicago", "nyc"),
                                          ("osaka", "tyo"), ("sydney", "tyo"),
                                          ("seoul", "tyo")]):
        assert nearest(city, four)[0] == expected     # the test's own geography holds
        reply = allocate(stub, pb, f"near-{i}", f"client-{i}", city)
        assert reply.node.node_id == expected, (city, reply)
        assert reply.node.rtt_source == pb.RTT_SOURCE_DISTANCE
        assert reply.node.estimated_rtt_ms == pytest.approx(rtt(city, expected), abs=0.01)
        assert (reply.node.region, reply.node.country) == NODE[expected][1:]
        assert [(e.host, e.port) for e in reply.node.endpoints] == [
            ("127.0.0.1", ENDPOINT_PORT[expected])]
        # Alternates: the two next nearest (the load terms are equal to 0.1 ms here).
        assert [a.node_id for a in reply.alternates] == nearest(city, four)[1:3], reply
        for alternate in reply.alternates:
            assert alternate.estimated_rtt_ms == pytest.approx(rtt(city, alternate.node_id),
                                                               abs=0.01)
            assert alternate.rtt_source == pb.RTT_SOURCE_DISTANCE
        assert reply.room_nodes == 1 and list(reply.warnings) == []
        assert reply.lease_id and reply.lease_ttl_ms == 30000

    # Candidates: the nearest usable nodes by RTT.
    candidates = stub.Candidates(pb.CandidatesRequest(app_id="default",
                                                      location=where(pb, "hamburg"),
                                                      max_candidates=3), timeout=5)
    assert [c.node_id for c in candidates.candidates] == ["ber", "par", "nyc"]

    # Berlin stops reporting: suspect, never chosen, nor offered; Paris takes Hamburg.
    nodes["ber"].node.stop_heartbeat()
    assert peer.wait_state("ber", admin_pb.NODE_STATE_SUSPECT, SUSPECT_MS / 1000 + 2)
    reply = allocate(stub, pb, "near-suspect", "client-s", "hamburg")
    assert reply.node.node_id == "par"
    assert "ber" not in [a.node_id for a in reply.alternates]
    assert [a.node_id for a in reply.alternates] == ["nyc", "tyo"]
    candidates = stub.Candidates(pb.CandidatesRequest(app_id="default",
                                                      location=where(pb, "hamburg")), timeout=5)
    assert [c.node_id for c in candidates.candidates] == ["par", "nyc", "tyo"]
    assert h.wait_until(lambda: nodes["par"].participants(node_room("near-suspect"))
                        == {"client-s"}, 3)

    # Stats again: active, and the nearest once more.
    nodes["ber"].node.start_heartbeat()
    assert peer.wait_state("ber", admin_pb.NODE_STATE_ACTIVE, 3)
    assert allocate(stub, pb, "near-back", "client-b", "hamburg").node.node_id == "ber"


def test_probes_and_node_matrix_set_the_rtt_source(start_allocation_peer, pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par", "nyc"])
    # Berlin measures 9.5 ms to Paris (its Stats' peer_rtts).
    nodes["ber"].node.stats_fields["peer_rtts"] = [("par", 9.5)]
    sent = nodes["ber"].node.stats_sent
    assert h.wait_until(lambda: nodes["ber"].node.stats_sent >= sent + 2, 3)
    assert h.wait_until(lambda: [(r.node_id, r.rtt_ms) for r in
                                 peer.get("ber").load.last_stats.peer_rtts] == [("par", 9.5)], 3)
    stub = peer.server.allocation()

    # A measured probe wins over the model: Paris at 3 ms beats Berlin's modelled ~9 ms.
    reply = allocate(stub, pb, "probe-1", "p1", "hamburg",
                     probes=[pb.Probe(node_id="par", rtt_ms=3.0)])
    assert reply.node.node_id == "par"
    assert reply.node.rtt_source == pb.RTT_SOURCE_PROBE
    assert reply.node.estimated_rtt_ms == 3.0

    # A probe to a node near the client (<= 25 ms) plus that node's measured RTT to another:
    # Paris is estimated at 4 + 9.5 ms through Berlin's matrix.
    reply = allocate(stub, pb, "probe-2", "p2", "hamburg",
                     probes=[pb.Probe(node_id="ber", rtt_ms=4.0)])
    assert reply.node.node_id == "ber" and reply.node.rtt_source == pb.RTT_SOURCE_PROBE
    by_id = {a.node_id: a for a in reply.alternates}
    assert by_id["par"].rtt_source == pb.RTT_SOURCE_NODE_MATRIX
    assert by_id["par"].estimated_rtt_ms == pytest.approx(13.5)
    assert by_id["nyc"].rtt_source == pb.RTT_SOURCE_DISTANCE

    # A probe showing the nearest node unreachable, with a probe of another: the client
    # moves; a probe naming an unknown node is ignored.
    reply = allocate(stub, pb, "probe-3", "p3", "hamburg",
                     probes=[pb.Probe(node_id="ber", rtt_ms=10000),
                             pb.Probe(node_id="par", rtt_ms=15.0),
                             pb.Probe(node_id="no-such-node", rtt_ms=1.0)])
    assert reply.node.node_id == "par" and reply.node.rtt_source == pb.RTT_SOURCE_PROBE
    assert reply.node.estimated_rtt_ms == 15.0
    assert [a.node_id for a in reply.alternates] == ["nyc", "ber"]


def test_a_failure_probe_alone_moves_the_client(start_allocation_peer, pb):
    peer = start_allocation_peer(config())
    start_nodes(peer, ["ber", "par", "nyc"])
    stub = peer.server.allocation()
    first = allocate(stub, pb, "probe-fail", "p1", "hamburg")
    assert first.node.node_id == "ber"
    # The client cannot reach Berlin: it says so as the .proto tells it to.
    reply = allocate(stub, pb, "probe-fail-2", "p1", "hamburg",
                     probes=[pb.Probe(node_id="ber", rtt_ms=10000)])
    assert reply.node.node_id != "ber", (
        f"placed on the unreachable node again: {reply.node.node_id} at "
        f"{reply.node.estimated_rtt_ms} ms, alternates "
        f"{[(a.node_id, round(a.estimated_rtt_ms)) for a in reply.alternates]}")


# ------------------------------------------------------------------ capacity

def test_node_over_high_water_by_stats_gets_no_more(start_allocation_peer, pb):
    peer = start_allocation_peer(config())
    nodes = start_nodes(peer, ["ber", "par"], capacity=1000)
    stub = peer.server.allocation()
    ber = nodes["ber"]
    ber.report = False                                       # the test sets its Stats

    def after_stats(**fields):
        ber.node.stats_fields.update(fields)
        sent = ber.node.stats_sent
        assert h.wait_until(lambda: ber.node.stats_sent >= sent + 2, 3)
        time.sleep(0.05)

    # 860 of 1000 participants > 85%: Berlin takes nobody, however near.
    after_stats(participants=860)
    assert peer.get("ber").load.available_participants == 140
    assert allocate(stub, pb, "hw-1", "c1", "hamburg").node.node_id == "par"
    # CPU above the mark does the same.
    after_stats(participants=10, cpu_load=0.93)
    assert allocate(stub, pb, "hw-2", "c2", "hamburg").node.node_id == "par"
    # Upload above 85% of upload_mbps too.
    after_stats(cpu_load=0.3, bandwidth_out_mbps=9000.0)
    assert allocate(stub, pb, "hw-3", "c3", "hamburg").node.node_id == "par"
    # Back under the mark: the nearest again.
    after_stats(bandwidth_out_mbps=20.0)
    assert allocate(stub, pb, "hw-4", "c4", "hamburg").node.node_id == "ber"


def test_reservations_fill_nodes_then_resource_exhausted_then_release(start_allocation_peer, pb,
                                                                      admin_pb):
    # Nodes that sent one Stats and then nothing (suspect only after 5 s): only the peer's
    # own reservations tell that they fill up. The "pack" strategy fills the busiest near
    # node first.
    apps = [{"app_id": "packed", "strategy": "pack"}]
    peer = start_allocation_peer(config(apps=apps, suspect_after_ms=5000, dead_after_ms=10000))
    nodes = start_nodes(peer, ["ber", "par"], heartbeat=False, capacity=3)
    stub = peer.server.allocation()

    got = [allocate(stub, pb, f"res-{i}", f"c{i}", "hamburg", app="packed") for i in range(6)]
    assert [r.node.node_id for r in got] == ["ber"] * 3 + ["par"] * 3
    ber = peer.get("ber").load
    assert (ber.reserved_participants, ber.available_participants) == (3, 0)
    assert peer.get("par").load.available_participants == 0

    error = rpc_error(stub.Allocate, pb.AllocateRequest(app_id="packed", room_id="res-x",
                                                        client_id="cx",
                                                        location=where(pb, "hamburg")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "full" in error.details() and "2 media nodes" in error.details(), error.details()

    # A Release gives the place back: the next client gets it.
    stub.Release(pb.ReleaseRequest(lease_id=got[1].lease_id), timeout=5)
    assert h.wait_until(lambda: peer.get("ber").load.available_participants == 1, 3)
    assert h.wait_until(lambda: nodes["ber"].participants() == {"c0", "c2"}, 3)
    assert allocate(stub, pb, "res-y", "cy", "hamburg", app="packed").node.node_id == "ber"
    error = rpc_error(stub.Allocate, pb.AllocateRequest(app_id="packed", room_id="res-z",
                                                        client_id="cz",
                                                        location=where(pb, "hamburg")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()


def test_strategies_trade_latency_for_load(start_allocation_peer, pb):
    apps = [{"app_id": "latency", "strategy": "latency"},
            {"app_id": "balanced", "strategy": "balanced"}]
    peer = start_allocation_peer(config(apps=apps))
    nodes = start_nodes(peer, ["ber", "par"], capacity=100)
    nodes["ber"].report = False
    # Berlin is 60% busy: for a Hamburg client (8.8 ms to Berlin, 16.2 to Paris) balanced
    # (25 ms per full node) prefers the idle Paris (8.8 + 15.3 > 16.2 + 0.3); latency
    # (10 ms per full node) stays with Berlin (8.8 + 6.1 < 16.2 + 0.1).
    nodes["ber"].node.stats_fields["participants"] = 60
    sent = nodes["ber"].node.stats_sent
    assert h.wait_until(lambda: nodes["ber"].node.stats_sent >= sent + 2, 3)
    stub = peer.server.allocation()
    assert allocate(stub, pb, "s-1", "c1", "hamburg", app="balanced").node.node_id == "par"
    assert allocate(stub, pb, "s-2", "c2", "hamburg", app="latency").node.node_id == "ber"


# ------------------------------------------------------------------ features and app policy

APPS = [
    {"app_id": "default"},
    {"app_id": "eu-only", "strategy": "latency", "allowed_regions": ["eu-central", "eu-west"]},
    {"app_id": "us-only", "strategy": "balanced", "allowed_countries": ["US"]},
    {"app_id": "fr-west", "allowed_regions": ["eu-west"], "allowed_countries": ["FR"]},
    {"app_id": "nowhere", "strategy": "pack", "allowed_regions": ["sa-east"]},
]


def test_required_features_filter_nodes(start_allocation_peer, pb):
    peer = start_allocation_peer(config(apps=APPS))
    features = {
        "ber": {"codecs": ["opus", "vp8", "h264"], "relay": True, "recording": False,
                "e2ee": True},
        "par": {"codecs": ["opus", "vp8", "vp9", "av1"], "relay": True, "recording": True,
                "e2ee": False},
        "nyc": {"codecs": ["opus", "h264"], "relay": False, "recording": True, "e2ee": True},
    }
    for node_id, offered in features.items():
        start_nodes(peer, [node_id], features=offered)
    stub = peer.server.allocation()

    def has(node_id, needs):
        offered = features[node_id]
        return all(offered.get(n, n in offered["codecs"]) for n in needs)

    for i, (needs, expected) in enumerate([([], "ber"), (["e2ee"], "ber"),
                                           (["recording"], "par"), (["av1"], "par"),
                                           (["vp9", "recording", "relay"], "par"),
                                           (["recording", "e2ee"], "nyc"),
                                           (["h264", "e2ee"], "ber"),
                                           (["opus", "opus"], "ber")]):
        reply = allocate(stub, pb, f"feat-{i}", f"c{i}", "hamburg", required_features=needs)
        assert reply.node.node_id == expected, (needs, reply.node.node_id)
        # Alternates have the features too: exactly the other nodes that do, nearest first.
        assert [a.node_id for a in reply.alternates] == [
            n for n in nearest("hamburg", features) if n != expected and has(n, needs)], needs

    error = rpc_error(stub.Allocate, pb.AllocateRequest(
        app_id="default", room_id="feat-x", client_id="cx", location=where(pb, "hamburg"),
        required_features=["vp9", "e2ee"]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "features" in error.details() and "vp9" in error.details() \
        and "e2ee" in error.details(), error.details()

    for unknown in ["hevc", "E2EE", ""]:
        error = rpc_error(stub.Allocate, pb.AllocateRequest(
            app_id="default", room_id="feat-y", client_id="cy", location=where(pb, "hamburg"),
            required_features=["opus", unknown]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (unknown, error.details())
        assert "required_features" in error.details() and f"'{unknown}'" in error.details()
    peer.server.assert_serving()


def test_app_region_and_country_policy(start_allocation_peer, pb):
    peer = start_allocation_peer(config(apps=APPS))
    start_nodes(peer, ["ber", "par", "nyc", "tyo"])
    stub = peer.server.allocation()

    # Osaka's nearest is Tokyo, but eu-only may use Berlin and Paris alone (Berlin nearer).
    reply = allocate(stub, pb, "pol-1", "c1", "osaka", app="eu-only")
    assert reply.node.node_id == "ber"
    assert [a.node_id for a in reply.alternates] == ["par"]
    # us-only: New York, whatever the client's place; no alternate is allowed.
    reply = allocate(stub, pb, "pol-2", "c2", "hamburg", app="us-only")
    assert reply.node.node_id == "nyc" and list(reply.alternates) == []
    # Region and country both: Paris.
    reply = allocate(stub, pb, "pol-3", "c3", "boston", app="fr-west")
    assert reply.node.node_id == "par" and list(reply.alternates) == []
    # The default app may use any node.
    assert allocate(stub, pb, "pol-4", "c4", "osaka").node.node_id == "tyo"
    # Candidates follow the policy too.
    candidates = stub.Candidates(pb.CandidatesRequest(app_id="eu-only",
                                                      location=where(pb, "boston")), timeout=5)
    assert sorted(c.node_id for c in candidates.candidates) == ["ber", "par"]

    # No active node where the app may go: RESOURCE_EXHAUSTED naming the policy.
    error = rpc_error(stub.Allocate, pb.AllocateRequest(app_id="nowhere", room_id="pol-5",
                                                        client_id="c5",
                                                        location=where(pb, "hamburg")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "'nowhere'" in error.details() and "sa-east" in error.details(), error.details()

    # An app the peer does not know: NOT_FOUND, for every call naming it.
    error = rpc_error(stub.Allocate, pb.AllocateRequest(app_id="ghost", room_id="pol-6",
                                                        client_id="c6",
                                                        location=where(pb, "hamburg")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "ghost" in error.details()
    error = rpc_error(stub.Candidates, pb.CandidatesRequest(app_id="ghost"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "ghost" in error.details()
    error = rpc_error(stub.GetRoom, pb.GetRoomRequest(app_id="ghost", room_id="pol-1"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "ghost" in error.details()


# ------------------------------------------------------------------ the same client again

def test_allocate_again_answers_the_same_node(start_allocation_peer, pb):
    peer = start_allocation_peer(config())
    start_nodes(peer, ["ber", "par"])
    stub = peer.server.allocation()
    first = allocate(stub, pb, "again", "ann", "hamburg")
    again = allocate(stub, pb, "again", "ann", "hamburg")
    assert again.lease_id == first.lease_id and again.node.node_id == first.node.node_id
    assert any("already holds a lease" in w for w in again.warnings), again.warnings
    h.verify_join_token(again.join_token, secret("ber"), "ber")
    assert (again.node.region, again.node.country) == (first.node.region, first.node.country), \
        again.node
    assert again.node.rtt_source != pb.RTT_SOURCE_UNSPECIFIED, again.node
    assert again.node.estimated_rtt_ms == pytest.approx(first.node.estimated_rtt_ms), again.node


# ------------------------------------------------------------------ join tokens

def tamper(token: str, secret_: str) -> dict:
    """Forgeries of a valid token: each must fail verification."""
    header, claims, signature = token.split(".")
    body = json.loads(h.b64url_decode(claims))
    promoted = h.b64url_encode(json.dumps({**body, "role": "host"},
                                          separators=(",", ":")).encode())
    longer = h.b64url_encode(json.dumps({**body, "exp": body["exp"] + 86400},
                                        separators=(",", ":")).encode())
    none_header = h.b64url_encode(b'{"alg":"none","typ":"JWT"}')
    hs512 = h.b64url_encode(b'{"alg":"HS512","typ":"JWT"}')
    raw = bytearray(h.b64url_decode(signature))
    raw[0] ^= 0x01
    flipped = h.b64url_encode(bytes(raw))
    import hashlib
    import hmac
    other_key = h.b64url_encode(hmac.new(b"not-the-node-secret", f"{header}.{claims}".encode(),
                                         hashlib.sha256).digest())
    return {
        "payload changed (role host)": f"{header}.{promoted}.{signature}",
        "payload changed (exp + 1 day)": f"{header}.{longer}.{signature}",
        "signature changed": f"{header}.{claims}.{flipped}",
        "signature truncated": f"{header}.{claims}.{signature[:-4]}",
        "signature of another key": f"{header}.{claims}.{other_key}",
        "alg none, no signature": f"{none_header}.{claims}.",
        "alg none, original signature": f"{none_header}.{claims}.{signature}",
        "alg HS512": f"{hs512}.{claims}.{signature}",
        "two parts": f"{header}.{claims}",
        "padding added": f"{header}.{claims}.{signature}=",
    }


def test_join_token_verifies_offline_and_forgeries_fail(start_allocation_peer, pb):
    token_ttl_ms = 120000
    peer = start_allocation_peer(config(allocation={"join_token_ttl_ms": token_ttl_ms}))
    nodes = start_nodes(peer, ["ber", "par"])
    listed = peer.active_node(LISTED_ID, **node_kw(LISTED_ID, city="tokyo"))
    listed_hosted = h.HostedRooms(listed)
    stub = peer.server.allocation()

    before = int(time.time())
    reply = allocate(stub, pb, "tok-room.1", "alice@example.com", "hamburg", role="presenter")
    after = int(time.time()) + 1
    token = reply.join_token
    assert token.startswith("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")   # docs/join-tokens.md
    claims = h.verify_join_token(token, secret("ber"), "ber")
    assert {k: claims[k] for k in ("iss", "sub", "app", "room", "node", "role", "lease")} == {
        "iss": "chroom", "sub": "alice@example.com", "app": "default", "room": "tok-room.1",
        "node": "ber", "role": "presenter", "lease": reply.lease_id}
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == token_ttl_ms // 1000
    assert claims["exp"] > time.time()
    assert reply.join_token_expires_unix_ms == claims["exp"] * 1000
    # The required claims in their order, then the app's rules (docs/join-tokens.md): the
    # default app lets a presenter send audio and video, and records nothing.
    assert list(json.loads(h.b64url_decode(token.split(".")[1]))) == list(h.JOIN_TOKEN_CLAIMS) + [
        "pub", "rec"]
    assert (claims["pub"], claims["rec"]) == ("audio video", 0)
    assert len(h.b64url_decode(token.split(".")[2])) == 32

    # The node got the very same token in AdmitParticipant.
    assert h.wait_until(lambda: nodes["ber"].commands_of("admit_participant"), 3)
    (admit,) = nodes["ber"].commands_of("admit_participant")
    assert admit.join_token == token
    assert (admit.room_id, admit.participant_id, admit.role) == (
        "default/tok-room.1", "alice@example.com", "presenter")

    # Another node's secret, another node's id, a later clock: refused.
    for key, node_id, now, why in [(secret("par"), "ber", None, "bad signature"),
                                   (secret("ber"), "par", None, "not 'par'"),
                                   (secret("ber"), "ber", claims["exp"], "expired")]:
        with pytest.raises(h.JoinTokenError, match=why):
            h.verify_join_token(token, key, node_id, now=now)
    for what, forged in tamper(token, secret("ber")).items():
        with pytest.raises(h.JoinTokenError):
            h.verify_join_token(forged, secret("ber"), "ber")
            pytest.fail(f"forgery verified: {what}")

    # A node with a listed (not derived) secret: its tokens verify with that secret.
    reply = allocate(stub, pb, "tok-room.2", "bob", "osaka", role="viewer")
    assert reply.node.node_id == LISTED_ID
    claims = h.verify_join_token(reply.join_token, LISTED_SECRET, LISTED_ID)
    assert (claims["role"], claims["room"], claims["node"]) == ("viewer", "tok-room.2", LISTED_ID)
    assert h.wait_until(lambda: listed_hosted.tokens.get(("default/tok-room.2", "bob"))
                        == reply.join_token, 3)
    # KeepAlive hands out a fresh token for the same lease and node.
    kept = stub.KeepAlive(pb.KeepAliveRequest(lease_id=reply.lease_id), timeout=5)
    fresh = h.verify_join_token(kept.join_token, LISTED_SECRET, LISTED_ID)
    assert (fresh["lease"], fresh["sub"], fresh["node"]) == (reply.lease_id, "bob", LISTED_ID)


# ------------------------------------------------------------------ concurrency

def test_hundreds_of_parallel_allocates_end_in_one_coherent_room(start_allocation_peer, pb):
    capacity, clients = 80, 300
    # Liveness is not the point here: generous timers, so that a slow (sanitizer) build
    # busy with the burst does not judge the nodes suspect or their acks late.
    peer = start_allocation_peer(config(suspect_after_ms=3000, dead_after_ms=6000,
                                        command_timeout_ms=2000), channels=2)
    europe = ["ber", "par", "ams", "mad", "waw", "rom", "sto"]
    nodes = start_nodes(peer, europe, capacity=capacity)
    channels = [peer.new_channel() for _ in range(4)]
    stubs = [peer.server.allocation(ch) for ch in channels]
    rng = random.Random(4)
    cities = ["hamburg", "lyon", "munich", "brussels", "berlin", "paris", "rome", "madrid"]

    def request(i):
        lat, lon = CITY[rng.choice(cities)]
        return pb.AllocateRequest(app_id="default", room_id="big", client_id=f"p{i:03d}",
                                  location=pb.ClientLocation(latitude=lat + rng.uniform(-1, 1),
                                                             longitude=lon + rng.uniform(-1, 1),
                                                             has_point=True))

    requests = [request(i) for i in range(clients)]
    futures = [stubs[i % len(stubs)].Allocate.future(r, timeout=30)
               for i, r in enumerate(requests)]
    replies = [f.result() for f in futures]

    assert len({r.lease_id for r in replies}) == clients
    per_node = Counter(r.node.node_id for r in replies)
    assert all(count <= capacity for count in per_node.values()), per_node
    assert sum(per_node.values()) == clients
    assert len(per_node) >= 4                 # 300 do not fit on fewer than 4 nodes of 80

    state = get_room(peer.server.allocation(), pb, "big")
    assert state.participants == clients and len(state.members) == clients
    room_parts = parts(state)
    assert set(room_parts) == set(per_node), (room_parts, per_node)
    assert {n: p[0] for n, p in room_parts.items()} == dict(per_node)
    members = {m.client_id: m.node_id for m in state.members}
    assert members == {req.client_id: r.node.node_id for req, r in zip(requests, replies)}
    for reply in replies:
        assert 1 <= reply.room_nodes <= len(room_parts)
    # The parts form one tree of relays: parts - 1 links, all connected, symmetric.
    links = {tuple(sorted((n, peer_id))) for n, (_, peers) in room_parts.items()
             for peer_id in peers}
    assert len(links) == len(room_parts) - 1, links
    for n, (_, peers) in room_parts.items():
        for peer_id in peers:
            assert n in room_parts[peer_id][1]
    reached, frontier = {state.nodes[0].node_id}, [state.nodes[0].node_id]
    while frontier:
        current = frontier.pop()
        for peer_id in room_parts[current][1]:
            if peer_id not in reached:
                reached.add(peer_id)
                frontier.append(peer_id)
    assert reached == set(room_parts)

    # The nodes hold exactly what the peer says, relays included.
    def nodes_agree():
        return all(nodes[n].participants("default/big") ==
                   {c for c, at in members.items() if at == n} for n in europe) and all(
            nodes[n].relay_peers("default/big") == set(room_parts.get(n, (0, []))[1])
            for n in europe)
    assert h.wait_until(nodes_agree, 5), {n: len(nodes[n].participants()) for n in europe}


# ------------------------------------------------------------------ IP location

@pytest.mark.skipif(not GEOIP.exists(), reason=f"{GEOIP} (Debian geoip-database) not installed")
def test_ip_location_and_fallbacks(start_allocation_peer, pb):
    peer = start_allocation_peer(config(allocation={"geoip_database": str(GEOIP),
                                                    "fallback_region": "ap-northeast"}))
    start_nodes(peer, ["ams", "ber", "nyc", "tyo"])
    stub = peer.server.allocation()

    # 193.0.6.139: RIPE NCC, Amsterdam (NL): the Dutch node, no warning.
    reply = allocate(stub, pb, "ip-1", "c1", location=pb.ClientLocation(ip="193.0.6.139"))
    assert reply.node.node_id == "ams", reply
    assert list(reply.warnings) == []
    assert reply.node.estimated_rtt_ms < 10            # NL's centre is ~50 km from Amsterdam
    # 8.8.8.8 is located in the US.
    reply = allocate(stub, pb, "ip-2", "c2", location=pb.ClientLocation(ip="8.8.8.8"))
    assert reply.node.node_id == "nyc" and list(reply.warnings) == []
    # A point wins over an IP.
    reply = allocate(stub, pb, "ip-3", "c3", location=pb.ClientLocation(
        ip="193.0.6.139", latitude=CITY["osaka"][0], longitude=CITY["osaka"][1], has_point=True))
    assert reply.node.node_id == "tyo" and list(reply.warnings) == []

    # A private address, or no location at all: placed in the fallback region, with a
    # warning saying so, never an error.
    for i, location in enumerate([pb.ClientLocation(ip="10.1.2.3"),
                                  pb.ClientLocation(ip="192.168.7.7"),
                                  pb.ClientLocation(ip="fd00::1"), pb.ClientLocation()]):
        reply = allocate(stub, pb, f"ip-fb-{i}", f"f{i}", location=location)
        assert reply.node.node_id == "tyo", (location, reply)
        assert len(reply.warnings) == 1, reply.warnings
        warning = reply.warnings[0]
        assert "region" in warning and ("no location" in warning
                                        or "no client location" in warning), warning
        if location.ip:
            assert location.ip in warning
    candidates = stub.Candidates(pb.CandidatesRequest(app_id="default",
                                                      location=pb.ClientLocation(ip="10.9.9.9")),
                                 timeout=5)
    assert candidates.candidates[0].node_id == "tyo" and len(candidates.warnings) == 1


def test_no_location_without_fallback_region_uses_the_busiest_region(start_allocation_peer, pb):
    peer = start_allocation_peer(config())          # geoip off, no fallback_region
    start_nodes(peer, ["nyc", "ber", "waw"])      # eu-central has the most active nodes
    stub = peer.server.allocation()
    reply = allocate(stub, pb, "fb-1", "c1", location=pb.ClientLocation(ip="193.0.6.139"))
    assert reply.node.node_id in ("ber", "waw"), reply
    assert len(reply.warnings) == 1 and "193.0.6.139" in reply.warnings[0], reply.warnings
