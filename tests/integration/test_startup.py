"""Start-up of the real binary: command line, configuration errors, log formats."""

import contextlib
import json
import socket
import subprocess

import chroom_harness as harness

# A start-up that fails must fail fast; one that succeeds is stopped by the test.
EXIT_TIMEOUT_S = 10
# Peers the tests start take any free admin HTTP port (the default one may be taken).
ANY_ADMIN_PORT = "admin: {http: {port: 0}}\n"


@contextlib.contextmanager
def peer_logging_to_file(tmp_path, config_text: str, *args: str):
    """A peer started on `config_text` (and `args`) with its stderr in tmp_path/stderr.log,
    handed over once it logged "peer ready"; stopped with SIGTERM afterwards, which it must
    end with exit code 0."""
    config = tmp_path / "peer.yaml"
    config.write_text(config_text)
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([str(harness.ORCHESTRATOR), "--config", str(config), *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=tmp_path)
    try:
        assert harness.wait_until(lambda: "peer ready" in stderr_path.read_text(), timeout=10)
        yield stderr_path
    finally:
        proc.terminate()
        assert proc.wait(timeout=EXIT_TIMEOUT_S) == 0


def run_orchestrator(args, cwd):
    return subprocess.run([str(harness.ORCHESTRATOR), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=EXIT_TIMEOUT_S, stdin=subprocess.DEVNULL)


def test_unknown_key_names_key_line_and_suggestion(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("listen:\n  host: 127.0.0.1\nlimits:\n  max_mesage_bytes: 10\n")
    result = run_orchestrator(["--config", str(config)], tmp_path)
    assert result.returncode == 2, result
    assert f"{config}:4: limits.max_mesage_bytes: unknown key" in result.stderr
    assert "max_message_bytes" in result.stderr


def test_bad_value_names_key_and_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("# comment\nlisten: {port: 70000}\n")
    result = run_orchestrator(["--config", str(config)], tmp_path)
    assert result.returncode == 2, result
    assert f"{config}:2: listen.port" in result.stderr
    assert "70000" in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run_orchestrator(["--config", str(tmp_path / "nope.yaml")], tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_bad_log_level_flag_is_rejected(tmp_path):
    result = run_orchestrator(["--log-level", "loud"], tmp_path)
    assert result.returncode == 2
    assert "log.level" in result.stderr and "loud" in result.stderr


def test_unknown_argument_prints_usage(tmp_path):
    result = run_orchestrator(["--frobnicate"], tmp_path)
    assert result.returncode == 2
    assert "unknown argument '--frobnicate'" in result.stderr
    assert "usage: chroom-orchestrator" in result.stderr


def test_help_exits_zero(tmp_path):
    result = run_orchestrator(["--help"], tmp_path)
    assert result.returncode == 0
    assert "--config FILE" in result.stdout


def test_port_in_use_fails_with_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind((harness.LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "busy.yaml"
        config.write_text(f"listen: {{host: 127.0.0.1, port: {port}}}\n")
        result = run_orchestrator(["--config", str(config)], tmp_path)
    assert result.returncode == 1, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_json_log_lines_are_json(tmp_path):
    port = harness.free_port()
    with peer_logging_to_file(tmp_path, f"listen: {{host: 127.0.0.1, port: {port}}}\n"
                              f"shutdown_grace_ms: 500\n{ANY_ADMIN_PORT}",
                              "--log-format", "json") as stderr_path:
        pass
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    assert len(lines) >= 3
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "msg"} <= set(records[0])
    assert any(f"127.0.0.1:{port}" in r["msg"] for r in records)
    assert records[-1]["msg"] == "stopped"


def test_an_unusable_data_dir_stops_the_start_with_the_reason(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    config = tmp_path / "data.yaml"
    config.write_text(f"listen: {{host: 127.0.0.1, port: {harness.free_port()}}}\n"
                      f"data_dir: {blocker / 'store'}\n")
    result = run_orchestrator(["--config", str(config)], tmp_path)
    assert result.returncode == 1
    assert "app store: cannot create" in result.stderr and str(blocker) in result.stderr


def test_the_data_dir_defaults_to_chroom_data_of_the_peer(tmp_path):
    with peer_logging_to_file(tmp_path, f"listen: {{host: 127.0.0.1, port: {harness.free_port()}}}\n"
                              f"peer_id: store-peer\nshutdown_grace_ms: 500\n{ANY_ADMIN_PORT}"):
        pass
    database = tmp_path / "chroom-data" / "store-peer" / "apps.db"
    assert database.is_file()
    assert database.stat().st_mode & 0o077 == 0, oct(database.stat().st_mode)


def test_a_fleet_starting_is_summed_up_not_listed_node_by_node(tmp_path):
    """At info (the default level) a peer with a fleet says how many nodes are active and
    where, at most once a second, instead of a line per node and state change."""
    from datetime import datetime
    nodes, secret_key = 40, "startup-fleet-secret-key-0123"
    port = harness.free_port()
    with peer_logging_to_file(tmp_path, f"listen: {{host: 127.0.0.1, port: {port}}}\n"
                              f"shutdown_grace_ms: 500\n"
                              f"media_nodes: {{secret_key: {secret_key}, stats_interval_ms: 200}}\n"
                              f"{ANY_ADMIN_PORT}", "--log-format", "json") as stderr_path:
        fleet = harness.NodeSim(f"127.0.0.1:{port}", nodes, secret_key)
        try:
            assert harness.wait_until(
                lambda: f"fleet: {nodes} nodes active: " in stderr_path.read_text(), timeout=30), \
                stderr_path.read_text()[-3000:]
        finally:
            assert fleet.quit() == 0
    records = [json.loads(line) for line in stderr_path.read_text().splitlines() if line.strip()]
    messages = [r["msg"] for r in records]
    # No line per node: registrations and state changes are debug.
    assert not [m for m in messages if m.startswith(("registry: node", "media node"))], messages
    summaries = [r for r in records if r["msg"].startswith("fleet: ")]
    final = next(r["msg"] for r in summaries if r["msg"].startswith(f"fleet: {nodes} nodes"))
    # The simulator's nodes are in regions; each named with its count, the counts add up.
    named, _, rest = final.split(": ", 2)[2].split(";")[0].partition(" and ")
    total = sum(int(c.rsplit(" ", 1)[1]) for c in named.split(", "))
    assert total + (int(rest.split()[0]) if rest else 0) == nodes, final
    assert "suspect" not in final and "joining" not in final, final
    times = [datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%f%z") for r in summaries]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(gap >= 0.99 for gap in gaps), gaps
