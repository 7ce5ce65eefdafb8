"""Telemedicine backend, in brief: create the app from the profile, admit a clinician and
patients to a consultation, read the audit log.

    /usr/bin/python3 apps/profiles/examples/telemedicine.py 127.0.0.1:7443
(against scripts/run: the simulated fleet has e2ee nodes in the profile's countries)."""
from __future__ import annotations

import sys

import grpc

import chroom_client as cc


def join(orch, key, app_id, room, client, role, city):
    pb = orch.pb
    return orch.alloc.Allocate(
        pb.AllocateRequest(app_id=app_id, room_id=room, client_id=client, role=role,
                           location=cc.location(pb, *cc.CITIES[city])),
        metadata=cc.bearer(key, app_id, room), timeout=10)


def consultation(orch, key, app_id: str, room: str, clinician_city: str, patient_cities: list):
    """The clinician (host) first, then the patients; returns {client: AllocateResponse}.
    A patient who comes before the clinician is refused (FAILED_PRECONDITION)."""
    try:
        join(orch, key, app_id, room, "early-patient", "participant", patient_cities[0])
        raise AssertionError("a patient was admitted before the clinician")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
    out = {"clinician": join(orch, key, app_id, room, "clinician", "host", clinician_city)}
    for n, city in enumerate(patient_cities):
        out[f"patient-{n}"] = join(orch, key, app_id, room, f"patient-{n}", "participant", city)
    return out


def audit_log(orch, app_id: str, room: str) -> list:
    pb = orch.admin_pb
    return list(orch.admin.ListAuditEvents(pb.ListAuditEventsRequest(app_id=app_id, room_id=room),
                                           timeout=10).events)


def main(address: str):
    orch = cc.Orchestrator(address)
    key = orch.create_app(cc.profile("telemedicine", "telemedicine-example"))
    joined = consultation(orch, key, "telemedicine-example", "visit-1", "berlin",
                          ["hamburg", "paris"])
    for client, reply in joined.items():
        print(f"{client}: {reply.node.node_id} ({reply.node.country}), "
              f"token claims {cc.claims_of(reply.join_token)}")
    for event in audit_log(orch, "telemedicine-example", "visit-1"):
        print(f"audit: {event.occurred_unix_ms} {event.type} {event.client_id} as {event.role}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7443")
