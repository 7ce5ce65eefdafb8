"""Bad input, one test each: raw sockets and a raw HTTP/2 client (the `h2` library with
outbound validation off) send what stock gRPC clients never would. After each, the
process must still be alive and a fresh client's Echo must work."""
from __future__ import annotations

import random
import socket
import struct
import time

import pytest

import chroom_harness as h


def echo_body(pb, **fields) -> bytes:
    return pb.EchoRequest(**fields).SerializeToString()


# ------------------------------------------------------------------ a. garbage

def test_garbage_first_bytes_close_connection(server):
    rng = random.Random(1234)
    garbage = bytes(rng.randrange(256) for _ in range(1024))
    assert not garbage.startswith(b"PRI")
    with socket.create_connection((h.LOOPBACK, server.port), timeout=3) as s:
        s.sendall(garbage)
        closed, received = h.sock_closed_within(s, 5.0)
    assert closed, f"connection still open 5 s after garbage preface; got {received[:80]!r}"
    # Whatever was sent back is HTTP/2 frames (SETTINGS/GOAWAY), never a response.
    assert b"HTTP/1.1 200" not in received
    server.assert_serving("after garbage preface")


def test_garbage_after_valid_preface(server):
    """A valid preface then garbage frames: GOAWAY (a connection error) and close."""
    with h.RawH2(server.port) as c:
        c.wait_for(lambda: c.remote_settings_seen, 3)
        # A frame header claiming a 16 MiB DATA frame on stream 0, then noise.
        c.send_raw(b"\xff\xff\xff\x00\x00\x00\x00\x00\x00" + b"\xaa" * 512)
        closed = c.wait_closed(5.0)
        assert closed or c.goaway is not None, "no GOAWAY/close after an invalid frame"
        if c.goaway is not None:
            assert c.goaway.error_code != h.H2_NO_ERROR, c.goaway
    server.assert_serving("after garbage frames")


# ------------------------------------------------------------------ b. HTTP/1.1

def test_http1_request_gets_505(server):
    with socket.create_connection((h.LOOPBACK, server.port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        closed, received = h.sock_closed_within(s, 5.0)
    assert received.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), received[:200]
    head, sep, body = received.partition(b"\r\n\r\n")
    assert sep, f"no end of HTTP/1.1 header block: {received[:300]!r}"
    assert b"HTTP/2" in body, f"body does not say the port speaks HTTP/2: {body!r}"
    assert 0 < len(body) < 1024, f"body not short: {len(body)} bytes"
    assert closed, "connection not closed after the 505 response"
    server.assert_serving("after an HTTP/1.1 request")


def test_http1_post_gets_505(server):
    with socket.create_connection((h.LOOPBACK, server.port), timeout=3) as s:
        s.sendall(b"POST /chroom.diag.v1.Diagnostics/Echo HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\x00\x00\x00\x00\x00")
        closed, received = h.sock_closed_within(s, 5.0)
    assert received.startswith(b"HTTP/1.1 505 "), received[:200]
    assert closed
    server.assert_serving()


# ------------------------------------------------------------------ c.–g. gRPC framing

def _call_with_body(server, body: bytes, extra=None, end_stream=True, timeout=3.0):
    c = h.RawH2(server.port)
    sid = c.start(h.DIAG + "Echo", extra=extra)
    c.send(sid, body, end_stream=end_stream)
    return c, c.wait_stream(sid, timeout)


def test_truncated_length_prefix_is_internal(server):
    c, st = _call_with_body(server, b"\x00\x00\x00")
    with c:
        assert st.grpc_status == h.INTERNAL, st.describe()
        h.assert_echo_ok(c.echo("same connection"), "same connection")
    server.assert_serving()


def test_overlong_length_prefix_is_internal(server):
    c, st = _call_with_body(server, struct.pack(">BI", 0, 100) + b"0123456789")
    with c:
        assert st.grpc_status == h.INTERNAL, st.describe()
        h.assert_echo_ok(c.echo("same connection"), "same connection")
    server.assert_serving()


def test_length_prefix_over_limit_is_resource_exhausted_at_once(server):
    """The prefix alone decides: the status comes without the server waiting for the body."""
    start = time.monotonic()
    c, st = _call_with_body(server, struct.pack(">BI", 0, 0xFFFFFFFF), end_stream=False, timeout=2.0)
    with c:
        assert st.grpc_status == h.RESOURCE_EXHAUSTED, st.describe()
        assert time.monotonic() - start < 2.0
        h.assert_echo_ok(c.echo("same connection"), "same connection")
    server.assert_serving()


def test_compressed_with_unknown_encoding_is_unimplemented(server, pb):
    body = h.grpc_frame(echo_body(pb, text="z"), compressed=True)
    c, st = _call_with_body(server, body, extra=[("grpc-encoding", "snappy")])
    with c:
        assert st.grpc_status == h.UNIMPLEMENTED, st.describe()
        accept = st.header("grpc-accept-encoding")
        assert accept is not None, f"no grpc-accept-encoding: {st.describe()}"
        assert "identity" in [e.strip() for e in accept.split(",")], accept
    server.assert_serving()


def test_compressed_flag_without_encoding_is_internal(server, pb):
    body = h.grpc_frame(echo_body(pb, text="z"), compressed=True)
    c, st = _call_with_body(server, body)
    with c:
        assert st.grpc_status == h.INTERNAL, st.describe()
    server.assert_serving()


def test_undecodable_protobuf_is_invalid_argument(server):
    c, st = _call_with_body(server, h.grpc_frame(b"\xff\xff\xff\xff"))
    with c:
        assert st.grpc_status == h.INVALID_ARGUMENT, st.describe()
        assert st.grpc_message, f"no grpc-message: {st.describe()}"
        h.assert_echo_ok(c.echo("same connection"), "same connection")
    server.assert_serving()


def test_unary_with_no_message_is_an_error(server):
    c, st = _call_with_body(server, b"")
    with c:
        assert st.finished, st.describe()
        assert st.reset_code is not None or st.grpc_status not in (None, h.OK), st.describe()
    server.assert_serving()


# ------------------------------------------------------------------ h. missing :path

def test_missing_path_resets_stream_connection_survives(server, pb):
    with h.RawH2(server.port) as c:
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                   ("content-type", "application/grpc"), ("te", "trailers")]
        sid = c.start(headers=headers, end_stream=True)
        st = c.wait_stream(sid, 3)
        assert st.finished, f"no answer to a request without :path: {st.describe()}"
        if st.reset_code is not None:
            assert st.reset_code == h.H2_PROTOCOL_ERROR, st.describe()
        else:
            assert st.http_status != 200 or st.grpc_status not in (None, h.OK), st.describe()
        assert c.goaway is None and not c.closed, "connection closed for a stream error"
        h.assert_echo_ok(c.echo("second"), "second")
    server.assert_serving()


# ------------------------------------------------------------------ i. reset mid-message

def test_reset_mid_message(server, pb):
    before = server.counters()
    message = h.grpc_frame(echo_body(pb, text="half", payload=b"p" * 1000))
    with h.RawH2(server.port) as c:
        sid = c.start(h.DIAG + "Echo")
        c.send(sid, message[: len(message) // 2])
        c.pump(0.1)
        c.reset(sid, h.H2_CANCEL)
        h.assert_echo_ok(c.echo("after reset"), "after reset")
        after = server.wait_counters(lambda x: x.calls_active == before.calls_active, 1.0)
        assert after.calls_active == before.calls_active, (before, after)
    server.assert_serving()


# ------------------------------------------------------------------ j. client vanishes

@pytest.mark.parametrize("method", ["EchoRepeat", "EchoStream"])
def test_client_vanishes(server, pb, method):
    before = server.counters()
    c = h.RawH2(server.port)
    try:
        sid = c.start(h.DIAG + method)
        req = h.grpc_frame(echo_body(pb, text="v", repeat=0, interval_ms=20))
        c.send(sid, req, end_stream=(method == "EchoRepeat"))
        st = c.streams[sid]
        assert c.wait_for(lambda: len(st.data) >= 5, 3), f"no response: {st.describe()}"
        mid = server.counters()
        assert mid.calls_active >= before.calls_active + 1, (before, mid)
    finally:
        h.abort_socket(c.sock)  # no GOAWAY, no RST_STREAM: TCP RST
    after = server.wait_counters(
        lambda x: x.calls_active == before.calls_active and x.calls_cancelled > before.calls_cancelled,
        2.0)
    assert after.calls_active == before.calls_active, (before, after)
    assert after.calls_cancelled > before.calls_cancelled, (before, after)
    server.assert_serving()


def test_client_half_closes_and_vanishes_gracefully(server, pb):
    """FIN instead of RST: the call is cancelled too."""
    before = server.counters()
    c = h.RawH2(server.port)
    sid = c.start(h.DIAG + "EchoRepeat")
    c.send(sid, h.grpc_frame(echo_body(pb, repeat=0, interval_ms=20)), end_stream=True)
    assert c.wait_for(lambda: len(c.streams[sid].data) >= 5, 3)
    c.sock.shutdown(socket.SHUT_WR)
    c.sock.close()
    after = server.wait_counters(lambda x: x.calls_active == before.calls_active, 2.0)
    assert after.calls_active == before.calls_active, (before, after)
    server.assert_serving()


# ------------------------------------------------------------------ k. bad HEADERS

def _survives(c: h.RawH2) -> None:
    assert c.goaway is None and not c.closed, "connection closed for a stream-level problem"
    h.assert_echo_ok(c.echo("next"), "next")


def _assert_error_status(st: h.StreamResult) -> None:
    """An answer with an error status (not a bare RST_STREAM): HTTP 405/415 or a grpc-status."""
    assert st.finished, st.describe()
    assert st.reset_code is None, f"stream reset instead of an error status: {st.describe()}"
    assert st.http_status in (405, 415) or st.grpc_status not in (None, h.OK), st.describe()


def test_headers_without_content_type(server, pb):
    with h.RawH2(server.port) as c:
        st = c.unary(h.DIAG + "Echo", h.grpc_frame(echo_body(pb, text="x")), content_type=None)
        _assert_error_status(st)
        _survives(c)
    server.assert_serving()


def test_get_on_grpc_path(server):
    with h.RawH2(server.port) as c:
        sid = c.start(h.DIAG + "Echo", method="GET", end_stream=True)
        st = c.wait_stream(sid, 3)
        _assert_error_status(st)
        _survives(c)
    server.assert_serving()


def test_text_plain_content_type_raw_is_415(server, pb):
    """Same as test_json.test_wrong_content_type_is_415, with the raw client: the connection
    survives the 415."""
    with h.RawH2(server.port) as c:
        st = c.unary(h.DIAG + "Echo", b"hello", content_type="text/plain")
        assert st.http_status == 415, st.describe()
        _survives(c)
    server.assert_serving()


def test_uppercase_header_name_is_stream_error(server, pb):
    """HTTP/2 forbids upper-case header names: a malformed request, not a crash."""
    with h.RawH2(server.port) as c:
        st = c.unary(h.DIAG + "Echo", h.grpc_frame(echo_body(pb)), extra=[("X-Echo-Up", "1")])
        assert st.finished, st.describe()
        assert st.reset_code is not None or st.grpc_status not in (None, h.OK) \
            or st.http_status != 200, f"malformed request answered OK: {st.describe()}"
    server.assert_serving()
