"""pytest fixtures for the integration tests; the machinery lives in chroom_harness.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chroom_harness as harness  # noqa: E402


@pytest.fixture(scope="session")
def pb():
    """The generated diagnostics messages module (EchoRequest, ...)."""
    return harness.stubs().diag_pb2


@pytest.fixture(scope="session")
def health_pb():
    return harness.stubs().health_pb2


@pytest.fixture(scope="session")
def node_pb():
    """The generated chroom.medianode.v1 messages module (Register, Stats, ...)."""
    return harness.stubs().node_pb2


@pytest.fixture(scope="session")
def admin_pb():
    """The generated chroom.admin.v1 messages module (ListNodesRequest, NodeState, ...)."""
    return harness.stubs().admin_pb2


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server({"limits": {...}}) -> a running harness.Server.

    Teardown SIGTERMs every server still running and requires exit code 0 within 10 s.
    """
    servers: list[harness.Server] = []

    def start(overrides: dict | None = None, name: str | None = None) -> harness.Server:
        srv = harness.Server(tmp_path, overrides, name or f"server{len(servers)}")
        servers.append(srv)
        return srv.start()

    yield start
    failures = []
    for srv in servers:
        try:
            srv.stop()
        except AssertionError as e:
            failures.append(str(e))
        finally:
            srv.kill()
    if failures:
        pytest.fail("server teardown failed:\n" + "\n\n".join(failures), pytrace=False)


@pytest.fixture
def start_node_peer(start_server):
    """Factory: start_node_peer({"media_nodes": {...}}, channels=1) -> a harness.NodePeer
    (a running server, an AdminService stub and a factory of media nodes). Its nodes are
    closed at teardown, before the server is stopped."""
    peers: list[harness.NodePeer] = []

    def start(overrides: dict | None = None, channels: int = 1) -> harness.NodePeer:
        peer = harness.NodePeer(start_server(overrides), channels)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


@pytest.fixture
def server(start_server):
    """A server with the harness's default config."""
    return start_server()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """(cert_path, key_path) of a self-signed EC certificate for localhost and 127.0.0.1."""
    return harness.make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start_allocation_peer(tmp_path):
    """Factory: start_allocation_peer({...config...}, channels=2) -> a harness.NodePeer for
    the AllocationService tests (test_allocation*.py). Teardown closes its nodes, then
    stops the peer with harness.stop_peer_with_rooms: it must log "stopped" and exit 0
    promptly, or the test fails."""

    servers: list[harness.Server] = []
    peers: list[harness.NodePeer] = []

    def start(overrides: dict | None = None, channels: int = 2, name: str | None = None):
        server = harness.Server(tmp_path, overrides, name or f"alloc{len(servers)}")
        servers.append(server)
        peer = harness.NodePeer(server.start(), channels)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()
    failures = []
    for server in servers:
        try:
            harness.stop_peer_with_rooms(server)
        except AssertionError as e:
            failures.append(str(e))
        finally:
            server.kill()
    if failures:
        pytest.fail("peer teardown failed:\n" + "\n\n".join(failures), pytrace=False)
