"""Configured anti-abuse limits: concurrent streams, header list size, connections, idle
timeout, keepalive and backpressure against a slow reader."""
from __future__ import annotations

import socket
import time

import h2.settings

import chroom_harness as h

MiB = 1024 * 1024


def echo_frame(pb, **fields) -> bytes:
    return h.grpc_frame(pb.EchoRequest(**fields).SerializeToString())


# ------------------------------------------------------------------ a. concurrent streams

def test_max_concurrent_streams_refuses_extra_stream(start_server, pb):
    server = start_server({"limits": {"max_concurrent_streams": 4}})
    # The client sends five requests in its first flight, before it has read (and so acked)
    # the server's SETTINGS: it ignores the limit the way a racing client does. RFC 9113
    # §5.1.2 and §8.7: the extra stream gets RST_STREAM(REFUSED_STREAM), the others proceed.
    c = h.RawH2(server.port, initiate=False)
    with c:
        c.conn.initiate_connection()
        sids = []
        for i in range(5):
            sid = c.conn.get_next_available_stream_id()
            c.streams[sid] = h.StreamResult(sid)
            c.conn.send_headers(sid, c.default_headers(h.DIAG + "Echo"))
            c.conn.send_data(sid, echo_frame(pb, text=f"s{i}", delay_ms=300), end_stream=True)
            sids.append(sid)
        c.flush()
        c.wait_for(lambda: all(c.streams[s].finished for s in sids), 5)
        results = [c.streams[s] for s in sids]
        refused = [r for r in results if r.reset_code == h.H2_REFUSED_STREAM]
        assert len(refused) == 1, "\n".join(r.describe() for r in results)
        assert refused[0].stream_id == sids[-1], "the 5th stream should be the refused one"
        for i, r in enumerate(results[:4]):
            h.assert_echo_ok(r, f"s{i}")
        assert c.goaway is None, f"connection closed: {c.goaway}"
    server.assert_serving()


def test_max_concurrent_streams_is_advertised(start_server):
    server = start_server({"limits": {"max_concurrent_streams": 4}})
    with h.RawH2(server.port) as c:
        assert c.wait_for(lambda: c.remote_settings_seen, 3)
        assert c.conn.remote_settings.max_concurrent_streams == 4


def test_grpcio_queues_calls_over_stream_limit(start_server, pb):
    """A compliant client (grpcio) with 10 calls on a 4-stream connection: all succeed."""
    from concurrent.futures import ThreadPoolExecutor
    server = start_server({"limits": {"max_concurrent_streams": 4}})
    stub = server.diag()
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda i: stub.Echo(pb.EchoRequest(text=str(i), delay_ms=100),
                                                    timeout=10), range(10)))
    assert [r.text for r in replies] == [str(i) for i in range(10)]


# ------------------------------------------------------------------ b. header list size

def test_max_header_list_bytes(start_server, pb):
    server = start_server({"limits": {"max_header_list_bytes": 4096}})
    with h.RawH2(server.port) as c:
        c.wait_for(lambda: c.remote_settings_seen, 3)
        assert c.conn.remote_settings.max_header_list_size == 4096
        sid = c.start(h.DIAG + "Echo", extra=[("x-echo-big", "a" * 10240)])
        c.send(sid, echo_frame(pb, text="big"), end_stream=True)
        st = c.wait_stream(sid, 3)
        failed = (st.reset_code is not None or st.http_status == 431
                  or st.grpc_status == h.RESOURCE_EXHAUSTED or c.goaway is not None or c.closed)
        assert failed, f"10 KiB header accepted with a 4096 limit: {st.describe()}"
        assert st.grpc_status in (None, h.RESOURCE_EXHAUSTED), st.describe()
        if c.goaway is None and not c.closed:
            h.assert_echo_ok(c.echo("same connection"), "same connection")
    server.assert_serving()


# ------------------------------------------------------------------ c. connections

def _open_served(server, text: str) -> h.RawH2:
    c = h.RawH2(server.port)
    h.assert_echo_ok(c.echo(text), text)
    return c


def test_max_connections(start_server, pb):
    server = start_server({"limits": {"max_connections": 2}})
    first = _open_served(server, "one")
    second = _open_served(server, "two")
    try:
        third = None
        try:
            third = h.RawH2(server.port)
            sid = third.start(h.DIAG + "Echo")
            third.send(sid, echo_frame(pb, text="three"), end_stream=True)
            start = time.monotonic()
            closed = third.wait_closed(2.0)
            took = time.monotonic() - start
            st = third.streams[sid]
            assert closed, f"third connection not closed within 2 s; goaway={third.goaway}"
            assert took < 2.0
            assert not st.headers and not st.data, f"third connection was served: {st.describe()}"
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            pass  # refused at once: fine
        finally:
            if third is not None:
                third.close()
        # The two admitted connections still work.
        h.assert_echo_ok(first.echo("one again"), "one again")
        h.assert_echo_ok(second.echo("two again"), "two again")
        first.close()
        first = None

        def new_connection_works():
            try:
                with h.RawH2(server.port) as c:
                    st = c.echo("four", timeout=2)
                    return st.grpc_status == h.OK
            except (OSError, AssertionError):
                return False

        assert h.wait_until(new_connection_works, 3.0, 0.2), "no new connection after closing one"
    finally:
        for c in (first, second):
            if c is not None:
                c.close()
    server.assert_serving()


# ------------------------------------------------------------------ d. idle timeout

def test_idle_connection_gets_goaway(start_server):
    server = start_server({"limits": {"idle_timeout_ms": 500}})
    with h.RawH2(server.port) as c:
        start = time.monotonic()
        c.wait_for(lambda: c.goaway is not None or c.closed, 2.5)
        took = time.monotonic() - start
        assert c.goaway is not None, f"no GOAWAY on an idle connection (closed={c.closed})"
        assert took < 2.0, f"GOAWAY after {took:.2f} s"
        assert took >= 0.3, f"GOAWAY after {took:.2f} s: earlier than idle_timeout_ms"
        assert c.goaway.error_code == h.H2_NO_ERROR, c.goaway
    server.assert_serving()


def test_connection_with_open_stream_is_not_idle(start_server, pb):
    server = start_server({"limits": {"idle_timeout_ms": 500}})
    with h.RawH2(server.port) as c:
        sid = c.start(h.DIAG + "EchoRepeat")
        c.send(sid, echo_frame(pb, repeat=0, interval_ms=200), end_stream=True)
        c.wait_for(lambda: c.goaway is not None or c.closed, 1.5)
        assert c.goaway is None and not c.closed, "GOAWAY while a stream was open"
        assert len(c.streams[sid].messages) >= 3
        c.reset(sid)


# ------------------------------------------------------------------ e. keepalive

KEEPALIVE = {"limits": {"keepalive_interval_ms": 300, "keepalive_timeout_ms": 1000}}


def test_keepalive_pings_answered_keep_connection(start_server):
    server = start_server(KEEPALIVE)
    with h.RawH2(server.port) as c:
        c.wait_for(lambda: c.goaway is not None or c.closed, 1.5)
        assert c.pings_received >= 2, f"{c.pings_received} server PINGs in 1.5 s"
        assert c.goaway is None and not c.closed, "connection closed although PINGs were answered"
        h.assert_echo_ok(c.echo("alive"), "alive")
    server.assert_serving()


def test_keepalive_unanswered_pings_close_connection(start_server):
    server = start_server(KEEPALIVE)
    with socket.create_connection((h.LOOPBACK, server.port), timeout=3) as s:
        # Preface + empty SETTINGS; then nothing: no SETTINGS ACK, no PING ACK.
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        start = time.monotonic()
        closed, _ = h.sock_closed_within(s, 4.0)
        took = time.monotonic() - start
    assert closed, "a peer that never answers PINGs kept its connection for 4 s"
    assert took <= 3.5, f"closed after {took:.2f} s"
    server.assert_serving()


# ------------------------------------------------------------------ f. slow reader

def test_slow_reader_backpressure(server, pb):
    """A client that never returns flow-control credit for responses but keeps sending:
    the server must stop reading (its buffers bounded), not queue echoes without end."""
    baseline_kib = server.vm_rss_kib()
    c = h.RawH2(server.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535},
                auto_ack_data=False)
    message = echo_frame(pb, payload=b"\xab" * (64 * 1024 - 16))
    written = 0
    peak_kib = baseline_kib
    stopped_by = None                   # "stall", "closed" or "reset" once the server stops us
    limit_bytes = 256 * MiB
    try:
        sid = c.start(h.DIAG + "EchoStream")
        c.sock.setblocking(False)
        pending = b""
        queued = 0                       # offset in `message` of the next byte to queue
        last_progress = last_sample = time.monotonic()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and written < limit_bytes:
            # Read what the server sends (its WINDOW_UPDATEs for our requests), never acking data.
            try:
                data = c.sock.recv(1 << 20)
                if data == b"":
                    stopped_by = "closed"
                    break
                for ev in c.conn.receive_data(data):
                    c._handle(ev)
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                stopped_by = "closed"
                break
            if c.streams[sid].finished or c.goaway is not None:
                stopped_by = "reset"
                break
            # Queue as much of the next message as the server's window allows.
            window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
            if not pending and window > 0:
                chunk = message[queued:queued + window]
                c.conn.send_data(sid, chunk)
                queued = (queued + len(chunk)) % len(message)
                pending = c.conn.data_to_send()
            if pending:
                try:
                    n = c.sock.send(pending)
                    pending = pending[n:]
                    written += n
                    if n:
                        last_progress = time.monotonic()
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    stopped_by = "closed"
                    break
            now = time.monotonic()
            if now - last_progress > 2.0:
                stopped_by = "stall"
                break
            if now - last_sample > 0.1:
                peak_kib = max(peak_kib, server.vm_rss_kib())
                last_sample = now
            if not pending and window <= 0:
                time.sleep(0.005)
        peak_kib = max(peak_kib, server.vm_rss_kib())
    finally:
        h.abort_socket(c.sock)
    growth_mib = (peak_kib - baseline_kib) / 1024
    print(f"slow reader: wrote {written / MiB:.1f} MiB, stopped by {stopped_by}, "
          f"RSS growth {growth_mib:.1f} MiB")
    # limits.max_pending_output_bytes: the gateway "stops reading" -- our writes block.
    assert stopped_by == "stall", f"server did not stall us ({stopped_by}): {written / MiB:.1f} MiB"
    assert written < 64 * MiB, f"server accepted {written / MiB:.1f} MiB before stopping"
    assert growth_mib < 64, f"server RSS grew by {growth_mib:.1f} MiB"
    server.assert_serving("after a slow reader")
