#!/usr/bin/env python3
"""A stand-in for a peer's admin HTTP server, for developing the dashboard without the
daemon (docs/dashboard.md). Serves a bundle directory (node build.mjs --out DIR) at / and
/assets/, and a simulated fleet per the data contract: GET /api/v1/snapshot and the SSE
stream GET /api/v1/events (a `snapshot` event at once, then one a second, `: keepalive`
comments in between).

    python3 dashboard/tests/fake_server.py --assets build/dashboard-dev --nodes 2000

Commands on stdin (one a line, answered `ok ...` / `error ...` on stdout):
    crash ID       the node turns suspect, and dead 3 s later
    restart ID     the node is active again
    drain ID       draining, cordon ID  cordoned
    pause-sse S    ends every event stream and refuses new ones (503) for S seconds
    quit
Without stdin (started in the background) it serves until SIGINT/SIGTERM.
Loopback only; stdlib only.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
CITIES = HERE.parent.parent / "tools" / "data" / "cities.csv"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".map": "application/json"}
SUSPECT_TO_DEAD_S = 3.0
SNAPSHOT_INTERVAL_S = 1.0
ROOMS_CAP = 200


class Fleet:
    """Nodes in the simulator's cities, rooms over them, allocation figures; all random walks."""

    def __init__(self, nodes: int, seed: int, peer_id: str):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.peer_id = peer_id
        self.started = time.time()
        self.total = 0
        self.by_result = {"ok": 0, "resource_exhausted": 0, "unavailable": 0}
        with open(CITIES, newline="") as f:
            cities = list(csv.DictReader(f))
        weights = [float(c["population"]) for c in cities]
        self.nodes = {}
        for i in range(nodes):
            c = self.rng.choices(cities, weights)[0]
            node_id = f"sim-{i:05d}"
            self.nodes[node_id] = {
                "node_id": node_id, "state": "active",
                "lat": round(float(c["lat"]) + self.rng.uniform(-0.05, 0.05), 4),
                "lon": round(float(c["lon"]) + self.rng.uniform(-0.05, 0.05), 4),
                "region": c["region"], "country": c["country"],
                "participants": 0, "max_participants": 100, "load": 0.0, "rooms": 0,
                "home_peer_id": peer_id if i % 3 else "p2"}
        self.dead_at: dict[str, float] = {}
        ids = list(self.nodes)
        by_region: dict[str, list[str]] = {}
        for node_id, node in self.nodes.items():
            by_region.setdefault(node["region"], []).append(node_id)
        self.rooms = []
        for r in range(max(1, nodes // 4)):
            # Cascades are mostly regional, like real ones: the extra nodes of a room come
            # from its first node's region, now and then from anywhere.
            first = self.rng.choice(ids)
            hosts = [first]
            for _ in range(self.rng.choice([0, 0, 0, 1, 1, 2])):
                pool = by_region[self.nodes[first]["region"]] if self.rng.random() < 0.8 else ids
                pick = self.rng.choice(pool)
                if pick not in hosts:
                    hosts.append(pick)
            parts = {h: self.rng.randint(1, 12) for h in hosts}
            links = [[hosts[0], h] for h in hosts[1:]]
            self.rooms.append({"app_id": "default" if r % 5 else "events", "room_id": f"room-{r}",
                               "owner_peer_id": peer_id if r % 3 else "p2",
                               "parts": parts, "links": links})

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return "error empty"
        verb, args = words[0], words[1:]
        if verb == "pause-sse":
            return "ok pause-sse"                       # handled by the server
        if verb in ("crash", "restart", "drain", "cordon") and len(args) == 1:
            with self.lock:
                node = self.nodes.get(args[0])
                if node is None:
                    return f"error no node {args[0]}"
                node["state"] = {"crash": "suspect", "restart": "active", "drain": "draining",
                                 "cordon": "cordoned"}[verb]
                if verb == "crash":
                    self.dead_at[args[0]] = time.time() + SUSPECT_TO_DEAD_S
                else:
                    self.dead_at.pop(args[0], None)
            return f"ok {verb} {args[0]}"
        return f"error unknown command {line!r}"

    def step(self) -> None:
        """One second of life: loads drift, participants come and go, dead nodes die."""
        now = time.time()
        with self.lock:
            for node_id, at in list(self.dead_at.items()):
                if now >= at:
                    self.nodes[node_id]["state"] = "dead"
                    del self.dead_at[node_id]
            for room in self.rooms:
                for h in room["parts"]:
                    room["parts"][h] = max(1, min(60, room["parts"][h] + self.rng.randint(-1, 1)))
            counts = {i: [0, 0] for i in self.nodes}
            for room in self.rooms:
                for h, p in room["parts"].items():
                    counts[h][0] += p
                    counts[h][1] += 1
            wave = 0.5 + 0.5 * math.sin((now - self.started) / 20)
            for node_id, node in self.nodes.items():
                p, rooms = counts[node_id]
                if node["state"] in ("dead", "gone"):
                    p, rooms = 0, 0
                node["participants"], node["rooms"] = p, rooms
                cpu = 0.03 + 0.8 * p / node["max_participants"] + self.rng.uniform(0, 0.05)
                node["load"] = round(min(1.0, max(p / node["max_participants"], cpu)), 3)
            rate = 5 + 20 * wave + self.rng.uniform(0, 3)
            self.rate = rate
            calls = int(rate)
            self.total += calls
            exhausted = self.rng.random() < 0.2
            self.by_result["ok"] += calls - (1 if exhausted else 0)
            self.by_result["resource_exhausted"] += 1 if exhausted else 0
            self.latency = {"p50": round(0.6 + 0.4 * wave, 3),
                            "p90": round(1.2 + 0.8 * wave + self.rng.uniform(0, 0.3), 3),
                            "p99": round(2.5 + 3 * wave + self.rng.uniform(0, 1.5), 3)}

    def snapshot(self) -> dict:
        with self.lock:
            rooms = []
            for room in self.rooms:
                nodes = [{"node_id": h, "participants": p} for h, p in room["parts"].items()]
                rooms.append({"app_id": room["app_id"], "room_id": room["room_id"],
                              "participants": sum(room["parts"].values()),
                              "owner_peer_id": room["owner_peer_id"], "nodes": nodes,
                              "links": room["links"]})
            rooms.sort(key=lambda r: -r["participants"])
            return {
                "peer_id": self.peer_id, "at_unix_ms": int(time.time() * 1000),
                "members": [
                    {"peer_id": self.peer_id, "state": "alive", "grpc_address": "127.0.0.1:7443",
                     "self": True, "last_heard_ms_ago": 0},
                    {"peer_id": "p2", "state": "alive", "grpc_address": "127.0.0.1:7444",
                     "self": False, "last_heard_ms_ago": self.rng.randint(50, 400)},
                    {"peer_id": "p3", "state": "dead", "grpc_address": "127.0.0.1:7445",
                     "self": False, "last_heard_ms_ago": int((time.time() - self.started) * 1000)},
                ],
                "nodes": [dict(n) for n in self.nodes.values()],
                "rooms": rooms[:ROOMS_CAP], "rooms_total": len(rooms),
                "allocations": {"per_second": round(getattr(self, "rate", 0.0), 2),
                                "total": self.total,
                                "latency_ms": getattr(self, "latency",
                                                      {"p50": None, "p90": None, "p99": None}),
                                "by_result": dict(self.by_result)},
            }


def make_handler(fleet: Fleet, assets: Path, state: dict):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):            # quiet: stdout carries command replies
            pass

        def send_body(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/api/v1/snapshot":
                return self.send_body(200, "application/json",
                                      json.dumps(fleet.snapshot()).encode())
            if path == "/api/v1/events":
                return self.events()
            if path == "/":
                path = "/index.html"
            file = (assets / path.lstrip("/")).resolve()
            if assets.resolve() in file.parents and file.is_file():
                return self.send_body(200, CONTENT_TYPES.get(file.suffix, "application/octet-stream"),
                                      file.read_bytes())
            return self.send_body(404, "text/plain", b"not found\n")

        def events(self):
            if time.time() < state["paused_until"]:
                return self.send_body(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"paused\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.close_connection = True
            try:
                while not state["stopping"] and time.time() >= state["paused_until"]:
                    data = json.dumps(fleet.snapshot(), separators=(",", ":"))
                    self.wfile.write(f"event: snapshot\ndata: {data}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(SNAPSHOT_INTERVAL_S / 2)
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    time.sleep(SNAPSHOT_INTERVAL_S / 2)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", required=True, type=Path, help="the bundle: node build.mjs --out DIR")
    ap.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peer-id", default="p1")
    args = ap.parse_args()
    fleet = Fleet(args.nodes, args.seed, args.peer_id)
    fleet.step()
    state = {"paused_until": 0.0, "stopping": False}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(fleet, args.assets, state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def tick():
        while not state["stopping"]:
            time.sleep(SNAPSHOT_INTERVAL_S)
            fleet.step()
    threading.Thread(target=tick, daemon=True).start()
    print(f"listening http://127.0.0.1:{server.server_address[1]}/", flush=True)
    quit_asked = False
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            quit_asked = True
            break
        if line.startswith("pause-sse"):
            try:
                state["paused_until"] = time.time() + float(line.split()[1])
            except (IndexError, ValueError):
                print("error pause-sse SECONDS", flush=True)
                continue
        print(fleet.command(line), flush=True)
    if not quit_asked:           # stdin closed (started in the background): serve until a signal
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    state["stopping"] = True
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
