#!/usr/bin/python3
"""What a simulated fleet costs: CPU and RSS of chroom-node-sim (and of the orchestrator
it talks to) at steady state, all nodes registered and sending Stats every second.

  /usr/bin/python3 tools/node_sim/measure.py --nodes 10000
  /usr/bin/python3 tools/node_sim/measure.py --nodes 10000 \
      --orchestrator build/release/bin/chroom-orchestrator

Without --orchestrator it runs against fake_orchestrator.py. CPU is read from
/proc/PID/stat (user + system) over --seconds after a --warmup; "% of a core" is that CPU
time over wall time. Loopback only; every wait is bounded.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SECRET = "measure-secret-key-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--sim", default=os.path.join(ROOT, "build", "release", "bin",
                                                 "chroom-node-sim"))
    p.add_argument("--orchestrator", help="a chroom-orchestrator binary (default: the fake)")
    p.add_argument("--warmup", type=float, default=12)
    p.add_argument("--seconds", type=float, default=25)
    args = p.parse_args()

    children = []
    config = None
    try:
        if args.orchestrator:
            port = free_port()
            config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            config.write(f'listen: {{host: 127.0.0.1, port: {port}}}\n'
                         f'media_nodes: {{secret_key: "{SECRET}", stats_interval_ms: 1000}}\n')
            config.close()
            orchestrator = subprocess.Popen([args.orchestrator, "--config", config.name],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            if orchestrator.poll() is not None:
                sys.exit(f"orchestrator exited with {orchestrator.returncode}")
        else:
            orchestrator = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "fake_orchestrator.py"), "--port", "0",
                 "--secret-key", SECRET], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True)
            port = int(orchestrator.stdout.readline().split()[1])  # "ready PORT"
        children.append(orchestrator)
        sim = subprocess.Popen(
            [args.sim, "--target", f"127.0.0.1:{port}", "--nodes", str(args.nodes),
             "--secret-key", SECRET, "--log-level", "warn"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        children.append(sim)
        time.sleep(args.warmup)
        sim.stdin.write("status\n")
        sim.stdin.flush()
        print("status before:", sim.stdout.readline().strip())
        sim_start, orch_start, t0 = cpu_seconds(sim.pid), cpu_seconds(orchestrator.pid), \
            time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        sim_cpu = (cpu_seconds(sim.pid) - sim_start) / elapsed * 100
        orch_cpu = (cpu_seconds(orchestrator.pid) - orch_start) / elapsed * 100
        sim.stdin.write("status\n")
        sim.stdin.flush()
        print("status after: ", sim.stdout.readline().strip())
        name = "chroom-orchestrator" if args.orchestrator else "fake_orchestrator.py"
        print(f"nodes={args.nodes} chroom-node-sim: {sim_cpu:.0f}% of a core, "
              f"RSS {rss_mb(sim.pid):.0f} MB, threads {len(os.listdir(f'/proc/{sim.pid}/task'))}"
              f" | {name}: {orch_cpu:.0f}% of a core")
        sim.stdin.write("quit\n")
        sim.stdin.flush()
        sim.wait(timeout=15)
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        if config is not None:
            os.unlink(config.name)


if __name__ == "__main__":
    main()
