"""TLS 1.3 with ALPN h2: grpcio over TLS works; TLS 1.2 and cleartext h2c are refused."""
from __future__ import annotations

import socket
import ssl

import grpc
import pytest

import chroom_harness as h


@pytest.fixture
def tls_server(start_server, tls_cert):
    cert, key = tls_cert
    return start_server({"listen": {"cert_file": str(cert), "key_file": str(key)}})


def test_tls_echo_and_stream(tls_server, pb):
    stub = tls_server.diag()  # secure channel trusting the self-signed cert
    assert stub.Echo(pb.EchoRequest(text="secure", payload=b"\x00\xff"), timeout=5).payload == b"\x00\xff"
    replies = list(stub.EchoStream(iter([pb.EchoRequest(text=str(i)) for i in range(3)]), timeout=5))
    assert [(r.text, r.sequence) for r in replies] == [("0", 0), ("1", 1), ("2", 2)]


def test_tls_channel_by_ip_san(tls_server, tls_cert, pb):
    """The certificate's IP SAN covers 127.0.0.1: no target name override needed."""
    creds = grpc.ssl_channel_credentials(root_certificates=tls_cert[0].read_bytes())
    with grpc.secure_channel(tls_server.target, creds) as ch:
        stub = h.stubs().diag_grpc.DiagnosticsStub(ch)
        assert stub.Echo(pb.EchoRequest(text="ip"), timeout=5).text == "ip"


def _client_context(cert_path, **versions) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(cert_path))
    ctx.set_alpn_protocols(["h2"])
    for attr, value in versions.items():
        setattr(ctx, attr, value)
    return ctx


def test_tls13_alpn_h2(tls_server, tls_cert):
    ctx = _client_context(tls_cert[0])
    with socket.create_connection((h.LOOPBACK, tls_server.port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == "TLSv1.3", s.version()
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()


def test_raw_h2_over_tls(tls_server, tls_cert):
    with h.RawH2(tls_server.port, tls_context=_client_context(tls_cert[0])) as c:
        h.assert_echo_ok(c.echo("tls raw"), "tls raw")


def test_tls12_client_is_refused(tls_server, tls_cert):
    ctx = _client_context(tls_cert[0], minimum_version=ssl.TLSVersion.TLSv1_2,
                          maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection((h.LOOPBACK, tls_server.port), timeout=3) as raw:
        raw.settimeout(5)
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                pytest.fail(f"TLS 1.2 handshake succeeded: {s.version()}")
    tls_server.assert_serving("after a TLS 1.2 client")


def test_h2c_on_tls_port_fails(tls_server, pb):
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with socket.create_connection((h.LOOPBACK, tls_server.port), timeout=3) as s:
        s.sendall(preface)
        closed, received = h.sock_closed_within(s, 5.0)
    # An HTTP/2 server would answer with a SETTINGS frame (type 4 on stream 0).
    assert not (len(received) >= 9 and received[3] == 0x04 and received[5:9] == b"\0\0\0\0"), \
        f"the TLS port answered cleartext HTTP/2: {received[:40]!r}"
    assert closed, "cleartext connection to the TLS port left open for 5 s"
    tls_server.assert_serving("after an h2c client on the TLS port")


def test_tls_without_alpn_h2_is_refused_or_h2(tls_server, tls_cert):
    """A client offering only http/1.1 in ALPN must not get an HTTP/1.1 conversation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(tls_cert[0]))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((h.LOOPBACK, tls_server.port), timeout=3) as raw:
        raw.settimeout(5)
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() in (None, "h2"), s.selected_alpn_protocol()
        except (ssl.SSLError, ConnectionResetError):
            pass  # refusing the handshake (no_application_protocol alert) is fine
    tls_server.assert_serving()
