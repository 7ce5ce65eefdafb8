"""Graceful shutdown on SIGTERM/SIGINT: in-flight calls finish within shutdown_grace_ms,
new work is refused, and the process exits 0."""
from __future__ import annotations

import signal
import socket
import threading
import time

import grpc

import chroom_harness as h


def _new_connection_refused(server, pb) -> str:
    """Tries a new connection + Echo; returns how it was refused, or fails if it was served."""
    try:
        c = h.RawH2(server.port, connect_timeout=1.0)
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout) as e:
        return f"connect: {type(e).__name__}"
    try:
        sid = c.start(h.DIAG + "Echo")
        c.send(sid, h.grpc_frame(pb.EchoRequest(text="late").SerializeToString()), end_stream=True)
        st = c.wait_stream(sid, 1.5)
        if c.closed and not st.headers:
            return "closed"
        if st.reset_code == h.H2_REFUSED_STREAM:
            return "REFUSED_STREAM"
        if c.goaway is not None and c.goaway.last_stream_id < sid:
            return f"GOAWAY last_stream_id={c.goaway.last_stream_id}"
        if st.grpc_status == h.UNAVAILABLE:
            return "UNAVAILABLE"
        raise AssertionError(f"a new connection after SIGTERM was served: {st.describe()} "
                             f"goaway={c.goaway} closed={c.closed}")
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        c.close()


def test_in_flight_call_completes_then_exit(start_server, pb):
    grace_ms = 3000
    server = start_server({"shutdown_grace_ms": grace_ms})
    stub = server.diag()
    before = server.counters()
    future = stub.Echo.future(pb.EchoRequest(text="finish me", delay_ms=1000), timeout=10)
    seen = server.wait_counters(lambda c: c.calls_active > before.calls_active, 1.0)
    assert seen.calls_active > before.calls_active, "the slow call never started"
    server.sigterm()
    t0 = server.sigterm_at
    time.sleep(0.1)
    how = _new_connection_refused(server, pb)
    print(f"new connection after SIGTERM: {how}")
    reply = future.result(timeout=5)
    assert reply.text == "finish me"
    finished_after = time.monotonic() - t0
    assert finished_after < 1.5, f"in-flight call finished {finished_after:.2f} s after SIGTERM"
    rc = server.wait_exit(grace_ms / 1000 + 2.0 - (time.monotonic() - t0))
    assert rc == 0, f"exit {rc} (None: still running {grace_ms / 1000 + 2} s after SIGTERM)\n" \
                    f"{server.log_tail()}"


def test_infinite_stream_is_ended_after_grace(start_server, pb):
    server = start_server({"shutdown_grace_ms": 500})
    call = server.diag().EchoRepeat(pb.EchoRequest(text="forever", repeat=0, interval_ms=20),
                                    timeout=10)
    assert next(call).sequence == 0
    outcome: dict = {}
    done = threading.Event()

    def drain():
        try:
            for _ in call:
                pass
            outcome["code"] = call.code()
        except grpc.RpcError as e:
            outcome["code"] = e.code()
        outcome["at"] = time.monotonic()
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    server.sigterm()
    t0 = server.sigterm_at
    assert done.wait(4.0), "infinite stream still open 4 s after SIGTERM"
    assert outcome["code"] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), outcome
    assert outcome["at"] - t0 < 2.5, f"stream ended {outcome['at'] - t0:.2f} s after SIGTERM"
    assert outcome["at"] - t0 >= 0.3, "stream ended before shutdown_grace_ms"
    rc = server.wait_exit(2.5 - (time.monotonic() - t0))
    assert rc == 0, f"exit {rc} (None: still running 2.5 s after SIGTERM)\n{server.log_tail()}"


def test_idle_server_exits_promptly(start_server):
    """No calls in flight, one idle connection open: exit 0 well before the grace ends."""
    server = start_server({"shutdown_grace_ms": 5000})
    with h.RawH2(server.port) as c:
        h.assert_echo_ok(c.echo("idle"), "idle")
        server.sigterm()
        c.wait_for(lambda: c.goaway is not None or c.closed, 2.0)
        assert c.goaway is not None or c.closed, "idle connection got no GOAWAY on SIGTERM"
        rc = server.wait_exit(2.0)
    assert rc == 0, f"exit {rc} (None: still running 2 s after SIGTERM, grace 5 s)\n{server.log_tail()}"


def test_sigint_exits_zero(start_server):
    server = start_server()
    server.proc.send_signal(signal.SIGINT)
    server.sigterm_at = time.monotonic()
    rc = server.wait_exit(3.0)
    assert rc == 0, f"exit {rc} after SIGINT\n{server.log_tail()}"
