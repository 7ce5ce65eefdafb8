"""Runs the grpc++ client tests (grpcpp_client_test.cpp) against an h2c and a TLS peer."""
from __future__ import annotations

import os
import subprocess

import pytest

import chroom_harness as h


def test_grpcpp_client(start_server, tls_cert):
    if not h.GRPCPP_CLIENT_TESTS.exists():
        pytest.fail(f"{h.GRPCPP_CLIENT_TESTS} not built "
                    "(cmake --build --preset debug --target chroom-grpcpp-client-tests)")
    plain = start_server(name="h2c")
    cert, key = tls_cert
    secure = start_server({"listen": {"cert_file": str(cert), "key_file": str(key)}}, name="tls")
    env = dict(os.environ,
               CHROOM_TARGET=plain.target,
               CHROOM_TLS_TARGET=secure.target,
               CHROOM_TLS_ROOT_CERT=str(cert),
               GRPC_VERBOSITY="ERROR")
    try:
        proc = subprocess.run([str(h.GRPCPP_CLIENT_TESTS)], env=env, capture_output=True,
                              timeout=90, cwd=plain.workdir)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"grpc++ client tests still running after 90 s\n"
                    f"{(e.stdout or b'').decode(errors='replace')}\n{plain.log_tail()}")
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    print(output)
    assert proc.returncode == 0, (f"chroom-grpcpp-client-tests exited {proc.returncode}\n{output}\n"
                                  f"{plain.log_tail(30)}\n{secure.log_tail(30)}")
    assert "Status: SUCCESS" in output, output
    plain.assert_serving()
    secure.assert_serving()
