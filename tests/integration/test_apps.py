"""Applications end to end (docs/apps.md): AdminService app methods, credentials on every
AllocationService call (key and secret, signed tokens), key rotation, the app store across
restarts, and apps reaching every peer of a cluster. Real peers, media nodes from the
.proto (media_node_client.py), stock grpcio; tokens are signed here with hmac/hashlib."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import grpc
import pytest

import chroom_harness as h
import cluster_client as cc

W = h.AllocationWorld


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key_id: str, secret: str, claims: dict, alg: str = "HS256") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": key_id}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


def key_metadata(key) -> list:
    return [("x-chroom-api-key", key.key_id), ("x-chroom-api-secret", key.secret)]


def bearer(text: str) -> list:
    return [("authorization", f"Bearer {text}")]


def request(pb, app: str, room: str, client: str):
    return pb.AllocateRequest(app_id=app, room_id=room, client_id=client,
                              location=W.where(pb, "hamburg"))


def code_of(fn, req, metadata) -> grpc.StatusCode:
    try:
        fn(req, metadata=metadata, timeout=5)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def test_credentials_rotation_and_the_app_store(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber", "par"])
    admin = peer.server.admin()
    stub = peer.server.allocation()
    config_pb = h.stubs().config_pb2

    # Create: the peer makes a key and shows its secret once.
    made = admin.CreateApp(admin_pb.CreateAppRequest(
        app=config_pb.AppConfig(app_id="clinic", strategy="latency")), timeout=5)
    key = made.key
    assert key.key_id.startswith("ck_") and len(key.secret) >= 32
    assert made.app.source == "api" and made.app.config.keys[0].secret == ""
    other = admin.CreateApp(admin_pb.CreateAppRequest(
        app=config_pb.AppConfig(app_id="arcade")), timeout=5).key

    # Every kind of refusal, each with a clear status.
    cases = [
        ([], grpc.StatusCode.UNAUTHENTICATED, "needs credentials"),
        ([("x-chroom-api-key", key.key_id), ("x-chroom-api-secret", "x" * 43)],
         grpc.StatusCode.UNAUTHENTICATED, "wrong secret"),
        ([("x-chroom-api-key", key.key_id)], grpc.StatusCode.UNAUTHENTICATED, "missing"),
        ([("x-chroom-api-key", "ck_nobody_12345"), ("x-chroom-api-secret", key.secret)],
         grpc.StatusCode.UNAUTHENTICATED, "unknown API key"),
        (key_metadata(other), grpc.StatusCode.PERMISSION_DENIED, "belongs to app 'arcade'"),
        (bearer("not.a.token"), grpc.StatusCode.UNAUTHENTICATED, "base64url"),
        (bearer(token(key.key_id, key.secret, {"app": "clinic", "exp": time.time() - 120})),
         grpc.StatusCode.UNAUTHENTICATED, "expired"),
        (bearer(token(key.key_id, "y" * 43, {"app": "clinic", "exp": time.time() + 60})),
         grpc.StatusCode.UNAUTHENTICATED, "signature"),
        (bearer(token(key.key_id, key.secret, {"app": "clinic", "exp": time.time() + 60},
                      alg="none")), grpc.StatusCode.UNAUTHENTICATED, "HS256"),
        (bearer(token(key.key_id, key.secret, {"app": "clinic", "exp": time.time() + 3 * 86400})),
         grpc.StatusCode.UNAUTHENTICATED, "ahead"),
        (bearer(token(key.key_id, key.secret, {"app": "clinic"})),
         grpc.StatusCode.UNAUTHENTICATED, "exp"),
        (bearer(token(key.key_id, key.secret, {"app": "clinic", "room": "other",
                                               "exp": time.time() + 60})),
         grpc.StatusCode.PERMISSION_DENIED, "not for room"),
        (bearer(token(other.key_id, other.secret, {"app": "arcade", "exp": time.time() + 60})),
         grpc.StatusCode.PERMISSION_DENIED, "belongs to app 'arcade'"),
    ]
    for metadata, code, words in cases:
        got, details = code_of(stub.Allocate, request(pb, "clinic", "r1", "c1"), metadata)
        assert got == code and words in details, (metadata, got, details)

    # Key and secret, and a token for the room, both work.
    reply = stub.Allocate(request(pb, "clinic", "r1", "alice"), metadata=key_metadata(key),
                          timeout=5)
    assert reply.node.node_id == "ber"
    signed = token(key.key_id, key.secret, {"app": "clinic", "room": "r1",
                                            "exp": time.time() + 300})
    stub.Allocate(request(pb, "clinic", "r1", "bob"), metadata=bearer(signed), timeout=5)
    # The lease is the app's: another app's key may not renew or release it.
    keep = pb.KeepAliveRequest(lease_id=reply.lease_id)
    got, details = code_of(stub.KeepAlive, keep, key_metadata(other))
    assert got == grpc.StatusCode.PERMISSION_DENIED, details
    got, _ = code_of(stub.KeepAlive, keep, [])
    assert got == grpc.StatusCode.UNAUTHENTICATED
    stub.KeepAlive(keep, metadata=key_metadata(key), timeout=5)
    got, _ = code_of(stub.GetRoom, pb.GetRoomRequest(app_id="clinic", room_id="r1"),
                     key_metadata(other))
    assert got == grpc.StatusCode.PERMISSION_DENIED
    # WatchRoom too: another app's key is refused, the app's own key streams the room.
    watch = pb.WatchRoomRequest(app_id="clinic", room_id="r1")
    with pytest.raises(grpc.RpcError) as watched:
        next(iter(stub.WatchRoom(watch, metadata=key_metadata(other), timeout=5)))
    assert watched.value.code() == grpc.StatusCode.PERMISSION_DENIED
    first_update = next(iter(stub.WatchRoom(watch, metadata=key_metadata(key), timeout=5)))
    assert first_update.reason == "current state" and first_update.room.participants == 2

    # Rotation: both keys work during the grace period; a third live key is refused;
    # deleting the old key ends it.
    rotated = admin.RotateAppKey(admin_pb.RotateAppKeyRequest(app_id="clinic", grace_ms=600000),
                                 timeout=5)
    new_key = rotated.key
    assert new_key.key_id != key.key_id and len(rotated.app.config.keys) == 2
    for k, client in ((key, "carol"), (new_key, "dave")):
        stub.Allocate(request(pb, "clinic", "r2", client), metadata=key_metadata(k), timeout=5)
    with pytest.raises(grpc.RpcError) as third:
        admin.RotateAppKey(admin_pb.RotateAppKeyRequest(app_id="clinic"), timeout=5)
    assert third.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    admin.DeleteAppKey(admin_pb.DeleteAppKeyRequest(app_id="clinic", key_id=key.key_id),
                       timeout=5)
    got, _ = code_of(stub.Allocate, request(pb, "clinic", "r2", "erin"), key_metadata(key))
    assert got == grpc.StatusCode.UNAUTHENTICATED

    # Validation names the field; file apps belong to the file; duplicates are refused.
    bad = config_pb.AppConfig(app_id="bad", allow_unauthenticated=True,
                              roles=[config_pb.RolePolicy(role="host", publish=["smell"])])
    with pytest.raises(grpc.RpcError) as invalid:
        admin.CreateApp(admin_pb.CreateAppRequest(app=bad), timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "app.roles[0].publish[0]: must be one of audio, video, screen" in invalid.value.details()
    with pytest.raises(grpc.RpcError) as exists:
        admin.CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(app_id="clinic")),
                        timeout=5)
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as owned:
        admin.UpdateApp(admin_pb.UpdateAppRequest(
            app=config_pb.AppConfig(app_id="default", allow_unauthenticated=True)), timeout=5)
    assert owned.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "config file" in owned.value.details()

    # Update keeps the keys; the new policy applies at once (Paris only).
    admin.UpdateApp(admin_pb.UpdateAppRequest(
        app=config_pb.AppConfig(app_id="clinic", allowed_countries=["FR"])), timeout=5)
    moved = stub.Allocate(request(pb, "clinic", "r3", "frank"), metadata=key_metadata(new_key),
                          timeout=5)
    assert moved.node.node_id == "par"

    # The app store survives a restart: the app, its policy and its key come back.
    peer.close()
    peer.server.stop()
    peer.server.start()
    peer = h.NodePeer(peer.server, 2)
    W.start_nodes(peer, ["ber", "par"])
    listed = {a.config.app_id: a for a in
              peer.server.admin().ListApps(admin_pb.ListAppsRequest(), timeout=5).apps}
    assert set(listed) == {"default", "clinic", "arcade"}
    assert list(listed["clinic"].config.allowed_countries) == ["FR"]
    assert listed["default"].source == "file"
    again = peer.server.allocation().Allocate(request(pb, "clinic", "r4", "gina"),
                                              metadata=key_metadata(new_key), timeout=5)
    assert again.node.node_id == "par"
    peer.server.admin().DeleteApp(admin_pb.DeleteAppRequest(app_id="arcade"), timeout=5)
    got, _ = code_of(peer.server.allocation().Allocate, request(pb, "arcade", "r", "c"),
                     key_metadata(other))
    assert got == grpc.StatusCode.NOT_FOUND


def test_apps_reach_every_peer_and_survive_a_restart_of_all(tmp_path):
    """An app made on one peer is served by every peer; after all peers restart it is
    still there."""
    stubs = h.stubs()
    config_pb, admin_pb, pb = stubs.config_pb2, stubs.admin_pb2, stubs.alloc_pb2
    cluster = cc.make_cluster(tmp_path, peers=3, nodes=12)
    with cluster:
        channels = [grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port(i)}") for i in range(3)]
        admin = [stubs.admin_grpc.AdminServiceStub(c) for c in channels]
        alloc = [stubs.alloc_grpc.AllocationServiceStub(c) for c in channels]
        key = admin[0].CreateApp(admin_pb.CreateAppRequest(
            app=config_pb.AppConfig(app_id="shared")), timeout=5).key

        last_error = [""]

        def served_everywhere():
            for stub in alloc:
                try:
                    stub.Allocate(pb.AllocateRequest(app_id="shared", room_id="lobby",
                                                     client_id=f"c{time.monotonic_ns()}",
                                                     location=W.where(pb, "hamburg")),
                                  metadata=key_metadata(key), timeout=5)
                except grpc.RpcError as e:
                    # Not there (yet), or the cluster still forming (a peer that restarts
                    # waits for the nodes before it places anyone): asked again.
                    if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,
                                    grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.DEADLINE_EXCEEDED,
                                    grpc.StatusCode.RESOURCE_EXHAUSTED):
                        last_error[0] = f"{e.code()}: {e.details()}"
                        return False
                    raise
            return True

        assert h.wait_until(served_everywhere, timeout=20), \
            f"the app is not on every peer: {last_error[0]}"
        # Room quotas count the rooms of every peer: rooms owned by different peers, the
        # third refused wherever it is asked for (once the counts went round, 0.5 s).
        admin[0].CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
            app_id="capped", allow_unauthenticated=True,
            quotas=config_pb.AppQuotas(max_rooms=2))), timeout=5)
        peers = [f"peer-{i}" for i in range(3)]
        rooms, i = [], 0
        while len({cc.owners_of(f"capped/{r}", peers)[0] for r in rooms}) < 2 or len(rooms) < 2:
            room = f"room-{i}"
            i += 1
            if cc.owners_of(f"capped/{room}", peers)[0] not in {
                    cc.owners_of(f"capped/{r}", peers)[0] for r in rooms}:
                rooms.append(room)
        def known_everywhere():
            try:
                for stub in alloc:
                    stub.Candidates(pb.CandidatesRequest(app_id="capped"), timeout=5)
                return True
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()
                return False

        assert h.wait_until(known_everywhere, timeout=10), "app 'capped' did not reach every peer"
        for n, room in enumerate(rooms):
            alloc[n].Allocate(pb.AllocateRequest(app_id="capped", room_id=room, client_id="a",
                                                 location=W.where(pb, "hamburg")), timeout=5)
        time.sleep(1.5)
        for stub in alloc:
            with pytest.raises(grpc.RpcError) as over:
                stub.Allocate(pb.AllocateRequest(app_id="capped", room_id="one-too-many",
                                                 client_id="b", location=W.where(pb, "hamburg")),
                              timeout=5)
            assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "quotas.max_rooms 2" in over.value.details(), over.value.details()
            # Joining a room that exists is fine.
            stub.Allocate(pb.AllocateRequest(app_id="capped", room_id=rooms[0],
                                             client_id=f"c{time.monotonic_ns()}",
                                             location=W.where(pb, "hamburg")), timeout=5)
        for channel in channels:
            channel.close()
        for i in range(3):
            cluster.stop_peer(i)
        for i in range(3):
            cluster.restart(i)
        channels = [grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port(i)}") for i in range(3)]
        alloc = [stubs.alloc_grpc.AllocationServiceStub(c) for c in channels]
        assert h.wait_until(served_everywhere, timeout=40), \
            f"the app is gone after the restarts: {last_error[0]}"
        for channel in channels:
            channel.close()


def claims_of(join_token: str) -> dict:
    body = join_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_room_rules_roles_admission_and_token_claims(start_allocation_peer, pb, admin_pb):
    """max_room_size, roles (listed, max_per_room, publish capped by the media profile),
    host admission, the app's lease TTL, recording: enforced by the room, carried in the
    join token."""
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber", "par"])
    config_pb = h.stubs().config_pb2
    peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="consult", allow_unauthenticated=True, max_room_size=3, admission="host",
        media_profile="audio_only", lease_ttl_ms=5000,
        roles=[config_pb.RolePolicy(role="host", publish=["audio", "video"], max_per_room=1),
               config_pb.RolePolicy(role="participant", publish=["audio"]),
               config_pb.RolePolicy(role="viewer")])), timeout=5)
    stub = peer.server.allocation()

    def join(client, role):
        return stub.Allocate(pb.AllocateRequest(app_id="consult", room_id="visit-1",
                                                client_id=client, role=role,
                                                location=W.where(pb, "hamburg")), timeout=5)

    def refused(client, role):
        with pytest.raises(grpc.RpcError) as error:
            join(client, role)
        return error.value.code(), error.value.details()

    code, details = refused("patient", "participant")
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "host" in details, details
    host = join("doctor", "host")
    assert host.lease_ttl_ms == 5000
    claims = claims_of(host.join_token)
    assert claims["role"] == "host" and claims["pub"] == "audio" and claims["rec"] == 0
    code, details = refused("doctor-2", "host")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "host(s) already" in details, details
    code, details = refused("speaker", "presenter")
    assert code == grpc.StatusCode.PERMISSION_DENIED and "no role 'presenter'" in details
    patient = join("patient", "participant")
    assert claims_of(patient.join_token)["pub"] == "audio"
    nurse = join("nurse", "viewer")
    assert claims_of(nurse.join_token)["pub"] == ""
    code, details = refused("relative", "viewer")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_room_size 3" in details, details
    renewed = stub.KeepAlive(pb.KeepAliveRequest(lease_id=patient.lease_id), timeout=5)
    assert renewed.lease_ttl_ms == 5000
    assert claims_of(renewed.join_token)["pub"] == "audio"
    # A lease of the app ends after the app's TTL, not the peer's 30 s: the seat frees up.
    stub.Release(pb.ReleaseRequest(lease_id=nurse.lease_id), timeout=5)
    join("relative", "viewer")
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        stub.KeepAlive(pb.KeepAliveRequest(lease_id=host.lease_id), timeout=5)
        try:
            join("late", "viewer")
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
            time.sleep(0.5)
    else:
        pytest.fail("leases not renewed within the app's 5 s TTL did not end")


def test_allocation_rate_and_participant_quotas(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber"])
    config_pb = h.stubs().config_pb2
    admin = peer.server.admin()
    stub = peer.server.allocation()
    admin.CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="metered", allow_unauthenticated=True,
        quotas=config_pb.AppQuotas(allocations_per_second=1, allocation_burst=3,
                                   max_participants=4))), timeout=5)

    def join(room, client):
        return stub.Allocate(pb.AllocateRequest(app_id="metered", room_id=room, client_id=client,
                                                location=W.where(pb, "hamburg")), timeout=5)

    for n in range(3):  # the burst
        join("r1", f"c{n}")
    with pytest.raises(grpc.RpcError) as fast:
        join("r1", "c3")
    assert fast.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "allocation rate" in fast.value.details() and "retry in" in fast.value.details()
    # Peers' own metadata from a client is dropped: it cannot pass as a forwarded call.
    with pytest.raises(grpc.RpcError) as forged:
        stub.Allocate(pb.AllocateRequest(app_id="metered", room_id="r1", client_id="c3",
                                         location=W.where(pb, "hamburg")),
                      metadata=[("chroom-forwarded-by", "peer-x"),
                                ("chroom-forwarded-by", "peer-y")], timeout=5)
    assert forged.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, forged.value.details()
    time.sleep(1.1)
    join("r2", "c3")  # the fourth participant: at the quota now
    time.sleep(1.1)
    with pytest.raises(grpc.RpcError) as full:
        join("r2", "c4")
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quotas.max_participants 4" in full.value.details(), full.value.details()
    # Other apps are not affected.
    W.allocate(stub, pb, "free", "x", "hamburg")


HOOK_SCRIPT = r'''
joined = 0
function before_allocation(req)
  if req.client_id:find("^banned") then return {deny = "banned by the app"} end
  if req.room_participants == 0 then return {role = "host"} end
  if req.client_id == "paris-only" then return {nodes = {"par"}} end
  if req.client_id == "loop" then while true do end end
  if req.client_id == "hog" then
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end
  end
  if req.client_id == "boom" then error("boom") end
  return nil
end
function on_participant_joined(ev)
  joined = joined + 1
  print("joined " .. ev.client_id .. " #" .. joined)
end
'''


class Receiver:
    """A local webhook endpoint: records (headers, body); fails the first `fail_first`
    requests with 500."""

    def __init__(self, fail_first: int = 0):
        import http.server
        import threading
        self.requests: list = []
        self.fail_left = fail_first
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = 200
                if receiver.fail_left > 0:
                    receiver.fail_left -= 1
                    status = 500
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/chroom/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, secret: str) -> list:
        """Delivered events (last attempt of each delivery id), signatures checked."""
        out = {}
        for headers, body in self.requests:
            stamp, signature = (part.split("=", 1)[1] for part in
                                headers["X-Chroom-Signature"].split(","))
            expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                                hashlib.sha256).hexdigest()
            assert hmac.compare_digest(signature, expected), headers
            event = json.loads(body)
            assert headers["X-Chroom-Event"] == event["type"]
            assert headers["X-Chroom-Delivery"] == event["event_id"]
            out[event["event_id"]] = (int(headers["X-Chroom-Attempt"]), event)
        return list(out.values())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_hooks_and_webhooks(start_allocation_peer, pb, admin_pb):
    receiver = Receiver(fail_first=1)
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber", "par"])
    config_pb = h.stubs().config_pb2
    secret = "webhook-secret-of-32-characters!"
    try:
        peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
            app_id="hooked", allow_unauthenticated=True,
            hooks=config_pb.HookConfig(script=HOOK_SCRIPT, max_instructions=200000,
                                       max_memory_kib=2048, max_time_ms=200),
            webhook=config_pb.WebhookConfig(url=receiver.url, secret=secret,
                                            events=["room.started", "participant.joined",
                                                    "participant.left", "room.finished"]))),
            timeout=5)
        stub = peer.server.allocation()

        def join(client, role="", room="arena"):
            return stub.Allocate(pb.AllocateRequest(app_id="hooked", room_id=room,
                                                    client_id=client, role=role,
                                                    location=W.where(pb, "hamburg")), timeout=10)

        def status_of(client, room="arena"):
            try:
                join(client, room=room)
            except grpc.RpcError as e:
                return e.code(), e.details()
            return grpc.StatusCode.OK, ""

        # The hooks load asynchronously after the app is created.
        deadline = time.monotonic() + 5
        while status_of("banned-probe", "probes")[0] != grpc.StatusCode.PERMISSION_DENIED:
            assert time.monotonic() < deadline, "the app's hook never ran"
            time.sleep(0.1)
        first = join("alice", "viewer")
        assert claims_of(first.join_token)["role"] == "host"      # the hook made her host
        assert claims_of(join("bob").join_token)["role"] == "participant"
        code, details = status_of("banned-carol")
        assert code == grpc.StatusCode.PERMISSION_DENIED and "banned by the app" in details
        assert join("paris-only").node.node_id == "par"            # hamburg would get ber
        for client, failure in (("loop", "instruction_limit"), ("hog", "memory_limit"),
                                ("boom", "runtime_error")):
            code, details = status_of(client)
            assert code == grpc.StatusCode.INTERNAL, (client, code, details)
            assert failure in details, (client, details)
        # The peer and the app keep serving.
        assert join("dave").node.node_id == "ber"
        stub.Release(pb.ReleaseRequest(lease_id=first.lease_id), timeout=5)

        # Webhooks: every event once, signed; the first delivery needed a retry.
        def delivered():
            events = receiver.events(secret)
            joined = {e["client_id"] for _, e in events if e["type"] == "participant.joined"}
            return joined >= {"alice", "bob", "paris-only", "dave"} and any(
                e["type"] == "participant.left" for _, e in events)
        assert h.wait_until(delivered, timeout=10), receiver.requests
        events = receiver.events(secret)
        types = [e["type"] for _, e in sorted(events, key=lambda x: x[1]["occurred_unix_ms"])]
        assert types[0] == "room.started"
        assert max(attempt for attempt, _ in events) == 2
        left = next(e for _, e in events if e["type"] == "participant.left")
        assert left["client_id"] == "alice" and left["reason"] == "released"
        assert left["app_id"] == "hooked" and left["room_id"] == "arena"
        log = peer.server.log_tail()
        assert "hook: joined alice #1" in log or "joined alice" in peer.server.stderr_path.read_text()
        assert "hook before_allocation failed (instruction_limit)" in \
            peer.server.stderr_path.read_text()
    finally:
        receiver.close()


def test_a_dead_webhook_endpoint_never_slows_allocation(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber"])
    config_pb = h.stubs().config_pb2
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="deaf", allow_unauthenticated=True,
        webhook=config_pb.WebhookConfig(url=dead, secret="x" * 32))), timeout=5)
    stub = peer.server.allocation()
    started = time.monotonic()
    for n in range(50):
        stub.Allocate(pb.AllocateRequest(app_id="deaf", room_id=f"r{n % 5}", client_id=f"c{n}",
                                         location=W.where(pb, "hamburg")), timeout=5)
    # Bounded, not timed: 50 calls each within their 5 s deadline; a blocking webhook would
    # have taken the retry schedule (seconds) per call.
    assert time.monotonic() - started < 50 * 5


def test_reload_apps_from_the_config_file(start_allocation_peer, pb, admin_pb):
    apps = [{"app_id": "default"}, {"app_id": "filed", "strategy": "pack"},
            {"app_id": "retired"}]
    peer = start_allocation_peer(W.config(apps=apps))
    admin = peer.server.admin()
    listed = {a.config.app_id: a for a in admin.ListApps(admin_pb.ListAppsRequest(),
                                                         timeout=5).apps}
    assert listed["filed"].source == "file" and listed["filed"].config.strategy == "pack"
    # The file changes: one app updated, one gone, one new, one bad value refused first.
    config = W.config(apps=[{"app_id": "default"}, {"app_id": "filed", "strategy": "latnecy"},
                            {"app_id": "fresh"}])
    peer.server.config_path.write_text(h.to_yaml(config) + "\n")
    with pytest.raises(grpc.RpcError) as bad:
        admin.ReloadApps(admin_pb.ReloadAppsRequest(), timeout=5)
    assert bad.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "apps[1].strategy" in bad.value.details() and "did you mean 'latency'" in \
        bad.value.details(), bad.value.details()
    config["apps"][1]["strategy"] = "latency"
    peer.server.config_path.write_text(h.to_yaml(config) + "\n")
    reply = admin.ReloadApps(admin_pb.ReloadAppsRequest(), timeout=5)
    assert (list(reply.created), list(reply.updated), list(reply.deleted),
            list(reply.unchanged)) == (["fresh"], ["filed"], ["retired"], ["default"])
    listed = {a.config.app_id: a for a in admin.ListApps(admin_pb.ListAppsRequest(),
                                                         timeout=5).apps}
    assert set(listed) == {"default", "filed", "fresh"}
    assert listed["filed"].config.strategy == "latency"
    W.start_nodes(peer, ["ber"])
    W.allocate(peer.server.allocation(), pb, "room", "client", "hamburg", app="fresh")


def test_usage_metering_across_peers_and_signed_reports(tmp_path):
    """Participant-minutes, rooms, relay links and node-reported bytes per app and epoch,
    the same on every peer, kept over restarts, exported as a report signed with Ed25519
    (checked here with the openssl command line)."""
    import subprocess
    stubs = h.stubs()
    config_pb, admin_pb, pb = stubs.config_pb2, stubs.admin_pb2, stubs.alloc_pb2
    cluster = cc.make_cluster(tmp_path, peers=2, nodes=40,
                              overrides={"metering": {"epoch_ms": 3000}})
    with cluster:
        channels = [grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port(i)}") for i in range(2)]
        admin = [stubs.admin_grpc.AdminServiceStub(c) for c in channels]
        alloc = [stubs.alloc_grpc.AllocationServiceStub(c) for c in channels]
        admin[0].CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
            app_id="metered-app", allow_unauthenticated=True)), timeout=5)
        started = int(time.time() * 1000)
        cities = ["hamburg", "boston", "osaka", "sydney", "lyon", "chicago"]

        def allocate_all():
            try:
                for n, city in enumerate(cities):
                    alloc[n % 2].Allocate(pb.AllocateRequest(
                        app_id="metered-app", room_id=f"room-{n % 2}", client_id=f"c{n}",
                        location=W.where(pb, city)), timeout=5)
                return True
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), e
                return False
        assert h.wait_until(allocate_all, timeout=15, interval=0.2)

        def usage(i):
            return admin[i].GetUsage(admin_pb.GetUsageRequest(app_id="metered-app",
                                                               from_unix_ms=started - 10000),
                                     timeout=5)

        def counted():
            reply = usage(0)
            total = reply.total
            return reply if (total.participant_minutes > 0.2 and total.rooms >= 2 and
                             total.bytes_in > 0 and total.relay_links >= 1 and
                             len(reply.epochs) >= 2) else None
        reply = h.wait_until(counted, timeout=30, interval=1)
        assert reply, usage(0)
        for epoch in reply.epochs:
            assert epoch.epoch_ms == 3000 and epoch.epoch_start_unix_ms % 3000 == 0
        # The other peer has every peer's counts too (within a flush, 5 s).
        assert h.wait_until(lambda: usage(1).total.participant_minutes >=
                            reply.total.participant_minutes, timeout=15, interval=0.5)

        report = admin[1].ExportUsageReport(admin_pb.ExportUsageReportRequest(
            app_id="metered-app", from_unix_ms=started - 10000), timeout=5)
        assert report.report.app_id == "metered-app" and report.report.generated_by == "peer-1"
        assert report.report.total.participant_minutes > 0
        assert report.report.SerializeToString(deterministic=True) == report.report_bytes
        (tmp_path / "report.bin").write_bytes(report.report_bytes)
        (tmp_path / "report.sig").write_bytes(report.signature)
        (tmp_path / "signer.pem").write_text(report.public_key_pem)
        verify = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "signer.pem"),
                  "-rawin", "-in", str(tmp_path / "report.bin"), "-sigfile",
                  str(tmp_path / "report.sig")]
        assert subprocess.run(verify, capture_output=True).returncode == 0
        (tmp_path / "report.bin").write_bytes(report.report_bytes + b"\x00")
        assert subprocess.run(verify, capture_output=True).returncode != 0

        # Kept over a restart of the peer that answers.
        before = usage(1).total.rooms
        for channel in channels:
            channel.close()
        cluster.restart(1)
        channels = [grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port(i)}") for i in range(2)]
        admin = [stubs.admin_grpc.AdminServiceStub(c) for c in channels]
        assert usage(1).total.rooms >= before
        with pytest.raises(grpc.RpcError) as unknown:
            admin[1].GetUsage(admin_pb.GetUsageRequest(app_id="nobody"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        for channel in channels:
            channel.close()


GEOIP = Path("/usr/share/GeoIP/GeoIP.dat")


@pytest.mark.skipif(not GEOIP.exists(), reason=f"{GEOIP} (Debian geoip-database) not installed")
def test_a_hook_sees_the_country_of_a_client_located_by_ip(start_allocation_peer, pb, admin_pb):
    peer = start_allocation_peer(W.config(allocation={"geoip_database": str(GEOIP)}))
    W.start_nodes(peer, ["ams", "nyc"])
    config_pb = h.stubs().config_pb2
    script = 'function before_allocation(req)\n' \
             '  if req.client_country == "US" then return {deny = "not served in " .. ' \
             'req.client_country} end\nend\n'
    peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="regional", allow_unauthenticated=True,
        hooks=config_pb.HookConfig(script=script))), timeout=5)
    stub = peer.server.allocation()

    def join(client, ip):
        return stub.Allocate(pb.AllocateRequest(app_id="regional", room_id="r", client_id=client,
                                                location=pb.ClientLocation(ip=ip)), timeout=5)
    assert join("dutch", "193.0.6.139").node.node_id == "ams"   # RIPE NCC, NL
    with pytest.raises(grpc.RpcError) as refused:
        join("american", "8.8.8.8")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not served in US" in refused.value.details()
