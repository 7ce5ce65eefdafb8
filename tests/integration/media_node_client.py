"""A small media node for the Chroom Media Node RPC, written from
messages/chroom/medianode/v1/media_node.proto alone, with stock grpcio.

It is what a third-party SFU vendor would write: generate the Python modules from the one
.proto, open the bidi `Connect` stream, send Register first, Stats every
Registered.stats_interval_ms, and answer every Command with Ack or Nack. Nothing here comes
from the orchestrator's code base besides the .proto file.

    node = MediaNode(grpc.insecure_channel("127.0.0.1:7443"), "sfu-1", secret)
    registered = node.register()             # raises RegisterRefused on an error status
    node.start_heartbeat()                   # Stats every registered.stats_interval_ms
    command = node.next_command(timeout=5)   # acked at once when auto_ack=True
    node.close()

Run as a script it registers one node and serves until interrupted:

    python3 media_node_client.py 127.0.0.1:7443 sfu-1 <secret>

Every wait is bounded; threads are daemons and stop when the stream ends.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import importlib
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import grpc

CONNECT = "/chroom.medianode.v1.MediaNodeService/Connect"
PROTOCOL_VERSION = "1.0"
DEFAULT_PROTO = (Path(__file__).resolve().parent.parent.parent
                 / "messages" / "chroom" / "medianode" / "v1" / "media_node.proto")

_CLOSE = object()   # request queue sentinel: half-close the stream


def protocol(proto_file: Optional[Path] = None):
    """The generated media_node_pb2 module: imported when already on sys.path (the test
    harness generates it), else generated here from the .proto with grpc_tools."""
    try:
        return importlib.import_module("chroom.medianode.v1.media_node_pb2")
    except ImportError:
        pass
    from grpc_tools import protoc

    src = Path(proto_file or DEFAULT_PROTO)
    out = Path(tempfile.mkdtemp(prefix="media-node-stubs-"))
    atexit.register(shutil.rmtree, out, True)
    target = out / "chroom" / "medianode" / "v1" / "media_node.proto"
    target.parent.mkdir(parents=True)
    shutil.copyfile(src, target)
    rc = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", str(target)])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {rc} on {src}")
    sys.path.insert(0, str(out))
    return importlib.import_module("chroom.medianode.v1.media_node_pb2")


def derive_secret(secret_key: str, node_id: str) -> str:
    """A node's secret derived from the orchestrator's key: hex(HMAC-SHA256(key, node_id))."""
    return hmac.new(secret_key.encode(), node_id.encode(), hashlib.sha256).hexdigest()


@dataclass
class StreamEnd:
    """How the Connect stream ended."""
    code: grpc.StatusCode
    details: str
    at: float          # time.monotonic() when the client saw it

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details!r}"


class RegisterRefused(AssertionError):
    def __init__(self, end: Optional[StreamEnd], why: str = ""):
        self.end = end
        super().__init__(why or f"Register refused: {end}")


class MediaNode:
    """One node's Connect stream.

    received: every OrchestratorMessage so far as (monotonic time, message).
    commands: every Command so far as (monotonic time, Command).
    sent_stats_at: time.time() of the last Stats sent (Unix seconds).
    """

    def __init__(self, channel: grpc.Channel, node_id: str, credential: str, *,
                 protocol_version: str = PROTOCOL_VERSION,
                 software_version: str = "py-media-node 0.1",
                 endpoints: Optional[list] = None,
                 location: Optional[dict] = None,
                 capacity: Optional[dict] = None,
                 features: Optional[dict] = None,
                 rooms: Iterable = (),
                 auto_ack: bool = True,
                 call_timeout: Optional[float] = 120.0):
        self.pb = protocol()
        self.channel = channel
        self.node_id = node_id
        self.credential = credential
        self.protocol_version = protocol_version
        self.software_version = software_version
        self.endpoints = endpoints if endpoints is not None else [
            {"host": "127.0.0.1", "port": 40000, "transport": "TRANSPORT_UDP"}]
        self.location = location if location is not None else {
            "latitude": 52.52, "longitude": 13.405, "region": "eu-central", "country": "DE"}
        self.capacity = capacity if capacity is not None else {
            "max_participants": 500, "upload_mbps": 1000.0, "download_mbps": 1000.0,
            "cpu_cores": 8}
        self.features = features if features is not None else {
            "codecs": ["opus", "vp8", "h264"], "relay": True, "recording": False, "e2ee": True}
        self.rooms = list(rooms)   # room ids, or (room_id, participants)
        self.auto_ack = auto_ack
        self.call_timeout = call_timeout

        self.registered = None              # the Registered message, once received
        self.received: list = []
        self.commands: list = []
        self.end: Optional[StreamEnd] = None
        self.sent_stats_at: Optional[float] = None
        self.stats_sent = 0

        self._out: "queue.Queue" = queue.Queue()
        self._in: "queue.Queue" = queue.Queue()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._call = None
        self._reader: Optional[threading.Thread] = None
        self._heartbeat: Optional[threading.Thread] = None
        self._heartbeat_stop = threading.Event()
        self.stats_fields: dict = {"participants": 0, "rooms": 0, "cpu_load": 0.25,
                                   "bandwidth_in_mbps": 10.0, "bandwidth_out_mbps": 20.0,
                                   "packet_loss": 0.001, "jitter_ms": 3.0}

    # ---- messages
    def register_message(self, **overrides: Any):
        pb = self.pb
        reg = pb.Register(node_id=self.node_id, credential=self.credential,
                          protocol_version=self.protocol_version,
                          software_version=self.software_version)
        for e in self.endpoints:
            reg.endpoints.add(host=e["host"], port=e["port"],
                              transport=pb.Endpoint.Transport.Value(e.get("transport",
                                                                          "TRANSPORT_UDP")))
        reg.location.CopyFrom(pb.Location(**self.location))
        reg.capacity.CopyFrom(pb.Capacity(**self.capacity))
        reg.features.CopyFrom(pb.Features(**self.features))
        for room in self.rooms:
            room_id, participants = (room, 0) if isinstance(room, str) else room
            reg.rooms.add(room_id=room_id, participants=participants)
        for key, value in overrides.items():
            field = getattr(reg, key)
            if hasattr(field, "CopyFrom") and not isinstance(value, (str, bytes)):
                field.CopyFrom(value)
            else:
                setattr(reg, key, value)
        return pb.NodeMessage(register=reg)

    def stats_message(self, **fields: Any):
        values = {**self.stats_fields, **fields}
        peer_rtts = values.pop("peer_rtts", [])
        stats = self.pb.Stats(**values)
        for node_id, rtt in peer_rtts:
            stats.peer_rtts.add(node_id=node_id, rtt_ms=rtt)
        return self.pb.NodeMessage(stats=stats)

    # ---- the stream
    def open(self) -> "MediaNode":
        """Starts the Connect call (HEADERS go out now); sends nothing yet."""
        if self._call is not None:
            return self
        method = self.channel.stream_stream(
            CONNECT,
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=self.pb.OrchestratorMessage.FromString)
        self._call = method(self._requests(), timeout=self.call_timeout)
        self._reader = threading.Thread(target=self._read, name=f"node-{self.node_id}",
                                        daemon=True)
        self._reader.start()
        return self

    def _requests(self):
        while True:
            try:
                item = self._out.get(timeout=0.1)
            except queue.Empty:
                if self._ended.is_set():
                    return
                continue
            if item is _CLOSE:
                return
            yield item

    def _read(self) -> None:
        try:
            for message in self._call:
                now = time.monotonic()
                with self._lock:
                    self.received.append((now, message))
                    if message.HasField("registered") and self.registered is None:
                        self.registered = message.registered
                    if message.HasField("command"):
                        self.commands.append((now, message.command))
                if message.HasField("command") and self.auto_ack:
                    self.ack(message.command.command_id)
                self._in.put((now, message))
        except grpc.RpcError:
            pass
        finally:
            now = time.monotonic()
            try:
                code, details = self._call.code(), self._call.details() or ""
            except Exception as e:  # noqa: BLE001 - reported as the end itself
                code, details = grpc.StatusCode.UNKNOWN, f"no status: {e!r}"
            self.end = StreamEnd(code, details, now)
            self._ended.set()
            self._heartbeat_stop.set()
            self._in.put((now, None))

    def send(self, message: Union[bytes, Any]) -> None:
        """Queues a NodeMessage (or raw bytes, sent as one gRPC message) on the stream."""
        self.open()
        self._out.put(message)

    def half_close(self) -> None:
        """Ends the node's side of the stream (the node leaves)."""
        self._out.put(_CLOSE)

    def cancel(self) -> None:
        """Cancels the call (RST_STREAM): the stream is lost without a goodbye."""
        if self._call is not None:
            self._call.cancel()

    # ---- the protocol
    def send_register(self, **overrides: Any) -> None:
        self.send(self.register_message(**overrides))

    def register(self, timeout: float = 5.0, **overrides: Any):
        """Sends Register and waits for Registered; raises RegisterRefused when the stream
        ends instead (end holds the status)."""
        self.send_register(**overrides)
        return self.wait_registered(timeout)

    def wait_registered(self, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while self.registered is None:
            if self.end is not None:
                raise RegisterRefused(self.end)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RegisterRefused(None, f"no Registered for {self.node_id} within {timeout} s")
            self._ended.wait(min(left, 0.02))
        return self.registered

    def send_stats(self, **fields: Any) -> float:
        """Sends Stats; returns the Unix time (seconds) it was queued."""
        message = self.stats_message(**fields)
        at = time.time()
        self.sent_stats_at = at
        self.stats_sent += 1
        self.send(message)
        return at

    def ack(self, command_id: int) -> None:
        self.send(self.pb.NodeMessage(ack=self.pb.Ack(command_id=command_id)))

    def nack(self, command_id: int, reason: str = "REASON_OTHER", message: str = "") -> None:
        self.send(self.pb.NodeMessage(nack=self.pb.Nack(
            command_id=command_id, reason=self.pb.Nack.Reason.Value(reason), message=message)))

    def send_event(self, **event: Any) -> None:
        self.send(self.pb.NodeMessage(event=self.pb.Event(**event)))

    def start_heartbeat(self, interval_s: Optional[float] = None) -> None:
        """Stats every interval (default: Registered.stats_interval_ms) until stop_heartbeat
        or the end of the stream."""
        if interval_s is None:
            assert self.registered is not None, "register first or pass an interval"
            interval_s = self.registered.stats_interval_ms / 1000.0
        self._heartbeat_stop.clear()

        def beat():
            while not self._heartbeat_stop.is_set() and not self._ended.is_set():
                self.send_stats()
                self._heartbeat_stop.wait(interval_s)

        self._heartbeat = threading.Thread(target=beat, name=f"beat-{self.node_id}", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)
            self._heartbeat = None

    # ---- waiting
    def next_message(self, timeout: float):
        """The next OrchestratorMessage not yet taken (after Registered too), or None on
        timeout or at the end of the stream."""
        try:
            _, message = self._in.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            return None
        if message is None:
            self._in.put((time.monotonic(), None))   # keep the end visible to later waits
        return message

    def next_command(self, timeout: float):
        """The next Command received (skipping other messages), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            message = self.next_message(left)
            if message is None:
                return None
            if message.HasField("command"):
                return message.command

    def wait_end(self, timeout: float) -> Optional[StreamEnd]:
        """How the stream ended, or None if it is still open after timeout."""
        self._ended.wait(max(timeout, 0.0))
        return self.end

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def close(self) -> None:
        """Stops everything: heartbeat, call, reader."""
        self._heartbeat_stop.set()
        if self._call is not None and not self._ended.is_set():
            self._call.cancel()
        self._ended.wait(5)
        if self._reader is not None:
            self._reader.join(5)


def main(argv: list) -> int:
    if len(argv) != 4:
        print(f"usage: {argv[0]} HOST:PORT NODE_ID SECRET", file=sys.stderr)
        return 2
    channel = grpc.insecure_channel(argv[1])
    node = MediaNode(channel, argv[2], argv[3])
    try:
        registered = node.register(timeout=10)
    except RegisterRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(f"registered with {registered.peer_id}: {registered}")
    node.start_heartbeat()
    try:
        while True:
            message = node.next_message(1.0)
            if message is not None:
                print(f"received: {message}")
            if node.ended:
                print(f"stream ended: {node.end}")
                return 0 if node.end.code == grpc.StatusCode.OK else 1
    except KeyboardInterrupt:
        node.half_close()
        node.wait_end(5)
        return 0
    finally:
        node.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
