#!/usr/bin/python3
"""A gRPC client that knows no .proto of the server: it asks the server's reflection
service (grpc.reflection.v1, or v1alpha) for the services and their descriptors, builds
request messages from those and calls any unary method with JSON in and JSON out. What
grpcurl does, with Debian's python3-grpcio and the reflection .proto of grpc-proto only.

  tools/grpc_reflect.py [--target HOST:PORT] [--token TOKEN] [--v1alpha] list
  tools/grpc_reflect.py ... describe SYMBOL          a service, method, message or enum
  tools/grpc_reflect.py ... call SERVICE/METHOD [JSON]
      e.g. call chroom.allocation.v1.AllocationService/Allocate '{"appId": "default", ...}'

--target defaults to 127.0.0.1:7443 (scripts/run's peer); --token (or CHROOM_ADMIN_TOKEN)
is sent as `authorization: Bearer <token>`, which a peer with admin.tokens asks of
reflection calls. Errors go to stderr with the gRPC status; the exit code is 1 then.

As a module: `Reflector(channel)` lists services, fetches descriptors into a pool of its
own and calls methods (tests/integration/test_reflection.py uses it)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

# Debian's grpc-proto (scripts/setup installs it): the standard's own reflection .proto.
REFLECTION_PROTO_ROOT = Path("/usr/share/grpc-proto")
VERSIONS = ("v1", "v1alpha")
# Each reflection exchange and call may take this long.
DEFAULT_TIMEOUT_S = 10.0


def _message_class(descriptor):
    """The Python class of a message descriptor (protobuf 4's GetMessageClass or 3's
    MessageFactory)."""
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


_reflection_modules: dict = {}


def reflection_messages(version: str = "v1"):
    """The generated module of grpc/reflection/<version>/reflection.proto, made with
    grpc_tools.protoc into a temporary directory (once per process). The file is copied
    under another directory name first: a module named grpc.reflection... would be looked
    for inside the installed grpc package."""
    if version in _reflection_modules:
        return _reflection_modules[version]
    from grpc_tools import protoc

    source = REFLECTION_PROTO_ROOT / "grpc" / "reflection" / version / "reflection.proto"
    if not source.exists():
        raise SystemExit(f"grpc_reflect: {source} is missing (apt-get install grpc-proto)")
    out = Path(tempfile.mkdtemp(prefix="grpc-reflect-"))
    package = f"reflection_{version}"
    (out / package).mkdir()
    shutil.copy(source, out / package / "reflection.proto")
    (out / package / "__init__.py").write_text("")
    if protoc.main(["protoc", f"-I{out}", f"--python_out={out}",
                    str(out / package / "reflection.proto")]) != 0:
        raise SystemExit(f"grpc_reflect: protoc failed on {source}")
    sys.path.insert(0, str(out))
    import importlib
    module = importlib.import_module(f"{package}.reflection_pb2")
    _reflection_modules[version] = module
    return module


class ReflectionError(Exception):
    """The server answered a reflection request with an error_response."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{_code_name(code)}: {message}")
        self.code = code
        self.message = message


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


class Reflector:
    """Reflection over one channel: services, descriptors, calls."""

    def __init__(self, channel: grpc.Channel, version: str = "v1",
                 metadata: Optional[list] = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.channel = channel
        self.version = version
        self.metadata = metadata or []
        self.timeout = timeout
        self.pb = reflection_messages(version)
        self.pool = descriptor_pool.DescriptorPool()
        self._added: set = set()
        self._info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=self.pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=self.pb.ServerReflectionResponse.FromString)

    # ---- the reflection protocol
    def exchange(self, requests: Iterable) -> list:
        """Sends the requests on one ServerReflectionInfo stream; the responses, in order."""
        return list(self._info(iter(list(requests)), metadata=self.metadata,
                               timeout=self.timeout))

    def ask(self, **fields):
        """One request (e.g. list_services=""); its response, ReflectionError for an
        error_response."""
        response = self.exchange([self.pb.ServerReflectionRequest(**fields)])[0]
        if response.WhichOneof("message_response") == "error_response":
            raise ReflectionError(response.error_response.error_code,
                                  response.error_response.error_message)
        return response

    def services(self) -> list:
        return [s.name for s in self.ask(list_services="").list_services_response.service]

    def load_symbol(self, symbol: str) -> None:
        """Adds the file defining `symbol` and its imports to the pool."""
        self._add_files(self.ask(file_containing_symbol=symbol))

    def load_file(self, filename: str) -> None:
        self._add_files(self.ask(file_by_filename=filename))

    def _add_files(self, response) -> None:
        files = {}
        for raw in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[proto.name] = proto
        # Imports before the files that import them; an import the answer lacks (a server
        # that sent it before) is asked for by name.
        def add(name: str, depth: int = 0) -> None:
            if name in self._added or depth > 100:
                return
            proto = files.get(name)
            if proto is None:
                self.load_file(name)
                return
            for dependency in proto.dependency:
                add(dependency, depth + 1)
            self.pool.Add(proto)
            self._added.add(name)
        for name in files:
            add(name)

    # ---- what the descriptors give
    def find(self, symbol: str):
        """The descriptor of a service, method, message or enum, loaded when needed."""
        symbol = symbol.lstrip(".")
        try:
            return self._find_loaded(symbol)
        except KeyError:
            self.load_symbol(symbol)
            return self._find_loaded(symbol)

    def _find_loaded(self, symbol: str):
        for find in (self.pool.FindServiceByName, self.pool.FindMessageTypeByName,
                     self.pool.FindEnumTypeByName, self.pool.FindMethodByName):
            try:
                return find(symbol)
            except KeyError:
                continue
        raise KeyError(symbol)

    def method(self, path: str):
        """The method descriptor of "pkg.Service/Method" or "pkg.Service.Method"."""
        service_name, _, method_name = path.lstrip("/").replace("/", ".").rpartition(".")
        service = self.find(service_name)
        method = service.methods_by_name.get(method_name)
        if method is None:
            raise KeyError(f"{service_name} has no method {method_name}")
        return method

    def new_request(self, path: str, json_text: str = "{}"):
        """A request message of the method, from JSON (protobuf's JSON mapping)."""
        request = _message_class(self.method(path).input_type)()
        json_format.Parse(json_text or "{}", request)
        return request

    def call(self, path: str, request, metadata: Optional[list] = None):
        """Calls a unary method with a message from new_request(); the response message."""
        method = self.method(path)
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{method.full_name} is a streaming method; only unary ones are called")
        response_class = _message_class(method.output_type)
        stub = self.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString)
        return stub(request, metadata=metadata if metadata is not None else self.metadata,
                    timeout=self.timeout)


def describe(descriptor) -> str:
    """A .proto-like text of a service, method, message or enum."""
    from google.protobuf.descriptor import (Descriptor, EnumDescriptor, MethodDescriptor,
                                            ServiceDescriptor, FieldDescriptor)

    def rpc(method) -> str:
        stream_in = "stream " if method.client_streaming else ""
        stream_out = "stream " if method.server_streaming else ""
        return (f"rpc {method.name}({stream_in}{method.input_type.full_name}) returns "
                f"({stream_out}{method.output_type.full_name});")

    if isinstance(descriptor, ServiceDescriptor):
        lines = [f"service {descriptor.full_name} {{  // {descriptor.file.name}"]
        lines += [f"  {rpc(m)}" for m in descriptor.methods]
        return "\n".join(lines + ["}"])
    if isinstance(descriptor, MethodDescriptor):
        return rpc(descriptor)
    if isinstance(descriptor, EnumDescriptor):
        lines = [f"enum {descriptor.full_name} {{  // {descriptor.file.name}"]
        lines += [f"  {v.name} = {v.number};" for v in descriptor.values]
        return "\n".join(lines + ["}"])
    if isinstance(descriptor, Descriptor):
        type_names = {v: k[len("TYPE_"):].lower() for k, v in vars(FieldDescriptor).items()
                      if k.startswith("TYPE_")}
        lines = [f"message {descriptor.full_name} {{  // {descriptor.file.name}"]
        for field in descriptor.fields:
            if field.message_type is not None:
                kind = field.message_type.full_name
            elif field.enum_type is not None:
                kind = field.enum_type.full_name
            else:
                kind = type_names.get(field.type, str(field.type))
            repeated = "repeated " if field.label == FieldDescriptor.LABEL_REPEATED else ""
            lines.append(f"  {repeated}{kind} {field.name} = {field.number};")
        return "\n".join(lines + ["}"])
    return str(descriptor)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grpc_reflect.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:7443", help="HOST:PORT of the server")
    parser.add_argument("--token", default=os.environ.get("CHROOM_ADMIN_TOKEN", ""),
                        help="admin token (default: $CHROOM_ADMIN_TOKEN)")
    parser.add_argument("--v1alpha", action="store_true",
                        help="ask grpc.reflection.v1alpha instead of v1")
    parser.add_argument("--tls", action="store_true", help="TLS instead of h2c")
    parser.add_argument("--ca", help="PEM file of the CA that signed the server (with --tls)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds per call (default %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the services the server offers")
    describe_parser = commands.add_parser("describe", help="a service, method, message or enum")
    describe_parser.add_argument("symbol")
    call_parser = commands.add_parser("call", help="call a unary method, JSON in and out")
    call_parser.add_argument("method", help="package.Service/Method")
    call_parser.add_argument("json", nargs="?", default="{}", help="the request (default {})")
    args = parser.parse_args(argv)

    if args.tls:
        root = Path(args.ca).read_bytes() if args.ca else None
        channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root))
    else:
        channel = grpc.insecure_channel(args.target)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    reflector = Reflector(channel, "v1alpha" if args.v1alpha else "v1", metadata, args.timeout)
    try:
        if args.command == "list":
            for name in reflector.services():
                print(name)
        elif args.command == "describe":
            print(describe(reflector.find(args.symbol)))
        else:
            request = reflector.new_request(args.method, args.json)
            response = reflector.call(args.method, request)
            print(json_format.MessageToJson(response))
        return 0
    except grpc.RpcError as e:
        print(f"grpc_reflect: {e.code().name}: {e.details()}", file=sys.stderr)
    except (ReflectionError, KeyError, ValueError, json_format.ParseError) as e:
        print(f"grpc_reflect: {e}", file=sys.stderr)
    finally:
        channel.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
