#!/usr/bin/python3
"""Smoke test of chroom-node-sim against the fake orchestrator (fake_orchestrator.py).

  /usr/bin/python3 tools/node_sim/smoke_test.py [--sim PATH] [--nodes 50]

Starts the fake orchestrator and a fleet of 50 nodes, then checks: registrations with
HMAC credentials, Stats arriving, commands acknowledged and refused (full, draining),
RemoveParticipant (protocol 1.1: frees the place, no ParticipantLeft, idempotent),
participants leaving by themselves (events), crash/restart, freeze/thaw, flap with
reconciliation, slow acks, a stream ended with UNAVAILABLE (reconnect) and with
UNAUTHENTICATED (give up), a fleet with a wrong secret, and a clean quit. Exits 0 when all
passed; prints "N passed, N failed".
"""
import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SECRET = "smoke-secret"
# Every wait is bounded: a hang fails the test instead of blocking CI.
WAIT_S = 15


def find_simulator(explicit):
    if explicit:
        return explicit
    for build in ("release", "debug", "helper-sim", "asan"):
        path = os.path.join(ROOT, "build", build, "bin", "chroom-node-sim")
        if os.path.exists(path):
            return path
    sys.exit("chroom-node-sim not found under build/*/bin; pass --sim PATH")


class Process:
    """A child speaking a line protocol: commands on stdin, one reply line each on stdout."""

    def __init__(self, name, argv):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))

    def read_line(self, timeout=WAIT_S):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no output within {timeout} s") from None

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read_line()

    def ask_json(self, command):
        reply = self.ask(command)
        if reply.startswith("ok "):
            reply = reply[3:]
        try:
            return json.loads(reply)
        except json.JSONDecodeError:
            raise AssertionError(f"{self.name}: '{command}' answered {reply!r}") from None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def wait_until(what, predicate, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, body):
        try:
            body()
            self.passed += 1
            print(f"PASS {name}", flush=True)
        except (AssertionError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
            # OSError: a broken pipe when a child died; ValueError/KeyError: bad JSON.
            self.failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", help="path to chroom-node-sim")
    parser.add_argument("--nodes", type=int, default=50)
    args = parser.parse_args()
    sim_path = find_simulator(args.sim)
    n = args.nodes

    fake = Process("fake", [sys.executable, os.path.join(HERE, "fake_orchestrator.py"),
                            "--port", "0", "--secret-key", SECRET, "--stats-interval-ms", "200",
                            "--deadline-ms", "2000"])
    sims = [fake]
    checks = Checks()
    try:
        ready = fake.read_line(timeout=30)
        assert ready.startswith("ready "), ready
        target = f"127.0.0.1:{ready.split()[1]}"
        sim = Process("sim", [sim_path, "--target", target, "--nodes", str(n),
                              "--secret-key", SECRET, "--seed", "7", "--max-participants", "20",
                              "--mean-session-s", "4", "--connections", "3",
                              "--log-level", "warn"])
        sims.append(sim)

        def registered():
            status = sim.ask_json("status")
            assert status["nodes"] == n, status
            wait_until(f"{n} registered", lambda: sim.ask_json("status")["registered"] == n)
            wait_until("fake sees them", lambda: fake.ask_json("status")["registered"] == n)
            assert fake.ask_json("status")["rejected"] == 0
        checks.run("all nodes register with HMAC credentials", registered)

        def stats_arrive():
            wait_until("stats from every node", lambda: fake.ask_json("status")["stats"] >= 3 * n)
            info = fake.ask_json("node sim-00010")
            reg = info["register"]
            assert reg["software_version"].startswith("chroom-node-sim "), reg
            assert reg["protocol_version"] == "1.1", reg
            assert len(reg["country"]) == 2, reg
            assert "-" in reg["region"] or reg["region"] == "oceania", reg
            assert reg["max_participants"] == 20 and "opus" in reg["codecs"], reg
            assert info["stats"]["cpu_load"] > 0 and len(info["stats"]["peer_rtts"]) == 4, info
        checks.run("stats arrive with a plausible register", stats_arrive)

        def commands():
            assert fake.ask("prepare sim-00001 r1").startswith("ok prepare_room")
            for p in range(3):
                assert fake.ask(f"admit sim-00001 r1 p{p}").startswith("ok admit_participant")
            assert fake.ask("ping sim-00002").startswith("ok ping")
            wait_until("5 acks", lambda: fake.ask_json("status")["acks"] >= 5)
            node = sim.ask_json("node sim-00001")
            rooms = {r["room_id"]: r for r in node["rooms"]}
            # Up to 3: with a 4 s mean session one may already have left.
            assert "r1" in rooms and rooms["r1"]["participants"] <= 3, node
            wait_until("stats show the room",
                       lambda: fake.ask_json("node sim-00001")["stats"]["rooms"] == 1)
        checks.run("commands are acknowledged and reflected in stats", commands)

        def refusals():
            fake.ask("prepare sim-00003 big")
            for p in range(21):
                fake.ask(f"admit sim-00003 big q{p}")
            wait_until("a REASON_FULL nack",
                       lambda: fake.ask_json("status")["nack_reasons"].get("REASON_FULL", 0) >= 1)
            fake.ask("drain sim-00004")
            fake.ask("prepare sim-00004 late")
            wait_until("a REASON_DRAINING nack",
                       lambda: fake.ask_json("status")["nack_reasons"].get("REASON_DRAINING"))
            fake.ask("admit sim-00005 nowhere p")
            wait_until("a REASON_NOT_FOUND nack",
                       lambda: fake.ask_json("status")["nack_reasons"].get("REASON_NOT_FOUND"))
        checks.run("full, draining and unknown-room commands are refused", refusals)

        def remove_participant():
            def settled():
                return fake.ask_json("status")["pending"] == 0

            def left():
                return fake.ask_json("node sim-00014")["left"]

            def participants_in_rm():
                rooms = {r["room_id"]: r for r in sim.ask_json("node sim-00014")["rooms"]}
                assert "rm" in rooms, rooms
                return rooms["rm"]["participants"]

            wait_until("earlier commands settled", settled)
            nacks = fake.ask_json("status")["nacks"]
            fake.ask("prepare sim-00014 rm")
            fake.ask("admit sim-00014 rm keep")
            fake.ask("admit sim-00014 rm gone")
            assert fake.ask("remove sim-00014 rm gone").startswith("ok remove_participant")
            wait_until("all acked", settled)
            # Sessions are short (mean 4 s): "keep" may have left by itself meanwhile, and
            # so may "gone" before the remove arrived; either way "gone" is no longer there.
            gone_left_by_itself = "rm/gone" in left()
            time.sleep(0.5)  # a few Stats ticks, when an expiry would be reported
            # The sim's count first, the fake's events second: an event may lag the count,
            # never lead it, so a retry settles a mismatch.
            wait_until("only 'keep' in the room (or nobody, if it left by itself)",
                       lambda: participants_in_rm() == (0 if "rm/keep" in left() else 1))
            # Removed by the orchestrator: no event for it, not even at later ticks.
            assert left().count("rm/gone") == int(gone_left_by_itself), left()
            # Idempotent: again, an unknown participant and an unknown room are all acked.
            acks = fake.ask_json("status")["acks"]
            fake.ask("remove sim-00014 rm gone")
            fake.ask("remove sim-00014 rm nobody")
            fake.ask("remove sim-00014 no-such-room gone")
            wait_until("3 more acks", lambda: fake.ask_json("status")["acks"] >= acks + 3)
            assert fake.ask_json("status")["nacks"] == nacks
        checks.run("RemoveParticipant frees the place without an event, idempotently",
                   remove_participant)

        def departures():
            # Mean session 4 s: within a few seconds some of sim-00003's 20 leave.
            wait_until("participant_left events",
                       lambda: fake.ask_json("status")["participant_left"] >= 3)
        checks.run("participants leave by themselves", departures)

        def crash_restart():
            acks = fake.ask_json("status")["acks"]
            fake.ask("prepare sim-00006 r6")
            wait_until("r6 acked", lambda: fake.ask_json("status")["acks"] > acks)
            assert sim.ask("crash sim-00006") == "ok crash sim-00006"
            assert sim.ask_json("status")["down"] == 1
            wait_until("fake loses it", lambda: fake.ask_json("status")["connected"] == n - 1)
            assert sim.ask("crash sim-00006").startswith("error ")
            assert sim.ask("restart sim-00006") == "ok restart sim-00006"
            wait_until("it is back", lambda: sim.ask_json("status")["registered"] == n)
            reg = fake.ask_json("node sim-00006")["register"]
            assert "r6" in reg["rooms"], reg  # restart keeps the rooms by default
            assert sim.ask("crash sim-00006") == "ok crash sim-00006"
            assert sim.ask("restart sim-00006 fresh") == "ok restart sim-00006 fresh"
            wait_until("back fresh", lambda: sim.ask_json("status")["registered"] == n)
            reg = fake.ask_json("node sim-00006")["register"]
            assert reg["rooms"] == {}, reg
            assert sim.ask("restart sim-00006").startswith("error ")  # not down
            assert sim.ask("crash nobody").startswith("error unknown node")
            assert sim.ask("bogus").startswith("error unknown command")
            assert sim.ask("flap sim-00001 soon").startswith("error usage")
        checks.run("crash and restart (keeping rooms, then fresh)", crash_restart)

        def freeze_thaw():
            assert sim.ask("freeze sim-00007") == "ok freeze sim-00007"
            time.sleep(0.3)  # let a Stats in flight land
            before = fake.ask_json("node sim-00007")["stats"]
            fake.ask("ping sim-00007")
            time.sleep(1.0)  # five stats intervals
            assert fake.ask_json("node sim-00007")["stats"] == before, "frozen node sent Stats"
            assert fake.ask_json("status")["pending"] >= 1, "frozen node acked"
            assert sim.ask_json("status")["frozen"] == 1
            assert sim.ask("thaw sim-00007") == "ok thaw sim-00007"
            wait_until("the ping acked after thaw", lambda: fake.ask_json("status")["pending"] == 0)
            assert sim.ask("freeze sim-00008 0.5").startswith("ok freeze sim-00008")
            wait_until("timed thaw", lambda: sim.ask_json("status")["frozen"] == 0)
        checks.run("freeze and thaw", freeze_thaw)

        def flap():
            before = fake.ask_json("status")["registrations"]
            assert sim.ask("flap sim-00001 300") == "ok flap sim-00001 300"
            wait_until("re-registration",
                       lambda: fake.ask_json("status")["registrations"] > before)
            wait_until("registered", lambda: sim.ask_json("status")["registered"] == n)
            reg = fake.ask_json("node sim-00001")["register"]
            assert "r1" in reg["rooms"], reg  # reconciled: it kept the room it hosts
            assert "r1" in {r["room_id"] for r in sim.ask_json("node sim-00001")["rooms"]}
        checks.run("flap reconnects and re-registers with its rooms", flap)

        def slow_acks():
            assert sim.ask("slow-acks sim-00009 700") == "ok slow-acks sim-00009 700"
            fake.ask("ping sim-00009")
            time.sleep(0.3)
            assert fake.ask_json("status")["pending"] == 1, "ack came too early"
            wait_until("the slow ack", lambda: fake.ask_json("status")["pending"] == 0, timeout=3)
            sim.ask("slow-acks sim-00009 0")
        checks.run("slow acks", slow_acks)

        def stream_errors():
            before = fake.ask_json("status")["registrations"]
            assert fake.ask("kick sim-00011 UNAVAILABLE going away").startswith("ok kick")
            wait_until("reconnect after UNAVAILABLE",
                       lambda: fake.ask_json("status")["registrations"] > before)
            wait_until("registered", lambda: sim.ask_json("status")["registered"] == n)
            assert fake.ask("kick sim-00012 UNAUTHENTICATED revoked").startswith("ok kick")
            wait_until("gave up", lambda: sim.ask_json("status")["errors"] == 1)
            status = sim.ask_json("status")
            assert status["gave_up"] == 1 and status["down"] == 1, status
            node = sim.ask_json("node sim-00012")
            assert node["down_reason"] == "gave_up", node
        checks.run("UNAVAILABLE reconnects, UNAUTHENTICATED gives up", stream_errors)

        def wrong_secret():
            bad = Process("bad-sim", [sim_path, "--target", target, "--nodes", "3",
                                      "--id-prefix", "bad", "--secret-key", "wrong",
                                      "--duration-s", "2", "--status-interval-s", "1",
                                      "--log-level", "off"])
            sims.append(bad)
            bad.proc.wait(timeout=WAIT_S)
            assert bad.proc.returncode == 0, bad.proc.returncode
            last = None
            while not bad.lines.empty():
                last = json.loads(bad.lines.get())
            assert last and last["errors"] == 3 and last["registrations"] == 0, last
        checks.run("a wrong secret makes every node give up", wrong_secret)

        def quit_cleanly():
            start = time.monotonic()
            sim.proc.stdin.write("quit\n")
            sim.proc.stdin.flush()
            assert sim.read_line() == "ok quit"
            assert sim.proc.wait(timeout=WAIT_S) == 0
            assert time.monotonic() - start < 5, "quit took too long"
            # WritesDone ended every stream with OK on the fake's side.
            wait_until("streams closed", lambda: fake.ask_json("status")["connected"] == 0)
        checks.run("quit ends every stream and exits 0", quit_cleanly)
    except (AssertionError, OSError) as error:
        checks.failed += 1
        print(f"FAIL setup: {type(error).__name__}: {error}", flush=True)
    finally:
        for process in reversed(sims):
            process.stop()
    if checks.failed:
        for process in sims[1:]:
            tail = "\n".join(process.stderr[-20:])
            print(f"--- {process.name} stderr (last lines) ---\n{tail}", flush=True)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
