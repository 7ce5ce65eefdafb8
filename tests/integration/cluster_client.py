"""Helpers for the cluster tests: a LocalCluster (deploy/local_cluster.py) on free ports,
rendezvous ownership computed independently of the daemon, and room checks."""
from __future__ import annotations

import random
import socket
import sys
from typing import Iterable

import chroom_harness as harness

sys.path.insert(0, str(harness.SOURCE_DIR / "deploy"))
import local_cluster  # noqa: E402

MASK = (1 << 64) - 1


def _fnv1a(h: int, data: bytes) -> int:
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    return h


def _mix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return x


def rendezvous_score(peer_id: str, key: str) -> int:
    """cluster/ring.cpp, written again from its comments: the test does not trust the
    daemon to agree with itself."""
    h = _fnv1a(0xCBF29CE484222325, peer_id.encode())
    return _mix(_fnv1a(h ^ 0xFF, key.encode()))


def owners_of(key: str, peers: Iterable[str], count: int = 2) -> list[str]:
    return sorted(peers, key=lambda p: (-rendezvous_score(p, key), p))[:count]


def _ports_free(base: int, peers: int) -> bool:
    offsets = (0, local_cluster.CLUSTER_PORT_OFFSET, local_cluster.ADMIN_PORT_OFFSET)
    for port in [base + offset + i for offset in offsets for i in range(peers)]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(peers: int) -> int:
    """A base port with peers gRPC ports and peers cluster ports free after it."""
    for _ in range(200):
        base = random.randrange(20000, 40000 - local_cluster.ADMIN_PORT_OFFSET - peers)
        if _ports_free(base, peers):
            return base
    raise RuntimeError("no free port range")


def make_cluster(tmp_path, peers: int = 3, nodes: int = 30, **kwargs) -> local_cluster.LocalCluster:
    overrides = {"allocation": {"lease_ttl_ms": 600000}, "shutdown_grace_ms": 2000}
    overrides.update(kwargs.pop("overrides", {}))
    cluster_settings = {"heartbeat_interval_ms": 200, "failure_timeout_ms": 1500}
    cluster_settings.update(kwargs.pop("cluster_settings", {}))
    return local_cluster.LocalCluster(
        peers=peers, nodes=nodes, base_port=free_base_port(peers), bin_dir=harness.BIN_DIR,
        workdir=tmp_path, overrides=overrides, cluster_settings=cluster_settings,
        fleet_args=kwargs.pop("fleet_args", ["--log-level", "warn"]), **kwargs)


def relays_connect(room) -> bool:
    """The room's parts form one relay graph (no part cut off)."""
    nodes = {n.node_id: set(n.relay_node_ids) for n in room.nodes}
    if not nodes:
        return True
    seen, todo = set(), [next(iter(nodes))]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(n for n in nodes.get(node, ()) if n in nodes)
    return seen == set(nodes)
