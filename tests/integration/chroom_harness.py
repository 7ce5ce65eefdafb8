"""Integration test harness: starts the real chroom-orchestrator on loopback and talks
to it with stock clients (grpcio, a raw HTTP/2 client built on the `h2` library, sockets).

Everything here is bounded in time: every wait has a deadline, every loop a count.
Only 127.0.0.1 is ever contacted.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("CHROOM_SOURCE_DIR", HERE.parent.parent)).resolve()
# google.rpc's Status and error details as Debian ships them (golang-github-gogo-googleapis-dev).
GOOGLE_RPC_PROTOS = Path("/usr/share/gocode/src/github.com/gogo/googleapis")
BIN_DIR = Path(os.environ.get("CHROOM_BIN_DIR", SOURCE_DIR / "build" / "debug" / "bin")).resolve()
ORCHESTRATOR = BIN_DIR / "chroom-orchestrator"
GRPCPP_CLIENT_TESTS = BIN_DIR / "chroom-grpcpp-client-tests"

LOOPBACK = "127.0.0.1"
DIAG = "/chroom.diag.v1.Diagnostics/"
HEALTH = "/grpc.health.v1.Health/"

# How long a started server may take to answer a health Check with SERVING.
STARTUP_TIMEOUT_S = 10.0
# How long a SIGTERMed server may take to exit in teardown.
STOP_TIMEOUT_S = 10.0
# The harness's default shutdown grace, so that a teardown never waits for the 5 s default.
DEFAULT_SHUTDOWN_GRACE_MS = 2000

# gRPC status codes by number (the raw HTTP/2 tests see numbers, not enums).
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 8, 12, 13, 14

# HTTP/2 error codes.
H2_NO_ERROR, H2_PROTOCOL_ERROR, H2_INTERNAL_ERROR, H2_FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
H2_REFUSED_STREAM, H2_CANCEL, H2_ENHANCE_YOUR_CALM = 0x7, 0x8, 0xB


# --------------------------------------------------------------------------- stubs

class _Stubs:
    """Python modules generated once per session from the repo's .proto files."""

    def __init__(self) -> None:
        self._dir: Optional[Path] = None
        self.diag_pb2 = self.diag_grpc = self.health_pb2 = self.health_grpc = None
        # chroom.medianode.v1 and chroom.admin.v1 (the admin proto imports the media node one).
        self.node_pb2 = self.node_grpc = self.admin_pb2 = self.admin_grpc = None
        # chroom.allocation.v1 (imports the media node proto too).
        self.alloc_pb2 = self.alloc_grpc = None
        # chroom.config.v1 (the admin proto's app methods carry AppConfig).
        self.config_pb2 = None
        # google.rpc.Status and its error details (grpc-status-details-bin, docs/errors.md).
        self.rpc_status_pb2 = self.rpc_details_pb2 = None

    def load(self) -> "_Stubs":
        if self._dir is not None:
            return self
        from grpc_tools import protoc  # imported lazily: only needed once

        out = Path(tempfile.mkdtemp(prefix="chroom-stubs-"))
        atexit.register(shutil.rmtree, out, True)
        # The protos are copied flat: generating grpc/health/v1/health_pb2.py in place would
        # make a `grpc` package that clashes with grpcio's. The proto packages (and so the
        # method paths) are unchanged; none of them imports another of ours (google.rpc's
        # import only well-known types, which grpc_tools brings).
        messages = SOURCE_DIR / "messages"
        sources = {
            "chroom_diagnostics.proto": messages / "chroom/diag/v1/diagnostics.proto",
            "chroom_health.proto": messages / "grpc/health/v1/health.proto",
            # Flat too: a `google` package here would hide python3-protobuf's google.protobuf.
            "chroom_rpc_status.proto": GOOGLE_RPC_PROTOS / "google/rpc/status.proto",
            "chroom_rpc_error_details.proto": GOOGLE_RPC_PROTOS / "google/rpc/error_details.proto",
        }
        # The chroom.medianode.v1 / chroom.admin.v1 protos keep their directories: one imports
        # the other by that path, and their modules land in a `chroom` namespace package
        # (chroom.medianode.v1.media_node_pb2), which clashes with nothing.
        sources.update({
            "chroom/medianode/v1/media_node.proto": messages / "chroom/medianode/v1/media_node.proto",
            "chroom/admin/v1/admin_service.proto": messages / "chroom/admin/v1/admin_service.proto",
            "chroom/config/v1/config.proto": messages / "chroom/config/v1/config.proto",
            "chroom/apps/v1/events.proto": messages / "chroom/apps/v1/events.proto",
            "chroom/apps/v1/usage.proto": messages / "chroom/apps/v1/usage.proto",
            "chroom/allocation/v1/allocation_service.proto":
                messages / "chroom/allocation/v1/allocation_service.proto",
        })
        for name, src in sources.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / name)
        rc = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}",
                          *[str(out / n) for n in sources]])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed with {rc} on {list(sources.values())}")
        sys.path.insert(0, str(out))
        import chroom_diagnostics_pb2
        import chroom_diagnostics_pb2_grpc
        import chroom_health_pb2
        import chroom_health_pb2_grpc
        import chroom_rpc_error_details_pb2
        import chroom_rpc_status_pb2

        from chroom.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
        from chroom.allocation.v1 import allocation_service_pb2, allocation_service_pb2_grpc
        from chroom.config.v1 import config_pb2
        from chroom.medianode.v1 import media_node_pb2, media_node_pb2_grpc

        self.diag_pb2, self.diag_grpc = chroom_diagnostics_pb2, chroom_diagnostics_pb2_grpc
        self.health_pb2, self.health_grpc = chroom_health_pb2, chroom_health_pb2_grpc
        self.node_pb2, self.node_grpc = media_node_pb2, media_node_pb2_grpc
        self.admin_pb2, self.admin_grpc = admin_service_pb2, admin_service_pb2_grpc
        self.alloc_pb2, self.alloc_grpc = allocation_service_pb2, allocation_service_pb2_grpc
        self.config_pb2 = config_pb2
        self.rpc_status_pb2, self.rpc_details_pb2 = chroom_rpc_status_pb2, chroom_rpc_error_details_pb2
        self._dir = out
        return self


STUBS = _Stubs()


def stubs() -> _Stubs:
    return STUBS.load()


# --------------------------------------------------------------------------- helpers

_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never one this process was given before: the
    kernel may hand the port just released out again, and two calls for one server's gRPC
    and admin ports once got the same one."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no fresh loopback port in 100 tries")


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Polls pred until it returns something truthy or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = pred()
    return value


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _yaml_scalar(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return str(item)
    return json.dumps(str(item))


def to_yaml(value: Any, indent: int = 0) -> str:
    """A tiny YAML emitter for nested dicts of scalars and lists (of scalars or dicts)
    (JSON strings are valid YAML)."""
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(item, indent + 1))
        elif isinstance(item, (list, tuple)):
            if not item:
                lines.append(f"{pad}{key}: []")
                continue
            lines.append(f"{pad}{key}:")
            for element in item:
                if isinstance(element, dict):
                    # "- first: 1" then the other keys aligned under "first"
                    body = to_yaml(element, indent + 2).splitlines()
                    inner = "  " * (indent + 2)
                    lines.append(f"{pad}  - {body[0][len(inner):]}")
                    lines.extend(f"{pad}    {line[len(inner):]}" for line in body[1:])
                else:
                    lines.append(f"{pad}  - {_yaml_scalar(element)}")
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    return "\n".join(lines)


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def parse_grpc_frames(data: bytes) -> list[bytes]:
    """Splits a response body into messages; a trailing partial message is an error."""
    out, pos = [], 0
    while pos < len(data):
        assert len(data) - pos >= 5, f"truncated gRPC prefix in response body: {data[pos:]!r}"
        flag, length = struct.unpack(">BI", data[pos:pos + 5])
        assert flag == 0, f"response message has compressed flag {flag}"
        assert len(data) - pos - 5 >= length, "truncated gRPC message in response body"
        out.append(bytes(data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out


def decode_grpc_message(raw: Optional[bytes]) -> Optional[str]:
    if raw is None:
        return None
    return urllib.parse.unquote_to_bytes(raw).decode("utf-8", errors="replace")


def sock_closed_within(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Reads (and keeps) everything until EOF/reset or timeout. Returns (closed, bytes)."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, bytes(received)
        sock.settimeout(min(left, 0.25))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return True, bytes(received)
        except ssl.SSLError:
            return True, bytes(received)
        if not chunk:
            return True, bytes(received)
        received += chunk
        if len(received) > 16 * 1024 * 1024:
            return False, bytes(received)


def abort_socket(sock: socket.socket) -> None:
    """Closes with RST (SO_LINGER 0): the peer vanishes without GOAWAY or FIN handshake."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def read_vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


# --------------------------------------------------------------------------- server

class ServerFailure(AssertionError):
    pass


class Server:
    """One chroom-orchestrator process with its own config file and logs."""

    def __init__(self, workdir: Path, overrides: Optional[dict] = None, name: str = "server"):
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        base = {
            "listen": {"host": LOOPBACK, "port": self.port},
            "admin": {"http": {"host": LOOPBACK, "port": free_port()}},
            "shutdown_grace_ms": DEFAULT_SHUTDOWN_GRACE_MS,
        }
        self.config = deep_merge(base, overrides or {})
        self.port = int(self.config["listen"]["port"])
        self.tls = bool(self.config["listen"].get("cert_file"))
        self.root_cert = Path(self.config["listen"]["cert_file"]).read_bytes() if self.tls else None
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(to_yaml(self.config) + "\n")
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self._channels: list[grpc.Channel] = []
        self._counters_channel: Optional[grpc.Channel] = None
        self.sigterm_at: Optional[float] = None

    # ---- lifecycle
    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin HTTP port (metrics, probes, dashboard)."""
        http = self.config["admin"]["http"]
        return f"http://{http['host']}:{http['port']}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "Server":
        self.sigterm_at = None  # a restarted server is a new run
        if not ORCHESTRATOR.exists():
            raise ServerFailure(f"{ORCHESTRATOR} does not exist (build it: cmake --build --preset debug)")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(ORCHESTRATOR), "--config", str(self.config_path), "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.workdir)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        s = stubs()
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ServerFailure(f"{self.name} exited with {self.returncode} during startup\n"
                                    f"config:\n{self.config_path.read_text()}\n{self.log_tail()}")
            channel = self.new_channel(track=False)
            try:
                stub = s.health_grpc.HealthStub(channel)
                reply = stub.Check(s.health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == s.health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = f"status {reply.status}"
            except grpc.RpcError as e:
                last_error = f"{e.code()}: {e.details()}"
            finally:
                channel.close()
            time.sleep(0.1)
        self.kill()
        raise ServerFailure(f"{self.name} not SERVING within {STARTUP_TIMEOUT_S} s "
                            f"(last: {last_error})\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigterm(self) -> None:
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        self.sigterm_at = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> Optional[int]:
        """Waits for exit; returns the exit code or None when still running."""
        try:
            self.returncode = self.proc.wait(timeout=max(timeout, 0.0))
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def close_channels(self) -> None:
        for ch in self._channels:
            with contextlib.suppress(Exception):
                ch.close()
        self._channels.clear()
        self._counters_channel = None

    def stop(self) -> None:
        """SIGTERM; the process must exit 0 within STOP_TIMEOUT_S. Raises ServerFailure."""
        self.close_channels()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.sigterm_at is None:
                self.sigterm()
            remaining = STOP_TIMEOUT_S - (time.monotonic() - self.sigterm_at)
            rc = self.wait_exit(remaining)
            if rc is None:
                self.kill()
                raise ServerFailure(f"{self.name} still running {STOP_TIMEOUT_S} s after SIGTERM; "
                                    f"killed with SIGKILL\n{self.log_tail()}")
        self.returncode = self.proc.returncode
        if self.returncode != 0:
            raise ServerFailure(f"{self.name} exited with {self.returncode} (expected 0)\n"
                                f"{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                text = []
            parts.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def vm_rss_kib(self) -> int:
        return read_vm_rss_kib(self.pid)

    # ---- grpcio clients
    def new_channel(self, options: Optional[list] = None, track: bool = True) -> grpc.Channel:
        opts = list(options or [])
        if self.tls:
            creds = grpc.ssl_channel_credentials(root_certificates=self.root_cert)
            opts.append(("grpc.ssl_target_name_override", "localhost"))
            ch = grpc.secure_channel(self.target, creds, options=opts)
        else:
            ch = grpc.insecure_channel(self.target, options=opts)
        if track:
            self._channels.append(ch)
        return ch

    def diag(self, channel: Optional[grpc.Channel] = None):
        return stubs().diag_grpc.DiagnosticsStub(channel or self.new_channel())

    def health(self, channel: Optional[grpc.Channel] = None):
        return stubs().health_grpc.HealthStub(channel or self.new_channel())

    def admin(self, channel: Optional[grpc.Channel] = None):
        """A chroom.admin.v1.AdminService stub."""
        return stubs().admin_grpc.AdminServiceStub(channel or self.new_channel())

    def allocation(self, channel: Optional[grpc.Channel] = None):
        """A chroom.allocation.v1.AllocationService stub."""
        return stubs().alloc_grpc.AllocationServiceStub(channel or self.new_channel())

    def counters(self):
        if self._counters_channel is None:
            self._counters_channel = self.new_channel()
        stub = stubs().diag_grpc.DiagnosticsStub(self._counters_channel)
        return stub.GetCounters(stubs().diag_pb2.GetCountersRequest(), timeout=5)

    def wait_counters(self, pred: Callable[[Any], bool], timeout: float):
        """Polls GetCounters until pred(counters) holds; returns the last counters read."""
        last = [None]

        def check():
            last[0] = self.counters()
            return pred(last[0])

        wait_until(check, timeout, 0.05)
        return last[0]

    def assert_serving(self, why: str = "") -> None:
        """The process is alive and a fresh client's Echo works."""
        assert self.alive(), f"{self.name} died {why}: exit {self.proc.poll()}\n{self.log_tail()}"
        channel = self.new_channel(track=False)
        try:
            stub = stubs().diag_grpc.DiagnosticsStub(channel)
            reply = stub.Echo(stubs().diag_pb2.EchoRequest(text="still alive?", payload=b"\x00\x01"),
                              timeout=5)
            assert reply.text == "still alive?" and reply.payload == b"\x00\x01"
        except grpc.RpcError as e:
            raise AssertionError(f"fresh Echo failed {why}: {e.code()} {e.details()}\n"
                                 f"{self.log_tail()}") from e
        finally:
            channel.close()


# --------------------------------------------------------------------------- WatchNodes

class NodeWatcher:
    """A chroom.admin.v1.AdminService.WatchNodes call read by a background thread.

    events: every NodeEvent so far with the monotonic time it arrived, in order."""

    def __init__(self, server: "Server", timeout: float = 60.0, initial: int = 0):
        """initial: wait (up to 5 s) for this many events, the current state of the nodes
        the peer knows, so that the subscription is known to be in place."""
        import queue
        import threading

        self._queue: "queue.Queue" = queue.Queue()
        self.events: list = []          # (arrived monotonic, NodeEvent)
        self.error: Optional[grpc.RpcError] = None
        self.done = threading.Event()
        self._channel = server.new_channel(track=False)
        self.call = server.admin(self._channel).WatchNodes(
            stubs().admin_pb2.WatchNodesRequest(), timeout=timeout)
        self._thread = threading.Thread(target=self._read, name="watch-nodes", daemon=True)
        self._thread.start()
        if initial:
            got = self.wait_count(initial, 5)
            assert len(got) >= initial, f"WatchNodes sent {len(got)} of {initial} current states"

    def _read(self) -> None:
        try:
            for event in self.call:
                self._queue.put((time.monotonic(), event))
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def _drain(self) -> None:
        import queue
        while True:
            try:
                self.events.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def snapshot(self) -> list:
        """The NodeEvents received so far."""
        self._drain()
        return [e for _, e in self.events]

    def wait_for(self, pred: Callable[[Any], bool], timeout: float, start: int = 0):
        """The first event from index `start` on for which pred holds (waiting up to timeout),
        or None."""
        import queue
        deadline = time.monotonic() + timeout
        index = start
        while True:
            self._drain()
            while index < len(self.events):
                if pred(self.events[index][1]):
                    return self.events[index][1]
                index += 1
            left = deadline - time.monotonic()
            if left <= 0 or (self.done.is_set() and self._queue.empty()):
                return None
            try:
                self.events.append(self._queue.get(timeout=min(left, 0.1)))
            except queue.Empty:
                pass

    def wait_count(self, count: int, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.02)
        return self.snapshot()

    def close(self) -> None:
        self.call.cancel()
        self.done.wait(5)
        with contextlib.suppress(Exception):
            self._channel.close()

    def __enter__(self) -> "NodeWatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- media nodes

class NodePeer:
    """A running peer plus the media nodes a test connects to it (media_node_client.py) and
    an AdminService stub. Nodes are closed before the server stops."""

    def __init__(self, server: "Server", channels: int = 1):
        import media_node_client

        self.server = server
        self.client = media_node_client
        media = server.config.get("media_nodes", {})
        self.secret_key: str = media.get("secret_key", "")
        self.listed: dict = {c["node_id"]: c["secret"] for c in media.get("credentials", [])}
        # grpcio shares one connection among channels with equal arguments (a global
        # subchannel pool): a local pool gives each channel its own TCP connection, so that
        # nodes spread over `channels` connections and admin calls never queue behind node
        # streams (the peer allows max_concurrent_streams per connection).
        self.admin_channel = self.new_channel()
        self.admin = server.admin(self.admin_channel)
        self.channels = [self.new_channel() for _ in range(channels)]
        self.nodes: list = []
        self._next_channel = 0

    def new_channel(self) -> grpc.Channel:
        """A channel with a connection of its own."""
        return self.server.new_channel([("grpc.use_local_subchannel_pool", 1)])

    def secret(self, node_id: str) -> str:
        if node_id in self.listed:
            return self.listed[node_id]
        return self.client.derive_secret(self.secret_key, node_id)

    def node(self, node_id: str, credential: Optional[str] = None,
             channel: Optional[grpc.Channel] = None, **kw):
        """A MediaNode (not yet connected) with its proper credential unless one is given."""
        if channel is None:
            channel = self.channels[self._next_channel % len(self.channels)]
            self._next_channel += 1
        node = self.client.MediaNode(channel, node_id,
                                     self.secret(node_id) if credential is None else credential,
                                     **kw)
        self.nodes.append(node)
        return node

    def active_node(self, node_id: str, heartbeat: bool = True, **kw):
        """A registered node that has sent Stats (and goes on sending them if heartbeat)."""
        node = self.node(node_id, **kw)
        node.register()
        if heartbeat:
            node.start_heartbeat()
        else:
            node.send_stats()
        pb = stubs().admin_pb2
        assert wait_until(lambda: self.state(node_id) == pb.NODE_STATE_ACTIVE, 5), \
            f"{node_id} not ACTIVE: {self.get(node_id)}"
        return node

    # ---- AdminService
    def list(self, **request):
        return self.admin.ListNodes(stubs().admin_pb2.ListNodesRequest(**request), timeout=5)

    def get(self, node_id: str):
        return self.admin.GetNode(stubs().admin_pb2.GetNodeRequest(node_id=node_id), timeout=5).node

    def state(self, node_id: str) -> int:
        try:
            return self.get(node_id).state
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return -1
            raise

    def state_name(self, node_id: str) -> str:
        state = self.state(node_id)
        return "unknown" if state < 0 else stubs().admin_pb2.NodeState.Name(state)

    def wait_state(self, node_id: str, state: int, timeout: float) -> bool:
        return bool(wait_until(lambda: self.state(node_id) == state, timeout, 0.02))

    def assert_undisturbed(self, node, registrations: int = 1, why: str = "") -> None:
        """A healthy node is still ACTIVE on its first stream, and the peer serves."""
        pb = stubs().admin_pb2
        assert not node.ended, f"healthy node {node.node_id}'s stream ended {why}: {node.end}"
        info = self.get(node.node_id)
        assert info.state == pb.NODE_STATE_ACTIVE, \
            f"healthy node {node.node_id} is {pb.NodeState.Name(info.state)} {why}"
        assert info.registrations == registrations, info
        self.server.assert_serving(why)

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.close()
        self.nodes.clear()


# --------------------------------------------------------------------------- raw HTTP/2

class _GoawayTolerantConnection(h2.connection.H2Connection):
    """h2 closes its state machine on any GOAWAY and then rejects every later frame. But
    after a graceful GOAWAY a server still completes streams up to last_stream_id (and may
    PING, or send a second GOAWAY): keep processing, and let the test decide."""

    def _receive_goaway_frame(self, frame):
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.connection._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def h2_config() -> h2.config.H2Configuration:
    return h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                     normalize_outbound_headers=False,
                                     validate_inbound_headers=True)


@dataclass
class StreamResult:
    stream_id: int
    headers: list = field(default_factory=list)       # response header blocks, in order
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset_code: Optional[int] = None
    remote_reset: bool = False

    @staticmethod
    def _to_dict(block) -> dict:
        return {bytes(k).decode("latin-1"): bytes(v) for k, v in block}

    @property
    def response_headers(self) -> dict:
        return self._to_dict(self.headers[0]) if self.headers else {}

    @property
    def trailers(self) -> dict:
        """The trailers; for a trailers-only response the one header block."""
        if len(self.headers) >= 2:
            return self._to_dict(self.headers[-1])
        if len(self.headers) == 1 and self.ended:
            return self._to_dict(self.headers[0])
        return {}

    @property
    def http_status(self) -> Optional[int]:
        raw = self.response_headers.get(":status")
        return int(raw) if raw is not None else None

    def header(self, name: str) -> Optional[str]:
        """A response header or trailer value (trailers win), as text."""
        value = self.trailers.get(name, self.response_headers.get(name))
        return value.decode("latin-1") if value is not None else None

    @property
    def grpc_status(self) -> Optional[int]:
        raw = self.header("grpc-status")
        return int(raw) if raw is not None else None

    @property
    def grpc_message(self) -> Optional[str]:
        raw = self.trailers.get("grpc-message", self.response_headers.get("grpc-message"))
        return decode_grpc_message(raw)

    @property
    def messages(self) -> list[bytes]:
        return parse_grpc_frames(bytes(self.data))

    @property
    def finished(self) -> bool:
        return self.ended or self.reset_code is not None

    def describe(self) -> str:
        return (f"stream {self.stream_id}: headers={self.headers} ended={self.ended} "
                f"reset={self.reset_code} data={bytes(self.data[:64])!r}...")


class RawH2:
    """A raw HTTP/2 client over a plain (or TLS) socket, driven step by step."""

    def __init__(self, port: int, *, settings: Optional[dict] = None, auto_ack_data: bool = True,
                 initiate: bool = True, tls_context: Optional[ssl.SSLContext] = None,
                 connect_timeout: float = 3.0):
        self.port = port
        raw = socket.create_connection((LOOPBACK, port), timeout=connect_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls_context.wrap_socket(raw, server_hostname="localhost") if tls_context else raw
        self.conn = _GoawayTolerantConnection(config=h2_config())
        if settings:
            values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                      h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536, **settings}
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
        self.auto_ack_data = auto_ack_data
        self.streams: dict[int, StreamResult] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None   # the last GOAWAY
        self.goaways: list = []
        self.closed = False            # EOF or reset seen on the socket
        self.pings_received = 0
        self.events: list = []
        self.remote_settings_seen = False
        if initiate:
            self.conn.initiate_connection()
            self.flush()

    # ---- sending
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.closed = True

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def default_headers(self, path: str, content_type: Optional[str] = "application/grpc",
                        method: str = "POST", extra: Optional[list] = None) -> list:
        headers = [(":method", method), (":scheme", "http"), (":path", path),
                   (":authority", f"{LOOPBACK}:{self.port}")]
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers.append(("te", "trailers"))
        headers.extend(extra or [])
        return headers

    def start(self, path: str = DIAG + "Echo", headers: Optional[list] = None,
              end_stream: bool = False, **kw) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = StreamResult(sid)
        self.conn.send_headers(sid, headers if headers is not None else self.default_headers(path, **kw),
                               end_stream=end_stream)
        self.flush()
        return sid

    def send(self, sid: int, data: bytes, end_stream: bool = False, timeout: float = 5.0) -> None:
        """Sends DATA within flow control, waiting (bounded) for window when needed."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while True:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if len(view) == 0 or window > 0:
                chunk = view[:window]
                last = len(chunk) == len(view)
                self.conn.send_data(sid, bytes(chunk), end_stream=end_stream and last)
                self.flush()
                view = view[len(chunk):]
                if last:
                    return
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"no flow-control window for stream {sid} within {timeout} s")
            self.pump(0.1)

    def end(self, sid: int) -> None:
        self.conn.end_stream(sid)
        self.flush()

    def reset(self, sid: int, code: int = H2_CANCEL) -> None:
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    # ---- receiving
    def pump(self, timeout: float) -> bool:
        """Reads once (waiting up to timeout) and handles the events. False on EOF."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            raise AssertionError(f"server sent invalid HTTP/2: {e!r}") from e
        for ev in events:
            self._handle(ev)
        self.flush()
        return True

    def _handle(self, ev) -> None:
        self.events.append(ev)
        sid = getattr(ev, "stream_id", None)
        st = self.streams.get(sid) if sid else None
        if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and st:
            st.headers.append(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(ev, h2.events.DataReceived):
            if st:
                st.data += ev.data
            if self.auto_ack_data and ev.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and st:
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset) and st:
            st.reset_code = int(ev.error_code)
            st.remote_reset = ev.remote_reset
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            self.goaways.append(ev)
        elif isinstance(ev, h2.events.PingReceived):
            self.pings_received += 1      # h2 queues the PING ACK itself
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return pred()
            self.pump(min(left, 0.2))
        return True

    def wait_stream(self, sid: int, timeout: float = 5.0) -> StreamResult:
        st = self.streams[sid]
        # After GOAWAY a stream at or below last_stream_id may still complete; others won't.
        self.wait_for(lambda: st.finished or (self.goaway is not None
                                              and sid > self.goaway.last_stream_id), timeout)
        return st

    def wait_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                self.pump(min(0.2, max(deadline - time.monotonic(), 0.001)))
            except AssertionError:
                # garbage after GOAWAY is not what this wait is about
                break
        return self.closed

    # ---- conveniences
    def unary(self, path: str, body: bytes, timeout: float = 5.0, extra: Optional[list] = None,
              content_type: str = "application/grpc") -> StreamResult:
        sid = self.start(path, extra=extra, content_type=content_type)
        self.send(sid, body, end_stream=True)
        return self.wait_stream(sid, timeout)

    def echo(self, text: str = "raw", timeout: float = 5.0, **fields) -> StreamResult:
        req = stubs().diag_pb2.EchoRequest(text=text, **fields).SerializeToString()
        return self.unary(DIAG + "Echo", grpc_frame(req), timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if not self.closed and self.goaway is None:
                self.conn.close_connection()
                self.flush()
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "RawH2":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def echo_response(data: bytes):
    return stubs().diag_pb2.EchoResponse.FromString(data)


def assert_echo_ok(st: StreamResult, text: str) -> None:
    assert st.ended, f"stream did not end: {st.describe()}"
    assert st.http_status == 200, st.describe()
    assert st.grpc_status == OK, f"grpc-status {st.grpc_status} {st.grpc_message!r}: {st.describe()}"
    msgs = st.messages
    assert len(msgs) == 1, st.describe()
    assert echo_response(msgs[0]).text == text


# --------------------------------------------------------------------------- TLS material

def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """EC P-256 self-signed certificate for localhost / 127.0.0.1, via the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


# --------------------------------------------------------------------------- allocation
# Helpers of the AllocationService tests (test_allocation*.py): the fibre RTT model,
# join-token verification with the standard library alone, a media node's view of what it
# hosts, a WatchRoom reader, the chroom-node-sim fleet, and a teardown for peers with rooms.

EARTH_RADIUS_KM = 6371.0088      # allocation/geo.hpp: mean Earth radius (IUGG)
FIBRE_KM_PER_MS = 200.0          # light in fibre
FIBRE_PATH_STRETCH = 1.5         # routed paths vs great circles
FIBRE_BASE_RTT_MS = 5.0          # last mile, switching, queuing


def great_circle_km(a: tuple, b: tuple) -> float:
    """Haversine distance between (lat, lon) points in degrees, kilometres."""
    import math
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fibre_rtt_ms(a: tuple, b: tuple) -> float:
    """The orchestrator's distance model (allocation/geo.hpp estimated_rtt_ms): great circle
    x 1.5 path stretch / 200 km per ms, both ways, + 5 ms."""
    return FIBRE_BASE_RTT_MS + 2 * great_circle_km(a, b) * FIBRE_PATH_STRETCH / FIBRE_KM_PER_MS


def b64url_encode(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(part: str) -> bytes:
    import base64
    import binascii
    if not part or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                "0123456789-_" for c in part):
        raise JoinTokenError(f"not base64url: {part[:40]!r}")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise JoinTokenError(f"not base64url: {e}") from e


class JoinTokenError(ValueError):
    """A join token a media node must refuse (docs/join-tokens.md)."""


JOIN_TOKEN_CLAIMS = ("iss", "sub", "app", "room", "node", "role", "lease", "iat", "exp")


def verify_join_token(token: str, secret: str, node_id: str, now: Optional[float] = None) -> dict:
    """What a media node does with a join token (docs/join-tokens.md), with hmac, hashlib,
    base64 and json only: three base64url parts, alg HS256 (never "none"), HMAC-SHA256
    under the node's secret compared in constant time, then the claims (iss chroom, every
    claim present with its type, exp in the future, node is this node). Returns the claims;
    raises JoinTokenError."""
    import hashlib
    import hmac
    parts = token.split(".")
    if len(parts) != 3:
        raise JoinTokenError(f"{len(parts)} parts, not 3")
    header_b64, claims_b64, signature_b64 = parts
    try:
        header = json.loads(b64url_decode(header_b64))
    except ValueError as e:
        raise JoinTokenError(f"header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JoinTokenError(f"wrong algorithm in header {header!r}")
    expected = hmac.new(secret.encode(), f"{header_b64}.{claims_b64}".encode(),
                        hashlib.sha256).digest()
    signature = b64url_decode(signature_b64) if signature_b64 else b""
    if not hmac.compare_digest(expected, signature):
        raise JoinTokenError("bad signature")
    try:
        claims = json.loads(b64url_decode(claims_b64))
    except ValueError as e:
        raise JoinTokenError(f"claims are not JSON: {e}") from e
    if not isinstance(claims, dict):
        raise JoinTokenError("claims are not an object")
    for name in JOIN_TOKEN_CLAIMS:
        want = int if name in ("iat", "exp") else str
        if not isinstance(claims.get(name), want) or isinstance(claims.get(name), bool):
            raise JoinTokenError(f"claim {name} missing or not a {want.__name__}: {claims!r}")
    if claims["iss"] != "chroom":
        raise JoinTokenError(f"iss {claims['iss']!r}")
    if claims["exp"] <= (time.time() if now is None else now):
        raise JoinTokenError(f"expired at {claims['exp']}")
    if claims["node"] != node_id:
        raise JoinTokenError(f"for node {claims['node']!r}, not {node_id!r}")
    return claims


class HostedRooms:
    """What one media node (media_node_client.MediaNode) hosts, as a real SFU would keep it:
    every command it acknowledges updates rooms, participants, relays and join tokens,
    and its Stats (node.stats_fields) report the participants and rooms it has.

        hosted = HostedRooms(node)      # before the node acks anything
        hosted.participants("app/room") -> set of participant ids
    """

    def __init__(self, node, report: bool = True):
        import threading
        self.node = node
        self.report = report
        self.lock = threading.Lock()
        self.rooms: dict = {}          # node room id -> set of participant ids
        self.relays: dict = {}         # node room id -> set of peer node ids
        self.tokens: dict = {}         # (node room id, participant) -> join token
        self.removed: list = []        # (room, participant, reason) from RemoveParticipant
        self.closed: list = []         # node room ids closed by CloseRoom
        self.detached: list = []       # (room, peer) from DetachRelay
        self.drained = False
        original_ack = node.ack

        def ack(command_id: int) -> None:
            self._apply(command_id)
            original_ack(command_id)

        node.ack = ack          # MediaNode's reader acks through self.ack

    def _apply(self, command_id: int) -> None:
        command = None
        for _, seen in reversed(self.node.commands):
            if seen.command_id == command_id:
                command = seen
                break
        if command is None:
            return
        kind = command.WhichOneof("command")
        body = getattr(command, kind) if kind else None
        with self.lock:
            if kind == "prepare_room":
                self.rooms.setdefault(body.room_id, set())
            elif kind == "admit_participant":
                self.rooms.setdefault(body.room_id, set()).add(body.participant_id)
                self.tokens[(body.room_id, body.participant_id)] = body.join_token
            elif kind == "remove_participant":
                self.rooms.get(body.room_id, set()).discard(body.participant_id)
                self.removed.append((body.room_id, body.participant_id, body.reason))
            elif kind == "close_room":
                self.rooms.pop(body.room_id, None)
                self.relays.pop(body.room_id, None)
                self.closed.append(body.room_id)
            elif kind == "attach_relay":
                self.relays.setdefault(body.room_id, set()).add(body.peer_node_id)
            elif kind == "detach_relay":
                self.relays.get(body.room_id, set()).discard(body.peer_node_id)
                self.detached.append((body.room_id, body.peer_node_id))
            elif kind == "drain":
                self.drained = True
            if self.report:
                self.node.stats_fields["participants"] = sum(len(p) for p in self.rooms.values())
                self.node.stats_fields["rooms"] = len(self.rooms)

    def participants(self, room_id: Optional[str] = None) -> set:
        with self.lock:
            if room_id is not None:
                return set(self.rooms.get(room_id, set()))
            return {p for members in self.rooms.values() for p in members}

    def relay_peers(self, room_id: str) -> set:
        with self.lock:
            return set(self.relays.get(room_id, set()))

    def has_room(self, room_id: str) -> bool:
        with self.lock:
            return room_id in self.rooms

    def commands_of(self, kind: str) -> list:
        """The node's commands of one kind ("admit_participant", ...), in order."""
        return [getattr(c, kind) for _, c in list(self.node.commands)
                if c.WhichOneof("command") == kind]


class RoomWatcher:
    """An AllocationService.WatchRoom call read by a background thread.

    updates: every RoomUpdate so far, in order."""

    def __init__(self, server: "Server", app_id: str, room_id: str, timeout: float = 60.0,
                 initial: bool = True):
        """initial: wait (up to 5 s) for the first update ("current state"), so that the
        subscription is known to be in place; the call's error, if it fails, is raised."""
        import queue
        import threading
        self._queue: "queue.Queue" = queue.Queue()
        self.updates: list = []
        self.error: Optional[grpc.RpcError] = None
        self.done = threading.Event()
        self._channel = server.new_channel(track=False)
        self.call = server.allocation(self._channel).WatchRoom(
            stubs().alloc_pb2.WatchRoomRequest(app_id=app_id, room_id=room_id), timeout=timeout)
        self._thread = threading.Thread(target=self._read, name="watch-room", daemon=True)
        self._thread.start()
        if initial:
            first = self.wait_for(lambda u: True, 5)
            if first is None and self.error is not None:
                raise self.error
            assert first is not None, "WatchRoom sent no current state within 5 s"

    def _read(self) -> None:
        try:
            for update in self.call:
                self._queue.put(update)
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def snapshot(self) -> list:
        import queue
        while True:
            try:
                self.updates.append(self._queue.get_nowait())
            except queue.Empty:
                return list(self.updates)

    def wait_for(self, pred: Callable[[Any], bool], timeout: float, start: int = 0):
        """The first update from index `start` on for which pred holds, or None."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            updates = self.snapshot()
            while index < len(updates):
                if pred(updates[index]):
                    return updates[index]
                index += 1
            if time.monotonic() >= deadline or (self.done.is_set() and self._queue.empty()):
                return None
            time.sleep(0.02)

    def close(self) -> None:
        self.call.cancel()
        self.done.wait(5)
        with contextlib.suppress(Exception):
            self._channel.close()

    def __enter__(self) -> "RoomWatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


NODE_SIM = BIN_DIR / "chroom-node-sim"


class NodeSim:
    """chroom-node-sim (docs/node-sim.md) as a subprocess, driven by its stdin fault
    protocol: command("crash sim-00003") -> "ok crash sim-00003"."""

    def __init__(self, target: str, nodes: int, secret_key: str, seed: int = 7,
                 extra: Optional[list] = None, stderr_path: Optional[Path] = None):
        if not NODE_SIM.exists():
            raise ServerFailure(f"{NODE_SIM} missing (cmake --build the chroom-node-sim target)")
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(NODE_SIM), "--target", target, "--nodes", str(nodes), "--secret-key", secret_key,
             "--log-level", "warn", "--seed", str(seed), *(extra or [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1)

    def command(self, line: str, timeout: float = 10.0) -> str:
        """Sends one command and returns its reply line (ok ..., error ..., or JSON)."""
        import select
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"chroom-node-sim did not answer {line!r} within {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            reply = self.proc.stdout.readline()
            assert reply, f"chroom-node-sim exited ({self.proc.poll()}) after {line!r}"
            if reply.startswith(("ok", "error")):
                return reply.strip()
            if reply.startswith("{") and line.strip() == "status":
                return reply.strip()

    def status(self) -> dict:
        return json.loads(self.command("status"))

    def node(self, node_id: str) -> dict:
        """The simulator's view of one node (`node ID`): rooms with participants, relays..."""
        reply = self.command(f"node {node_id}")
        assert reply.startswith("ok "), reply
        return json.loads(reply[3:])

    def quit(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        rc = self.proc.wait()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
        return rc


# How long a SIGTERMed peer may take to exit after it logged "stopped" (run() returned).
STOPPED_TO_EXIT_S = 1.5


def stop_peer_with_rooms(server: "Server") -> None:
    """SIGTERM; the peer must log "stopped" and exit 0 within STOP_TIMEOUT_S, and within
    STOPPED_TO_EXIT_S of logging "stopped" (room and lease actors must not outlive the
    services). Raises ServerFailure otherwise (SIGKILLing the peer)."""
    server.close_channels()
    if server.proc is None or server.proc.poll() is not None:
        if server.proc is not None and server.proc.returncode != 0:
            raise ServerFailure(f"{server.name} exited with {server.proc.returncode}\n"
                                f"{server.log_tail()}")
        return None
    if server.sigterm_at is None:
        server.sigterm()

    def stopped_logged() -> bool:
        try:
            return any(line.endswith(" stopped") or line.endswith("\"stopped\"}")
                       for line in server.stderr_path.read_text(errors="replace").splitlines())
        except FileNotFoundError:
            return False

    deadline = server.sigterm_at + STOP_TIMEOUT_S
    while time.monotonic() < deadline and server.proc.poll() is None and not stopped_logged():
        time.sleep(0.02)
    if server.proc.poll() is None and stopped_logged():
        server.wait_exit(min(STOPPED_TO_EXIT_S, max(deadline - time.monotonic(), 0)))
    if server.proc.poll() is None:
        hang = stopped_logged()
        server.kill()
        if not hang:
            raise ServerFailure(f"{server.name} still running {STOP_TIMEOUT_S} s after SIGTERM "
                                f"and never logged 'stopped'\n{server.log_tail()}")
        raise ServerFailure(f"{server.name} logged 'stopped' but was still running "
                            f"{STOPPED_TO_EXIT_S} s later (SIGKILLed)\n{server.log_tail()}")
    server.returncode = server.proc.returncode
    if server.returncode != 0:
        raise ServerFailure(f"{server.name} exited with {server.returncode} (expected 0)\n"
                            f"{server.log_tail()}")


class AllocationWorld:
    """The places, media nodes and calls the AllocationService tests share
    (test_allocation.py, test_allocation_lifecycle.py): a peer config with short timers,
    nodes at exact coordinates (media_node_client.py, tracked by HostedRooms), clients in
    known cities, and thin wrappers of the calls."""

    SECRET_KEY = "allocation-secret-key-0123456789"
    LISTED_ID, LISTED_SECRET = "listed-sfu-1", "listed-sfu-secret-0123456789abcdef"
    STATS_MS, SUSPECT_MS, DEAD_MS, COMMAND_MS = 200, 600, 1200, 300

    # Places (latitude, longitude).
    CITY = {
        "berlin": (52.5200, 13.4050), "paris": (48.8566, 2.3522),
        "new-york": (40.7128, -74.0060), "tokyo": (35.6762, 139.6503),
        "amsterdam": (52.3676, 4.9041), "madrid": (40.4168, -3.7038),
        "warsaw": (52.2297, 21.0122), "rome": (41.9028, 12.4964),
        "stockholm": (59.3293, 18.0686),
        # clients
        "hamburg": (53.5511, 9.9937), "lyon": (45.7640, 4.8357), "boston": (42.3601, -71.0589),
        "osaka": (34.6937, 135.5023), "munich": (48.1351, 11.5820),
        "chicago": (41.8781, -87.6298), "sydney": (-33.8688, 151.2093),
        "seoul": (37.5665, 126.9780), "brussels": (50.8503, 4.3517),
    }
    # Nodes: id -> (city, region, country).
    NODE = {
        "ber": ("berlin", "eu-central", "DE"), "par": ("paris", "eu-west", "FR"),
        "nyc": ("new-york", "us-east", "US"), "tyo": ("tokyo", "ap-northeast", "JP"),
        "ams": ("amsterdam", "eu-west", "NL"), "mad": ("madrid", "eu-south", "ES"),
        "waw": ("warsaw", "eu-central", "PL"), "rom": ("rome", "eu-south", "IT"),
        "sto": ("stockholm", "eu-north", "SE"),
    }
    # Each node's one endpoint has its own port, so AttachRelay's peer_endpoint is checkable.
    ENDPOINT_PORT = {node_id: 41000 + i for i, node_id in enumerate(NODE)}

    @classmethod
    def config(cls, allocation: Optional[dict] = None, apps: Optional[list] = None,
               **media_nodes) -> dict:
        """A peer config: derived secrets plus one listed node, short liveness timers, IP
        location off unless `allocation` sets geoip_database; `apps` replaces the default."""
        media = {"secret_key": cls.SECRET_KEY,
                 "credentials": [{"node_id": cls.LISTED_ID, "secret": cls.LISTED_SECRET}],
                 "stats_interval_ms": cls.STATS_MS, "suspect_after_ms": cls.SUSPECT_MS,
                 "dead_after_ms": cls.DEAD_MS, "command_timeout_ms": cls.COMMAND_MS,
                 "register_timeout_ms": 2000}
        media.update(media_nodes)
        out = {"peer_id": "alloc-peer-1", "media_nodes": media,
               "allocation": {"geoip_database": "none", **(allocation or {})}}
        if apps is not None:
            # Apps without keys are open to all (allocation tests are not about credentials).
            out["apps"] = [app if "keys" in app else {"allow_unauthenticated": True, **app}
                           for app in apps]
        return out

    @classmethod
    def node_kw(cls, node_id: str, city: Optional[str] = None, capacity: int = 500,
                features: Optional[dict] = None) -> dict:
        """MediaNode keyword arguments of a node of NODE (or any id placed in `city`)."""
        city_name, region, country = cls.NODE.get(node_id, (city, "eu-central", "DE"))
        lat, lon = cls.CITY[city or city_name]
        return {
            "location": {"latitude": lat, "longitude": lon, "region": region,
                         "country": country},
            "endpoints": [{"host": "127.0.0.1", "port": cls.ENDPOINT_PORT.get(node_id, 40999),
                           "transport": "TRANSPORT_UDP"}],
            "capacity": {"max_participants": capacity, "upload_mbps": 10000.0,
                         "download_mbps": 10000.0, "cpu_cores": 16},
            "features": features or {"codecs": ["opus", "vp8", "h264"], "relay": True,
                                     "recording": False, "e2ee": True},
        }

    @classmethod
    def start_nodes(cls, peer: "NodePeer", node_ids, heartbeat: bool = True, **kw) -> dict:
        """Registered, ACTIVE nodes that track what they host: {node_id: HostedRooms}."""
        out = {}
        for node_id in node_ids:
            node = peer.active_node(node_id, heartbeat=heartbeat, **cls.node_kw(node_id, **kw))
            out[node_id] = HostedRooms(node)
        return out

    @classmethod
    def where(cls, pb, city: str):
        lat, lon = cls.CITY[city]
        return pb.ClientLocation(latitude=lat, longitude=lon, has_point=True)

    @classmethod
    def allocate(cls, stub, pb, room: str, client: str, city: Optional[str] = None,
                 app: str = "default", timeout: float = 5, **kw):
        location = cls.where(pb, city) if city else kw.pop("location", pb.ClientLocation())
        return stub.Allocate(pb.AllocateRequest(app_id=app, room_id=room, client_id=client,
                                                location=location, **kw), timeout=timeout)

    @staticmethod
    def rpc_error(fn, request, timeout: float = 5) -> grpc.RpcError:
        """The error a call must fail with (AssertionError when it succeeds)."""
        try:
            reply = fn(request, timeout=timeout)
        except grpc.RpcError as e:
            return e
        raise AssertionError(f"expected an error, got {reply}")

    @classmethod
    def rtt(cls, city: str, node_id: str) -> float:
        """The modelled RTT from a city to a node of NODE."""
        return fibre_rtt_ms(cls.CITY[city], cls.CITY[cls.NODE[node_id][0]])

    @classmethod
    def nearest(cls, city: str, node_ids) -> list:
        return sorted(node_ids, key=lambda n: cls.rtt(city, n))

    @staticmethod
    def get_room(stub, pb, room: str, app: str = "default"):
        return stub.GetRoom(pb.GetRoomRequest(app_id=app, room_id=room), timeout=5).room

    @staticmethod
    def parts(room) -> dict:
        """{node_id: (participants, sorted relay ids)} of a Room."""
        return {n.node_id: (n.participants, sorted(n.relay_node_ids)) for n in room.nodes}

    @classmethod
    def secret(cls, node_id: str) -> str:
        import media_node_client
        if node_id == cls.LISTED_ID:
            return cls.LISTED_SECRET
        return media_node_client.derive_secret(cls.SECRET_KEY, node_id)

    @staticmethod
    def node_room(room: str, app: str = "default") -> str:
        """The room's id on media nodes."""
        return f"{app}/{room}"


def metric_samples(text: str) -> dict:
    """Prometheus text format as {(name, frozenset(labels)): value} (prometheus_client's
    parser, Debian's python3-prometheus-client)."""
    from prometheus_client.parser import text_string_to_metric_families
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric_value(samples: dict, name: str, **labels) -> float:
    """A sample of metric_samples' result; 0 when absent (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
