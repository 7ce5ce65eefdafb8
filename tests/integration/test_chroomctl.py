"""chroomctl (tools/chroomctl, docs/chroomctl.md), the admin command line, run as a subprocess
against a real peer with a simulated fleet (chroom-node-sim), a two-peer cluster, and a small
grpcio AdminService of the test's own where the real peer cannot show something (paging
over many pages, the bearer token, a slow answer). Every chroomctl run is bounded by a
subprocess timeout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

import chroom_harness as harness
import cluster_client as cc

CHROOMCTL = harness.BIN_DIR / "chroomctl"
SECRET_KEY = "chroomctl-test-secret-key-0123456789"
NODES = 8
# Short node timers, as in test_node_sim.py; long leases so rooms stay while the test looks.
CONFIG = {
    "peer_id": "ctl-peer",
    "media_nodes": {"secret_key": SECRET_KEY, "stats_interval_ms": 200, "suspect_after_ms": 1500,
                    "dead_after_ms": 3000, "command_timeout_ms": 1000,
                    "register_timeout_ms": 2000},
    "allocation": {"geoip_database": "none", "lease_ttl_ms": 600000},
    "apps": [{"app_id": "default", "allow_unauthenticated": True},
             {"app_id": "filed", "allow_unauthenticated": True, "strategy": "pack"}],
}
# One chroomctl run, at most (a run against a dead address must end far sooner: see
# test_unreachable_server_exits_3_quickly).
RUN_TIMEOUT_S = 20


def run_ctl(*args, server: str | None = None, env: dict | None = None, stdin: str | None = None,
            timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """chroomctl [--server server] args..., with CHROOM_* variables only as given in env."""
    if not CHROOMCTL.exists():
        pytest.fail(f"{CHROOMCTL} missing (cmake --build the chroomctl target)")
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("CHROOM_SERVER", "CHROOM_ADMIN_TOKEN")}
    environment.update(env or {})
    argv = [str(CHROOMCTL), *(["--server", server] if server else []), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment,
                          input=stdin)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (f"{result.args} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


def table_rows(text: str) -> list[list[str]]:
    """A chroomctl table split into cells (columns are 3+ spaces apart)."""
    import re
    return [re.split(r"\s{3,}", line.strip()) for line in text.splitlines() if line.strip()]


def parse(text: str, message):
    return json_format.Parse(text, message)


def without(message, *fields):
    """A copy of message with the (volatile) fields cleared, for comparisons."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in fields:
        copy.ClearField(name)
    return copy


# --------------------------------------------------------------------------- a peer and a fleet

class World:
    def __init__(self, workdir: Path):
        self.server = harness.Server(workdir, CONFIG, "ctl-peer").start()
        self.fleet = None
        try:
            self.fleet = harness.NodeSim(self.server.target, NODES, SECRET_KEY,
                                         stderr_path=workdir / "fleet.stderr.log")
            self._connect()
        except BaseException:
            if self.fleet is not None:
                self.fleet.proc.kill()
                self.fleet.quit()
            self.server.kill()
            raise

    def _connect(self) -> None:
        s = harness.stubs()
        self.pb, self.alloc_pb, self.config_pb = s.admin_pb2, s.alloc_pb2, s.config_pb2
        self.channel = self.server.new_channel()
        self.admin = s.admin_grpc.AdminServiceStub(self.channel)
        self.alloc = s.alloc_grpc.AllocationServiceStub(self.channel)
        self.node_ids = [f"sim-{i:05d}" for i in range(NODES)]
        assert harness.wait_until(lambda: self.active() == set(self.node_ids), 20), self.active()

    def nodes(self):
        return self.admin.ListNodes(self.pb.ListNodesRequest(page_size=5000), timeout=5)

    def node(self, node_id: str):
        return self.admin.GetNode(self.pb.GetNodeRequest(node_id=node_id), timeout=5).node

    def active(self) -> set:
        return {n.node_id for n in self.nodes().nodes if n.state == self.pb.NODE_STATE_ACTIVE}

    def allocate(self, room: str, client: str, app: str = "default", lat=52.5, lon=13.4):
        return self.alloc.Allocate(self.alloc_pb.AllocateRequest(
            app_id=app, room_id=room, client_id=client,
            location=self.alloc_pb.ClientLocation(latitude=lat, longitude=lon, has_point=True)),
            timeout=10)

    def ctl(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_ctl(*args, server=self.server.target, **kw)

    def close(self) -> None:
        rc = self.fleet.quit()
        self.channel.close()
        harness.stop_peer_with_rooms(self.server)
        assert rc == 0, f"chroom-node-sim exited {rc}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("chroomctl"))
    try:
        yield w
    finally:
        try:
            w.close()
        finally:
            w.server.kill()


# --------------------------------------------------------------------------- a fake AdminService

class FakeAdmin:
    """A grpcio AdminService: ListNodes / ListRooms in three pages, GetNode answering after
    `slow_s` for node "slow", every call's metadata recorded, a bearer token required when
    `token` is set."""

    def __init__(self, token: str | None = None):
        s = harness.stubs()
        pb, alloc_pb = s.admin_pb2, s.alloc_pb2
        self.token, self.metadata, self.requests = token, [], []
        self.slow_s = 3.0
        fake = self

        class Servicer(s.admin_grpc.AdminServiceServicer):
            def _check(self, request, context):
                fake.metadata.append(dict(context.invocation_metadata()))
                fake.requests.append(request)
                if fake.token is not None and \
                        fake.metadata[-1].get("authorization") != f"Bearer {fake.token}":
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin token required")

            def ListNodes(self, request, context):
                self._check(request, context)
                pages = {"": (["n-a", "n-b"], "p2"), "p2": (["n-c", "n-d"], "p3"),
                         "p3": (["n-e"], "")}
                ids, token = pages[request.page_token]
                return pb.ListNodesResponse(
                    nodes=[pb.NodeInfo(node_id=i, state=pb.NODE_STATE_ACTIVE) for i in ids],
                    next_page_token=token, total_size=5)

            def ListRooms(self, request, context):
                self._check(request, context)
                pages = {"": (["r1", "r2"], "q2"), "q2": (["r3"], "")}
                ids, token = pages[request.page_token]
                return pb.ListRoomsResponse(rooms=[pb.RoomInfo(
                    room=alloc_pb.Room(app_id="app", room_id=r, participants=1),
                    owner_peer_id="fake") for r in ids], next_page_token=token, total_size=3)

            def GetNode(self, request, context):
                self._check(request, context)
                if request.node_id == "slow":
                    time.sleep(fake.slow_s)
                return pb.GetNodeResponse(node=pb.NodeInfo(node_id=request.node_id))

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        s.admin_grpc.add_AdminServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.target = f"127.0.0.1:{self.port}"

    def close(self):
        self.server.stop(grace=None)


@pytest.fixture
def fake_admin():
    fakes = []

    def make(**kw) -> FakeAdmin:
        fakes.append(FakeAdmin(**kw))
        return fakes[-1]

    yield make
    for fake in fakes:
        fake.close()


# --------------------------------------------------------------------------- no server needed

def test_help_version_and_usage_errors():
    top = ok(run_ctl("--help"))
    for word in ("cluster status", "nodes drain", "rooms migrate", "apps rotate-key", "usage APP",
                 "completion", "CHROOM_SERVER", "CHROOM_ADMIN_TOKEN", "Exit codes"):
        assert word in top, word
    assert "cordon ID" in ok(run_ctl("nodes", "--help"))
    assert "cordon ID" in ok(run_ctl("help", "nodes"))
    assert "--state S" in ok(run_ctl("nodes", "list", "--help"))
    assert "--deadline-ms" in ok(run_ctl("nodes", "drain", "-h"))
    assert "-f, --file FILE" in ok(run_ctl("apps", "create", "--help"))
    assert ok(run_ctl("version")).startswith("chroomctl ")

    # Usage errors: exit 2, the message, and the relevant usage; no server is contacted
    # (--server names a port nobody listens on: a contact would exit 3).
    dead = f"127.0.0.1:{harness.free_port()}"
    cases = [
        (["nodez", "list"], "unknown command 'nodez' (did you mean 'nodes'?)", "Usage: chroomctl"),
        (["nodes", "lst"], "did you mean 'list'", "Usage: chroomctl nodes COMMAND"),
        (["nodes"], "'nodes' needs a subcommand", "Usage: chroomctl nodes COMMAND"),
        (["nodes", "get"], "needs ID", "Usage: chroomctl nodes get ID"),
        (["nodes", "get", "a", "b"], "unexpected argument 'b'", "Usage: chroomctl nodes get ID"),
        (["nodes", "list", "--stat", "active"], "unknown flag --stat", "did you mean '--state'"),
        (["nodes", "list", "--state", "sleepy"], "unknown state 'sleepy'", "nodes list"),
        (["nodes", "drain", "x", "--deadline-ms", "soon"], "--deadline-ms needs a number",
         "nodes drain"),
        (["nodes", "list", "-o", "yaml"], "-o needs table, json or name", "nodes list"),
        (["nodes", "list", "--timeout", "never"], "--timeout needs seconds", "nodes list"),
        (["nodes", "list", "--server"], "--server needs a value", "nodes list"),
        (["usage", "default", "--from", "yesterday"], "--from needs an RFC 3339 time", "usage"),
        (["apps", "create"], "needs -f FILE", "apps create"),
        (["completion", "fish"], "unknown shell 'fish'", "completion"),
        ([], "no command given", "Usage: chroomctl"),
    ]
    for args, message, usage in cases:
        result = run_ctl(*args, server=dead)
        assert result.returncode == 2, (args, result)
        assert message in result.stderr and usage in result.stderr, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)


def test_unreachable_server_exits_3_quickly():
    port = harness.free_port()
    started = time.monotonic()
    result = run_ctl("nodes", "list", server=f"127.0.0.1:{port}", timeout=10)
    assert time.monotonic() - started < 5
    assert result.returncode == 3, result
    assert f"cannot reach 127.0.0.1:{port}" in result.stderr and "--server" in result.stderr
    assert "CHROOM_SERVER" in result.stderr
    # The address from the environment is named as such.
    result = run_ctl("cluster", "status", env={"CHROOM_SERVER": f"127.0.0.1:{port}"})
    assert result.returncode == 3 and f"127.0.0.1:{port}" in result.stderr
    assert "from CHROOM_SERVER" in result.stderr, result.stderr
    # The default address when nothing is set (nobody listens on 7443 in the tests... if a
    # peer does, the command works: either way not a usage error).
    assert run_ctl("apps", "list", timeout=15).returncode in (0, 3)


def test_completion_scripts(world, tmp_path):
    bash = ok(run_ctl("completion", "bash"))
    script = tmp_path / "chroomctl.bash"
    script.write_text(bash)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr

    def complete(line: str) -> list[str]:
        """What bash completes after `line` (the last word being completed)."""
        words = line.split(" ")
        program = textwrap.dedent(f"""
            source {script}
            COMP_WORDS=({' '.join(repr(w) for w in words)})
            COMP_CWORD={len(words) - 1}
            _chroomctl
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """)
        env = dict(os.environ, PATH=f"{harness.BIN_DIR}:{os.environ.get('PATH', '')}")
        env.pop("CHROOM_SERVER", None)
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                              timeout=15, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("chroomctl no") == ["nodes"]
    assert set(complete("chroomctl nodes ")) >= {"list", "get", "cordon", "uncordon", "drain"}
    assert complete("chroomctl nodes list --state dr") == ["draining"]
    assert complete("chroomctl -o ") == ["table", "json", "name"]
    assert "--deadline-ms" in complete("chroomctl nodes drain x --")
    assert {"bash", "zsh"} <= set(complete("chroomctl completion "))
    assert complete("chroomctl completion z") == ["zsh"]
    # Node ids come from the server named on the line.
    assert set(complete(f"chroomctl --server {world.server.target} nodes cordon sim")) == \
        set(world.node_ids)

    zsh = ok(run_ctl("completion", "zsh"))
    assert zsh.startswith("#compdef chroomctl") and "compadd" in zsh
    if shutil.which("zsh"):
        (tmp_path / "_chroomctl").write_text(zsh)
        check = subprocess.run(["zsh", "-n", str(tmp_path / "_chroomctl")], capture_output=True,
                               text=True, timeout=10)
        assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------- nodes

def test_nodes_list_and_get(world):
    pb = world.pb
    table = ok(world.ctl("nodes", "list"))
    rows = table_rows(table)
    assert rows[0][:5] == ["NODE", "STATE", "REGION", "COUNTRY", "LOAD"]
    by_id = {row[0]: row for row in rows[1:]}
    assert set(world.node_ids) <= set(by_id)
    reference = {n.node_id: n for n in world.nodes().nodes}
    sample = reference["sim-00003"]
    row = by_id["sim-00003"]
    assert row[2] == sample.location.region and row[3] == sample.location.country
    assert row[4].endswith(f"/{sample.capacity.max_participants}"), row

    # -o json: one document, the same nodes as a grpcio ListNodes (minus what moves).
    reply = parse(ok(world.ctl("nodes", "list", "-o", "json")), pb.ListNodesResponse())
    expected = world.nodes()
    assert reply.total_size == expected.total_size
    volatile = ("last_seen_ms_ago", "load")
    assert [without(n, *volatile) for n in reply.nodes] == \
        [without(n, *volatile) for n in expected.nodes]

    # -o name, --no-headers, filters.
    assert ok(world.ctl("nodes", "list", "-o", "name")).split() == \
        [n.node_id for n in expected.nodes]
    assert table_rows(ok(world.ctl("nodes", "list", "--no-headers")))[0][0] == \
        expected.nodes[0].node_id
    region = sample.location.region
    in_region = ok(world.ctl("nodes", "list", "--region", region, "-o", "name")).split()
    assert in_region == [n.node_id for n in expected.nodes if n.location.region == region]
    assert ok(world.ctl("nodes", "list", "--state", "gone,dead", "-o", "name")).split() == \
        [n.node_id for n in expected.nodes if n.state in (pb.NODE_STATE_GONE, pb.NODE_STATE_DEAD)]

    # nodes get: the details, and the same JSON as GetNode.
    details = ok(world.ctl("nodes", "get", "sim-00003"))
    assert "Node:" in details and "sim-00003" in details and sample.location.region in details
    got = parse(ok(world.ctl("nodes", "get", "sim-00003", "-o", "json")), pb.GetNodeResponse())
    assert without(got.node, *volatile) == without(world.node("sim-00003"), *volatile)
    assert ok(world.ctl("-o", "name", "nodes", "get", "sim-00003")) == "sim-00003\n"


def test_cordon_uncordon_and_drain_change_the_node(world):
    pb = world.pb
    out = ok(world.ctl("nodes", "cordon", "sim-00006"))
    assert "sim-00006" in out and "cordoned" in out
    assert world.node("sim-00006").state == pb.NODE_STATE_CORDONED
    reply = parse(ok(world.ctl("nodes", "uncordon", "sim-00006", "-o", "json")),
                  pb.UncordonNodeResponse())
    assert reply.node.node_id == "sim-00006"
    assert world.node("sim-00006").state == pb.NODE_STATE_ACTIVE

    out = ok(world.ctl("nodes", "drain", "sim-00007", "--deadline-ms", "5000"))
    assert "sim-00007" in out
    # No rooms on it: gone at once (or draining while its Drain is acknowledged).
    assert harness.wait_until(lambda: world.node("sim-00007").state == pb.NODE_STATE_GONE, 5), \
        world.node("sim-00007")
    # Draining a gone node again: the server refuses, exit 1 with its code.
    again = world.ctl("nodes", "drain", "sim-00007")
    assert again.returncode == 1 and "chroomctl: FAILED_PRECONDITION:" in again.stderr, again


def test_unknown_ids_exit_1_with_the_code_and_a_hint(world):
    result = world.ctl("nodes", "get", "no-such-node")
    assert result.returncode == 1, result
    assert result.stderr.startswith("chroomctl: NOT_FOUND: "), result.stderr
    assert "chroomctl nodes list" in result.stderr
    for args in (["nodes", "cordon", "no-such-node"], ["nodes", "drain", "no-such-node"]):
        result = world.ctl(*args)
        assert result.returncode == 1 and "NOT_FOUND" in result.stderr, result
    result = world.ctl("apps", "get", "no-such-app")
    assert result.returncode == 1 and "NOT_FOUND" in result.stderr
    assert "chroomctl apps list" in result.stderr
    result = world.ctl("usage", "no-such-app")
    assert result.returncode == 1 and "NOT_FOUND" in result.stderr


def test_server_from_the_environment(world):
    env = {"CHROOM_SERVER": world.server.target}
    assert set(run_ctl("nodes", "list", "-o", "name", env=env).stdout.split()) >= \
        set(world.node_ids)
    # --server wins over the environment.
    dead = f"127.0.0.1:{harness.free_port()}"
    assert run_ctl("nodes", "list", env={"CHROOM_SERVER": dead}, server=world.server.target) \
        .returncode == 0
    assert run_ctl("nodes", "list", env=env, server=dead).returncode == 3


# --------------------------------------------------------------------------- cluster

def test_cluster_status_of_one_peer(world):
    rows = table_rows(ok(world.ctl("cluster", "status", "--no-headers")))
    assert len(rows) == 1 and rows[0][:4] == ["*", "ctl-peer", "alive", world.server.target], rows
    assert ok(world.ctl("cluster", "status", "-o", "name")) == "ctl-peer\n"


def test_cluster_status_with_two_peers(tmp_path):
    pb = harness.stubs().admin_pb2
    with cc.make_cluster(tmp_path, peers=2, nodes=4) as cluster:
        target = f"127.0.0.1:{cluster.grpc_port(0)}"
        channel = grpc.insecure_channel(target)
        admin = harness.stubs().admin_grpc.AdminServiceStub(channel)
        try:
            def both_alive():
                view = admin.GetCluster(pb.GetClusterRequest(), timeout=3)
                return {p.peer_id for p in view.peers if p.state == pb.PEER_STATE_ALIVE} == \
                    {"peer-0", "peer-1"}
            assert harness.wait_until(both_alive, 15)

            text = ok(run_ctl("cluster", "status", server=target))
            assert "Answering peer peer-0" in text and "replication factor" in text
            rows = {row[1] if row[0] == "*" else row[0]: row
                    for row in table_rows(text.split("\n\n", 1)[1])[1:]}
            assert set(rows) == {"peer-0", "peer-1"}
            assert rows["peer-0"][0] == "*" and "alive" in rows["peer-1"]
            assert f"127.0.0.1:{cluster.grpc_port(1)}" in rows["peer-1"]

            got = parse(ok(run_ctl("cluster", "status", "-o", "json", server=target)),
                        pb.GetClusterResponse())
            expected = admin.GetCluster(pb.GetClusterRequest(), timeout=3)
            assert [without(p, "last_heard_ms_ago") for p in got.peers] == \
                [without(p, "last_heard_ms_ago") for p in expected.peers]
            assert got.peer_id == "peer-0"
            assert got.replication_factor == expected.replication_factor
            assert ok(run_ctl("cluster", "status", "-o", "name", server=target)).split() == \
                ["peer-0", "peer-1"]
        finally:
            channel.close()


# --------------------------------------------------------------------------- apps

def test_apps_create_get_list_rotate_delete(world, tmp_path):
    pb, config_pb = world.pb, world.config_pb
    app_file = tmp_path / "clinic.yaml"
    app_file.write_text(textwrap.dedent("""\
        # A telemedicine app.
        app_id: clinic
        strategy: latency
        description: 123
        max_room_size: "4"
        denied_regions: [moon-1, mars-2]
        recording: true
        roles:
          - role: host
            publish: [audio, video]
          - role: participant
            publish: [audio]
            max_per_room: 3
        quotas:
          max_rooms: 10
          allocations_per_second: 2.5
        """))
    created = world.ctl("apps", "create", "-f", app_file)
    out = ok(created)
    assert "app clinic created" in out
    # No keys given: the peer made one, shown once with a warning.
    assert "Secret:" in out and "shown only this once" in created.stderr
    secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("Secret:"))
    key_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("Key id:"))

    app = world.admin.GetApp(pb.GetAppRequest(app_id="clinic"), timeout=5).app
    assert app.source == "api" and app.config.strategy == "latency"
    assert app.config.description == "123" and app.config.max_room_size == 4
    assert list(app.config.denied_regions) == ["moon-1", "mars-2"]
    assert app.config.recording and app.config.roles[1].max_per_room == 3
    assert app.config.quotas.allocations_per_second == 2.5
    assert [k.key_id for k in app.config.keys] == [key_id]

    # The printed secret works on an Allocate of the app.
    world.alloc.Allocate(world.alloc_pb.AllocateRequest(
        app_id="clinic", room_id="exam", client_id="doctor", role="host",
        location=world.alloc_pb.ClientLocation(latitude=50, longitude=8, has_point=True)),
        metadata=[("x-chroom-api-key", key_id), ("x-chroom-api-secret", secret)], timeout=10)

    listed = table_rows(ok(world.ctl("apps", "list")))
    assert listed[0][:3] == ["APP", "SOURCE", "STRATEGY"]
    assert {"clinic", "default", "filed"} <= {row[0] for row in listed[1:]}
    assert ok(world.ctl("apps", "list", "-o", "name")).split() == \
        [a.config.app_id for a in world.admin.ListApps(pb.ListAppsRequest(), timeout=5).apps]
    got = parse(ok(world.ctl("apps", "get", "clinic", "-o", "json")), pb.GetAppResponse())
    assert got.app == world.admin.GetApp(pb.GetAppRequest(app_id="clinic"), timeout=5).app
    details = ok(world.ctl("apps", "get", "clinic"))
    assert "clinic" in details and "latency" in details and key_id in details
    assert secret not in details

    # A second app, as JSON with keys of its own: nothing to show once.
    json_file = tmp_path / "arcade.json"
    json_file.write_text(json.dumps({"app_id": "arcade", "allow_unauthenticated": True,
                                     "mediaProfile": "audio_only"}))
    made = world.ctl("apps", "create", "-f", json_file, "-o", "json")
    reply = parse(ok(made), pb.CreateAppResponse())
    assert reply.app.config.app_id == "arcade" and reply.app.config.media_profile == "audio_only"
    assert not reply.key.secret and "shown only" not in made.stderr
    # From stdin.
    ok(world.ctl("apps", "create", "-f", "-", stdin="app_id: piped\nallow_unauthenticated: true\n"))
    assert world.admin.GetApp(pb.GetAppRequest(app_id="piped"), timeout=5).app.source == "api"

    # Rotation: a new key, the old one kept for the grace period.
    rotated = world.ctl("apps", "rotate-key", "clinic", "--grace-ms", "60000")
    out = ok(rotated)
    assert "new key" in out and "Secret:" in out and "shown only this once" in rotated.stderr
    new_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("Key id:"))
    new_secret = next(line.split()[-1] for line in out.splitlines()
                      if line.startswith("Secret:"))
    assert new_id != key_id and new_secret != secret
    keys = {k.key_id: k for k in world.admin.GetApp(pb.GetAppRequest(app_id="clinic"),
                                                    timeout=5).app.config.keys}
    assert set(keys) == {key_id, new_id}
    assert 0 < keys[key_id].expires_unix_ms - time.time() * 1000 <= 61000
    assert f"the previous key {key_id} works until" in out
    # -o json carries the secret too.
    again = parse(ok(world.ctl("apps", "rotate-key", "arcade", "-o", "json")),
                  pb.RotateAppKeyResponse())
    assert len(again.key.secret) >= 32

    # Delete.
    assert "app clinic deleted" in ok(world.ctl("apps", "delete", "clinic"))
    with pytest.raises(grpc.RpcError) as gone:
        world.admin.GetApp(pb.GetAppRequest(app_id="clinic"), timeout=5)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    for app_id in ("arcade", "piped"):
        ok(world.ctl("apps", "delete", app_id, "-o", "name"))
    # A duplicate, and an app of the config file: the server's codes.
    ok(world.ctl("apps", "create", "-f", json_file))
    dup = world.ctl("apps", "create", "-f", json_file)
    assert dup.returncode == 1 and "ALREADY_EXISTS" in dup.stderr, dup
    ok(world.ctl("apps", "delete", "arcade"))
    filed = world.ctl("apps", "delete", "filed")
    assert filed.returncode == 1 and "FAILED_PRECONDITION" in filed.stderr, filed


def test_bad_app_files_name_the_key(world, tmp_path):
    cases = {
        "typo.yaml": ("app_id: typo\nallow_unauthenticated: true\nstratgy: pack\n",
                      ["typo.yaml:3: stratgy: unknown key", "did you mean 'strategy'"]),
        "nested.yaml": ("app_id: nested\nquotas:\n  max_roomz: 3\n",
                        ["nested.yaml:3: quotas.max_roomz: unknown key",
                         "did you mean 'max_rooms'"]),
        "type.yaml": ("app_id: typed\nmax_room_size: lots\n",
                      ["type.yaml:2: max_room_size: expected an unsigned integer", "lots"]),
        "list.yaml": ("app_id: listy\nallowed_regions: eu-west\n",
                      ["list.yaml:2: allowed_regions: expected a sequence"]),
        "syntax.yaml": ("app_id: [unclosed\n", ["syntax.yaml:2:", "invalid YAML"]),
        "typo.json": ('{"app_id": "typo", "stratgy": "pack"}', ["typo.json", "stratgy"]),
        "broken.json": ('{"app_id": ', ["broken.json"]),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        result = world.ctl("apps", "create", "-f", tmp_path / name)
        assert result.returncode == 2, (name, result)
        for part in expected:
            assert part in result.stderr, (name, part, result.stderr)
    missing = world.ctl("apps", "create", "-f", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "nope.yaml: cannot read" in missing.stderr
    # Well-formed, but the server refuses a value: its INVALID_ARGUMENT names the field.
    (tmp_path / "value.yaml").write_text("app_id: valued\nallow_unauthenticated: true\n"
                                         "strategy: latnecy\n")
    result = world.ctl("apps", "create", "-f", tmp_path / "value.yaml")
    assert result.returncode == 1 and "INVALID_ARGUMENT" in result.stderr, result
    assert "strategy" in result.stderr


def test_apps_reload(world):
    out = ok(world.ctl("apps", "reload"))
    rows = {row[0]: row[1] for row in table_rows(out)[1:]}
    assert rows.get("default") == "unchanged" and rows.get("filed") == "unchanged", out
    reply = parse(ok(world.ctl("apps", "reload", "-o", "json")), world.pb.ReloadAppsResponse())
    assert set(reply.unchanged) == {"default", "filed"}


# --------------------------------------------------------------------------- usage

def test_usage_per_epoch_and_total(world):
    pb = world.pb
    # Epochs are an hour long (the default) and listed by their start: from two hours ago.
    started = int(time.time() * 1000) - 2 * 3600_000
    world.allocate("metered", "m1")
    world.allocate("metered", "m2")

    def usage():
        return world.admin.GetUsage(pb.GetUsageRequest(app_id="default",
                                                       from_unix_ms=started), timeout=5)
    # Peers write their counts every 5 s.
    assert harness.wait_until(lambda: usage().total.rooms >= 1, 15, 0.5), usage()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started / 1000))
    text = ok(world.ctl("usage", "default", "--from", since))
    rows = table_rows(text)
    assert rows[0][:3] == ["EPOCH START", "LENGTH", "PARTICIPANT-MIN"]
    assert rows[-1][0] == "TOTAL"
    # -o json: GetUsage's answer (compared with a call made right after: counts only grow).
    got = parse(ok(world.ctl("usage", "default", "--from", str(started), "-o", "json")),
                pb.GetUsageResponse())
    expected = usage()
    assert [e.epoch_start_unix_ms for e in got.epochs] == \
        [e.epoch_start_unix_ms for e in expected.epochs][:len(got.epochs)]
    assert 1 <= got.total.rooms <= expected.total.rooms
    # --to before everything: no epochs.
    empty = parse(ok(world.ctl("usage", "default", "--from", "0", "--to", "2001-01-01",
                               "-o", "json")), pb.GetUsageResponse())
    assert len(empty.epochs) == 0


# --------------------------------------------------------------------------- rooms
# ListRooms / GetRoom / MigrateRoom are being implemented by the server: until then they
# answer UNIMPLEMENTED and this test fails on its first rooms command.

def test_rooms_list_get_and_migrate(world):
    pb, alloc_pb = world.pb, world.alloc_pb
    placed = {world.allocate("consult", f"c{i}").node.node_id for i in range(3)}
    result = world.ctl("rooms", "list")
    if result.returncode == 1 and "UNIMPLEMENTED" in result.stderr:
        assert "does not implement ListRooms" in result.stderr
    out = ok(result)
    rows = table_rows(out)
    assert rows[0] == ["APP", "ROOM", "PARTICIPANTS", "NODES", "OWNER", "AGE"]
    consult = [row for row in rows[1:] if row[:2] == ["default", "consult"]]
    assert consult and consult[0][2] == "3" and consult[0][4] == "ctl-peer", rows

    expected = world.admin.ListRooms(pb.ListRoomsRequest(), timeout=5)
    got = parse(ok(world.ctl("rooms", "list", "-o", "json")), pb.ListRoomsResponse())
    assert [(r.room.app_id, r.room.room_id, r.owner_peer_id) for r in got.rooms] == \
        [(r.room.app_id, r.room.room_id, r.owner_peer_id) for r in expected.rooms]
    assert "default/consult" in ok(world.ctl("rooms", "list", "-o", "name")).split()
    assert ok(world.ctl("rooms", "list", "--app", "filed", "-o", "name")).split() == []
    node = sorted(placed)[0]
    assert "default/consult" in ok(world.ctl("rooms", "list", "--node", node, "-o", "name"))

    details = ok(world.ctl("rooms", "get", "default", "consult"))
    assert "consult" in details and node in details and "c0" in details
    room = parse(ok(world.ctl("rooms", "get", "default", "consult", "-o", "json")),
                 pb.GetRoomResponse())
    assert room.room.room.participants == 3 and room.room.owner_peer_id == "ctl-peer"
    missing = world.ctl("rooms", "get", "default", "no-such-room")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    assert "chroomctl rooms list" in missing.stderr

    # Migrate everyone to a node the room is not on.
    target = next(n for n in sorted(world.active()) if n not in placed)
    moved = ok(world.ctl("rooms", "migrate", "default", "consult", "--to", target))
    assert "3 participants moved" in moved and target in moved

    def all_on_target():
        room = world.alloc.GetRoom(alloc_pb.GetRoomRequest(app_id="default", room_id="consult"),
                                   timeout=5).room
        return {m.node_id for m in room.members} == {target}
    assert harness.wait_until(all_on_target, 10)
    bad = world.ctl("rooms", "migrate", "default", "consult", "--to", "no-such-node")
    assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr


# --------------------------------------------------------------------------- fake AdminService

def test_all_pages_are_listed(fake_admin):
    fake = fake_admin()
    assert ok(run_ctl("nodes", "list", "-o", "name", server=fake.target)).split() == \
        ["n-a", "n-b", "n-c", "n-d", "n-e"]
    assert [r.page_token for r in fake.requests] == ["", "p2", "p3"]
    merged = parse(ok(run_ctl("nodes", "list", "-o", "json", server=fake.target)),
                   harness.stubs().admin_pb2.ListNodesResponse())
    assert [n.node_id for n in merged.nodes] == ["n-a", "n-b", "n-c", "n-d", "n-e"]
    assert merged.total_size == 5 and merged.next_page_token == ""
    assert ok(run_ctl("rooms", "list", "-o", "name", server=fake.target)).split() == \
        ["app/r1", "app/r2", "app/r3"]


def test_admin_token_is_sent_as_bearer(fake_admin):
    fake = fake_admin(token="s3cret-admin")
    result = run_ctl("nodes", "get", "x", server=fake.target)
    assert result.returncode == 1 and "chroomctl: UNAUTHENTICATED: admin token required" in \
        result.stderr
    assert "CHROOM_ADMIN_TOKEN" in result.stderr and "--token" in result.stderr
    assert "authorization" not in fake.metadata[-1]
    ok(run_ctl("nodes", "get", "x", "--token", "s3cret-admin", server=fake.target))
    assert fake.metadata[-1]["authorization"] == "Bearer s3cret-admin"
    ok(run_ctl("nodes", "get", "x", server=fake.target,
               env={"CHROOM_ADMIN_TOKEN": "s3cret-admin"}))
    assert fake.metadata[-1]["authorization"] == "Bearer s3cret-admin"
    assert fake.metadata[-1]["user-agent"].startswith("chroomctl/")
    refused = run_ctl("nodes", "get", "x", "--token", "wrong", server=fake.target)
    assert refused.returncode == 1 and "refused the admin token" in refused.stderr


def test_a_slow_answer_is_a_server_error_not_unreachable(fake_admin):
    fake = fake_admin()
    started = time.monotonic()
    result = run_ctl("nodes", "get", "slow", "--timeout", "0.5", server=fake.target)
    assert time.monotonic() - started < fake.slow_s
    assert result.returncode == 1 and "DEADLINE_EXCEEDED" in result.stderr, result
    assert "--timeout" in result.stderr


def test_tls(start_server, tls_cert):
    cert, key = tls_cert
    server = start_server({"listen": {"cert_file": str(cert), "key_file": str(key)}})
    out = ok(run_ctl("cluster", "status", "-o", "name", "--tls", "--ca-file", cert,
                     server=server.target))
    assert len(out.split()) == 1, out   # the one peer's id
    # h2c against a TLS peer: no connection, exit 3 with a hint about TLS.
    plain = run_ctl("cluster", "status", server=server.target, timeout=15)
    assert plain.returncode == 3 and "--tls" in plain.stderr, plain
    missing = run_ctl("cluster", "status", "--ca-file", "/nonexistent.pem", server=server.target)
    assert missing.returncode == 2 and "/nonexistent.pem" in missing.stderr
