"""The standard grpc.health.v1.Health service, with the stock grpcio client."""
from __future__ import annotations

import threading
import time

import grpc
import pytest



@pytest.mark.parametrize("service", ["", "chroom.diag.v1.Diagnostics"])
def test_check_serving(server, health_pb, service):
    reply = server.health().Check(health_pb.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb.HealthCheckResponse.SERVING


def test_check_unknown_service_is_not_found(server, health_pb):
    with pytest.raises(grpc.RpcError) as err:
        server.health().Check(health_pb.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    server.assert_serving()


def test_watch_server_yields_serving_first(server, health_pb):
    call = server.health().Watch(health_pb.HealthCheckRequest(service=""), timeout=10)
    try:
        first = next(call)
        assert first.status == health_pb.HealthCheckResponse.SERVING
    finally:
        call.cancel()


def test_watch_stays_open_without_changes(server, health_pb):
    """Watch sends the current status, then nothing until a change: the stream stays open."""
    call = server.health().Watch(health_pb.HealthCheckRequest(service="chroom.diag.v1.Diagnostics"),
                                 timeout=10)
    try:
        assert next(call).status == health_pb.HealthCheckResponse.SERVING
        time.sleep(0.3)
        assert call.is_active(), f"Watch ended early: {call.code()} {call.details()}"
    finally:
        call.cancel()


def test_watch_unknown_service_yields_service_unknown(server, health_pb):
    call = server.health().Watch(health_pb.HealthCheckRequest(service="no.such.Service"), timeout=10)
    try:
        first = next(call)  # a status value, not an error
        assert first.status == health_pb.HealthCheckResponse.SERVICE_UNKNOWN
    finally:
        call.cancel()
    server.assert_serving()


def test_watch_on_sigterm(start_server, health_pb):
    grace_ms = 1000
    server = start_server({"shutdown_grace_ms": grace_ms})
    bound = grace_ms / 1000 + 2.0
    # The call's own deadline is the bound: a stream still open then ends DEADLINE_EXCEEDED.
    call = server.health().Watch(health_pb.HealthCheckRequest(service=""), timeout=bound + 3)
    assert next(call).status == health_pb.HealthCheckResponse.SERVING

    seen: list = []
    ended = threading.Event()
    outcome: dict = {}

    def drain():
        try:
            for reply in call:
                seen.append(reply.status)
            outcome["code"] = call.code()
        except grpc.RpcError as e:
            outcome["code"] = e.code()
        finally:
            outcome["at"] = time.monotonic()
            ended.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    server.sigterm()
    sigterm_at = server.sigterm_at
    assert ended.wait(bound + 3.5), "Watch stream did not end at all"
    took = outcome["at"] - sigterm_at
    assert took <= bound, f"Watch ended {took:.2f} s after SIGTERM (bound {bound} s)"
    got_not_serving = health_pb.HealthCheckResponse.NOT_SERVING in seen
    ended_ok = outcome["code"] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK)
    assert got_not_serving or ended_ok, f"statuses {seen}, ended with {outcome['code']}"
    assert health_pb.HealthCheckResponse.SERVING not in seen, f"SERVING after SIGTERM: {seen}"
    rc = server.wait_exit(bound - (time.monotonic() - sigterm_at) + 0.5)
    assert rc == 0, f"exit code {rc}\n{server.log_tail()}"
