"""The real orchestrator with a chroom-node-sim fleet: registration at scale, and faults
injected through the simulator's stdin protocol seen from the orchestrator's side."""

import json
import subprocess
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
