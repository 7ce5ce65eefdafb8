"""gRPC server reflection (grpc.reflection.v1 and v1alpha) with a client that knows no
Chroom .proto: tools/grpc_reflect.py, whose only generated code comes from grpc-proto's
reflection.proto. It lists the services, fetches their descriptors, builds an
AllocateRequest from them alone and gets a node from a real peer. Also: errors inside the
stream (NOT_FOUND, INVALID_ARGUMENT), undecodable requests, reflection turned off
(UNIMPLEMENTED), admin tokens (UNAUTHENTICATED without one), the command line."""
from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

import chroom_harness as h

sys.path.insert(0, str(h.SOURCE_DIR / "tools"))
import grpc_reflect  # noqa: E402

W = h.AllocationWorld
TOOL = h.SOURCE_DIR / "tools" / "grpc_reflect.py"
NOT_FOUND, INVALID_ARGUMENT = grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]
TOKEN = "reflection-test-token-0123456789"

SERVICES = {
    "chroom.allocation.v1.AllocationService", "chroom.admin.v1.AdminService",
    "chroom.medianode.v1.MediaNodeService", "chroom.diag.v1.Diagnostics",
    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def reflector(server, version="v1", token=None) -> grpc_reflect.Reflector:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return grpc_reflect.Reflector(server.new_channel(), version, metadata)


def test_allocate_built_from_reflected_descriptors_alone(start_allocation_peer):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["ber", "nyc"])
    client = reflector(peer.server)

    assert set(client.services()) == SERVICES
    # Every service's descriptor, with every method's message types resolvable.
    for name in SERVICES:
        service = client.find(name)
        assert service.full_name == name
        assert len(service.methods) > 0
        for method in service.methods:
            assert method.input_type.fields is not None and method.output_type.full_name

    request = client.new_request(
        "chroom.allocation.v1.AllocationService/Allocate",
        json.dumps({"appId": "default", "roomId": "reflected", "clientId": "alice",
                    "location": {"latitude": 53.55, "longitude": 9.99, "hasPoint": True}}))
    reply = client.call("chroom.allocation.v1.AllocationService/Allocate", request)
    assert reply.node.node_id == "ber", reply      # Hamburg's nearest
    assert reply.join_token and reply.lease_id
    # The same peer agrees through a client generated from the real .proto.
    alloc_pb = h.stubs().alloc_pb2
    room = W.get_room(peer.server.allocation(), alloc_pb, "reflected")
    assert [n.node_id for n in room.nodes] == ["ber"]


def test_v1alpha_answers_as_v1_does(server):
    alpha = reflector(server, "v1alpha")
    assert set(alpha.services()) == SERVICES
    assert alpha.find("grpc.health.v1.Health").methods_by_name["Check"].output_type.name == \
        "HealthCheckResponse"
    reply = alpha.call("grpc.health.v1.Health/Check", alpha.new_request("grpc.health.v1.Health/Check"))
    assert reply.status == 1  # SERVING


def test_files_by_name_symbol_and_extensions(server):
    client = reflector(server)
    pb = client.pb
    requests = [
        pb.ServerReflectionRequest(host="h1", file_by_filename="chroom/allocation/v1/allocation_service.proto"),
        pb.ServerReflectionRequest(file_containing_symbol="chroom.allocation.v1.AllocateRequest.app_id"),
        pb.ServerReflectionRequest(file_containing_symbol="chroom.nothing.v1.Nothing"),
        pb.ServerReflectionRequest(file_by_filename="chroom/cluster/v1/cluster.proto"),
        pb.ServerReflectionRequest(all_extension_numbers_of_type="chroom.allocation.v1.AllocateRequest"),
        pb.ServerReflectionRequest(all_extension_numbers_of_type="chroom.nothing.v1.Nothing"),
        pb.ServerReflectionRequest(file_containing_extension=pb.ExtensionRequest(
            containing_type="chroom.allocation.v1.AllocateRequest", extension_number=100)),
        pb.ServerReflectionRequest(),
        pb.ServerReflectionRequest(list_services=""),
    ]
    responses = client.exchange(requests)
    assert len(responses) == len(requests)
    for request, response in zip(requests, responses):
        assert response.original_request == request
    assert responses[0].valid_host == "h1"

    from google.protobuf import descriptor_pb2
    names = [descriptor_pb2.FileDescriptorProto.FromString(raw).name
             for raw in responses[0].file_descriptor_response.file_descriptor_proto]
    assert names[0] == "chroom/allocation/v1/allocation_service.proto"
    assert "chroom/medianode/v1/media_node.proto" in names
    assert len(names) == len(set(names))
    first = descriptor_pb2.FileDescriptorProto.FromString(
        responses[1].file_descriptor_response.file_descriptor_proto[0])
    assert first.name == "chroom/allocation/v1/allocation_service.proto"

    def error_of(response):
        assert response.WhichOneof("message_response") == "error_response", response
        return response.error_response.error_code, response.error_response.error_message

    assert error_of(responses[2]) == (NOT_FOUND, "symbol 'chroom.nothing.v1.Nothing' not found")
    # Linked into the binary but the peers' own protocol: not part of what is served.
    assert error_of(responses[3])[0] == NOT_FOUND
    assert responses[4].all_extension_numbers_response.base_type_name == \
        "chroom.allocation.v1.AllocateRequest"
    assert list(responses[4].all_extension_numbers_response.extension_number) == []
    assert error_of(responses[5])[0] == NOT_FOUND
    assert error_of(responses[6])[0] == NOT_FOUND
    assert error_of(responses[7])[0] == INVALID_ARGUMENT
    # The stream went on after the errors.
    assert len(responses[8].list_services_response.service) == len(SERVICES)
    server.assert_serving()


def test_undecodable_request_ends_the_call(server):
    channel = server.new_channel()
    info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=lambda raw: raw,
                                 response_deserializer=lambda raw: raw)
    with pytest.raises(grpc.RpcError) as error:
        list(info(iter([b"\xff\xff\xff"]), timeout=5))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ServerReflectionRequest" in error.value.details()
    assert reflector(server).services()
    server.assert_serving()


def test_reflection_off_is_unimplemented(start_server):
    # (auto's choice by address is config_test's: a test peer listens on loopback only.)
    server = start_server({"admin": {"reflection": "off"}})
    for version in grpc_reflect.VERSIONS:
        with pytest.raises(grpc.RpcError) as error:
            reflector(server, version).services()
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Health lists no reflection service either.
    health_pb = h.stubs().health_pb2
    with pytest.raises(grpc.RpcError) as error:
        server.health().Check(health_pb.HealthCheckRequest(
            service="grpc.reflection.v1.ServerReflection"), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_admin_tokens_guard_reflection(start_server):
    server = start_server({"admin": {"tokens": [TOKEN]}})
    for token in (None, "not-the-token-at-all-0123"):
        with pytest.raises(grpc.RpcError) as error:
            reflector(server, token=token).services()
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "admin token" in error.value.details()
    assert set(reflector(server, token=TOKEN).services()) == SERVICES
    assert set(reflector(server, "v1alpha", token=TOKEN).services()) == SERVICES


def test_command_line(start_allocation_peer):
    peer = start_allocation_peer(W.config())
    W.start_nodes(peer, ["par"])

    def run(*args):
        return subprocess.run([sys.executable, str(TOOL), "--target", peer.server.target, *args],
                              capture_output=True, text=True, timeout=60)

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == SERVICES
    described = run("describe", "chroom.allocation.v1.AllocationService")
    assert described.returncode == 0, described.stderr
    assert "rpc Allocate(chroom.allocation.v1.AllocateRequest) returns " \
           "(chroom.allocation.v1.AllocateResponse);" in described.stdout
    called = run("call", "chroom.allocation.v1.AllocationService/Allocate",
                 '{"appId": "default", "roomId": "cli", "clientId": "bob"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["node"]["nodeId"] == "par"
    missing = run("describe", "chroom.nothing.v1.Nothing")
    assert missing.returncode == 1
    assert "NOT_FOUND: symbol 'chroom.nothing.v1.Nothing' not found" in missing.stderr
    bad = run("call", "chroom.allocation.v1.AllocationService/Allocate", '{"appId": 7}')
    assert bad.returncode == 1 and "grpc_reflect:" in bad.stderr
