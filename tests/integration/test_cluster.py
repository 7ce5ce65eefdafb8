"""The orchestrator as a cluster of peers (docs/cluster.md), with real processes: three
peers on loopback (deploy/local_cluster.py), a simulated fleet connected to all of them,
stock grpcio clients calling any peer, kill -9 and SIGTERM."""
from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

import chroom_harness as harness
import cluster_client as cc

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Clients:
    """One channel per peer, stubs for both services."""

    def __init__(self, cluster):
        stubs = harness.stubs()
        self.pb = stubs.alloc_pb2
        self.admin_pb = stubs.admin_pb2
        self.cluster = cluster
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port(i)}")
                         for i in range(cluster.peers_count)]
        self.alloc = [stubs.alloc_grpc.AllocationServiceStub(c) for c in self.channels]
        self.admin = [stubs.admin_grpc.AdminServiceStub(c) for c in self.channels]

    def close(self):
        for channel in self.channels:
            channel.close()

    def allocate(self, peer: int, room: str, client: str, timeout: float = 5.0, lat=50.0, lon=10.0):
        return self.alloc[peer].Allocate(self.pb.AllocateRequest(
            app_id="default", room_id=room, client_id=client,
            location=self.pb.ClientLocation(latitude=lat, longitude=lon, has_point=True)),
            timeout=timeout)

    def get_room(self, peer: int, room: str, timeout: float = 5.0):
        return self.alloc[peer].GetRoom(self.pb.GetRoomRequest(app_id="default", room_id=room),
                                        timeout=timeout).room

    def get_cluster(self, peer: int, timeout: float = 3.0):
        return self.admin[peer].GetCluster(self.admin_pb.GetClusterRequest(), timeout=timeout)

    def alive(self, peer: int) -> set[str]:
        try:
            view = self.get_cluster(peer)
        except grpc.RpcError:
            return set()
        return {p.peer_id for p in view.peers if p.state == self.admin_pb.PEER_STATE_ALIVE}

    def nodes(self, peer: int):
        return self.admin[peer].ListNodes(self.admin_pb.ListNodesRequest(page_size=5000),
                                          timeout=5).nodes


PEERS = {"peer-0", "peer-1", "peer-2"}


def wait_for_cluster(clients: Clients, peers: set[str], timeout: float = 15.0) -> None:
    indices = [int(p.split("-")[1]) for p in peers]
    assert harness.wait_until(lambda: all(clients.alive(i) == peers for i in indices), timeout), \
        {i: clients.alive(i) for i in indices}


@pytest.fixture
def cluster(tmp_path):
    with cc.make_cluster(tmp_path, peers=3, nodes=30) as running:
        clients = Clients(running)
        try:
            wait_for_cluster(clients, PEERS)
            assert harness.wait_until(
                lambda: all(len([n for n in clients.nodes(i)
                                 if n.state == clients.admin_pb.NODE_STATE_ACTIVE]) == 30
                            for i in range(3)), 15)
            yield running, clients
        finally:
            clients.close()


def test_peers_share_members_nodes_and_rooms(cluster):
    running, clients = cluster
    apb = clients.admin_pb
    # Every peer sees the three with their incarnations and addresses.
    views = [clients.get_cluster(i) for i in range(3)]
    for i, view in enumerate(views):
        assert view.peer_id == f"peer-{i}"
        assert view.replication_factor == 2
        assert {p.peer_id for p in view.peers} == PEERS
        me = [p for p in view.peers if p.self]
        assert len(me) == 1 and me[0].peer_id == f"peer-{i}"
        assert me[0].grpc_address == f"127.0.0.1:{running.grpc_port(i)}"
        for p in view.peers:
            assert p.state == apb.PEER_STATE_ALIVE and p.incarnation > 0
            if not p.self:
                assert 0 <= p.last_heard_ms_ago < 1500
    incarnations = {p.peer_id: p.incarnation for p in views[0].peers}
    assert all({p.peer_id: p.incarnation for p in v.peers} == incarnations for v in views)
    # Every peer knows every node and where it is connected: the fleet spreads over all.
    homes = [{n.node_id: n.home_peer_id for n in clients.nodes(i)} for i in range(3)]
    assert homes[0] == homes[1] == homes[2]
    assert set(homes[0].values()) == PEERS

    # One room, clients calling every peer: one placement, the same from every peer.
    leases = {}
    for k in range(9):
        reply = clients.allocate(k % 3, "shared", f"c{k}", lat=40 + k, lon=-70 + 20 * k)
        assert reply.lease_id.startswith("default/shared/")
        leases[f"c{k}"] = (k, reply.lease_id, reply.node.node_id)
    def shape(room):  # what placement decided (admitted/ready flip as nodes answer)
        return ({(n.node_id, n.participants, tuple(sorted(n.relay_node_ids))) for n in room.nodes},
                {(m.client_id, m.node_id) for m in room.members})

    rooms = [clients.get_room(i, "shared") for i in range(3)]
    assert shape(rooms[0]) == shape(rooms[1]) == shape(rooms[2])
    assert {m.client_id: m.node_id for m in rooms[0].members} == \
        {c: node for c, (_, _, node) in leases.items()}
    assert cc.relays_connect(rooms[0])
    # The owner is who rendezvous hashing says; the next peer holds the replica.
    owner, replica = cc.owners_of("default/shared", PEERS, 2)
    counts = {clients.get_cluster(i).peer_id: clients.get_cluster(i) for i in range(3)}
    assert counts[owner].rooms_owned == 1
    assert counts[replica].room_replicas == 1
    # Every peer's answer names the owner, which answered (owner hints): a client that
    # follows it reaches the owner directly.
    owner_address = f"127.0.0.1:{running.grpc_port(int(owner.split('-')[1]))}"
    for k in range(3):
        placed, call = clients.alloc[k].Allocate.with_call(clients.pb.AllocateRequest(
            app_id="default", room_id="shared", client_id=f"hinted-{k}",
            location=clients.pb.ClientLocation(latitude=50, longitude=10, has_point=True)),
            timeout=5)
        assert dict(call.initial_metadata()).get("chroom-owner-address") == owner_address
        lease = placed.lease_id
        _, call = clients.alloc[int(owner.split("-")[1])].KeepAlive.with_call(
            clients.pb.KeepAliveRequest(lease_id=lease), timeout=5)
        assert dict(call.initial_metadata()).get("chroom-owner-address") == owner_address
        clients.alloc[k].Release(clients.pb.ReleaseRequest(lease_id=lease), timeout=5)
    # Leases are renewed and released through any peer.
    for client, (k, lease, _) in leases.items():
        renewed = clients.alloc[(k + 1) % 3].KeepAlive(
            clients.pb.KeepAliveRequest(lease_id=lease), timeout=5)
        assert renewed.lease_ttl_ms == 600000
    clients.alloc[2].Release(clients.pb.ReleaseRequest(lease_id=leases["c0"][1]), timeout=5)
    with pytest.raises(grpc.RpcError) as error:
        clients.alloc[1].Release(clients.pb.ReleaseRequest(lease_id=leases["c0"][1]), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        clients.alloc[0].KeepAlive(clients.pb.KeepAliveRequest(lease_id="default/nope/123"),
                                   timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert harness.wait_until(
        lambda: all(clients.get_room(i, "shared").participants == 8 for i in range(3)), 5)

    # WatchRoom through a peer that does not own the room follows it.
    not_owner = next(int(p.split("-")[1]) for p in PEERS if p not in (owner,))
    updates = []
    call = clients.alloc[not_owner].WatchRoom(
        clients.pb.WatchRoomRequest(app_id="default", room_id="shared"), timeout=10)

    def read():
        try:
            for update in call:
                updates.append(update)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    assert harness.wait_until(lambda: len(updates) >= 1, 5)
    assert updates[0].reason == "current state" and updates[0].room.participants == 8
    clients.allocate(not_owner, "shared", "late-joiner")
    assert harness.wait_until(
        lambda: any(u.reason == "joined" and u.room.participants == 9 for u in updates), 5)
    call.cancel()
    reader.join(5)


def test_operators_act_on_any_node_through_any_peer(cluster):
    running, clients = cluster
    apb = clients.admin_pb
    node = next(n.node_id for n in clients.nodes(0) if n.home_peer_id == "peer-1")

    def states():
        return [next(n.state for n in clients.nodes(i) if n.node_id == node) for i in range(3)]

    # Cordoned through a peer it is not connected to: its home does it and tells every peer.
    reply = clients.admin[0].CordonNode(apb.CordonNodeRequest(node_id=node), timeout=5)
    assert reply.node.state == apb.NODE_STATE_CORDONED and reply.node.home_peer_id == "peer-1"
    assert harness.wait_until(lambda: states() == [apb.NODE_STATE_CORDONED] * 3, 3), states()
    # No peer places anyone on it now (it is the nearest node for this client otherwise).
    info = next(n for n in clients.nodes(2) if n.node_id == node)
    for k in range(6):
        placed = clients.allocate(k % 3, f"cordon-{k}", "c", lat=info.location.latitude,
                                  lon=info.location.longitude)
        assert placed.node.node_id != node
    clients.admin[2].UncordonNode(apb.UncordonNodeRequest(node_id=node), timeout=5)
    assert harness.wait_until(lambda: states() == [apb.NODE_STATE_ACTIVE] * 3, 3), states()
    placed = clients.allocate(0, "uncordoned", "c", lat=info.location.latitude,
                              lon=info.location.longitude)
    assert placed.node.node_id == node
    # Every peer knows the room is on it (its home too, which decides when a drain ends).
    assert harness.wait_until(lambda: all(
        "default/uncordoned" in next(n.room_ids for n in clients.nodes(i) if n.node_id == node)
        for i in range(3)), 3)
    # Drained through a third peer: it is draining (it has a room) everywhere.
    reply = clients.admin[2].DrainNode(apb.DrainNodeRequest(node_id=node), timeout=5)
    assert reply.node.state == apb.NODE_STATE_DRAINING
    assert harness.wait_until(lambda: states() == [apb.NODE_STATE_DRAINING] * 3, 3), states()
    with pytest.raises(grpc.RpcError) as error:
        clients.admin[0].CordonNode(apb.CordonNodeRequest(node_id="no-such-node"), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def owned_rooms(rooms: list[str], owner: str, peers: set[str]) -> list[str]:
    return [r for r in rooms if cc.owners_of(f"default/{r}", peers, 1)[0] == owner]


def test_owner_killed_its_replica_takes_over_and_the_restart_gets_it_back(cluster):
    running, clients = cluster
    rooms = [f"r{k}" for k in range(12)]
    acknowledged = {}
    for k, room in enumerate(rooms):
        for c in range(3):
            reply = clients.allocate((k + c) % 3, room, f"{room}-c{c}")
            acknowledged[(room, f"{room}-c{c}")] = reply.lease_id
    victim = 1
    victim_rooms = owned_rooms(rooms, "peer-1", PEERS)
    assert victim_rooms, "rendezvous gave peer-1 no room of twelve"
    before = clients.get_cluster(0)
    old_incarnation = next(p.incarnation for p in before.peers if p.peer_id == "peer-1")

    running.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # Survivors see it dead (its connection dropped) and serve its rooms.
    assert harness.wait_until(lambda: clients.alive(0) == clients.alive(2) == {"peer-0", "peer-2"},
                              3)
    detected = time.monotonic() - killed_at

    def served():
        for room in victim_rooms:
            try:
                members = {m.client_id for m in clients.get_room(0, room, timeout=2).members}
            except grpc.RpcError:
                return False
            if members != {f"{room}-c{c}" for c in range(3)}:
                return False
        return True

    assert harness.wait_until(served, 5)
    recovered = time.monotonic() - killed_at
    print(f"\nkill -9 peer-1: seen dead after {detected * 1000:.0f} ms, its "
          f"{len(victim_rooms)} rooms served by another peer after {recovered * 1000:.0f} ms")
    # Leases of its rooms stay alive, renewed through the survivors.
    for (room, client), lease in acknowledged.items():
        clients.alloc[2].KeepAlive(clients.pb.KeepAliveRequest(lease_id=lease), timeout=5)
    # The new owner allocates in them.
    clients.allocate(2, victim_rooms[0], "after-failover")

    # peer-1 comes back: a new incarnation; its rooms are handed back with all members.
    running.restart(victim)
    wait_for_cluster(clients, PEERS)
    after = clients.get_cluster(0)
    assert next(p.incarnation for p in after.peers if p.peer_id == "peer-1") > old_incarnation

    def all_members_everywhere():
        for room in rooms:
            expected = {c for (r, c) in acknowledged if r == room}
            if room == victim_rooms[0]:
                expected.add("after-failover")
            for i in range(3):
                try:
                    got = {m.client_id for m in clients.get_room(i, room, timeout=2).members}
                except grpc.RpcError:
                    return False
                if got != expected:
                    return False
        return True

    assert harness.wait_until(all_members_everywhere, 10)
    view = {clients.get_cluster(i).peer_id: clients.get_cluster(i) for i in range(3)}
    assert view["peer-1"].rooms_owned == len(victim_rooms)


def test_a_call_forwarded_to_an_owner_that_dies_is_answered_by_the_next(cluster):
    running, clients = cluster
    room = next(r for r in (f"frozen-{k}" for k in range(100))
                if cc.owners_of(f"default/{r}", PEERS, 1)[0] == "peer-1")
    clients.allocate(0, room, "before")
    running.kill(1, signal.SIGSTOP, wait=False)  # frozen: the forwarded calls hang there
    try:
        started = time.monotonic()
        # No deadline: only the cluster can answer these.
        got = clients.get_room(0, room, timeout=None)
        placed = clients.allocate(2, room, "while-frozen", timeout=None)
        waited = time.monotonic() - started
        print(f"\ncalls forwarded to a frozen owner answered after {waited * 1000:.0f} ms")
        assert {m.client_id for m in got.members} == {"before"}
        assert placed.lease_id.startswith(f"default/{room}/")
        assert waited < 5
    finally:
        running.kill(1, signal.SIGCONT, wait=False)


@dataclass
class LoadStats:
    acknowledged: dict = field(default_factory=dict)  # (room, client) -> lease
    released: set = field(default_factory=set)
    calls: int = 0
    retried: int = 0
    failed: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(clients: Clients, stats: LoadStats, stop: threading.Event, seed: int, rooms: list[str],
         live_peers, retries: int = 6):
    """Allocates (and now and then releases) until `stop`; a call that fails with
    UNAVAILABLE or a deadline is retried on another peer with the same client id (the
    answer to an earlier try that got through is the same lease)."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        room = rng.choice(rooms)
        client = f"w{seed}-{n}"
        release = None
        if rng.random() < 0.15:
            with stats.lock:  # taken off the list at once: two workers never release one lease
                candidates = [k for k in stats.acknowledged if k not in stats.released]
                if candidates:
                    release = rng.choice(candidates)
                    stats.released.add(release)
        for attempt in range(retries + 1):
            peer = rng.choice(live_peers())
            try:
                with stats.lock:
                    stats.calls += 1
                if release:
                    clients.alloc[peer].Release(
                        clients.pb.ReleaseRequest(lease_id=stats.acknowledged[release]), timeout=3)
                else:
                    reply = clients.allocate(peer, room, client, timeout=3,
                                             lat=rng.uniform(-50, 60), lon=rng.uniform(-120, 140))
                    with stats.lock:
                        stats.acknowledged[(room, client)] = reply.lease_id
                break
            except grpc.RpcError as e:
                if release and e.code() == grpc.StatusCode.NOT_FOUND and attempt > 0:
                    break  # an earlier try released it
                if e.code() not in RETRYABLE or attempt == retries:
                    with stats.lock:
                        stats.failed.append((room, client, e.code(), e.details()))
                    break
                with stats.lock:
                    stats.retried += 1
                time.sleep(0.1 * (attempt + 1))
        time.sleep(0.01)


def check_rooms(clients: Clients, stats: LoadStats, rooms: list[str], peer: int = 0):
    """Acknowledged and unreleased allocations missing from GetRoom, and what is wrong with
    the rooms (parts not joined by relays, nodes over capacity)."""
    lost, problems = [], []
    per_node = {}
    for room in rooms:
        expected = {c for (r, c) in stats.acknowledged if r == room and (r, c) not in stats.released}
        try:
            got = clients.get_room(peer, room)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
            lost.extend((room, c) for c in expected)
            continue
        members = {m.client_id for m in got.members}
        lost.extend((room, c) for c in expected - members)
        if not cc.relays_connect(got):
            problems.append(f"room {room} is split without a relay: {got}")
        for node in got.nodes:
            per_node[node.node_id] = per_node.get(node.node_id, 0) + node.participants
    capacity = {n.node_id: n.capacity.max_participants for n in clients.nodes(peer)}
    reported = {n.node_id: n.load.last_stats.participants for n in clients.nodes(peer)}
    problems += [f"{node} holds {count} of {capacity[node]}" for node, count in per_node.items()
                 if count > capacity[node]]
    problems += [f"{node} reports {count} of {capacity[node]}" for node, count in reported.items()
                 if count > capacity[node]]
    return lost, problems


def test_kill_a_random_peer_every_few_seconds_under_load(tmp_path):
    """kill -9 a random peer every few seconds for a minute (restarting it), while clients
    allocate and release: every acknowledged allocation is still known afterwards."""
    chaos_s = 60.0
    rng = random.Random(5)
    # Room for every client the load can make (~12,000 in a minute on a quiet machine): a
    # full fleet revokes leases it cannot place, which is right but not what this measures.
    with cc.make_cluster(tmp_path, peers=3, nodes=30,
                         fleet_args=["--log-level", "warn", "--max-participants", "5000"]) as running:
        clients = Clients(running)
        try:
            wait_for_cluster(clients, PEERS)
            rooms = [f"chaos-{k}" for k in range(40)]
            stats = LoadStats()
            stop = threading.Event()
            down: set[int] = set()

            def live_peers():
                return [i for i in range(3) if i not in down] or [0]

            workers = [threading.Thread(target=load, args=(clients, stats, stop, s, rooms,
                                                           live_peers)) for s in range(4)]
            for w in workers:
                w.start()
            kills, failovers, recoveries = 0, 0, []
            started = time.monotonic()
            try:
                while time.monotonic() - started < chaos_s:
                    time.sleep(rng.uniform(2.0, 4.0))
                    victim = rng.randrange(3)
                    victim_id = f"peer-{victim}"
                    survivors = [i for i in range(3) if i != victim]
                    owned = owned_rooms(rooms, victim_id, PEERS)
                    with stats.lock:
                        probe = next((r for r in owned if any(k[0] == r for k in stats.acknowledged)),
                                     None)
                    down.add(victim)
                    running.kill(victim, signal.SIGKILL)
                    killed_at = time.monotonic()
                    kills += 1
                    if probe is not None:
                        failovers += 1

                        def probe_served():
                            try:
                                clients.get_room(survivors[0], probe, timeout=1)
                                return True
                            except grpc.RpcError:
                                return False

                        if harness.wait_until(probe_served, 10):
                            recoveries.append(time.monotonic() - killed_at)
                    time.sleep(rng.uniform(1.0, 2.0))
                    running.restart(victim)
                    down.discard(victim)
            finally:
                stop.set()
                for w in workers:
                    w.join(30)
            wait_for_cluster(clients, PEERS, 20)
            # Let hand-offs after the last restart settle, then compare from every peer.
            lost, problems = None, None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                checks = [check_rooms(clients, stats, rooms, peer) for peer in range(3)]
                lost = [c[0] for c in checks]
                problems = [p for c in checks for p in c[1]]
                if not any(lost) and not problems:
                    break
                time.sleep(0.5)
            acknowledged = len(stats.acknowledged)
            recovery_ms = sorted(r * 1000 for r in recoveries)
            print(f"\nchaos: {kills} kills in {chaos_s:.0f} s, {failovers} failovers of peers "
                  f"owning rooms; calls {stats.calls}, retried {stats.retried}, failed "
                  f"{len(stats.failed)}; acknowledged {acknowledged}, released "
                  f"{len(stats.released)}, lost {len(lost[0])}; time to recover "
                  + (f"median {recovery_ms[len(recovery_ms) // 2]:.0f} ms, max "
                     f"{recovery_ms[-1]:.0f} ms" if recovery_ms else "n/a"))
            assert acknowledged > 200
            assert kills >= 10
            assert lost == [[], [], []], lost
            assert problems == [], problems[:5]
            assert not stats.failed, stats.failed[:10]
        finally:
            clients.close()


def test_graceful_leave_and_join_under_load(tmp_path):
    """SIGTERM a peer (it hands its rooms off, then leaves), start it again (it joins and
    takes its rooms back), and a new peer joins: no client call fails beyond retries."""
    with cc.make_cluster(tmp_path, peers=3, nodes=30) as running:
        running.stop_peer(2)  # peer-2 is the one that joins later
        clients = Clients(running)
        try:
            wait_for_cluster(clients, {"peer-0", "peer-1"})
            rooms = [f"calm-{k}" for k in range(30)]
            stats = LoadStats()
            stop = threading.Event()
            up = {0, 1}
            workers = [threading.Thread(target=load, args=(clients, stats, stop, s, rooms,
                                                           lambda: sorted(up)))
                       for s in range(4)]
            for w in workers:
                w.start()
            try:
                time.sleep(3)
                running.restart(2)  # joins
                wait_for_cluster(clients, PEERS)
                up.add(2)
                time.sleep(3)
                up.discard(1)
                running.stop_peer(1)  # leaves gracefully
                assert harness.wait_until(lambda: clients.alive(0) == {"peer-0", "peer-2"}, 5)
                view = clients.get_cluster(0)
                assert next(p.state for p in view.peers if p.peer_id == "peer-1") == \
                    clients.admin_pb.PEER_STATE_LEFT
                time.sleep(3)
                running.restart(1)
                up.add(1)
                wait_for_cluster(clients, PEERS)
                time.sleep(3)
            finally:
                stop.set()
                for w in workers:
                    w.join(30)
            lost, problems = None, None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                lost, problems = check_rooms(clients, stats, rooms)
                if not lost and not problems:
                    break
                time.sleep(0.5)
            print(f"\nleave/join: calls {stats.calls}, retried {stats.retried}, failed "
                  f"{len(stats.failed)}, acknowledged {len(stats.acknowledged)}, lost {len(lost)}")
            assert stats.failed == []
            assert lost == []
            assert problems == [], problems[:5]
            assert len(stats.acknowledged) > 100
        finally:
            clients.close()


def make_ca_and_cert(directory, name: str):
    """A CA and a certificate it signed (PEM files), with the openssl command line."""
    import subprocess
    ca_key, ca = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    run = lambda *args: subprocess.run(["openssl", *map(str, args)], check=True,  # noqa: E731
                                       capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", f"/CN={name} test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
        f"/CN={name}")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2")
    return {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca)}


def test_peers_talk_tls_and_refuse_a_peer_of_another_ca(tmp_path):
    tls = make_ca_and_cert(tmp_path, "chroom-peers")
    with cc.make_cluster(tmp_path / "cluster", peers=2, nodes=10, cluster_settings=tls) as running:
        clients = Clients(running)
        try:
            wait_for_cluster(clients, {"peer-0", "peer-1"})
            for k in range(6):
                clients.allocate(k % 2, "tls-room", f"c{k}")
            assert {m.client_id for m in clients.get_room(1, "tls-room").members} == \
                {f"c{k}" for k in range(6)}
            # A peer whose certificate another CA signed is not let in, and does not get in.
            rogue_tls = make_ca_and_cert(tmp_path, "rogue")
            rogue_tls["ca_file"] = tls["ca_file"]  # it trusts the cluster: the cluster must not trust it
            config = tmp_path / "rogue.yaml"
            port = harness.free_port()
            config.write_text(harness.to_yaml({
                "listen": {"host": "127.0.0.1", "port": port}, "peer_id": "rogue",
                "media_nodes": {"secret_key": "local-demo-secret-key-not-for-production"},
                "cluster": {"listen_port": harness.free_port(),
                            "seeds": [f"127.0.0.1:{running.cluster_port(0)}"],
                            "failure_timeout_ms": 1000, **rogue_tls}}))
            import subprocess
            rogue = subprocess.Popen([str(harness.BIN_DIR / "chroom-orchestrator"), "--config",
                                      str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                time.sleep(3)
                names = lambda i: {p.peer_id for p in clients.get_cluster(i).peers}  # noqa: E731
                assert "rogue" not in names(0) and "rogue" not in names(1)
            finally:
                rogue.terminate()
                rogue.wait(10)
            wait_for_cluster(clients, {"peer-0", "peer-1"})
        finally:
            clients.close()
