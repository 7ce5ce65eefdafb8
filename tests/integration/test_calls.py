"""The four gRPC call kinds, metadata, status, deadlines, cancellation, message size and
many parallel calls, all with stock Python grpcio (plus raw HTTP/2 where grpcio cannot
send what we need, e.g. a hand-written grpc-timeout)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import chroom_harness as h

BIG = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


# ------------------------------------------------------------------ 1. call kinds

def test_unary_echo(server, pb):
    stub = server.diag()
    payload = bytes(range(256)) * 4
    reply = stub.Echo(pb.EchoRequest(text="hello ünïcode", payload=payload), timeout=5)
    assert reply.text == "hello ünïcode"
    assert reply.payload == payload
    assert reply.sequence == 0


def test_unary_echo_empty_request(server, pb):
    reply = server.diag().Echo(pb.EchoRequest(), timeout=5)
    assert reply == pb.EchoResponse()


def test_bidi_echo_stream(server, pb):
    stub = server.diag()
    requests = [pb.EchoRequest(text=f"m{i}", payload=bytes([i]) * i) for i in range(6)]
    replies = list(stub.EchoStream(iter(requests), timeout=10))
    assert [r.text for r in replies] == [f"m{i}" for i in range(6)]
    assert [r.payload for r in replies] == [bytes([i]) * i for i in range(6)]
    assert [r.sequence for r in replies] == list(range(6))


def test_bidi_echo_stream_interleaved(server, pb):
    """One response per request, before the client half-closes (true ping-pong)."""
    import queue
    q: "queue.Queue" = queue.Queue()

    def gen():
        for _ in range(4):
            item = q.get(timeout=5)
            if item is None:
                return
            yield item

    call = server.diag().EchoStream(gen(), timeout=10)
    for i in range(4):
        q.put(pb.EchoRequest(text=f"ping{i}"))
        reply = next(call)
        assert reply.text == f"ping{i}" and reply.sequence == i
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_server_streaming_echo_repeat(server, pb):
    start = time.monotonic()
    replies = list(server.diag().EchoRepeat(
        pb.EchoRequest(text="again", payload=b"\x07", repeat=5, interval_ms=20), timeout=10))
    elapsed = time.monotonic() - start
    assert [r.sequence for r in replies] == [0, 1, 2, 3, 4]
    assert all(r.text == "again" and r.payload == b"\x07" for r in replies)
    # 5 responses with 20 ms between two of them: at least 4 intervals.
    assert elapsed >= 0.075, f"EchoRepeat ignored interval_ms: {elapsed:.3f} s"


def test_client_streaming_echo_collect(server, pb):
    texts = ["alpha", "beta", "gamma", "delta"]
    payloads = [b"x" * 10, b"", b"yz" * 50, b"\x00"]
    reply = server.diag().EchoCollect(
        iter([pb.EchoRequest(text=t, payload=p) for t, p in zip(texts, payloads)]), timeout=5)
    assert reply.message_count == 4
    assert reply.payload_bytes == sum(len(p) for p in payloads)
    # "The texts of all requests, joined in order" (no separator is specified).
    assert reply.text == "alphabetagammadelta"


def test_client_streaming_echo_collect_empty(server, pb):
    reply = server.diag().EchoCollect(iter([]), timeout=5)
    assert reply.message_count == 0 and reply.payload_bytes == 0 and reply.text == ""


def test_counters_count_calls_and_messages(server, pb):
    stub = server.diag()
    before = server.counters()
    stub.Echo(pb.EchoRequest(text="a"), timeout=5)
    list(stub.EchoStream(iter([pb.EchoRequest(), pb.EchoRequest(), pb.EchoRequest()]), timeout=5))
    after = server.counters()
    # Echo + EchoStream + the GetCounters call that reads `after` (at least the first two).
    assert after.calls_started >= before.calls_started + 3
    assert after.calls_finished >= before.calls_finished + 3  # the first GetCounters finished too
    assert after.messages_received >= before.messages_received + 4
    assert after.messages_sent >= before.messages_sent + 4
    assert after.calls_cancelled == before.calls_cancelled


# ------------------------------------------------------------------ 2. metadata

BIN_VALUE = bytes(range(256))
REQUEST_METADATA = (("x-echo-color", "blue"), ("x-echo-data-bin", BIN_VALUE),
                    ("x-not-echoed", "nope"))


def _check_echoed(md, where: str) -> None:
    got = {}
    for key, value in md or ():
        got.setdefault(key, []).append(value)
    assert got.get("x-echo-color") == ["blue"], f"{where}: {md}"
    assert got.get("x-echo-data-bin") == [BIN_VALUE], f"{where}: {md}"
    assert "x-not-echoed" not in got, f"{where} echoed a key without the x-echo- prefix: {md}"


def test_metadata_unary(server, pb):
    reply, call = server.diag().Echo.with_call(pb.EchoRequest(text="md"), metadata=REQUEST_METADATA,
                                               timeout=5)
    assert reply.text == "md"
    _check_echoed(call.initial_metadata(), "initial metadata")
    _check_echoed(call.trailing_metadata(), "trailers")


def test_metadata_server_streaming(server, pb):
    call = server.diag().EchoRepeat(pb.EchoRequest(text="md", repeat=2, interval_ms=1),
                                    metadata=REQUEST_METADATA, timeout=5)
    _check_echoed(call.initial_metadata(), "initial metadata")
    assert len(list(call)) == 2
    _check_echoed(call.trailing_metadata(), "trailers")


def test_metadata_on_error_status(server, pb):
    """Echoed metadata also comes back when the call fails (trailers-only or not)."""
    with pytest.raises(grpc.RpcError) as err:
        server.diag().Echo(pb.EchoRequest(fail_code=9, fail_message="no"),
                           metadata=REQUEST_METADATA, timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    merged = list(err.value.initial_metadata() or ()) + list(err.value.trailing_metadata() or ())
    assert ("x-echo-color", "blue") in merged, merged
    assert ("x-echo-data-bin", BIN_VALUE) in merged, merged


# ------------------------------------------------------------------ 3. status

def test_fail_code_and_percent_encoded_message(server, pb):
    message = "nötig: 100% fertig\n\tok"
    with pytest.raises(grpc.RpcError) as err:
        server.diag().Echo(pb.EchoRequest(fail_code=5, fail_message=message), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == message


def test_fail_message_percent_encoding_on_the_wire(server, pb):
    """The grpc-message trailer itself is percent-encoded ASCII (gRPC HTTP/2 spec)."""
    message = "nötig: 100% fertig\n\tok"
    with h.RawH2(server.port) as c:
        st = c.echo(fail_code=5, fail_message=message)
    assert st.grpc_status == h.NOT_FOUND, st.describe()
    raw = st.trailers.get("grpc-message")
    assert raw is not None, st.describe()
    assert all(0x20 <= b <= 0x7E for b in raw), f"grpc-message not printable ASCII: {raw!r}"
    assert b"%" in raw and b"\n" not in raw
    assert h.decode_grpc_message(raw) == message


@pytest.mark.parametrize("path", [h.DIAG + "NoSuchMethod", "/no.such.Service/Echo",
                                  "/chroom.diag.v1.Diagnostic/Echo"])
def test_unknown_method_or_service_is_unimplemented(server, path):
    channel = server.new_channel()
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        call(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, err.value.details()
    server.assert_serving()


# ------------------------------------------------------------------ 4. deadlines

def test_client_deadline_exceeded(server, pb):
    before = server.counters()
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        server.diag().Echo(pb.EchoRequest(text="slow", delay_ms=2000), timeout=0.2)
    elapsed = time.monotonic() - start
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.5, f"DEADLINE_EXCEEDED after {elapsed:.2f} s"
    after = server.wait_counters(
        lambda c: c.calls_cancelled > before.calls_cancelled and c.calls_active == before.calls_active,
        timeout=1.0)
    assert after.calls_cancelled > before.calls_cancelled, (before, after)
    assert after.calls_active == before.calls_active, (before, after)


def test_server_enforces_grpc_timeout(server, pb):
    """A client that never cancels: the server itself ends the call at the deadline."""
    req = pb.EchoRequest(text="slow", delay_ms=2000).SerializeToString()
    with h.RawH2(server.port) as c:
        start = time.monotonic()
        sid = c.start(h.DIAG + "Echo", extra=[("grpc-timeout", "100m")])
        c.send(sid, h.grpc_frame(req), end_stream=True)
        st = c.wait_stream(sid, timeout=3)
        elapsed = time.monotonic() - start
    assert st.ended, st.describe()
    assert st.grpc_status == h.DEADLINE_EXCEEDED, st.describe()
    assert elapsed < 1.0, f"server ended a 100 ms deadline after {elapsed:.2f} s"
    assert st.messages == [], "a response message was sent after the deadline"


@pytest.mark.parametrize("value", ["abc", "123456789S", "10x", "-5m", ""])
def test_malformed_grpc_timeout_is_internal(server, pb, value):
    req = pb.EchoRequest(text="t").SerializeToString()
    with h.RawH2(server.port) as c:
        sid = c.start(h.DIAG + "Echo", extra=[("grpc-timeout", value)])
        c.send(sid, h.grpc_frame(req), end_stream=True)
        st = c.wait_stream(sid, timeout=3)
        assert st.grpc_status == h.INTERNAL, st.describe()
        assert "grpc-timeout" in (st.grpc_message or ""), st.describe()
        # The connection is fine: a second call on it works.
        h.assert_echo_ok(c.echo("after"), "after")
    server.assert_serving()


def test_valid_grpc_timeout_units(server, pb):
    """Every unit of the spec is accepted (8 digits max)."""
    req = h.grpc_frame(pb.EchoRequest(text="u").SerializeToString())
    with h.RawH2(server.port) as c:
        for value in ["99999999n", "5000000u", "5000m", "5S", "1M", "1H"]:
            sid = c.start(h.DIAG + "Echo", extra=[("grpc-timeout", value)])
            c.send(sid, req, end_stream=True)
            st = c.wait_stream(sid, timeout=3)
            assert st.grpc_status == h.OK, f"{value}: {st.describe()}"


# ------------------------------------------------------------------ 5. cancellation

def test_cancel_server_streaming_stops_work(server, pb):
    before = server.counters()
    call = server.diag().EchoRepeat(pb.EchoRequest(text="tick", repeat=0, interval_ms=10), timeout=20)
    for i in range(3):
        assert next(call).sequence == i
    call.cancel()
    after = server.wait_counters(
        lambda c: c.calls_cancelled >= before.calls_cancelled + 1
        and c.calls_active == before.calls_active, timeout=1.0)
    assert after.calls_cancelled >= before.calls_cancelled + 1, (before, after)
    assert after.calls_active == before.calls_active, (before, after)
    first = server.counters().messages_sent
    time.sleep(0.3)
    second = server.counters().messages_sent
    # Only the GetCounters responses themselves may be counted between the two samples.
    assert second - first <= 1, f"messages_sent still growing after cancel: {first} -> {second}"


def test_cancel_bidi_stream(server, pb):
    before = server.counters()
    import queue
    q: "queue.Queue" = queue.Queue()

    def gen():
        for _ in range(10):
            item = q.get(timeout=5)
            if item is None:
                return
            yield item

    call = server.diag().EchoStream(gen(), timeout=20)
    q.put(pb.EchoRequest(text="one"))
    assert next(call).text == "one"
    call.cancel()
    q.put(None)
    after = server.wait_counters(
        lambda c: c.calls_cancelled >= before.calls_cancelled + 1
        and c.calls_active == before.calls_active, timeout=1.0)
    assert after.calls_cancelled >= before.calls_cancelled + 1, (before, after)
    assert after.calls_active == before.calls_active, (before, after)


# ------------------------------------------------------------------ 6. message size

def test_default_max_message_size(server, pb):
    channel = server.new_channel(BIG)
    stub = server.diag(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Echo(pb.EchoRequest(payload=b"\x5a" * (5 * 1024 * 1024)), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    # The same channel serves a normal call afterwards.
    assert stub.Echo(pb.EchoRequest(text="small"), timeout=5).text == "small"
    # And a message just below the limit is fine both ways.
    big = b"\x01" * (4 * 1024 * 1024 - 64)
    assert stub.Echo(pb.EchoRequest(payload=big), timeout=10).payload == big
    server.assert_serving()


def test_configured_max_message_size(start_server, pb):
    server = start_server({"limits": {"max_message_bytes": 65536}})
    stub = server.diag(server.new_channel(BIG))
    with pytest.raises(grpc.RpcError) as err:
        stub.Echo(pb.EchoRequest(payload=b"a" * (100 * 1024)), timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    ok = b"b" * (60 * 1024)
    assert stub.Echo(pb.EchoRequest(payload=ok), timeout=5).payload == ok
    server.assert_serving()


def test_configured_max_message_size_streaming(start_server, pb):
    """A too-large message in the middle of a stream ends that stream with RESOURCE_EXHAUSTED."""
    server = start_server({"limits": {"max_message_bytes": 65536}})
    stub = server.diag(server.new_channel(BIG))
    reqs = [pb.EchoRequest(text="ok"), pb.EchoRequest(payload=b"c" * (100 * 1024))]
    call = stub.EchoStream(iter(reqs), timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    server.assert_serving()


# ------------------------------------------------------------------ 12. many parallel calls

def test_200_parallel_unary_calls(server, pb):
    channels = [server.new_channel() for _ in range(4)]
    stubs = [server.diag(ch) for ch in channels]

    def one(i: int):
        reply = stubs[i % 4].Echo(pb.EchoRequest(text=f"call {i}", payload=i.to_bytes(2, "big"),
                                                 delay_ms=100), timeout=20)
        return i, reply

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(200), timeout=30))
    elapsed = time.monotonic() - start
    assert len(results) == 200
    for i, reply in results:
        assert reply.text == f"call {i}" and reply.payload == i.to_bytes(2, "big")
    # 200 calls of 100 ms each, 50 at a time: they overlapped (≈0.4 s), not serialised (20 s).
    assert elapsed < 10, f"200 calls took {elapsed:.1f} s: delays are not concurrent"
    c = server.wait_counters(lambda c: c.calls_active <= 1, timeout=2)
    assert c.calls_active <= 1, c  # only the GetCounters call itself
