"""Virtual event backend, in brief: create the app from the profile, put presenters on
stage, let viewers from around the world in, and look at the relay tree.

    /usr/bin/python3 apps/profiles/examples/virtual_events.py 127.0.0.1:7443"""
from __future__ import annotations

import sys

import chroom_client as cc


def join(orch, key, app_id, room, client, role, city, kbps=0):
    pb = orch.pb
    return orch.alloc.Allocate(
        pb.AllocateRequest(app_id=app_id, room_id=room, client_id=client, role=role,
                           expected_kbps=kbps, location=cc.location(pb, *cc.CITIES[city])),
        metadata=cc.bearer(key, app_id, room), timeout=10)


def run_event(orch, key, app_id: str, room: str, stage_city: str, viewer_cities: list):
    """Two presenters on stage (the first becomes host), one viewer per city, the last on a
    poor link; returns ({client: AllocateResponse}, Room)."""
    out = {"presenter-0": join(orch, key, app_id, room, "presenter-0", "presenter", stage_city),
           "presenter-1": join(orch, key, app_id, room, "presenter-1", "presenter", stage_city)}
    for n, city in enumerate(viewer_cities):
        poor = n == len(viewer_cities) - 1
        out[f"viewer-{n}"] = join(orch, key, app_id, room, f"viewer-{n}", "", city,
                                  kbps=150 if poor else 2500)
    room_state = orch.alloc.GetRoom(orch.pb.GetRoomRequest(app_id=app_id, room_id=room),
                                    metadata=cc.bearer(key, app_id, room), timeout=10).room
    return out, room_state


def main(address: str):
    orch = cc.Orchestrator(address)
    key = orch.create_app(cc.profile("virtual_events", "events-example"))
    joined, room = run_event(orch, key, "events-example", "keynote", "berlin",
                             ["tokyo", "new-york", "sao-paulo", "sydney", "madrid"])
    for client, reply in joined.items():
        claims = cc.claims_of(reply.join_token)
        print(f"{client}: {reply.node.node_id} ({reply.node.region}) role {claims['role']} "
              f"tier {claims.get('tier', 'full')}")
    for node in room.nodes:
        print(f"node {node.node_id}: {node.participants} participants, relays to "
              f"{list(node.relay_node_ids)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7443")
