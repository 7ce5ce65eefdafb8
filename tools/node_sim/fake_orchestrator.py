#!/usr/bin/python3
"""A stand-in orchestrator for testing chroom-node-sim on its own (not the real thing).

Implements chroom.medianode.v1.MediaNodeService with stock Python grpcio (asyncio), so it
also shows what any other gRPC stack sees from the simulator:

  * Register first, checked: credential = hex(HMAC-SHA256(secret_key, node_id)) when
    --secret-key is given (else anything), protocol major 1 (else FAILED_PRECONDITION);
    it answers that it speaks 1.1 (RemoveParticipant);
    a second stream of the same node replaces the first (which ends with ABORTED).
  * Registered with --stats-interval-ms and close_rooms = the rooms the node lists that
    this orchestrator did not place on it (reconciliation after a reconnect).
  * Commands on demand (stdin) or as a steady load (--rooms-per-s), counting acks/nacks.

Commands on stdin, one line each; every command answers one line on stdout:
  status                     JSON counters (see `status_json`)
  node ID                    JSON: the node's last Stats, rooms, events seen
  prepare ID ROOM [APP]      PrepareRoom          admit ID ROOM PARTICIPANT
  close ID ROOM              CloseRoom            drain ID [DEADLINE_MS]
  remove ID ROOM PARTICIPANT RemoveParticipant (1.1)
  ping ID                    Ping                 attach ID ROOM PEER / detach ID ROOM PEER
  kick ID CODE [MESSAGE]     end the node's stream with a status (e.g. UNAVAILABLE)
  load ROOMS PARTICIPANTS    ROOMS rooms of PARTICIPANTS each on random registered nodes
  quit
Command replies arrive asynchronously (the node's ack); `status`/`node` show the results.
On start it prints "ready PORT" once it listens.
"""
import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "messages"))
PROTO = "chroom/medianode/v1/media_node.proto"
# What Registered announces: the version the real orchestrator speaks.
PROTOCOL_VERSION = "1.1"
# ParticipantLeft events remembered per node for `node ID` (the most recent ones).
LEFT_KEPT = 100


def load_protocol():
    """Generates the Python modules for media_node.proto into a temporary directory.

    Generated at start rather than committed so they can never lag behind the .proto."""
    from grpc_tools import protoc  # deferred: only needed here

    out = tempfile.mkdtemp(prefix="chroom-fake-orch-")
    try:
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}",
                os.path.join(PROTO_ROOT, PROTO)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        sys.path.insert(0, out)
        from chroom.medianode.v1 import media_node_pb2, media_node_pb2_grpc  # noqa: E402
        return media_node_pb2, media_node_pb2_grpc
    finally:
        # The modules are imported (in memory) by now.
        shutil.rmtree(out, ignore_errors=True)


pb, pb_grpc = load_protocol()


class NodeStream:
    """One live Connect stream."""

    def __init__(self, node_id, register):
        self.node_id = node_id
        self.register = register
        self.outbox = asyncio.Queue()
        self.next_command_id = 1
        self.pending = {}  # command id -> (sent at, kind, details)


class Orchestrator(pb_grpc.MediaNodeServiceServicer):
    def __init__(self, args):
        self.args = args
        self.streams = {}  # node id -> NodeStream
        self.rooms = {}  # node id -> {room id: set(participants)}
        self.last_stats = {}  # node id -> Stats
        self.left = {}  # node id -> ["room/participant", ...] from ParticipantLeft events
        self.registered_nodes = set()
        self.counters = dict.fromkeys(
            ["connects", "registrations", "rejected", "replaced", "stats", "acks", "nacks",
             "events", "participant_left", "room_empty", "commands_sent", "closed_on_register",
             "protocol_errors", "late_replies"], 0)
        self.nack_reasons = {}
        self.ack_latency_ms = []
        self.loop = None

    # --- the service ------------------------------------------------------------------

    async def Connect(self, request_iterator, context):
        self.counters["connects"] += 1
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "register":
            self.counters["protocol_errors"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be Register")
        reg = first.register
        problem = self.check_register(reg)
        if problem:
            self.counters["rejected"] += 1
            await context.abort(*problem)
        node_id = reg.node_id
        old = self.streams.get(node_id)
        if old is not None:
            self.counters["replaced"] += 1
            old.outbox.put_nowait(("abort", grpc.StatusCode.ABORTED, "replaced by a newer stream"))
        stream = NodeStream(node_id, reg)
        self.streams[node_id] = stream
        known = self.rooms.setdefault(node_id, {})
        close_rooms = [r.room_id for r in reg.rooms if r.room_id not in known]
        self.counters["closed_on_register"] += len(close_rooms)
        self.counters["registrations"] += 1
        self.registered_nodes.add(node_id)
        await context.write(pb.OrchestratorMessage(registered=pb.Registered(
            protocol_version=PROTOCOL_VERSION, stats_interval_ms=self.args.stats_interval_ms,
            close_rooms=close_rooms, peer_id="fake-orchestrator",
            suspect_after_ms=3 * self.args.stats_interval_ms,
            dead_after_ms=6 * self.args.stats_interval_ms)))

        reader = asyncio.ensure_future(self.read_node(stream, request_iterator))
        try:
            while True:
                item = await stream.outbox.get()
                if item[0] == "send":
                    await context.write(item[1])
                elif item[0] == "abort":
                    await context.abort(item[1], item[2])
                elif item[0] == "end":
                    return  # the node half-closed: end with OK
        finally:
            reader.cancel()
            if self.streams.get(node_id) is stream:
                del self.streams[node_id]
                self.registered_nodes.discard(node_id)

    def check_register(self, reg):
        if not reg.node_id:
            return grpc.StatusCode.INVALID_ARGUMENT, "node_id is empty"
        if not reg.protocol_version.startswith("1."):
            return (grpc.StatusCode.FAILED_PRECONDITION,
                    f"protocol {reg.protocol_version} not supported, speak 1.x")
        if self.args.secret_key is not None:
            want = hmac.new(self.args.secret_key.encode(), reg.node_id.encode(),
                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, reg.credential):
                return grpc.StatusCode.UNAUTHENTICATED, f"bad credential for {reg.node_id}"
        if reg.capacity.max_participants < 1:
            return grpc.StatusCode.INVALID_ARGUMENT, "capacity.max_participants must be >= 1"
        return None

    async def read_node(self, stream, request_iterator):
        try:
            async for message in request_iterator:
                self.on_node_message(stream, message)
        except asyncio.CancelledError:
            return
        except grpc.aio.AioRpcError:
            pass
        stream.outbox.put_nowait(("end",))

    def on_node_message(self, stream, message):
        kind = message.WhichOneof("message")
        node_id = stream.node_id
        if kind == "stats":
            self.counters["stats"] += 1
            self.last_stats[node_id] = message.stats
        elif kind in ("ack", "nack"):
            reply = getattr(message, kind)
            sent = stream.pending.pop(reply.command_id, None)
            if sent is None:
                self.counters["late_replies"] += 1
                return
            self.ack_latency_ms.append((time.monotonic() - sent[0]) * 1000)
            del self.ack_latency_ms[:-10000]
            if kind == "ack":
                self.counters["acks"] += 1
                self.on_ack(node_id, sent[1], sent[2])
            else:
                self.counters["nacks"] += 1
                name = pb.Nack.Reason.Name(reply.reason)
                self.nack_reasons[name] = self.nack_reasons.get(name, 0) + 1
        elif kind == "event":
            self.counters["events"] += 1
            event = message.event
            which = event.WhichOneof("event")
            if which == "participant_left":
                self.counters["participant_left"] += 1
                left = event.participant_left
                self.rooms.get(node_id, {}).get(left.room_id, set()).discard(left.participant_id)
                seen = self.left.setdefault(node_id, [])
                seen.append(f"{left.room_id}/{left.participant_id}")
                del seen[:-LEFT_KEPT]
            elif which == "room_empty":
                self.counters["room_empty"] += 1
        elif kind == "register":
            self.counters["protocol_errors"] += 1

    def on_ack(self, node_id, command_kind, details):
        rooms = self.rooms.setdefault(node_id, {})
        if command_kind == "prepare_room":
            rooms.setdefault(details["room_id"], set())
        elif command_kind == "admit_participant":
            rooms.setdefault(details["room_id"], set()).add(details["participant_id"])
        elif command_kind == "remove_participant":
            rooms.get(details["room_id"], set()).discard(details["participant_id"])
        elif command_kind == "close_room":
            rooms.pop(details["room_id"], None)

    # --- commands ---------------------------------------------------------------------

    def send_command(self, node_id, kind, **fields):
        stream = self.streams.get(node_id)
        if stream is None:
            return f"error {node_id} is not connected"
        command_id = stream.next_command_id
        stream.next_command_id += 1
        command = pb.Command(command_id=command_id, deadline_ms=self.args.deadline_ms)
        getattr(command, kind).CopyFrom(getattr(pb, "".join(
            p.capitalize() for p in kind.split("_")))(**fields))
        stream.pending[command_id] = (time.monotonic(), kind, fields)
        stream.outbox.put_nowait(("send", pb.OrchestratorMessage(command=command)))
        self.counters["commands_sent"] += 1
        return f"ok {kind} {node_id} {command_id}"

    def place_load(self, rooms, participants):
        nodes = sorted(self.registered_nodes)
        if not nodes:
            return "error no registered node"
        for _ in range(rooms):
            node_id = random.choice(nodes)
            room_id = f"room-{next(ROOM_IDS)}"
            self.send_command(node_id, "prepare_room", room_id=room_id, app_id="fake")
            for p in range(participants):
                self.send_command(node_id, "admit_participant", room_id=room_id,
                                  participant_id=f"{room_id}-p{p}", role="participant")
        return f"ok load {rooms} {participants}"

    def status_json(self):
        latency = sorted(self.ack_latency_ms)
        status = dict(self.counters)
        status.update(
            connected=len(self.streams), registered=len(self.registered_nodes),
            pending=sum(len(s.pending) for s in self.streams.values()),
            rooms=sum(len(r) for r in self.rooms.values()),
            nack_reasons=self.nack_reasons,
            ack_p50_ms=round(latency[len(latency) // 2], 2) if latency else None,
            ack_p99_ms=round(latency[int(len(latency) * 0.99)], 2) if latency else None)
        return json.dumps(status, sort_keys=True)

    def node_json(self, node_id):
        stream = self.streams.get(node_id)
        stats = self.last_stats.get(node_id)
        info = {"node_id": node_id, "connected": stream is not None,
                "rooms": {r: sorted(p) for r, p in self.rooms.get(node_id, {}).items()},
                "left": self.left.get(node_id, [])}
        if stream is not None:
            reg = stream.register
            info["register"] = {
                "credential": reg.credential, "software_version": reg.software_version,
                "protocol_version": reg.protocol_version,
                "region": reg.location.region, "country": reg.location.country,
                "latitude": reg.location.latitude, "longitude": reg.location.longitude,
                "max_participants": reg.capacity.max_participants,
                "codecs": list(reg.features.codecs), "recording": reg.features.recording,
                "e2ee": reg.features.e2ee,
                "endpoints": [f"{e.host}:{e.port}" for e in reg.endpoints],
                "rooms": {r.room_id: r.participants for r in reg.rooms}}
        if stats is not None:
            info["stats"] = {
                "participants": stats.participants, "rooms": stats.rooms,
                "cpu_load": round(stats.cpu_load, 4), "packet_loss": round(stats.packet_loss, 5),
                "jitter_ms": round(stats.jitter_ms, 2),
                "bandwidth_in_mbps": round(stats.bandwidth_in_mbps, 2),
                "peer_rtts": {p.node_id: round(p.rtt_ms, 2) for p in stats.peer_rtts}}
        return json.dumps(info, sort_keys=True)

    def execute(self, line):
        words = line.split()
        if not words:
            return None
        cmd, rest = words[0], words[1:]
        try:
            if cmd == "status":
                return self.status_json()
            if cmd == "node" and len(rest) == 1:
                return self.node_json(rest[0])
            if cmd == "prepare" and len(rest) in (2, 3):
                return self.send_command(rest[0], "prepare_room", room_id=rest[1],
                                         app_id=rest[2] if len(rest) == 3 else "fake")
            if cmd == "admit" and len(rest) == 3:
                return self.send_command(rest[0], "admit_participant", room_id=rest[1],
                                         participant_id=rest[2], role="participant")
            if cmd == "remove" and len(rest) == 3:
                return self.send_command(rest[0], "remove_participant", room_id=rest[1],
                                         participant_id=rest[2], reason="test")
            if cmd == "close" and len(rest) == 2:
                return self.send_command(rest[0], "close_room", room_id=rest[1], reason="test")
            if cmd == "drain" and len(rest) in (1, 2):
                return self.send_command(rest[0], "drain",
                                         deadline_ms=int(rest[1]) if len(rest) == 2 else 60000)
            if cmd == "ping" and len(rest) == 1:
                return self.send_command(rest[0], "ping")
            if cmd in ("attach", "detach") and len(rest) == 3:
                return self.send_command(rest[0], f"{cmd}_relay", room_id=rest[1],
                                         peer_node_id=rest[2])
            if cmd == "kick" and len(rest) >= 2:
                stream = self.streams.get(rest[0])
                if stream is None:
                    return f"error {rest[0]} is not connected"
                code = getattr(grpc.StatusCode, rest[1])
                stream.outbox.put_nowait(("abort", code, " ".join(rest[2:]) or "kicked"))
                return f"ok kick {rest[0]} {rest[1]}"
            if cmd == "load" and len(rest) == 2:
                return self.place_load(int(rest[0]), int(rest[1]))
        except (ValueError, AttributeError) as error:
            return f"error {error}"
        return f"error bad command: {line.strip()}"


ROOM_IDS = itertools.count(1)


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main_async(args):
    orchestrator = Orchestrator(args)
    orchestrator.loop = asyncio.get_running_loop()
    server = grpc.aio.server(options=[
        # The real orchestrator's limit, so the simulator's spreading over connections is
        # exercised; no SO_REUSEPORT, so a port in use is an error and not a shared port.
        ("grpc.max_concurrent_streams", 100),
        ("grpc.so_reuseport", 0),
    ])
    pb_grpc.add_MediaNodeServiceServicer_to_server(orchestrator, server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        emit(f"error cannot listen on {args.host}:{args.port}")
        return 1
    await server.start()
    emit(f"ready {port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def read_stdin():
        # A thread: asyncio's pipe readers do not work on every kind of stdin (files, ttys).
        quit_requested = False
        for line in sys.stdin:
            if line.strip() == "quit":
                quit_requested = True
                break
            loop.call_soon_threadsafe(run_command, line)
        if quit_requested or args.exit_on_eof:
            loop.call_soon_threadsafe(stop.set)

    def run_command(line):
        reply = orchestrator.execute(line)
        if reply is not None:
            emit(reply)

    threading.Thread(target=read_stdin, daemon=True).start()

    async def periodic():
        next_load = time.monotonic()
        next_status = time.monotonic() + args.status_interval_s
        while not stop.is_set():
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if args.rooms_per_s > 0 and now >= next_load:
                orchestrator.place_load(1, args.participants_per_room)
                next_load += 1.0 / args.rooms_per_s
            if args.status_interval_s > 0 and now >= next_status:
                emit(orchestrator.status_json())
                next_status += args.status_interval_s

    ticker = asyncio.ensure_future(periodic())
    if args.duration_s > 0:
        loop.call_later(args.duration_s, stop.set)
    await stop.wait()
    ticker.cancel()
    emit(orchestrator.status_json())
    await server.stop(grace=1.0)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--secret-key", help="check credentials (HMAC-SHA256 of node_id)")
    parser.add_argument("--stats-interval-ms", type=int, default=1000)
    parser.add_argument("--deadline-ms", type=int, default=5000, help="Command.deadline_ms")
    parser.add_argument("--rooms-per-s", type=float, default=0,
                        help="place rooms continuously at this rate")
    parser.add_argument("--participants-per-room", type=int, default=4)
    parser.add_argument("--status-interval-s", type=float, default=0)
    parser.add_argument("--duration-s", type=float, default=0)
    parser.add_argument("--exit-on-eof", action="store_true",
                        help="stop when stdin closes (else only on quit or --duration-s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
