"""Operating a peer (docs/operations.md): Prometheus metrics scraped and parsed with an
independent parser, /healthz and /readyz, admin tokens on AdminService, request ids that
follow a call across peers into the logs, MigrateRoom, and bad input on the admin port."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time
from collections import defaultdict

import grpc
import pytest

import chroom_harness as h
import cluster_client as cc

SECRET_KEY = "operations-integration-key-0123"
NODES = 12
# Short timers: a crashed node is suspect at once (its stream is cancelled), dead soon after.
STATS_MS, SUSPECT_MS, DEAD_MS = 250, 1000, 1500
HTTP_TIMEOUT_S = 5.0
TOKENS = ["operator-token-aaaaaaaaaaaa", "operator-token-bbbbbbbbbbbb"]


def peer_config(**more) -> dict:
    config = {"media_nodes": {"secret_key": SECRET_KEY, "stats_interval_ms": STATS_MS,
                              "suspect_after_ms": SUSPECT_MS, "dead_after_ms": DEAD_MS,
                              "command_timeout_ms": 1000, "register_timeout_ms": 2000},
              "allocation": {"geoip_database": "none", "lease_ttl_ms": 600000}}
    config.update(more)
    return config


def http_get(url: str, path: str, method: str = "GET", headers: dict | None = None):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def scrape(url: str) -> dict:
    """/metrics parsed by prometheus_client: {(name, frozenset(labels)): value}."""
    status, body = http_get(url, "/metrics")
    assert status == 200, body
    return h.metric_samples(body)


value = h.metric_value


def total(samples: dict, name: str, **labels) -> float:
    """Sum over every sample of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def allocate(peer, room: str, client: str, app: str = "default", lat: float = 48.1,
             lon: float = 11.6, metadata=None):
    pb = h.stubs().alloc_pb2
    return peer.server.allocation().Allocate(pb.AllocateRequest(
        app_id=app, room_id=room, client_id=client,
        location=pb.ClientLocation(latitude=lat, longitude=lon, has_point=True)),
        timeout=10, metadata=metadata)


def active_nodes(peer, admin_pb) -> list:
    return [n for n in peer.list(page_size=5000).nodes if n.state == admin_pb.NODE_STATE_ACTIVE]


@pytest.fixture
def fleet_peer(start_allocation_peer, tmp_path, admin_pb):
    """A peer with NODES simulated nodes, all ACTIVE."""
    peer = start_allocation_peer(peer_config(), channels=1)
    sim = h.NodeSim(peer.server.target, NODES, SECRET_KEY, seed=11,
                    extra=["--mean-session-s", "1000000"],
                    stderr_path=tmp_path / "node-sim.stderr.log")
    try:
        assert h.wait_until(lambda: len(active_nodes(peer, admin_pb)) == NODES, 20)
        yield peer, sim
    finally:
        sim.quit()


def test_metrics_count_nodes_allocations_and_errors(fleet_peer, admin_pb):
    peer, sim = fleet_peer
    url = peer.server.admin_url
    for i in range(9):
        allocate(peer, f"metrics-{i % 3}", f"c{i}")
    pb = h.stubs().alloc_pb2
    for bad_app in ("no-such-app", "another-unknown-app"):
        with pytest.raises(grpc.RpcError) as refused:
            allocate(peer, "metrics-x", "c-x", app=bad_app)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as invalid:
        peer.server.allocation().Allocate(pb.AllocateRequest(
            app_id="default", room_id="metrics-0", client_id="not a client id!"), timeout=10)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    samples = scrape(url)
    # Allocations by app and result; unknown apps are one label value, not one each.
    assert value(samples, "chroom_allocations_total", app="default", result="OK") == 9
    assert value(samples, "chroom_allocations_total", app="(none)", result="NOT_FOUND") == 2
    assert value(samples, "chroom_allocations_total", app="default",
                 result="INVALID_ARGUMENT") == 1
    # The latency histogram saw every one of them, its buckets cumulative.
    assert value(samples, "chroom_allocation_duration_seconds_count") == 12
    buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in samples.items()
                      if n == "chroom_allocation_duration_seconds_bucket"))
    assert buckets[-1] == (float("inf"), 12)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert value(samples, "chroom_allocation_duration_seconds_sum") > 0
    # Nodes by state and region: as many as AdminService lists, region by region.
    by_region = defaultdict(int)
    for node in peer.list(page_size=5000).nodes:
        by_region[node.location.region] += 1
    for region, count in by_region.items():
        assert value(samples, "chroom_nodes", state="active", region=region) == count, region
    assert total(samples, "chroom_nodes") == NODES
    assert value(samples, "chroom_rooms") == 3
    assert value(samples, "chroom_participants") == 9
    assert value(samples, "chroom_cluster_members", state="alive") == 1
    assert value(samples, "chroom_ready") == 1
    # The gateway: calls by status code, connections and streams.
    assert value(samples, "chroom_grpc_responses_total", code="NOT_FOUND") >= 2
    assert value(samples, "chroom_grpc_responses_total", code="OK") >= 9
    assert value(samples, "chroom_grpc_streams_started_total") >= 12
    assert value(samples, "chroom_grpc_connections") >= 1
    assert value(samples, "chroom_grpc_connections_accepted_total") >= 1
    # Capacity by region (for the "region without capacity" alert): every node active,
    # 9 places taken in all.
    capacity = {n.location.region: 0 for n in peer.list(page_size=5000).nodes}
    for node in peer.list(page_size=5000).nodes:
        capacity[node.location.region] += node.capacity.max_participants
    for region, places in capacity.items():
        assert value(samples, "chroom_region_capacity_participants", region=region) == places
    taken = lambda s: total(s, "chroom_region_capacity_participants") - \
        total(s, "chroom_region_free_participants")
    # Places taken: reserved until the node's next Stats reports them admitted.
    assert h.wait_until(lambda: taken(scrape(url)) == 9, 5), taken(scrape(url))
    assert value(samples, "chroom_node_state_changes_total", state="active") >= NODES
    assert value(samples, "chroom_node_state_changes_total", state="dead") == 0

    # A node hosting a room crashes: the gauges follow, its participants are moved.
    hosting = peer.server.allocation().GetRoom(
        pb.GetRoomRequest(app_id="default", room_id="metrics-0"), timeout=5).room.nodes[0].node_id
    assert sim.command(f"crash {hosting}").startswith("ok")
    assert h.wait_until(lambda: total(scrape(url), "chroom_nodes", state="active") == NODES - 1,
                        10)
    samples = scrape(url)
    assert total(samples, "chroom_nodes", state="suspect") + \
        total(samples, "chroom_nodes", state="dead") == 1
    assert h.wait_until(lambda: value(scrape(url), "chroom_participant_moves_total",
                                      reason="node lost") >= 1, 15)
    # Its death is counted (the "nodes dying faster than usual" alert's counter).
    assert h.wait_until(lambda: value(scrape(url), "chroom_node_state_changes_total",
                                      state="dead") == 1, 10)
    assert value(scrape(url), "chroom_node_state_changes_total", state="suspect") >= 1


def test_migrate_room_moves_everyone_and_says_why_it_cannot(fleet_peer, admin_pb):
    peer, _ = fleet_peer
    pb = h.stubs().alloc_pb2
    leases = [allocate(peer, "moving", f"m{i}") for i in range(4)]
    before = {n.node_id for n in peer.admin.GetRoom(
        admin_pb.GetRoomRequest(app_id="default", room_id="moving"), timeout=5).room.room.nodes}
    target = next(n.node_id for n in active_nodes(peer, admin_pb) if n.node_id not in before)

    moved = peer.admin.MigrateRoom(admin_pb.MigrateRoomRequest(
        app_id="default", room_id="moving", to_node_id=target), timeout=30)
    assert [n.node_id for n in moved.room.room.nodes] == [target]
    assert moved.room.room.participants == 4 and moved.room.owner_peer_id
    assert {m.client_id for m in moved.moves} == {f"m{i}" for i in range(4)}
    assert all(m.to_node_id == target and m.from_node_id in before for m in moved.moves)
    # Clients learn it from KeepAlive.
    kept = peer.server.allocation().KeepAlive(
        pb.KeepAliveRequest(lease_id=leases[0].lease_id), timeout=5)
    assert kept.moved and kept.node.node_id == target
    assert value(scrape(peer.server.admin_url), "chroom_participant_moves_total",
                 reason="migrated") == 4

    # Off one node, wherever placement puts them.
    again = peer.admin.MigrateRoom(admin_pb.MigrateRoomRequest(
        app_id="default", room_id="moving", from_node_id=target), timeout=30)
    assert target not in {n.node_id for n in again.room.room.nodes}

    def refused(request, code, words):
        with pytest.raises(grpc.RpcError) as e:
            peer.admin.MigrateRoom(request, timeout=30)
        assert e.value.code() == code, e.value.details()
        assert words in e.value.details()

    refused(admin_pb.MigrateRoomRequest(app_id="default", room_id="nobody-here", to_node_id=target),
            grpc.StatusCode.NOT_FOUND, "has no participant")
    refused(admin_pb.MigrateRoomRequest(app_id="default", room_id="moving", to_node_id="sim-nope"),
            grpc.StatusCode.NOT_FOUND, "sim-nope")
    refused(admin_pb.MigrateRoomRequest(app_id="default", room_id="moving",
                                        from_node_id=target), grpc.StatusCode.NOT_FOUND, target)
    refused(admin_pb.MigrateRoomRequest(room_id="moving"), grpc.StatusCode.INVALID_ARGUMENT,
            "app_id")
    refused(admin_pb.MigrateRoomRequest(app_id="default", room_id="moving room!"),
            grpc.StatusCode.INVALID_ARGUMENT, "room_id may hold only")
    with pytest.raises(grpc.RpcError) as e:
        peer.admin.GetRoom(admin_pb.GetRoomRequest(app_id="default", room_id="x" * 129), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "room_id is longer than 128" in e.value.details()
    cordoned = next(n.node_id for n in active_nodes(peer, admin_pb))
    peer.admin.CordonNode(admin_pb.CordonNodeRequest(node_id=cordoned), timeout=5)
    refused(admin_pb.MigrateRoomRequest(app_id="default", room_id="moving", to_node_id=cordoned),
            grpc.StatusCode.FAILED_PRECONDITION, "CORDONED")
    # Still serving, the room intact.
    room = peer.admin.GetRoom(admin_pb.GetRoomRequest(app_id="default", room_id="moving"),
                              timeout=5)
    assert room.room.room.participants == 4


def test_health_and_readiness_of_a_peer_waiting_for_its_cluster(tmp_path):
    """/readyz says 503 while the peer waits for its seeds, 200 once it serves alone."""
    admin_port = h.free_port()
    config = tmp_path / "waiting.yaml"
    config.write_text(h.to_yaml({
        "listen": {"host": h.LOOPBACK, "port": h.free_port()},
        "admin": {"http": {"host": h.LOOPBACK, "port": admin_port}},
        "cluster": {"listen_host": h.LOOPBACK, "listen_port": h.free_port(),
                    "seeds": [f"{h.LOOPBACK}:{h.free_port()}"],  # nobody there
                    "heartbeat_interval_ms": 500, "failure_timeout_ms": 2500},
        "shutdown_grace_ms": 500}) + "\n")
    url = f"http://{h.LOOPBACK}:{admin_port}"
    with open(tmp_path / "waiting.stderr.log", "wb") as err:
        proc = subprocess.Popen([str(h.ORCHESTRATOR), "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=tmp_path)
    try:
        def readyz():
            try:
                return http_get(url, "/readyz")
            except OSError:
                return None
        first = h.wait_until(readyz, 10)
        assert first, "the admin port never answered"
        status, body = first
        assert status == 503, body
        # Its apps are the cluster's once a peer sent them: not yet either.
        assert "[-] cluster_joined waiting" in body and "[-] apps_loaded waiting" in body
        assert "[+] serving ok" in body
        assert http_get(url, "/healthz") == (200, "ok\n")
        assert value(scrape(url), "chroom_ready") == 0
        # join_timeout (2 x failure_timeout) later it serves alone: ready.
        assert h.wait_until(lambda: readyz()[0] == 200, 15), readyz()
        assert "[+] apps_loaded ok" in readyz()[1]
        assert value(scrape(url), "chroom_ready") == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_admin_tokens_guard_admin_service_only(start_server, tmp_path):
    server = start_server({"admin": {"http": {"host": h.LOOPBACK, "port": h.free_port()},
                                     "tokens": TOKENS}})
    admin = server.admin()
    pb = h.stubs().admin_pb2

    def code_of(metadata=None):
        try:
            admin.ListNodes(pb.ListNodesRequest(), timeout=5, metadata=metadata)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    code, details = code_of()
    assert code == grpc.StatusCode.UNAUTHENTICATED and "CHROOM_ADMIN_TOKEN" in details
    assert code_of([("authorization", "Bearer wrong-token-ccccccccccc")])[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    assert code_of([("authorization", TOKENS[0])])[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of([("authorization", f"Bearer {TOKENS[1]}")])[0] == grpc.StatusCode.OK
    assert code_of([("authorization", f"bearer {TOKENS[0]}")])[0] == grpc.StatusCode.OK
    # App methods and the WatchNodes stream too.
    with pytest.raises(grpc.RpcError) as e:
        admin.ListApps(pb.ListAppsRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        next(iter(admin.WatchNodes(pb.WatchNodesRequest(), timeout=5)))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Clients of AllocationService need no admin token.
    allocation = h.stubs().alloc_pb2
    with pytest.raises(grpc.RpcError) as e:
        server.allocation().Allocate(allocation.AllocateRequest(
            app_id="default", room_id="r", client_id="c"), timeout=5)
    assert e.value.code() != grpc.StatusCode.UNAUTHENTICATED  # no node yet: not a token matter

    # chroomctl: --token, CHROOM_ADMIN_TOKEN, or a hint when missing.
    ctl = [str(h.BIN_DIR / "chroomctl"), "--server", server.target]
    env = {"PATH": "/usr/bin:/bin"}
    ok = subprocess.run(ctl + ["--token", TOKENS[0], "nodes", "list"], capture_output=True,
                        text=True, timeout=20, env=env)
    assert ok.returncode == 0, ok.stderr
    via_env = subprocess.run(ctl + ["cluster", "status"], capture_output=True, text=True,
                             timeout=20, env={**env, "CHROOM_ADMIN_TOKEN": TOKENS[1]})
    assert via_env.returncode == 0, via_env.stderr
    missing = subprocess.run(ctl + ["nodes", "list"], capture_output=True, text=True, timeout=20,
                             env=env)
    assert missing.returncode == 1
    assert "UNAUTHENTICATED" in missing.stderr and "CHROOM_ADMIN_TOKEN" in missing.stderr

    # A token too short to be a credential is a configuration error naming it.
    bad = tmp_path / "short-token.yaml"
    bad.write_text("admin: {tokens: [short]}\n")
    result = subprocess.run([str(h.ORCHESTRATOR), "--config", str(bad)], capture_output=True,
                            text=True, timeout=10, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 2
    assert "admin.tokens[0]: must be 16..256 characters" in result.stderr


def log_text(path) -> str:
    return path.read_text(errors="replace")


def test_request_ids_follow_a_call_across_peers(tmp_path):
    pb, admin_pb = h.stubs().alloc_pb2, h.stubs().admin_pb2
    with cc.make_cluster(tmp_path, peers=2, nodes=10, log_level="debug") as running:
        peers = running.peers
        channels = [grpc.insecure_channel(p.grpc_address) for p in peers]
        try:
            assert h.wait_until(lambda: len([
                n for n in h.stubs().admin_grpc.AdminServiceStub(channels[0]).ListNodes(
                    admin_pb.ListNodesRequest(), timeout=5).nodes
                if n.state == admin_pb.NODE_STATE_ACTIVE]) == 10, 20)
            # Both ready: joined, and each has the other's apps (no wait for them ran out).
            for peer in peers:
                status, body = http_get(peer.admin_url, "/readyz")
                assert status == 200 and "[+] apps_loaded ok" in body, body
                assert "no peer sent its apps" not in log_text(peer.log_path)
            # A room owned by peer-1, asked of peer-0: the call is forwarded.
            room = next(f"rid-{k}" for k in range(1000)
                        if cc.owners_of(f"default/rid-{k}", ["peer-0", "peer-1"])[0] == "peer-1")
            stub = h.stubs().alloc_grpc.AllocationServiceStub(channels[0])
            request = pb.AllocateRequest(app_id="default", room_id=room, client_id="traced",
                                         location=pb.ClientLocation(latitude=50, longitude=8,
                                                                    has_point=True))
            _, call = stub.Allocate.with_call(request, timeout=10,
                                              metadata=[("x-request-id", "ops-trace-42")])
            assert ("x-request-id", "ops-trace-42") in call.initial_metadata()
            marker = "request_id=ops-trace-42"
            assert h.wait_until(lambda: any(
                marker in line and "forwarded to peer peer-1" in line
                for line in log_text(peers[0].log_path).splitlines()), 5), \
                "peer-0 did not log the forwarding with the request id"
            assert h.wait_until(lambda: any(
                marker in line and "answered OK" in line
                for line in log_text(peers[1].log_path).splitlines()), 5), \
                "peer-1 did not log the answer with the request id"
            # Without an id, or with one that is not usable, the gateway makes one.
            for metadata in ([], [("x-request-id", "no spaces allowed!")]):
                _, call = stub.Allocate.with_call(
                    pb.AllocateRequest(app_id="default", room_id=room, client_id="traced"),
                    timeout=10, metadata=metadata)
                made = dict(call.initial_metadata())["x-request-id"]
                assert re.fullmatch(r"[0-9a-f]{12}", made), made
        finally:
            for channel in channels:
                channel.close()


def test_json_logs_carry_peer_and_request_id(start_server):
    server = start_server({"log": {"format": "json"}, "peer_id": "json-peer"})
    pb = h.stubs().alloc_pb2
    with pytest.raises(grpc.RpcError):
        server.allocation().Allocate(pb.AllocateRequest(
            app_id="no-such-app", room_id="r", client_id="c"), timeout=5,
            metadata=[("x-request-id", "json-trace-7")])

    def traced():
        for line in log_text(server.stderr_path).splitlines():
            record = json.loads(line)
            assert record["peer"] == "json-peer"
            if record.get("request_id") == "json-trace-7":
                return record
        return None
    record = h.wait_until(traced, 5)
    assert record and "answered NOT_FOUND" in record["msg"], record


def test_the_admin_port_survives_bad_requests(server, tmp_path):
    url = server.admin_url
    assert http_get(url, "/no/such/page")[0] == 404
    assert http_get(url, "/metrics", method="POST")[0] in (404, 405)
    assert http_get(url, "/metrics", headers={"X-Big": "x" * 100_000})[0] >= 400
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for garbage in (b"\x00\xff" * 500 + b"\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT_S) as s:
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    assert http_get(url, "/healthz") == (200, "ok\n")
    assert http_get(url, "/metrics")[0] == 200


def test_a_taken_admin_port_stops_the_start_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind((h.LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "busy-admin.yaml"
        config.write_text(f"listen: {{host: 127.0.0.1, port: {h.free_port()}}}\n"
                          f"admin: {{http: {{host: 127.0.0.1, port: {port}}}}}\n"
                          "shutdown_grace_ms: 200\n")
        started = time.monotonic()
        result = subprocess.run([str(h.ORCHESTRATOR), "--config", str(config)],
                                capture_output=True, text=True, timeout=20,
                                stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"admin HTTP: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert time.monotonic() - started < 15


def test_list_rooms_pages_each_room_once_when_one_app_id_prefixes_another(fleet_peer, admin_pb):
    peer, _ = fleet_peer
    config_pb = h.stubs().config_pb2
    for app_id in ("pg", "pg-x"):
        peer.admin.CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
            app_id=app_id, allow_unauthenticated=True)), timeout=5)
    # "pg-x/a" < "pg/z" as strings, but (pg, z) < (pg-x, a) as (app_id, room_id).
    for app_id, room in (("pg", "z"), ("pg-x", "a"), ("pg", "b"), ("pg-x", "y")):
        assert h.wait_until(lambda: _allocated(peer, app_id, room), 5), (app_id, room)
    seen, token = [], ""
    for _ in range(10):
        page = peer.admin.ListRooms(admin_pb.ListRoomsRequest(page_size=1, page_token=token),
                                    timeout=10)
        seen += [(r.room.app_id, r.room.room_id) for r in page.rooms]
        token = page.next_page_token
        if not token:
            break
    assert seen == [("pg", "b"), ("pg", "z"), ("pg-x", "a"), ("pg-x", "y")]


def _allocated(peer, app_id: str, room: str) -> bool:
    """True once the app is in the peer's catalog and the client is placed."""
    try:
        allocate(peer, room, f"{app_id}-{room}", app=app_id)
        return True
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
