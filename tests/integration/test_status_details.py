"""Errors a client program branches on carry google.rpc.Status details (docs/errors.md) in
the grpc-status-details-bin trailer, read here as any grpcio client would: the trailing
metadata's bytes parsed with the google.rpc protos (generated from Debian's google/rpc protos).
The Status's code and message are the call's; ErrorInfo gives a stable reason in domain
chroom.dev, RetryInfo when to retry, BadRequest which field is invalid."""
from __future__ import annotations

import time

import grpc
import pytest

import chroom_harness as h

W = h.AllocationWorld
DOMAIN = "chroom.dev"


@pytest.fixture(scope="module")
def pb():
    return h.stubs().alloc_pb2


def details_of(error: grpc.RpcError) -> dict:
    """The call's status details: {"status", "info", "retry", "bad_request"} (absent: None)."""
    stubs = h.stubs()
    raw = [value for key, value in (error.trailing_metadata() or ())
           if key == "grpc-status-details-bin"]
    assert len(raw) == 1, f"no grpc-status-details-bin in {error.trailing_metadata()}"
    status = stubs.rpc_status_pb2.Status.FromString(raw[0])
    # The Status repeats the call's own code and message.
    assert status.code == error.code().value[0], (status.code, error.code())
    assert status.message == error.details()
    out = {"status": status, "info": None, "retry": None, "bad_request": None}
    for any_detail in status.details:
        for name, cls in (("info", stubs.rpc_details_pb2.ErrorInfo),
                          ("retry", stubs.rpc_details_pb2.RetryInfo),
                          ("bad_request", stubs.rpc_details_pb2.BadRequest)):
            message = cls()
            if any_detail.Unpack(message):
                assert out[name] is None, f"two {name} details"
                out[name] = message
    return out


def failure(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=5, **kwargs)
    return error.value


@pytest.fixture
def world(start_allocation_peer, admin_pb):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber"])
    config_pb = h.stubs().config_pb2
    peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="metered", allow_unauthenticated=True,
        roles=[config_pb.RolePolicy(role="participant")],
        quotas=config_pb.AppQuotas(allocations_per_second=1, allocation_burst=2,
                                   max_participants=2))), timeout=5)
    peer.server.admin().CreateApp(admin_pb.CreateAppRequest(app=config_pb.AppConfig(
        app_id="consult", allow_unauthenticated=True, max_room_size=2, admission="host",
        roles=[config_pb.RolePolicy(role="host", max_per_room=1),
               config_pb.RolePolicy(role="participant")])), timeout=5)
    return peer


def join(pb, room: str, client: str, app: str = "metered", role: str = ""):
    return pb.AllocateRequest(app_id=app, room_id=room, client_id=client, role=role,
                              location=W.where(pb, "hamburg"))


def test_invalid_fields_are_named(world, pb):
    stub = world.server.allocation()
    for request, field in ((join(pb, "r1", "not a client id!"), "client_id"),
                           (join(pb, "", "c1"), "room_id"),
                           (join(pb, "r1", "c1", app="bad app"), "app_id"),
                           (join(pb, "r1", "c1", role="king"), "role")):
        error = failure(stub.Allocate, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        details = details_of(error)
        assert details["info"].reason == "INVALID_FIELD" and details["info"].domain == DOMAIN
        violations = [(v.field, v.description) for v in details["bad_request"].field_violations]
        assert violations == [(field, error.details())], violations
    # Other methods name the fields of their own requests the same way.
    error = failure(stub.GetRoom, pb.GetRoomRequest(app_id="metered", room_id="a room!"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(error)["bad_request"].field_violations] == ["room_id"]


def test_rate_limit_says_when_to_retry_and_quotas_and_roles_say_which(world, pb):
    stub = world.server.allocation()
    stub.Allocate(join(pb, "r1", "c0"), timeout=5)
    stub.Allocate(join(pb, "r1", "c1"), timeout=5)   # the burst of 2
    # Both bounds are reached; the rate is checked first, where the call enters the cluster.
    error = failure(stub.Allocate, join(pb, "r1", "c2"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    details = details_of(error)
    info = details["info"]
    assert info.reason == "RATE_LIMITED" and info.domain == DOMAIN, info
    assert dict(info.metadata) == {"app_id": "metered", "quota": "quotas.allocations_per_second",
                                   "limit": "1"}, info.metadata
    delay = details["retry"].retry_delay
    wait_s = delay.seconds + delay.nanos / 1e9
    assert 0 < wait_s <= 1.0, wait_s
    assert details["bad_request"] is None
    # Once the rate allows a call, the participant quota answers: no retry time (places come
    # back when people leave, not at a known time).
    quota = None
    for _ in range(20):
        error = failure(stub.Allocate, join(pb, "r1", "c2"))
        quota = details_of(error)
        if quota["info"].reason != "RATE_LIMITED":
            break
        retry = quota["retry"].retry_delay
        time.sleep(retry.seconds + retry.nanos / 1e9 + 0.05)
    assert quota["info"].reason == "PARTICIPANT_QUOTA_EXCEEDED", quota["info"]
    assert quota["info"].metadata["quota"] == "quotas.max_participants"
    assert quota["info"].metadata["limit"] == "2" and quota["info"].metadata["current"] == "2"
    assert quota["retry"] is None

    # A role the app's policy does not list.
    error = failure(stub.Allocate, join(pb, "r2", "c9", role="viewer"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    info = details_of(error)["info"]
    assert info.reason == "ROLE_NOT_ALLOWED", info
    assert dict(info.metadata) == {"app_id": "metered", "policy": "roles", "role": "viewer"}


def test_room_policies_name_themselves(world, pb):
    """The room's admission rules: which one refused, in ErrorInfo.metadata["policy"]."""
    stub = world.server.allocation()

    def refused(client, role, code):
        error = failure(stub.Allocate, join(pb, "visit", client, app="consult", role=role))
        assert error.code() == code, error.details()
        info = details_of(error)["info"]
        assert info.domain == DOMAIN
        assert info.metadata["app_id"] == "consult" and info.metadata["room_id"] == "visit"
        return info.reason, info.metadata["policy"]

    assert refused("patient", "participant", grpc.StatusCode.FAILED_PRECONDITION) == \
        ("HOST_NOT_PRESENT", "admission")
    stub.Allocate(join(pb, "visit", "doctor", app="consult", role="host"), timeout=5)
    assert refused("doctor-2", "host", grpc.StatusCode.RESOURCE_EXHAUSTED) == \
        ("ROLE_LIMIT_REACHED", "roles.max_per_room")
    stub.Allocate(join(pb, "visit", "patient", app="consult", role="participant"), timeout=5)
    assert refused("relative", "participant", grpc.StatusCode.RESOURCE_EXHAUSTED) == \
        ("ROOM_FULL", "max_room_size")


def test_errors_without_details_carry_none(world, pb):
    """An error no program branches on beyond its code (an unknown app) has no details."""
    error = failure(world.server.allocation().Allocate, join(pb, "r1", "c1", app="no-such-app"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert all(key != "grpc-status-details-bin" for key, _ in error.trailing_metadata() or ())
