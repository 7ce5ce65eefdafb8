"""AllocationService bad input: every malformed field gets INVALID_ARGUMENT (or the code
the .proto names) with a message naming the field, bodies that are not the message get a
clear error, and the peer keeps serving: a good Allocate works after each batch.

One peer serves the whole module (bad input must not disturb it; that is the point)."""
from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

import grpc
import pytest

import chroom_harness as h

SECRET_KEY = "allocation-bad-input-key-0123456789"
ALLOCATE = "/chroom.allocation.v1.AllocationService/Allocate"
BERLIN = (52.52, 13.405)


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    """A peer with one active media node in Berlin (module scope: the bad input below must
    leave it serving)."""

    server = h.Server(tmp_path_factory.mktemp("alloc-bad"), {
        "media_nodes": {"secret_key": SECRET_KEY, "stats_interval_ms": 200,
                        "suspect_after_ms": 1500, "dead_after_ms": 3000,
                        "command_timeout_ms": 300},
        "allocation": {"geoip_database": "none"},
    }, "alloc-bad")
    server.start()
    node_peer = h.NodePeer(server, 1)
    try:
        node_peer.active_node("ber", location={"latitude": BERLIN[0], "longitude": BERLIN[1],
                                               "region": "eu-central", "country": "DE"})
        yield node_peer
    finally:
        node_peer.close()
        try:
            h.stop_peer_with_rooms(server)
        finally:
            server.kill()


@pytest.fixture(scope="module")
def stub(peer):
    return peer.server.allocation()


def good_request(pb, **overrides):
    fields = {"app_id": "default", "room_id": "room-1", "client_id": "client-1",
              "location": pb.ClientLocation(latitude=BERLIN[0], longitude=BERLIN[1],
                                            has_point=True)}
    fields.update(overrides)
    return pb.AllocateRequest(**fields)


def assert_serving(peer, stub, pb, tag: str) -> None:
    """The process is alive, and a fresh, good Allocate works."""
    peer.server.assert_serving(tag)
    reply = stub.Allocate(good_request(pb, room_id=f"after-{tag}", client_id=f"ok-{tag}"),
                          timeout=5)
    assert reply.node.node_id == "ber" and reply.lease_id, reply
    stub.Release(pb.ReleaseRequest(lease_id=reply.lease_id), timeout=5)


def expect(call, request, code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=5)
    error = info.value
    assert error.code() == code, (request, error.code(), error.details())
    for word in words:
        assert word in (error.details() or ""), (word, error.details())
    return error.details()


BAD_IDS = [
    # (field, value, words the message must have)
    ("app_id", "", ("app_id", "required")),
    ("app_id", "a" * 65, ("app_id", "64")),
    ("app_id", "my app", ("app_id",)),
    ("app_id", "app/../x", ("app_id",)),
    ("app_id", "caf\u00e9", ("app_id",)),
    ("room_id", "", ("room_id", "required")),
    ("room_id", "r" * 129, ("room_id", "128")),
    ("room_id", "room/1", ("room_id",)),
    ("room_id", "room\n1", ("room_id",)),
    ("room_id", "room@1", ("room_id",)),          # '@' is for client ids only
    ("client_id", "", ("client_id", "required")),
    ("client_id", "c" * 129, ("client_id", "128")),
    ("client_id", "alice smith", ("client_id",)),
    ("client_id", "a\"b", ("client_id",)),
    ("client_id", "\u00e9l\u00e8ve", ("client_id",)),
]


@pytest.mark.parametrize("field,value,words", BAD_IDS,
                         ids=[f"{f}={v[:12]!r}" for f, v, _ in BAD_IDS])
def test_bad_ids_are_invalid_argument(peer, stub, pb, field, value, words):
    expect(stub.Allocate, good_request(pb, **{field: value}), grpc.StatusCode.INVALID_ARGUMENT,
           *words)


def test_ids_at_their_limits_are_fine(peer, stub, pb):
    reply = stub.Allocate(good_request(pb, room_id="R" * 128, client_id="a.b_c-d@e" + "x" * 119),
                          timeout=5)
    assert reply.node.node_id == "ber"
    stub.Release(pb.ReleaseRequest(lease_id=reply.lease_id), timeout=5)
    error = expect(stub.Allocate, good_request(pb, app_id="A" * 64),
                   grpc.StatusCode.NOT_FOUND, "unknown app")
    assert "A" * 64 in error


def test_bad_fields_are_invalid_argument_naming_the_field(peer, stub, pb):
    L = pb.ClientLocation
    cases = [
        (dict(role="king"), ("role", "king")),
        (dict(role="HOST"), ("role",)),
        (dict(location=L(latitude=91, longitude=0, has_point=True)), ("latitude",)),
        (dict(location=L(latitude=-90.5, longitude=0, has_point=True)), ("latitude",)),
        (dict(location=L(latitude=10, longitude=math.nan, has_point=True)), ("longitude",)),
        (dict(location=L(latitude=10, longitude=180.01, has_point=True)), ("longitude",)),
        (dict(location=L(latitude=math.inf, longitude=1, has_point=True)), ("latitude",)),
        (dict(location=L(ip="not-an-ip")), ("location.ip", "not-an-ip")),
        (dict(location=L(ip="256.1.1.1")), ("location.ip",)),
        (dict(location=L(ip="10.0.0.1:443")), ("location.ip",)),
        (dict(location=L(ip="[::1]")), ("location.ip",)),
        (dict(probes=[pb.Probe(node_id=f"n{i}", rtt_ms=10) for i in range(33)]),
         ("probes", "32")),
        (dict(probes=[pb.Probe(node_id="ber", rtt_ms=0)]), ("rtt_ms",)),
        (dict(probes=[pb.Probe(node_id="ber", rtt_ms=-3)]), ("rtt_ms",)),
        (dict(probes=[pb.Probe(node_id="ber", rtt_ms=math.nan)]), ("rtt_ms",)),
        (dict(probes=[pb.Probe(node_id="ber", rtt_ms=math.inf)]), ("rtt_ms",)),
        (dict(probes=[pb.Probe(node_id="", rtt_ms=5)]), ("node_id",)),
        (dict(required_features=["opus"] * 17), ("required_features", "16")),
        (dict(required_features=["teleport"]), ("required_features", "teleport")),
        (dict(expected_kbps=2_000_000), ("expected_kbps",)),
    ]
    for overrides, words in cases:
        expect(stub.Allocate, good_request(pb, **overrides), grpc.StatusCode.INVALID_ARGUMENT,
               *words)
    assert_serving(peer, stub, pb, "fields")


def test_limits_themselves_are_accepted(peer, stub, pb):
    L = pb.ClientLocation
    for i, overrides in enumerate([
            dict(location=L(latitude=90, longitude=-180, has_point=True)),
            dict(location=L(latitude=0, longitude=0, has_point=True)),     # Gulf of Guinea
            dict(probes=[pb.Probe(node_id=f"n{i}", rtt_ms=10) for i in range(32)]),
            dict(probes=[pb.Probe(node_id="ber", rtt_ms=60000)]),
            dict(required_features=["opus"] * 16),
            dict(expected_kbps=1_000_000),
            dict(role="viewer"), dict(role="host"), dict(role="presenter"),
            dict(location=L(ip="::ffff:193.0.6.139")),
            # has_point false: the point is ignored however absurd
            dict(location=L(latitude=500, longitude=math.nan, has_point=False))]):
        reply = stub.Allocate(good_request(pb, room_id=f"limit-{i}", client_id=f"c{i}",
                                           **overrides), timeout=5)
        assert reply.node.node_id == "ber", (overrides, reply)
        stub.Release(pb.ReleaseRequest(lease_id=reply.lease_id), timeout=5)


def test_other_methods_check_their_fields(peer, stub, pb):
    L = pb.ClientLocation
    expect(stub.Candidates, pb.CandidatesRequest(app_id="default", max_candidates=33),
           grpc.StatusCode.INVALID_ARGUMENT, "max_candidates")
    expect(stub.Candidates, pb.CandidatesRequest(app_id="", location=L(ip="1.2.3.4")),
           grpc.StatusCode.INVALID_ARGUMENT, "app_id")
    expect(stub.Candidates, pb.CandidatesRequest(app_id="default", location=L(ip="nope")),
           grpc.StatusCode.INVALID_ARGUMENT, "location.ip")
    expect(stub.Candidates, pb.CandidatesRequest(app_id="default",
                                                 location=L(latitude=-91, has_point=True)),
           grpc.StatusCode.INVALID_ARGUMENT, "latitude")
    expect(stub.Candidates, pb.CandidatesRequest(app_id="default", required_features=["x"]),
           grpc.StatusCode.INVALID_ARGUMENT, "required_features")
    expect(stub.GetRoom, pb.GetRoomRequest(app_id="default", room_id="a b"),
           grpc.StatusCode.INVALID_ARGUMENT, "room_id")
    expect(stub.GetRoom, pb.GetRoomRequest(app_id="default", room_id=""),
           grpc.StatusCode.INVALID_ARGUMENT, "room_id")
    expect(stub.GetRoom, pb.GetRoomRequest(app_id="default", room_id="never-used"),
           grpc.StatusCode.NOT_FOUND, "never-used")
    expect(stub.KeepAlive, pb.KeepAliveRequest(lease_id="x" * 10000),
           grpc.StatusCode.NOT_FOUND, "lease")
    expect(stub.Release, pb.ReleaseRequest(lease_id="\u00e9\u00e9"),
           grpc.StatusCode.NOT_FOUND, "lease")
    # WatchRoom checks its request before it streams anything.
    call = stub.WatchRoom(pb.WatchRoomRequest(app_id="default", room_id="bad room"), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "room_id" in info.value.details()
    call = stub.WatchRoom(pb.WatchRoomRequest(app_id="ghost", room_id="r"), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "ghost" in info.value.details()
    assert_serving(peer, stub, pb, "methods")


def test_malformed_protobuf_bodies(peer, stub, pb):
    channel = peer.server.new_channel()
    raw = channel.unary_unary(ALLOCATE, request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    valid = good_request(pb, room_id="raw", client_id="raw-1").SerializeToString()
    bodies = {
        "truncated varint": b"\x08",
        "field 1 length past the end": b"\x0a\x40abc",
        "truncated message": valid[:-3],
        "wire type 7": b"\x0f\x01",
        "field number 0": b"\x02\x01a",
        "group never ended": b"\x0b",
        "random bytes": bytes(range(255, 0, -7)) * 5,
        "invalid UTF-8 in app_id": b"\x0a\x02\xff\xfe",
    }
    for what, body in bodies.items():
        with pytest.raises(grpc.RpcError) as info:
            raw(body, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, \
            (what, info.value.code(), info.value.details())
        assert "AllocateRequest" in info.value.details() or "app_id" in info.value.details(), \
            (what, info.value.details())
    # An empty body is a valid, empty message: every field is missing.
    with pytest.raises(grpc.RpcError) as info:
        raw(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "app_id" in info.value.details()
    # Unknown fields are ignored (a newer client): the valid message with field 99 added.
    reply = pb.AllocateResponse.FromString(raw(valid + b"\xf8\x06\x01", timeout=5))
    assert reply.node.node_id == "ber"
    assert_serving(peer, stub, pb, "protobuf")


def curl_json(port: int, method: str, body: str) -> tuple[int, dict, bytes]:
    """curl --http2-prior-knowledge with content-type application/json: (HTTP status,
    lower-case headers, body)."""
    with tempfile.NamedTemporaryFile(prefix="chroom-curl-") as out:
        proc = subprocess.run(
            ["curl", "--http2-prior-knowledge", "-sS", "--max-time", "5", "-X", "POST",
             "-H", "content-type: application/json", "--data-binary", body, "-D", "-",
             "-o", out.name,
             f"http://{h.LOOPBACK}:{port}/chroom.allocation.v1.AllocationService/{method}"],
            capture_output=True, timeout=15)
        response = Path(out.name).read_bytes()
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-800:]
    lines = [ln for ln in proc.stdout.decode("latin-1").split("\r\n") if ln]
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, response


def test_json_calls_good_and_bad(peer, stub, pb):
    port = peer.server.port
    # A good JSON Allocate (protobuf JSON mapping, lowerCamelCase names).
    status, headers, body = curl_json(port, "Allocate", json.dumps({
        "appId": "default", "roomId": "json-room", "clientId": "json-1", "role": "host",
        "location": {"latitude": 52.5, "longitude": 13.4, "hasPoint": True},
        "requiredFeatures": ["opus"], "expectedKbps": 1500}))
    assert status == 200, body
    doc = json.loads(body)
    assert doc["node"]["nodeId"] == "ber" and doc["leaseId"] and doc["joinToken"], doc
    status, _, body = curl_json(port, "Release", json.dumps({"leaseId": doc["leaseId"]}))
    assert status == 200 and json.loads(body) == {}, body

    cases = [
        ('{"appId": 5, "roomId": "r", "clientId": "c"}', None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "location": "Berlin"}', None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", '
         '"location": {"latitude": "north"}}', None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "expectedKbps": -1}', None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "expectedKbps": 1.5}', None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "requiredFeatures": [1, 2]}',
         None),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "probes": [{"rttMs": "x"}]}',
         None),
        ('[1, 2, 3]', None),
        ('{"appId": "default", ', None),
        # Valid JSON, valid types, bad values: the same checks as over gRPC.
        ('{"appId": "default", "roomId": "r", "clientId": "c", "role": "king"}', "role"),
        ('{"appId": "default", "roomId": "r", "clientId": "c", '
         '"location": {"latitude": 91, "longitude": 0, "hasPoint": true}}', "latitude"),
        ('{"appId": "default", "roomId": "r", "clientId": "c", '
         '"location": {"ip": "not-an-ip"}}', "location.ip"),
        ('{"appId": "default", "roomId": "r", "clientId": "c", "expectedKbps": 2000000}',
         "expected_kbps"),
    ]
    for body_text, field in cases:
        status, headers, body = curl_json(port, "Allocate", body_text)
        assert status == 400, (body_text, status, body)
        doc = json.loads(body)
        assert doc["code"] == 3 and headers.get("grpc-status") == "3", (body_text, doc, headers)
        assert isinstance(doc.get("message"), str) and doc["message"], (body_text, doc)
        if field:
            assert field in doc["message"], (body_text, doc)
    # Unknown app over JSON: NOT_FOUND, HTTP 404.
    status, headers, body = curl_json(port, "Allocate",
                                      '{"appId": "ghost", "roomId": "r", "clientId": "c"}')
    assert status == 404 and json.loads(body)["code"] == 5, (status, body)
    assert_serving(peer, stub, pb, "json")


def test_a_burst_of_bad_requests_leaves_the_peer_serving(peer, stub, pb):
    """200 bad Allocates in parallel, mixed with good ones: each good one succeeds."""
    L = pb.ClientLocation
    bad = [good_request(pb, role="king"), good_request(pb, app_id=""),
           good_request(pb, location=L(latitude=math.nan, has_point=True)),
           good_request(pb, probes=[pb.Probe(node_id="x", rtt_ms=0)]),
           good_request(pb, app_id="ghost")]
    futures = [stub.Allocate.future(bad[i % len(bad)], timeout=10) for i in range(200)]
    goods = [stub.Allocate.future(good_request(pb, room_id="burst", client_id=f"g{i}"),
                                  timeout=10) for i in range(20)]
    codes = [f.exception().code() for f in futures]
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert codes.count(grpc.StatusCode.NOT_FOUND) == 40
    replies = [g.result() for g in goods]
    assert {r.node.node_id for r in replies} == {"ber"}
    room = stub.GetRoom(pb.GetRoomRequest(app_id="default", room_id="burst"), timeout=5).room
    assert room.participants == 20
    for r in replies:
        stub.Release(pb.ReleaseRequest(lease_id=r.lease_id), timeout=5)
    assert_serving(peer, stub, pb, "burst")
