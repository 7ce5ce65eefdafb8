"""Network namespaces for cluster tests: a bridge in the root namespace and N namespaces,
each joined to it by a veth pair, so that each process started inside a namespace has its
own address (and its own port space) and its own iptables, for cutting links on purpose.

    with NetnsLab(3) as lab:                # bridge 10.213.X.254/24, hosts .1 .2 .3
        lab.address(0)                      # "10.213.X.1"
        proc = lab.popen(0, [binary, ...])  # runs inside namespace 0
        lab.block(0, [lab.address(1), lab.address(2)])   # namespace 0 drops .2 and .3
        lab.unblock(0)

Everything is named after the creating process's pid, so parallel runs do not collide;
every command is bounded in time; cleanup (close()) is idempotent and also runs at exit.
Needs root and iproute2 with `ip netns`; `available()` says why not when it cannot work.
"""
from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from typing import Optional, Sequence

# Bound on one `ip`/`iptables` command.
COMMAND_TIMEOUT_S = 10.0
# Private /16 the test subnets are taken from (one /24 per lab).
SUBNET_BASE = "10.213"


class NetnsError(RuntimeError):
    pass


def run(args: Sequence[str], check: bool = True,
        timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed with {proc.returncode}: "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def available() -> Optional[str]:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, bridge, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    try:
        proc = run(["ip", "netns", "list"], check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns list` failed: {e}"
    if proc.returncode != 0:
        return f"`ip netns list` failed: {proc.stderr.strip()}"
    # A throwaway namespace proves we may create them (a container may forbid it).
    probe = f"chprobe{os.getpid()}"
    try:
        made = run(["ip", "netns", "add", probe], check=False)
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        ipt = run(["ip", "netns", "exec", probe, "iptables", "-S"], check=False)
        if ipt.returncode != 0:
            return f"iptables inside a namespace failed: {ipt.stderr.strip()}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def _used_subnets() -> set[str]:
    """The /24s (as "a.b.c") of every IPv4 address and route in the root namespace."""
    used: set[str] = set()
    for args in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show"]):
        out = run(args, check=False).stdout
        for token in out.replace("/", " ").split():
            with contextlib.suppress(ValueError):
                addr = ipaddress.IPv4Address(token)
                used.add(".".join(str(addr).split(".")[:3]))
    return used


class NetnsLab:
    """A bridge in the root namespace and `count` namespaces hanging off it."""

    def __init__(self, count: int, tag: Optional[str] = None):
        self.count = count
        pid = os.getpid()
        tag = tag or str(pid)
        # Interface names are at most 15 characters: "ch" + kind + pid (up to 7) + index.
        self.bridge = f"chbr{tag}"
        self.namespaces = [f"chns{tag}n{i}" for i in range(count)]
        self.host_ifs = [f"chvh{tag}n{i}" for i in range(count)]
        self.ns_ifs = [f"chvn{tag}n{i}" for i in range(count)]
        self.subnet: Optional[str] = None     # "10.213.X"
        self._procs: list[subprocess.Popen] = []
        self._closed = False
        self._made_bridge = False
        self._made_ns: list[str] = []
        atexit.register(self.close)

    # ---- addresses
    def address(self, i: int) -> str:
        """Namespace i's address: .1, .2, ..."""
        assert self.subnet is not None
        return f"{self.subnet}.{i + 1}"

    @property
    def host_address(self) -> str:
        """The root namespace's address on the bridge."""
        assert self.subnet is not None
        return f"{self.subnet}.254"

    def _pick_subnet(self) -> str:
        used = _used_subnets()
        start = os.getpid() % 200
        for k in range(200):
            candidate = f"{SUBNET_BASE}.{(start + k) % 200 + 20}"
            if candidate not in used:
                return candidate
        raise NetnsError(f"no free /24 in {SUBNET_BASE}.20-219.0/24")

    # ---- lifecycle
    def create(self) -> "NetnsLab":
        try:
            self.subnet = self._pick_subnet()
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._made_bridge = True
            run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge])
            run(["ip", "link", "set", self.bridge, "up"])
            for i in range(self.count):
                ns, host_if, ns_if = self.namespaces[i], self.host_ifs[i], self.ns_ifs[i]
                run(["ip", "netns", "add", ns])
                self._made_ns.append(ns)
                run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if])
                run(["ip", "link", "set", host_if, "master", self.bridge])
                run(["ip", "link", "set", host_if, "up"])
                run(["ip", "link", "set", ns_if, "netns", ns])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
                run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", ns_if])
                run(["ip", "-n", ns, "link", "set", ns_if, "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> "NetnsLab":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()

    def popen(self, i: int, args: Sequence[str], **kw) -> subprocess.Popen:
        """Starts args inside namespace i (`ip netns exec` execs it: the pid is the program's)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespaces[i], *args], **kw)
        self._procs.append(proc)
        return proc

    def ns_pids(self, i: int) -> list[int]:
        """Processes running in namespace i."""
        proc = run(["ip", "netns", "pids", self.namespaces[i]], check=False)
        return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []

    # ---- cutting links
    def block(self, i: int, addresses: Sequence[str]) -> None:
        """Namespace i drops every packet from and to `addresses` (both directions)."""
        ns = self.namespaces[i]
        for addr in addresses:
            run(["ip", "netns", "exec", ns, "iptables", "-w", "5", "-A", "INPUT", "-s", addr,
                 "-j", "DROP"])
            run(["ip", "netns", "exec", ns, "iptables", "-w", "5", "-A", "OUTPUT", "-d", addr,
                 "-j", "DROP"])

    def unblock(self, i: int) -> None:
        """Flushes namespace i's filter rules."""
        run(["ip", "netns", "exec", self.namespaces[i], "iptables", "-w", "5", "-F"])

    def rules(self, i: int) -> str:
        return run(["ip", "netns", "exec", self.namespaces[i], "iptables", "-S"],
                   check=False).stdout

    # ---- cleanup
    def _stop_procs(self) -> None:
        """Kills the processes this lab started that still run (a backstop: callers stop
        their own processes properly first)."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def leftovers(self) -> list[str]:
        """What of this lab still exists (after close(): should be nothing)."""
        out = []
        listed = run(["ip", "netns", "list"], check=False).stdout.split()
        out += [f"namespace {ns}" for ns in self.namespaces if ns in listed]
        links = run(["ip", "-o", "link", "show"], check=False).stdout
        for name in [self.bridge, *self.host_ifs]:
            if f" {name}:" in links or f" {name}@" in links:
                out.append(f"link {name}")
        out += [f"process {p.pid} ({p.args})" for p in self._procs if p.poll() is None]
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors = []
        with contextlib.suppress(Exception):
            self._stop_procs()
        for ns in self._made_ns:
            # A process started in the namespace by someone else would keep its network
            # alive; ours are gone. Deleting the namespace deletes its veth end, and so the pair.
            proc = run(["ip", "netns", "del", ns], check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        for host_if in self.host_ifs:
            run(["ip", "link", "del", host_if], check=False)  # normally gone already
        if self._made_bridge:
            proc = run(["ip", "link", "del", self.bridge], check=False)
            if proc.returncode != 0:
                errors.append(f"ip link del {self.bridge}: {proc.stderr.strip()}")
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if errors:
            raise NetnsError("; ".join(errors))


def wait_gone(proc: subprocess.Popen, timeout: float) -> Optional[int]:
    """Waits up to timeout for proc to exit; its exit code, or None when still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.02)
    return proc.poll()
