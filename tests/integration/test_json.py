"""Unary methods called with `content-type: application/json` (protobuf JSON mapping),
the way curl --http2-prior-knowledge or a browser backend calls them.

curl 7.88 does not show HTTP/2 trailers (-D and -v print headers only), so where a
grpc-status may legitimately travel in trailers the raw HTTP/2 client reads it.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import chroom_harness as h


def curl(port: int, path: str, body: str, content_type: str = "application/json",
         method: str = "POST") -> tuple[int, dict, bytes]:
    """Returns (HTTP status, response headers (lower-case names), body)."""
    with tempfile.NamedTemporaryFile(prefix="chroom-curl-") as out:
        proc = subprocess.run(
            ["curl", "--http2-prior-knowledge", "-v", "-sS", "--max-time", "5", "-X", method,
             "-H", f"content-type: {content_type}", "--data-binary", body, "-D", "-",
             "-o", out.name, f"http://{h.LOOPBACK}:{port}{path}"],
            capture_output=True, timeout=15)
        response_body = Path(out.name).read_bytes()
    head = proc.stdout.decode("latin-1")
    # curl 7.88 exits 92 ("Stream error in the HTTP/2 framing layer") when the server ends
    # the response and sends RST_STREAM(NO_ERROR) before curl has finished uploading the body.
    assert proc.returncode == 0, (f"curl failed ({proc.returncode}):\n"
                                  f"{proc.stderr.decode(errors='replace')[-1200:]}")
    lines = [ln for ln in head.split("\r\n") if ln]
    assert lines and lines[0].startswith("HTTP/2 "), f"not an HTTP/2 response: {head!r}"
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, response_body


def raw_json(port: int, path: str, body: bytes) -> h.StreamResult:
    with h.RawH2(port) as c:
        return c.unary(path, body, content_type="application/json")


def test_json_echo(server):
    status, headers, body = curl(server.port, h.DIAG + "Echo", '{"text":"hi","payload":"AAE="}')
    assert status == 200, body
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["text"] == "hi"
    assert doc["payload"] == "AAE="


def test_json_echo_accepts_lower_camel_and_defaults(server):
    """Protobuf JSON mapping: lowerCamelCase names are accepted, absent fields are defaults."""
    status, _, body = curl(server.port, h.DIAG + "Echo", '{"text":"camel","failCode":0,"delayMs":1}')
    assert status == 200, body
    assert json.loads(body)["text"] == "camel"
    status, _, body = curl(server.port, h.DIAG + "Echo", "{}")
    assert status == 200, body
    assert json.loads(body).get("text", "") == ""


def test_json_get_counters(server):
    server.diag().Echo(h.stubs().diag_pb2.EchoRequest(text="x"), timeout=5)
    status, _, body = curl(server.port, h.DIAG + "GetCounters", "{}")
    assert status == 200, body
    doc = json.loads(body)
    # uint64 fields are JSON strings in the protobuf mapping (int accepted too).
    assert int(doc.get("callsStarted", doc.get("calls_started", 0))) >= 1, doc


def test_json_invalid_body_is_400_invalid_argument(server):
    status, headers, body = curl(server.port, h.DIAG + "Echo", '{"text": "unterminated')
    assert status == 400, body
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["code"] == 3, doc
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    assert headers.get("grpc-status") == "3", f"grpc-status header missing/wrong: {headers}"
    server.assert_serving()


def test_json_wrong_field_type_is_400(server):
    status, _, body = curl(server.port, h.DIAG + "Echo", '{"delay_ms": "not a number", "text": 5}')
    assert status == 400, body
    assert json.loads(body)["code"] == 3
    server.assert_serving()


def test_json_streaming_method_rejected(server, record_property):
    status, headers, body = curl(server.port, h.DIAG + "EchoRepeat", '{"text":"x","repeat":1}')
    record_property("observed", f"HTTP {status} grpc-status {headers.get('grpc-status')}")
    print(f"JSON call to a streaming method: HTTP {status}, grpc-status {headers.get('grpc-status')}")
    if status == 415:
        pass
    else:
        assert status in (404, 501), f"HTTP {status}: {body!r}"
        st = raw_json(server.port, h.DIAG + "EchoRepeat", b'{"text":"x","repeat":1}')
        assert st.grpc_status == h.UNIMPLEMENTED, st.describe()
    server.assert_serving()


def test_json_unknown_method_is_unimplemented(server):
    st = raw_json(server.port, h.DIAG + "NoSuchMethod", b"{}")
    assert st.finished, st.describe()
    assert st.grpc_status == h.UNIMPLEMENTED, st.describe()
    server.assert_serving()


def test_wrong_content_type_is_415(server):
    """gRPC HTTP/2 spec: a content-type not starting with application/grpc gets HTTP 415."""
    status, _, body = curl(server.port, h.DIAG + "Echo", "hello", content_type="text/plain")
    assert status == 415, body
    server.assert_serving()
