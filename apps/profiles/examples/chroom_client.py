"""A small client for the examples: stubs generated from the repo's .proto files at run
time (python3-grpc-tools), apps created from profile files, tokens signed with an app key.
Run the examples with Debian's /usr/bin/python3 (python3-grpcio, python3-yaml)."""
from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml
from google.protobuf import json_format

SOURCE = Path(__file__).resolve().parents[3]
PROTOS = ["chroom/admin/v1/admin_service.proto", "chroom/allocation/v1/allocation_service.proto",
          "chroom/config/v1/config.proto", "chroom/medianode/v1/media_node.proto",
          "chroom/apps/v1/events.proto", "chroom/apps/v1/usage.proto"]
_modules: dict = {}


def modules():
    """(admin_pb2, admin_grpc, alloc_pb2, alloc_grpc, config_pb2)."""
    if not _modules:
        from grpc_tools import protoc
        out = Path(tempfile.mkdtemp(prefix="chroom-example-stubs-"))
        atexit.register(shutil.rmtree, out, True)
        messages = SOURCE / "messages"
        rc = protoc.main(["protoc", f"-I{messages}", f"--python_out={out}",
                          f"--grpc_python_out={out}", *[str(messages / p) for p in PROTOS]])
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc})")
        sys.path.insert(0, str(out))
        for name in ("chroom.admin.v1.admin_service_pb2", "chroom.admin.v1.admin_service_pb2_grpc",
                     "chroom.allocation.v1.allocation_service_pb2",
                     "chroom.allocation.v1.allocation_service_pb2_grpc",
                     "chroom.config.v1.config_pb2"):
            _modules[name.rsplit(".", 1)[1]] = importlib.import_module(name)
    m = _modules
    return (m["admin_service_pb2"], m["admin_service_pb2_grpc"], m["allocation_service_pb2"],
            m["allocation_service_pb2_grpc"], m["config_pb2"])


def profile(name: str, app_id: str | None = None) -> dict:
    """A shipped profile (apps/profiles/<name>.yaml) as a dict, renamed to `app_id`."""
    app = yaml.safe_load((SOURCE / "apps" / "profiles" / f"{name}.yaml").read_text())
    if app_id:
        app["app_id"] = app_id
    return app


class Orchestrator:
    """Stubs for one peer."""

    def __init__(self, address: str):
        self.admin_pb, admin_grpc, self.pb, alloc_grpc, self.config_pb = modules()
        self.channel = grpc.insecure_channel(address)
        self.admin = admin_grpc.AdminServiceStub(self.channel)
        self.alloc = alloc_grpc.AllocationServiceStub(self.channel)

    def create_app(self, app: dict):
        """Creates the app (again, when an earlier run made it); returns its key (made by
        the peer)."""
        config = json_format.ParseDict(app, self.config_pb.AppConfig())
        try:
            reply = self.admin.CreateApp(self.admin_pb.CreateAppRequest(app=config), timeout=10)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            self.admin.DeleteApp(self.admin_pb.DeleteAppRequest(app_id=config.app_id), timeout=10)
            reply = self.admin.CreateApp(self.admin_pb.CreateAppRequest(app=config), timeout=10)
        return reply.key

    def close(self):
        self.channel.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key, app_id: str, room_id: str = "", lifetime_s: int = 300) -> str:
    """What an app backend hands its client: an HS256 token under the app key."""
    claims = {"app": app_id, "iat": int(time.time()), "exp": int(time.time()) + lifetime_s}
    if room_id:
        claims["room"] = room_id
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.key_id}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key.secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def bearer(key, app_id: str, room_id: str = "") -> list:
    return [("authorization", f"Bearer {token(key, app_id, room_id)}")]


def claims_of(join_token: str) -> dict:
    body = join_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def location(pb, lat: float, lon: float):
    return pb.ClientLocation(latitude=lat, longitude=lon, has_point=True)


CITIES = {"berlin": (52.52, 13.40), "paris": (48.86, 2.35), "madrid": (40.42, -3.70),
          "new-york": (40.71, -74.01), "tokyo": (35.68, 139.69), "sao-paulo": (-23.55, -46.63),
          "sydney": (-33.87, 151.21), "mumbai": (19.08, 72.88), "hamburg": (53.55, 9.99),
          "chicago": (41.88, -87.63), "warsaw": (52.23, 21.01), "lagos": (6.52, 3.38)}
