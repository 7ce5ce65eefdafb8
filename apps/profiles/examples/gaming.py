"""Game backend, in brief: create the app from the profile, put players into a match on
the node nearest them, refuse a player the latency budget cannot serve.

    /usr/bin/python3 apps/profiles/examples/gaming.py 127.0.0.1:7443"""
from __future__ import annotations

import sys

import grpc

import chroom_client as cc


def join(orch, key, app_id, match, player, city):
    pb = orch.pb
    return orch.alloc.Allocate(
        pb.AllocateRequest(app_id=app_id, room_id=match, client_id=player,
                           location=cc.location(pb, *cc.CITIES[city])),
        metadata=cc.bearer(key, app_id, match), timeout=10)


def matchmake(orch, key, app_id: str, match: str, cities: list):
    """Joins one player per city; returns {player: AllocateResponse or the RpcError}."""
    out = {}
    for n, city in enumerate(cities):
        try:
            out[f"player-{n}"] = join(orch, key, app_id, match, f"player-{n}", city)
        except grpc.RpcError as e:
            out[f"player-{n}"] = e
    return out


def main(address: str):
    orch = cc.Orchestrator(address)
    key = orch.create_app(cc.profile("gaming", "gaming-example"))
    for player, reply in matchmake(orch, key, "gaming-example", "match-1",
                                   ["berlin", "hamburg", "warsaw"]).items():
        if isinstance(reply, grpc.RpcError):
            print(f"{player}: refused: {reply.code().name} {reply.details()}")
        else:
            print(f"{player}: {reply.node.node_id} at {reply.node.estimated_rtt_ms:.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7443")
