"""The real orchestrator with a chroom-node-sim fleet: registration at scale, and faults
injected through the simulator's stdin protocol seen from the orchestrator's side. Also the
simulator's failover between orchestrator peers (--target a,b), against two of its fake
orchestrators (tools/node_sim/fake_orchestrator.py), one of which is killed."""

import json
import select
import subprocess
import sys
import time

import pytest

import chroom_harness as harness

SECRET_KEY = "node-sim-integration-key-0123"
NODES = 60
# Short timers keep the test quick; the simulator follows Registered.stats_interval_ms.
MEDIA_NODES = {"secret_key": SECRET_KEY, "stats_interval_ms": 200, "suspect_after_ms": 600,
               "dead_after_ms": 1200, "command_timeout_ms": 400, "register_timeout_ms": 2000}
NODE_SIM = harness.BIN_DIR / "chroom-node-sim"


class Fleet:
    """chroom-node-sim as a subprocess, driven line by line on stdin."""

    def __init__(self, target: str, nodes: int):
        self.proc = subprocess.Popen(
            [str(NODE_SIM), "--target", target, "--nodes", str(nodes), "--secret-key", SECRET_KEY,
             "--log-level", "warn", "--seed", "7"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1)

    def command(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            reply = self.proc.stdout.readline()
            assert reply, f"chroom-node-sim exited ({self.proc.poll()}) after {line!r}"
            if reply.startswith(("ok", "error", "{")):
                return reply.strip()

    def status(self) -> dict:
        return json.loads(self.command("status"))

    def quit(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture
def peer_and_fleet(start_server):
    if not NODE_SIM.exists():
        pytest.fail(f"{NODE_SIM} missing (cmake --build the project)")
    server = start_server({"media_nodes": MEDIA_NODES})
    fleet = Fleet(server.target, NODES)
    yield server, fleet
    assert fleet.quit() == 0


def node_states(server, pb) -> dict:
    nodes = {}
    request = pb.ListNodesRequest(page_size=5000)
    for node in server.admin().ListNodes(request, timeout=5).nodes:
        nodes[node.node_id] = node
    return nodes


def wait_state(server, pb, node_id: str, state, timeout: float):
    def check():
        reply = server.admin().GetNode(pb.GetNodeRequest(node_id=node_id), timeout=5)
        return reply.node if reply.node.state == state else None
    return harness.wait_until(check, timeout=timeout)


def test_fleet_registers_and_reports(peer_and_fleet, admin_pb):
    server, fleet = peer_and_fleet
    harness.wait_until(lambda: sum(1 for n in node_states(server, admin_pb).values()
                                   if n.state == admin_pb.NODE_STATE_ACTIVE) == NODES, timeout=20)
    nodes = node_states(server, admin_pb)
    sample = nodes["sim-00003"]
    assert sample.location.country and sample.location.region
    assert -90 <= sample.location.latitude <= 90
    assert sample.capacity.max_participants > 0
    assert sample.load.last_stats.cpu_load >= 0
    assert fleet.status()["registered"] == NODES
    server.assert_serving()


def test_crash_freeze_and_flap_as_the_peer_sees_them(peer_and_fleet, admin_pb):
    server, fleet = peer_and_fleet
    harness.wait_until(lambda: fleet.status()["registered"] == NODES, timeout=20)
    wait_state(server, admin_pb, "sim-00001", admin_pb.NODE_STATE_ACTIVE, timeout=5)

    # crash: the stream is cancelled -> suspect at once, dead after dead_after_ms.
    assert fleet.command("crash sim-00001").startswith("ok")
    wait_state(server, admin_pb, "sim-00001", admin_pb.NODE_STATE_SUSPECT, timeout=1)
    dead = wait_state(server, admin_pb, "sim-00001", admin_pb.NODE_STATE_DEAD, timeout=3)
    assert dead.previous_state == admin_pb.NODE_STATE_ACTIVE
    # restart: the node registers again and is active after its first Stats.
    assert fleet.command("restart sim-00001").startswith("ok")
    wait_state(server, admin_pb, "sim-00001", admin_pb.NODE_STATE_ACTIVE, timeout=5)

    # freeze: the stream stays open but silent -> suspect, then dead, and the peer ends it.
    assert fleet.command("freeze sim-00002").startswith("ok")
    wait_state(server, admin_pb, "sim-00002", admin_pb.NODE_STATE_SUSPECT, timeout=2)
    wait_state(server, admin_pb, "sim-00002", admin_pb.NODE_STATE_DEAD, timeout=3)

    # flap: down briefly, then back with a new registration.
    before = server.admin().GetNode(admin_pb.GetNodeRequest(node_id="sim-00004"), timeout=5).node
    assert fleet.command("flap sim-00004 300").startswith("ok")
    def re_registered():
        node = server.admin().GetNode(admin_pb.GetNodeRequest(node_id="sim-00004"), timeout=5).node
        return node.registrations > before.registrations and node.state == admin_pb.NODE_STATE_ACTIVE
    harness.wait_until(re_registered, timeout=8)

    # The rest of the fleet was not disturbed.
    nodes = node_states(server, admin_pb)
    untouched = [n for i, n in nodes.items() if i not in ("sim-00001", "sim-00002", "sim-00004")]
    assert all(n.state == admin_pb.NODE_STATE_ACTIVE for n in untouched)
    server.assert_serving()


def test_drain_reaches_the_simulated_node(peer_and_fleet, admin_pb):
    server, fleet = peer_and_fleet
    harness.wait_until(lambda: fleet.status()["registered"] == NODES, timeout=20)
    wait_state(server, admin_pb, "sim-00005", admin_pb.NODE_STATE_ACTIVE, timeout=5)
    acks_before = fleet.status()["acks"]
    reply = server.admin().DrainNode(admin_pb.DrainNodeRequest(node_id="sim-00005"), timeout=5)
    # No rooms on it yet: gone at once, after the node acknowledged the Drain.
    assert reply.node.state == admin_pb.NODE_STATE_GONE
    harness.wait_until(lambda: fleet.status()["acks"] > acks_before, timeout=3)


def test_slow_acks_get_the_command_again(peer_and_fleet, admin_pb):
    server, fleet = peer_and_fleet
    harness.wait_until(lambda: fleet.status()["registered"] == NODES, timeout=20)
    wait_state(server, admin_pb, "sim-00006", admin_pb.NODE_STATE_ACTIVE, timeout=5)
    # Acks later than command_timeout_ms (400): the Drain is sent a second time.
    assert fleet.command("slow-acks sim-00006 700").startswith("ok")
    commands_before = fleet.status()["commands"]
    server.admin().DrainNode(admin_pb.DrainNodeRequest(node_id="sim-00006"), timeout=5)
    # The first Drain and, its ack being late, the same Drain once more.
    harness.wait_until(lambda: fleet.status()["commands"] >= commands_before + 2, timeout=5)
    time.sleep(1.0)
    assert fleet.status()["commands"] == commands_before + 2  # once more, not more


# --------------------------------------------------------------------------- failover

FAKE_ORCHESTRATOR = harness.SOURCE_DIR / "tools" / "node_sim" / "fake_orchestrator.py"
FAILOVER_NODES = 10
# A node whose peer died is on another peer after its first back-off (50..100 ms) plus one
# registration; the bound leaves room for a slow CI machine, not for a second round.
FAILOVER_WITHIN_S = 3.0


class FakeOrchestrator:
    """fake_orchestrator.py on 127.0.0.1: a stand-in MediaNodeService peer, driven by its
    stdin commands (status, node ID, prepare ID ROOM, kick ID CODE, ...)."""

    def __init__(self, port: int = 0):
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_ORCHESTRATOR), "--port", str(port), "--secret-key",
             SECRET_KEY, "--stats-interval-ms", "200"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1)
        ready = self._read_line(timeout=30)
        assert ready.startswith("ready "), ready
        self.port = int(ready.split()[1])
        self.target = f"127.0.0.1:{self.port}"

    def _read_line(self, timeout: float) -> str:
        # One reply line per command, read before the next command: nothing is left in the
        # reader's buffer behind select's back.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"fake orchestrator: no output within {timeout} s"
        line = self.proc.stdout.readline()
        assert line, f"fake orchestrator exited ({self.proc.poll()})"
        return line.strip()

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read_line(timeout=10)

    def ask_json(self, command: str) -> dict:
        return json.loads(self.ask(command))

    def kill(self) -> None:
        """kill -9: its streams end without a word (the kernel resets the connections)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def fakes():
    """Factory of fake orchestrators; all are killed at teardown."""
    started: list[FakeOrchestrator] = []

    def start(port: int = 0) -> FakeOrchestrator:
        fake = FakeOrchestrator(port)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.kill()


def test_fleet_fails_over_to_the_other_peer(fakes, tmp_path):
    if not NODE_SIM.exists():
        pytest.fail(f"{NODE_SIM} missing (cmake --build the project)")
    a, b = fakes(), fakes()
    sim = harness.NodeSim(f"{a.target},{b.target}", FAILOVER_NODES, SECRET_KEY,
                          extra=["--connections", "2"], stderr_path=tmp_path / "node-sim.log")
    try:
        # Node i starts on target i mod 2: five on each peer.
        half = FAILOVER_NODES // 2
        spread = {a.target: half, b.target: half}
        status = harness.wait_until(
            lambda: (s := sim.status())["registered"] == FAILOVER_NODES and s["targets"] == spread
            and s, timeout=15)
        assert status, sim.status()
        assert list(status["targets"]) == [a.target, b.target]  # in --target order
        assert status["failovers"] == 0
        assert a.ask_json("status")["registered"] == half
        assert b.ask_json("status")["registered"] == half
        assert sim.node("sim-00000")["target"] == a.target
        assert sim.node("sim-00001")["target"] == b.target

        # A room on a node of peer a, to see it re-registered with its room on b.
        assert a.ask("prepare sim-00000 r0").startswith("ok prepare_room")
        assert harness.wait_until(lambda: a.ask_json("status")["acks"] >= 1, timeout=5)

        a.kill()
        killed_at = time.monotonic()
        moved = {a.target: 0, b.target: FAILOVER_NODES}
        status = harness.wait_until(
            lambda: (s := sim.status())["registered"] == FAILOVER_NODES and s["targets"] == moved
            and s, timeout=10, interval=0.02)
        took = time.monotonic() - killed_at
        assert status, f"not all on {b.target} 10 s after the kill: {sim.status()}"
        assert took < FAILOVER_WITHIN_S, f"failover took {took:.2f} s"
        assert status["failovers"] == half and status["errors"] == 0, status
        assert b.ask_json("status")["registered"] == FAILOVER_NODES
        # The node model re-registered with the room it hosts (reconciliation).
        assert "r0" in b.ask_json("node sim-00000")["register"]["rooms"]
        assert sim.node("sim-00000")["target"] == b.target

        # Peer a is back on its port: nobody flaps back home, the nodes stay where they are.
        a2 = fakes(a.port)
        time.sleep(1.0)
        assert sim.status()["targets"] == moved
        assert a2.ask_json("status")["connects"] == 0

        # A stream b ends goes round robin to the next target: a (again).
        assert b.ask("kick sim-00003 UNAVAILABLE going away").startswith("ok kick")
        status = harness.wait_until(
            lambda: (s := sim.status())["targets"] == {a.target: 1, b.target: FAILOVER_NODES - 1}
            and s["registered"] == FAILOVER_NODES and s, timeout=5)
        assert status, sim.status()
        assert sim.node("sim-00003")["target"] == a.target
        assert a2.ask_json("status")["registered"] == 1
    finally:
        rc = sim.quit()
    assert rc == 0


@pytest.mark.parametrize("targets, complaint", [
    ("127.0.0.1:7443,localhost", 'entry 2 "localhost" has no :PORT'),
    ("127.0.0.1:7443,,127.0.0.1:7444", 'entry 2 "" is empty'),
    ("127.0.0.1:0", 'entry 1 "127.0.0.1:0" needs a port'),
    ("::1:7443", "write an IPv6 address as [ADDRESS]:PORT"),
    ("127.0.0.1:7443,127.0.0.1:7443", 'entry 2 "127.0.0.1:7443" is listed twice'),
])
def test_bad_target_list_is_a_usage_error(targets, complaint):
    if not NODE_SIM.exists():
        pytest.fail(f"{NODE_SIM} missing (cmake --build the project)")
    run = subprocess.run([str(NODE_SIM), "--target", targets, "--nodes", "1"],
                         capture_output=True, text=True, timeout=10)
    assert run.returncode == 2, run
    assert complaint in run.stderr, run.stderr
