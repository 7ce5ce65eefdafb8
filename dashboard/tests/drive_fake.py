#!/usr/bin/env python3
"""The browser check of tests/integration/test_dashboard.py, against fake_server.py instead
of the daemon: for working on the page alone (docs/dashboard.md).

    python3 dashboard/tests/drive_fake.py --assets build/dashboard-dev [--nodes 2000]

Starts the fake server, runs drive.mjs on it, crashes one node, cuts the event stream for
5 s, and prints drive.mjs's JSON lines; exits 0 when the page showed every node, then the
crash, then "disconnected" and "live" again, without a reload.
The screenshot goes to --screenshot (default /tmp/chroom-dashboard-fake.png).
"""
from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{proc.args[0]} exited ({proc.poll()})")
            return line.strip()
    raise RuntimeError(f"no line from {proc.args[:2]} within {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", required=True)
    ap.add_argument("--nodes", type=int, default=60)
    ap.add_argument("--victim", default="sim-00003")
    ap.add_argument("--screenshot", default="/tmp/chroom-dashboard-fake.png")
    args = ap.parse_args()
    fake = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), "--assets", args.assets,
                             "--port", "0", "--nodes", str(args.nodes)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    drive = None
    try:
        url = read_line(fake, 10).split()[-1]
        drive = subprocess.Popen(["node", str(HERE / "drive.mjs"), url, "--expect-nodes",
                                  str(args.nodes), "--screenshot", args.screenshot],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = json.loads(read_line(drive, 60))
        print(json.dumps(ready))
        if ready["event"] != "ready":
            return 1
        fake.stdin.write(f"crash {args.victim}\n")
        fake.stdin.flush()
        print(read_line(fake, 5))
        drive.stdin.write(f"watch {args.victim}\n")
        drive.stdin.flush()
        result = json.loads(read_line(drive, 60))
        print(json.dumps(result))
        ok = (result["event"] == "result" and not result["reloaded"] and not result["errors"])
        # The stream goes down (503 for a while): the badge says so, then the page reconnects.
        fake.stdin.write("pause-sse 5\n")
        fake.stdin.flush()
        print(read_line(fake, 5))
        for status in ("disconnected", "live"):
            drive.stdin.write(f"expect-status {status}\n")
            drive.stdin.flush()
            reply = json.loads(read_line(drive, 60))
            print(json.dumps(reply))
            ok = ok and reply["event"] == "status" and not reply["reloaded"]
        drive.stdin.write("quit\n")
        drive.stdin.flush()
        return 0 if ok and drive.wait(timeout=15) == 0 else 1
    finally:
        for proc in (drive, fake):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
