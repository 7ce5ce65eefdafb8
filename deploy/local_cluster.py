"""A local Chroom Orchestrator cluster: N peers and a simulated fleet of media nodes on loopback.

`deploy/local-cluster` is the command-line front end; integration tests import this module and
drive a `LocalCluster` directly:

    from local_cluster import LocalCluster
    with LocalCluster(peers=3, nodes=30, bin_dir=..., workdir=tmp_path) as cluster:
        cluster.peer(0).grpc_address      # "127.0.0.1:7443"
        cluster.kill(1)                   # SIGKILL peer-1 and reap it
        cluster.restart(1)                # same config and ports, a new process, SERVING

Python 3 standard library only. Every wait is bounded; every process started is reaped.
Peer i serves gRPC on base_port + i and its cluster socket on base_port + 100 + i, reads
workdir/peer-<i>.yaml and writes workdir/peer-<i>.log. Readiness is a gRPC health Check
(grpc.health.v1.Health/Check answering SERVING), spoken over h2c by hand so that no gRPC
library is needed.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = REPO / "build" / "release" / "bin"
DEFAULT_CONFIG_BASE = REPO / "deploy" / "config" / "local-demo.yaml"
DEFAULT_PEERS = 3
DEFAULT_NODES = 60
DEFAULT_BASE_PORT = 7443
# Cluster port of peer i: base_port + CLUSTER_PORT_OFFSET + i. gRPC ports take
# base_port .. base_port + peers - 1, so peers must stay below the offset.
CLUSTER_PORT_OFFSET = 100
# Admin HTTP port (metrics, probes, dashboard) of peer i: base_port + ADMIN_PORT_OFFSET + i.
ADMIN_PORT_OFFSET = 200
# The daemon accepts at most 64 seeds, and every peer lists all of them.
MAX_PEERS = 64
LOOPBACK = "127.0.0.1"
ORCHESTRATOR = "chroom-orchestrator"
NODE_SIM = "chroom-node-sim"

# How long a started peer may take to answer SERVING.
STARTUP_TIMEOUT_S = 20.0
# A SIGTERMed peer hands its rooms off (up to 10 s), leaves (2 s), then gives calls its
# shutdown grace (shutdown_grace_ms, default 5 s) and connections 3 s more: 20 s at most.
# Past this it is SIGKILLed.
STOP_TIMEOUT_S = 25.0
# The simulator stops at once on SIGTERM.
FLEET_STOP_TIMEOUT_S = 5.0
# After SIGKILL the kernel reaps at once; this only bounds a wait that cannot hang.
KILL_WAIT_S = 5.0
# One health Check attempt.
HEALTH_TIMEOUT_S = 1.0
# Lines of a log shown when a process fails.
LOG_TAIL_LINES = 40

# Keys of the base config that each peer's file sets itself.
PEER_KEYS = ("listen", "peer_id", "cluster", "admin")


class ClusterError(RuntimeError):
    """A peer or the fleet could not be started (the message says why, with the log's tail)."""


# --------------------------------------------------------------------------- small helpers

def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"--- {path}: no log ---"
    return f"--- {path} (last {min(lines, len(text))} lines) ---\n" + "\n".join(text[-lines:])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a TCP socket can bind host:port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this host (from /proc/net/tcp{,6}; no traffic sent)."""
    ports: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


def to_yaml(value: dict, indent: int = 0) -> str:
    """Block YAML for nested dicts of scalars, lists of scalars (flow style) and lists of
    dicts."""
    pad = "  " * indent
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(item, indent + 1))
        elif isinstance(item, (list, tuple)):
            if all(not isinstance(e, dict) for e in item):
                lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(e) for e in item)}]")
                continue
            lines.append(f"{pad}{key}:")
            for element in item:
                body = to_yaml(element, indent + 2).splitlines()
                inner = "  " * (indent + 2)
                lines.append(f"{pad}  - {body[0][len(inner):]}")
                lines.extend(f"{pad}    {line[len(inner):]}" for line in body[1:])
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    return "\n".join(lines)


_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def split_top_level(text: str) -> list[tuple[Optional[str], str]]:
    """Splits a block-style YAML mapping into (top-level key, its text) in file order. Text
    before the first key (comments) comes as (None, text). Comment lines at column 0 go
    with the section above them, which is harmless: they are comments."""
    sections: list[tuple[Optional[str], list[str]]] = [(None, [])]
    for line in text.splitlines():
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            sections.append((match.group(1), [line]))
        elif line.strip() == "---" and len(sections) == 1:
            continue  # a document marker before the mapping
        else:
            sections[-1][1].append(line)
    return [(key, "\n".join(lines)) for key, lines in sections if key or any(lines)]


def secret_key_of(media_nodes_text: str) -> Optional[str]:
    """media_nodes.secret_key as written in the section's text (block or flow style)."""
    match = re.search(r"""secret_key\s*:\s*(?:"([^"]*)"|'([^']*)'|([^\s,}#]+))""",
                      media_nodes_text)
    if not match:
        return None
    return next(group for group in match.groups() if group is not None) or None


# --------------------------------------------------------------------------- gRPC health over h2c

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_DATA, _H2_HEADERS, _H2_RST_STREAM, _H2_SETTINGS, _H2_PING, _H2_GOAWAY = 0, 1, 3, 4, 6, 7
_H2_END_STREAM, _H2_ACK, _H2_END_HEADERS = 0x1, 0x1, 0x4
_HEALTH_PATH = "/grpc.health.v1.Health/Check"
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) \
        + payload


def _hpack_string(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 127
    return bytes([len(data)]) + data  # no Huffman coding


def _health_request_headers(authority: str) -> bytes:
    """HPACK, using the static table and literals without indexing (no dynamic table)."""
    return (b"\x83"  # :method POST (static 3)
            + b"\x86"  # :scheme http (static 6)
            + b"\x04" + _hpack_string(_HEALTH_PATH)  # :path (static name 4), literal value
            + b"\x01" + _hpack_string(authority)  # :authority (static name 1)
            + b"\x0f\x10" + _hpack_string("application/grpc")  # content-type (static name 31)
            + b"\x00" + _hpack_string("te") + _hpack_string("trailers"))


def grpc_health_status(host: str, port: int, timeout: float = HEALTH_TIMEOUT_S) -> Optional[int]:
    """One grpc.health.v1.Health/Check for the whole server (service ""), over h2c: the
    serving status (1 = SERVING), or None when the peer cannot be reached or does not
    answer with a status within `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            request = (_H2_PREFACE + _h2_frame(_H2_SETTINGS, 0, 0)
                       + _h2_frame(_H2_HEADERS, _H2_END_HEADERS, 1,
                                   _health_request_headers(f"{host}:{port}"))
                       # an empty HealthCheckRequest: uncompressed, length 0
                       + _h2_frame(_H2_DATA, _H2_END_STREAM, 1, b"\x00\x00\x00\x00\x00"))
            sock.sendall(request)
            buffer, body = b"", b""
            while True:
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    kind, flags = buffer[3], buffer[4]
                    stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                    payload, buffer = buffer[9:9 + length], buffer[9 + length:]
                    if kind == _H2_SETTINGS and not flags & _H2_ACK:
                        sock.sendall(_h2_frame(_H2_SETTINGS, _H2_ACK, 0))
                    elif kind == _H2_PING and not flags & _H2_ACK:
                        sock.sendall(_h2_frame(_H2_PING, _H2_ACK, 0, payload))
                    elif kind == _H2_DATA and stream == 1:
                        body += payload
                    elif kind in (_H2_RST_STREAM, _H2_GOAWAY) and (stream in (0, 1)):
                        return _health_status_of(body)
                    if stream == 1 and kind in (_H2_DATA, _H2_HEADERS) and flags & _H2_END_STREAM:
                        return _health_status_of(body)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    return _health_status_of(body)
                buffer += chunk
    except OSError:
        return None


def _health_status_of(body: bytes) -> Optional[int]:
    """HealthCheckResponse.status from one gRPC message: field 1, a varint (< 128 here)."""
    if len(body) < 5 or body[0] != 0:
        return None
    message = body[5:5 + int.from_bytes(body[1:5], "big")]
    if not message:
        return 0  # every field at its default: UNKNOWN
    if len(message) >= 2 and message[0] == 0x08:
        return message[1]
    return None


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1


def _parent_death_signal_setter() -> Optional[Callable[[], None]]:
    """A preexec_fn that makes the kernel SIGTERM the child when the thread that started it
    ends (prctl(PR_SET_PDEATHSIG), Linux): no peer outlives a launcher that was SIGKILLed.
    libc is looked up here, in the parent, so that the child only makes one system call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_parent_death_signal


class _Process:
    """One child process: its own session (terminal Ctrl-C reaches only the launcher), output
    appended to a log file, always reaped."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path,
                 parent_death_signal: bool, stdin_pipe: bool = False):
        self.name, self.argv, self.log_path = name, argv, log_path
        with open(log_path, "ab") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                      f"starting: {shlex.join(argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                preexec_fn=_parent_death_signal_setter() if parent_death_signal else None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def signal(self, signum: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def kill_and_reap(self) -> Optional[int]:
        self.signal(signal.SIGKILL)
        rc = self.wait(KILL_WAIT_S)
        self._close_stdin()
        return rc

    def terminate(self) -> None:
        """SIGTERM, and SIGCONT so that a process frozen with SIGSTOP gets to handle it."""
        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float) -> tuple[Optional[int], bool]:
        """SIGTERM, wait up to `timeout`, then SIGKILL. (exit code, whether it was killed)."""
        self.terminate()
        rc = self.wait(timeout)
        if rc is not None:
            self._close_stdin()
            return rc, False
        return self.kill_and_reap(), True

    def _close_stdin(self) -> None:
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()


def describe_exit(rc: Optional[int]) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-rc).name}"
        return f"killed by signal {-rc}"
    return f"exit code {rc}"


# --------------------------------------------------------------------------- the cluster

@dataclass(frozen=True)
class PeerInfo:
    index: int
    peer_id: str
    grpc_port: int
    cluster_port: int
    admin_port: int
    config_path: Path
    log_path: Path
    # None when the peer is not running.
    pid: Optional[int]
    # The last exit code of a peer that is not running (negative: killed by that signal).
    returncode: Optional[int]

    @property
    def grpc_address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def cluster_address(self) -> str:
        return f"{LOOPBACK}:{self.cluster_port}"

    @property
    def admin_url(self) -> str:
        """Its admin HTTP port: the dashboard at /, /metrics, /healthz, /readyz."""
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def running(self) -> bool:
        return self.pid is not None


class LocalCluster:
    """N orchestrator peers on loopback, and optionally a chroom-node-sim fleet registering
    with all of them.

    peers, nodes, base_port, bin_dir, workdir, config_base, log_level: as the command-line
    options of deploy/local-cluster. fleet=False starts no simulator (nodes is then unused).
    cluster_settings: extra keys of each peer's `cluster` section (e.g. failure_timeout_ms).
    overrides: top-level sections that replace the base file's (e.g. {"shutdown_grace_ms":
    1000, "log": {"level": "debug"}}); not listen, peer_id or cluster, which the launcher
    writes. fleet_args: more chroom-node-sim arguments. parent_death_signal: children
    get SIGTERM when the thread that started them ends (the command line uses it; leave it
    off where threads start processes).
    """

    def __init__(self, peers: int = DEFAULT_PEERS, nodes: int = DEFAULT_NODES,
                 base_port: int = DEFAULT_BASE_PORT, bin_dir: Optional[os.PathLike] = None,
                 workdir: Optional[os.PathLike] = None,
                 config_base: Optional[os.PathLike] = None, fleet: bool = True,
                 log_level: Optional[str] = None,
                 cluster_settings: Optional[dict] = None, overrides: Optional[dict] = None,
                 fleet_args: Iterable[str] = (), startup_timeout: float = STARTUP_TIMEOUT_S,
                 stop_timeout: float = STOP_TIMEOUT_S, parent_death_signal: bool = False,
                 echo: Callable[[str], None] = lambda message: None):
        if not 1 <= peers <= MAX_PEERS:
            raise ValueError(f"peers must be 1 to {MAX_PEERS}, got {peers}")
        if fleet and not 1 <= nodes <= 100_000:
            raise ValueError(f"nodes must be 1 to 100000, got {nodes}")
        if not 1024 <= base_port or base_port + ADMIN_PORT_OFFSET + peers - 1 > 65535:
            raise ValueError(f"base port {base_port}: the ports {base_port}.."
                             f"{base_port + ADMIN_PORT_OFFSET + peers - 1} must lie in "
                             "1024..65535")
        clash = sorted(set(overrides or {}) & set(PEER_KEYS))
        if clash:
            raise ValueError(f"overrides may not set {', '.join(clash)}: the launcher writes "
                             "them (extra cluster keys go in cluster_settings)")
        self.peers_count = peers
        self.nodes = nodes
        self.base_port = base_port
        # Absolute: the processes run in the workdir.
        self.bin_dir = (Path(bin_dir) if bin_dir else DEFAULT_BIN_DIR).resolve()
        self.workdir = (Path(workdir) if workdir else Path(
            tempfile.mkdtemp(prefix="chroom-local-cluster-"))).resolve()
        self.config_base = (Path(config_base) if config_base else DEFAULT_CONFIG_BASE).resolve()
        self.fleet_enabled = fleet
        self.log_level = log_level
        self.cluster_settings = dict(cluster_settings or {})
        self.overrides = dict(overrides or {})
        self.fleet_args = list(fleet_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.parent_death_signal = parent_death_signal
        self.echo = echo
        self.fleet_log = self.workdir / "node-sim.log"
        self._peers: list[Optional[_Process]] = [None] * peers
        self._returncodes: list[Optional[int]] = [None] * peers
        self._fleet: Optional[_Process] = None
        self._secret_key: Optional[str] = None
        self._atexit_registered = False
        # Exit codes of the processes stop() ended, by name, over every call.
        self.stopped: dict[str, Optional[int]] = {}

    # ---- paths and ports
    @property
    def orchestrator(self) -> Path:
        return self.bin_dir / ORCHESTRATOR

    @property
    def node_sim(self) -> Path:
        return self.bin_dir / NODE_SIM

    def grpc_port(self, i: int) -> int:
        return self.base_port + i

    def cluster_port(self, i: int) -> int:
        return self.base_port + CLUSTER_PORT_OFFSET + i

    def admin_port(self, i: int) -> int:
        return self.base_port + ADMIN_PORT_OFFSET + i

    def config_path(self, i: int) -> Path:
        return self.workdir / f"peer-{i}.yaml"

    def log_path(self, i: int) -> Path:
        return self.workdir / f"peer-{i}.log"

    def peer(self, i: int) -> PeerInfo:
        self._check_index(i)
        process = self._peers[i]
        running = process is not None and process.running()
        if process is not None and not running:
            self._returncodes[i] = process.returncode
        return PeerInfo(index=i, peer_id=f"peer-{i}", grpc_port=self.grpc_port(i),
                        cluster_port=self.cluster_port(i), admin_port=self.admin_port(i),
                        config_path=self.config_path(i),
                        log_path=self.log_path(i), pid=process.pid if running else None,
                        returncode=None if running else self._returncodes[i])

    @property
    def peers(self) -> list[PeerInfo]:
        return [self.peer(i) for i in range(self.peers_count)]

    @property
    def grpc_targets(self) -> str:
        """"host:port,host:port,...": every peer's gRPC address (chroom-node-sim --target)."""
        return ",".join(f"{LOOPBACK}:{self.grpc_port(i)}" for i in range(self.peers_count))

    @property
    def fleet_pid(self) -> Optional[int]:
        return self._fleet.pid if self._fleet is not None and self._fleet.running() else None

    # ---- lifecycle
    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "LocalCluster":
        """Writes the configs, starts every peer, waits until all are SERVING, then starts the
        fleet. On any failure everything started is stopped and ClusterError raised."""
        self._check_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        busy = [port for i in range(self.peers_count)
                for port in (self.grpc_port(i), self.cluster_port(i)) if not port_is_free(port)]
        if busy:
            raise ClusterError(f"port(s) {', '.join(map(str, busy))} on {LOOPBACK} are in use "
                               "(another local cluster or peer running?); pick other ports with "
                               "--base-port")
        try:
            for i in range(self.peers_count):
                self._spawn_peer(i)
            for i in range(self.peers_count):
                self.wait_ready(i)
            if self.fleet_enabled:
                self.start_fleet()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> dict[str, Optional[int]]:
        """Stops the fleet, then every peer (SIGTERM, all at once; SIGKILL after the stop
        timeout). Returns each process's exit code by name. Safe to call twice."""
        codes: dict[str, Optional[int]] = {}
        if self._fleet is not None:
            rc, killed = self._fleet.stop(FLEET_STOP_TIMEOUT_S)
            codes["node-sim"] = rc
            if killed:
                self.echo(f"node-sim did not stop within {FLEET_STOP_TIMEOUT_S:g} s: killed")
            self._fleet = None
        running = [(i, p) for i, p in enumerate(self._peers) if p is not None]
        for _, process in running:
            process.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for i, process in running:
            rc = process.wait(deadline - time.monotonic())
            if rc is None:
                rc = process.kill_and_reap()
                self.echo(f"peer-{i} did not stop within {self.stop_timeout:g} s of SIGTERM: "
                          f"killed\n{log_tail(self.log_path(i), 10)}")
            codes[f"peer-{i}"] = rc
            self._returncodes[i] = rc
            self._peers[i] = None
        if self._atexit_registered:
            atexit.unregister(self._kill_all)
            self._atexit_registered = False
        self.stopped.update(codes)
        return codes

    def kill(self, i: int, signum: int = signal.SIGKILL, wait: bool = True,
             timeout: Optional[float] = None) -> Optional[int]:
        """Sends `signum` to peer i. With wait (the default), waits for it to exit (up to
        `timeout`, default the stop timeout; SIGKILL after that) and returns its exit code,
        negative for a signal. Without wait, returns None and the peer is reaped later: use
        that for signals that do not end it (SIGSTOP to freeze a peer, SIGCONT to thaw it)."""
        process = self._running_peer(i)
        process.signal(signum)
        if not wait:
            return None
        rc = process.wait(self.stop_timeout if timeout is None else timeout)
        if rc is None:
            rc = process.kill_and_reap()
        self._returncodes[i] = rc
        return rc

    def stop_peer(self, i: int) -> Optional[int]:
        """SIGTERM peer i, as an orderly shutdown; SIGKILL after the stop timeout."""
        self._check_index(i)
        process = self._peers[i]
        if process is None:
            return self._returncodes[i]
        rc, _ = process.stop(self.stop_timeout)
        self._returncodes[i] = rc
        return rc

    def restart(self, i: int, signum: int = signal.SIGTERM) -> PeerInfo:
        """Stops peer i if it runs (`signum`, then SIGKILL after the stop timeout), then
        starts it again with the same config file and ports and waits until it is SERVING."""
        self._check_index(i)
        process = self._peers[i]
        if process is not None and process.running():
            self.kill(i, signum)
        elif process is not None:
            process.wait(0)
            self._returncodes[i] = process.returncode
        deadline = time.monotonic() + self.startup_timeout
        # The old process's sockets are closed; its listening ports are free at once
        # (SO_REUSEADDR), so this rarely waits.
        for port in (self.grpc_port(i), self.cluster_port(i)):
            while not port_is_free(port) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._spawn_peer(i)
        self.wait_ready(i)
        return self.peer(i)

    def wait_ready(self, i: int, timeout: Optional[float] = None) -> None:
        """Waits until peer i answers a health Check with SERVING; ClusterError (with the
        tail of its log) when it exits first or the timeout passes."""
        process = self._peers[i]
        if process is None:
            raise ClusterError(f"peer-{i} is not started")
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        status = None
        while True:
            if not process.running():
                self._returncodes[i] = process.returncode
                raise ClusterError(f"peer-{i} exited during start-up "
                                   f"({describe_exit(process.returncode)})\n"
                                   f"{log_tail(self.log_path(i))}")
            status = grpc_health_status(LOOPBACK, self.grpc_port(i))
            if status == SERVING:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        process.kill_and_reap()
        self._returncodes[i] = process.returncode
        raise ClusterError(f"peer-{i} did not answer a health Check with SERVING within "
                           f"{timeout:g} s (last status: {status}); killed it\n"
                           f"{log_tail(self.log_path(i))}")

    def start_fleet(self) -> int:
        """Starts chroom-node-sim with --target listing every peer; returns its pid."""
        if self._fleet is not None and self._fleet.running():
            raise ClusterError("the fleet is already running")
        if not self.node_sim.is_file():
            raise ClusterError(f"{self.node_sim} not found: build it (cmake --build), point "
                               "--bin at the directory holding it, or use --no-fleet")
        if not self._secret_key:
            raise ClusterError(f"{self.config_base} sets no media_nodes.secret_key, from which "
                               "the simulated nodes derive their secrets; add one or use "
                               "--no-fleet")
        self._ensure_cleanup_at_exit()
        argv = [str(self.node_sim), "--target", self.grpc_targets, "--nodes", str(self.nodes),
                "--secret-key", self._secret_key, "--log-level", "warn",
                "--status-interval-s", "30", *self.fleet_args]
        self._fleet = _Process("node-sim", argv, self.fleet_log, self.workdir,
                               self.parent_death_signal, stdin_pipe=True)
        # A bad argument or an unreachable source tree (cities file) ends it at once.
        if self._fleet.wait(0.5) is not None:
            rc = self._fleet.returncode
            self._fleet = None
            raise ClusterError(f"chroom-node-sim exited at once ({describe_exit(rc)})\n"
                               f"{log_tail(self.fleet_log)}")
        return self._fleet.pid

    def stop_fleet(self) -> Optional[int]:
        if self._fleet is None:
            return None
        rc, _ = self._fleet.stop(FLEET_STOP_TIMEOUT_S)
        self._fleet = None
        return rc

    def fleet_command(self, line: str) -> None:
        """Sends one command line to the simulator's stdin (crash ID, freeze random 5, ...;
        docs/node-sim.md). Its reply goes to node-sim.log."""
        if self._fleet is None or not self._fleet.running() or self._fleet.popen.stdin is None:
            raise ClusterError("the fleet is not running")
        self._fleet.popen.stdin.write(line.rstrip("\n").encode() + b"\n")
        self._fleet.popen.stdin.flush()

    def exited(self) -> list[tuple[str, Optional[int]]]:
        """Processes that were started and are no longer running: (name, exit code). A peer
        is listed until it is restarted; the fleet until it is started again."""
        out = [(f"peer-{i}", p.returncode) for i, p in enumerate(self._peers)
               if p is not None and not p.running()]
        if self._fleet is not None and not self._fleet.running():
            out.append(("node-sim", self._fleet.returncode))
        return out

    def cluster_listening(self, i: int) -> bool:
        """Whether peer i's cluster port is in LISTEN state (a build without cluster support
        has none)."""
        return self.cluster_port(i) in listening_ports()

    # ---- configuration
    def write_configs(self) -> list[Path]:
        """Writes peer-<i>.yaml for every peer: listen, peer_id and cluster from the
        launcher, every other section from the base file (or `overrides`)."""
        try:
            base_text = self.config_base.read_text()
        except OSError as error:
            raise ClusterError(f"cannot read the base config {self.config_base}: "
                               f"{error.strerror or error}") from None
        sections = split_top_level(base_text)
        keys = [key for key, _ in sections if key]
        if not keys and base_text.strip():
            raise ClusterError(f"{self.config_base}: no top-level keys found; the base config "
                               "must be a block-style YAML mapping")
        kept = [text for key, text in sections
                if key is not None and key not in PEER_KEYS and key not in self.overrides]
        media_nodes = self.overrides.get("media_nodes")
        if isinstance(media_nodes, dict):
            self._secret_key = media_nodes.get("secret_key")
        else:
            self._secret_key = next((secret_key_of(text) for key, text in sections
                                     if key == "media_nodes"), None)
        seeds = [f"{LOOPBACK}:{self.cluster_port(j)}" for j in range(self.peers_count)]
        paths = []
        for i in range(self.peers_count):
            cluster = {"listen_host": LOOPBACK, "listen_port": self.cluster_port(i),
                       "seeds": seeds, **self.cluster_settings}
            own = {"listen": {"host": LOOPBACK, "port": self.grpc_port(i)},
                   "peer_id": f"peer-{i}", "cluster": cluster,
                   "admin": {"http": {"host": LOOPBACK, "port": self.admin_port(i)}}}
            text = (f"# peer-{i} of a local cluster of {self.peers_count}, written by "
                    f"deploy/local-cluster\n# (listen, peer_id, cluster and admin are the "
                    f"launcher's; "
                    f"the rest comes from {self.config_base})\n"
                    + to_yaml(own) + "\n"
                    + (to_yaml(self.overrides) + "\n" if self.overrides else "")
                    + "".join(text.rstrip("\n") + "\n" for text in kept))
            self.config_path(i).write_text(text)
            paths.append(self.config_path(i))
        return paths

    # ---- internals
    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.peers_count:
            raise IndexError(f"no peer {i}: peers are 0..{self.peers_count - 1}")

    def _running_peer(self, i: int) -> _Process:
        self._check_index(i)
        process = self._peers[i]
        if process is None or not process.running():
            raise ClusterError(f"peer-{i} is not running")
        return process

    def _check_binaries(self) -> None:
        missing = [path for path in ([self.orchestrator]
                                     + ([self.node_sim] if self.fleet_enabled else []))
                   if not (path.is_file() and os.access(path, os.X_OK))]
        if missing:
            raise ClusterError(
                "not found or not executable: " + ", ".join(map(str, missing))
                + "\nbuild them (cmake --preset release && cmake --build --preset release) or "
                "point --bin at the directory holding them")

    def _ensure_cleanup_at_exit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._kill_all)
            self._atexit_registered = True

    def _spawn_peer(self, i: int) -> None:
        self._ensure_cleanup_at_exit()
        process = self._peers[i]
        if process is not None and process.running():
            raise ClusterError(f"peer-{i} is already running (pid {process.pid})")
        argv = [str(self.orchestrator), "--config", str(self.config_path(i))]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        self._peers[i] = _Process(f"peer-{i}", argv, self.log_path(i), self.workdir,
                                  self.parent_death_signal)

    def _kill_all(self) -> None:
        """At interpreter exit, for a cluster that was never stopped: no process outlives us."""
        if self._fleet is not None:
            self._fleet.kill_and_reap()
        for process in self._peers:
            if process is not None:
                process.kill_and_reap()


# --------------------------------------------------------------------------- command line

class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM/SIGHUP handler to end the launcher's wait."""


def _parse_args(argv: Optional[list[str]]):
    import argparse

    parser = argparse.ArgumentParser(
        prog="deploy/local-cluster",
        description="Starts a local Chroom Orchestrator cluster on loopback: N peers "
                    "(gRPC on BASE_PORT.., cluster on BASE_PORT+100..) and a simulated fleet of "
                    "media nodes registering with all of them. Ctrl-C or SIGTERM stops it.")
    parser.add_argument("--peers", type=int, default=DEFAULT_PEERS,
                        help=f"peers to start, 1..{MAX_PEERS} (default {DEFAULT_PEERS})")
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES,
                        help=f"simulated media nodes (default {DEFAULT_NODES})")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                        help=f"gRPC port of peer-0; peer i serves on BASE_PORT+i and its cluster "
                             f"socket on BASE_PORT+{CLUSTER_PORT_OFFSET}+i, its admin HTTP "
                             f"port (dashboard) on BASE_PORT+{ADMIN_PORT_OFFSET}+i "
                             f"(default {DEFAULT_BASE_PORT})")
    parser.add_argument("--bin", type=Path, default=DEFAULT_BIN_DIR,
                        help="directory of chroom-orchestrator and chroom-node-sim "
                             "(default: build/release/bin of the source tree)")
    parser.add_argument("--workdir", type=Path,
                        help="where peer-<i>.yaml, peer-<i>.log and node-sim.log go "
                             "(default: a new temporary directory, kept after exit)")
    parser.add_argument("--config-base", type=Path, default=DEFAULT_CONFIG_BASE,
                        help="config whose sections other than listen, peer_id and cluster "
                             "(media_nodes, apps, ...) every peer uses "
                             "(default deploy/config/local-demo.yaml)")
    parser.add_argument("--no-fleet", action="store_true", help="start no simulated nodes")
    parser.add_argument("--log-level",
                        choices=["trace", "debug", "info", "warn", "error", "critical", "off"],
                        help="the peers' --log-level (default: the base config's, else info)")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S,
                        help=f"seconds each peer may take to be SERVING "
                             f"(default {STARTUP_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    if not 1 <= args.peers <= MAX_PEERS:
        parser.error(f"--peers must be 1 to {MAX_PEERS}")
    if not args.no_fleet and not 1 <= args.nodes <= 100_000:
        parser.error("--nodes must be 1 to 100000")
    if not 1024 <= args.base_port <= 65535 - ADMIN_PORT_OFFSET - args.peers + 1:
        parser.error(f"--base-port must be 1024 to {65535 - ADMIN_PORT_OFFSET - args.peers + 1}")
    return args


def _endpoints(cluster: LocalCluster) -> str:
    first = cluster.peer(0).grpc_address
    curl = "curl --http2-prior-knowledge -H 'content-type: application/json'"
    lines = ["", f"Chroom Orchestrator: {cluster.peers_count} peer(s) on {LOOPBACK}"
             + (f", {cluster.nodes} simulated media nodes" if cluster.fleet_enabled else "")
             + ".", ""]
    lines.append(f"  {'peer':<8} {'gRPC (h2c)':<17} {'cluster':<17} {'dashboard':<24} "
                 f"{'pid':>7}  log")
    for info in cluster.peers:
        listening = "" if cluster.cluster_listening(info.index) else "  (cluster port not open)"
        lines.append(f"  {info.peer_id:<8} {info.grpc_address:<17} {info.cluster_address:<17} "
                     f"{info.admin_url + '/':<24} {info.pid or '-':>7}  {info.log_path}{listening}")
    if cluster.fleet_enabled:
        lines.append(f"  {'node-sim':<8} --target {cluster.grpc_targets}")
        lines.append(f"  {'':<8} pid {cluster.fleet_pid}, log {cluster.fleet_log}")
    lines += [
        f"  configs  {cluster.workdir}/peer-<i>.yaml",
        "",
        "  the cluster  " + curl + " \\",
        f"                 -d '{{}}' http://{first}/chroom.admin.v1.AdminService/GetCluster",
        "  nodes        " + curl + " \\",
        f"                 -d '{{\"pageSize\": 5}}' "
        f"http://{first}/chroom.admin.v1.AdminService/ListNodes",
        "  join a room  " + curl + " \\",
        "                 -d '{\"appId\": \"default\", \"roomId\": \"demo\", \"clientId\": "
        "\"alice\", \"location\": {\"latitude\": 52.52, \"longitude\": 13.40, "
        "\"hasPoint\": true}}' \\",
        f"                 http://{first}/chroom.allocation.v1.AllocationService/Allocate",
        "  (any peer's gRPC port serves every call)",
        "",
        "Stop with Ctrl-C (or SIGTERM to this launcher).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)

    def echo(message: str) -> None:
        print(f"local-cluster: {message}", file=sys.stderr, flush=True)

    cluster = LocalCluster(peers=args.peers, nodes=args.nodes, base_port=args.base_port,
                           bin_dir=args.bin.resolve(),
                           workdir=args.workdir.resolve() if args.workdir else None,
                           config_base=args.config_base.resolve(), fleet=not args.no_fleet,
                           log_level=args.log_level, startup_timeout=args.startup_timeout,
                           parent_death_signal=True, echo=echo)

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        if stopping:
            return  # already shutting down; the waits are bounded
        stopping = True
        raise _Stop(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    try:
        try:
            echo(f"starting {args.peers} peer(s) in {cluster.workdir}")
            cluster.start()
            print(_endpoints(cluster), flush=True)
            reported: set[str] = set()
            while True:
                for name, rc in cluster.exited():
                    if name not in reported:
                        reported.add(name)
                        echo(f"{name} exited ({describe_exit(rc)}); see its log in "
                             f"{cluster.workdir}")
                if all(not info.running for info in cluster.peers):
                    echo("every peer has exited")
                    stopping = True
                    return 1
                time.sleep(0.5)
        except _Stop as stop:
            stopping = True
            echo(f"{stop}: stopping")
            return 0
        except ClusterError as error:
            stopping = True
            echo(f"error: {error}")
            return 1
    finally:
        stopping = True
        cluster.stop()
        if cluster.stopped:
            echo("stopped: " + ", ".join(f"{name} {describe_exit(rc)}"
                                         for name, rc in cluster.stopped.items()))
        if args.workdir is None and cluster.workdir.is_dir() and not any(cluster.workdir.iterdir()):
            cluster.workdir.rmdir()  # nothing was written: leave no empty temporary directory
        elif cluster.workdir.is_dir():
            echo(f"configs and logs kept in {cluster.workdir}")


if __name__ == "__main__":
    sys.exit(main())
