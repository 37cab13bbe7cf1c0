"""The Redis node probes and the creation script's re-run and growth behaviour, on real redis-servers
(loopback; the Kubernetes StatefulSet and Job run exactly these commands)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.redis.config import render_cluster_create_script
from components.redis.kubernetes import probe_commands
from tests.helpers import spec_for

pytestmark = pytest.mark.servers


def _require_redis() -> None:
    missing = [b for b in ("redis-server", "redis-cli", "getent") if shutil.which(b) is None]
    if missing:
        if os.environ.get("BANYAN_REQUIRE_SERVERS") == "1":
            pytest.fail(f"BANYAN_REQUIRE_SERVERS=1 but {', '.join(missing)} missing")
        pytest.skip(f"{', '.join(missing)} not installed (Debian: redis-server, libc-bin)")


def _free_port() -> int:
    """A loopback port that is free, with its cluster bus port (+10000) free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port + 10_000))
            return port
    raise RuntimeError("no free port pair")


def _cli(port: int, *args: str, password: str = "pw") -> str:
    result = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10,
                            env={**os.environ, "REDISCLI_AUTH": password}, check=False)
    return result.stdout.strip()


def _wait(condition: Any, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _servers(tmp: Path, count: int, *extra: str) -> Iterator[list[int]]:
    ports: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            port = _free_port()
            data = tmp / f"node-{i}"
            data.mkdir()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "pw",
                 "--masterauth", "pw", "--dir", str(data), "--save", "", "--appendonly", "no", *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        for port in ports:
            _wait(lambda p=port: _cli(p, "ping") == "PONG", f"redis-server on {port}")
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _sh(command: str, password: str = "pw", timeout_s: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "REDISCLI_AUTH": password}, check=False)


@pytest.mark.servers
def test_probes_ready_on_pong_alive_on_any_answer(tmp_path: Path) -> None:
    _require_redis()
    with _servers(tmp_path, 1, "--busy-reply-threshold", "100") as (port,):
        spec = spec_for("prod", tier="small").redis.model_copy(update={"port": port})
        ready, alive = probe_commands(spec)
        assert _sh(ready).returncode == 0
        assert _sh(alive).returncode == 0
        wrong = _sh(ready, password="wrong")
        assert wrong.returncode != 0, "a wrong password is not ready"
        assert _sh(alive, password="wrong").returncode == 0, "but the server is alive"
        # A long script: other clients get BUSY. Not ready, still alive (a restart would not help).
        script = subprocess.Popen(["redis-cli", "-p", str(port), "eval", "while true do end", "0"],
                                  env={**os.environ, "REDISCLI_AUTH": "pw"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: _cli(port, "ping").startswith("BUSY"), "BUSY replies")
            assert _sh(ready).returncode != 0
            assert _sh(alive).returncode == 0
        finally:
            _cli(port, "script", "kill")
            script.wait(timeout=10)
        assert _sh(ready).returncode == 0
    assert _sh(alive).returncode != 0, "nothing listens: not alive"
    assert _sh(ready).returncode != 0


@pytest.mark.servers
def test_the_creation_script_reruns_cleanly_and_refuses_a_grown_node_set(tmp_path: Path) -> None:
    """medium (3 masters) formed, then the large script (6 nodes: 3 masters x 1 replica) runs as the Job
    would after the tier change: it must fail and say why; once the new nodes are added as replicas (the
    manual step), it finds the cluster formed and exits 0."""
    _require_redis()
    cluster = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
    with _servers(tmp_path, 6, *cluster) as ports:
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        medium = render_cluster_create_script(spec_for("prod", tier="medium").redis, endpoints[:3])
        large = render_cluster_create_script(spec_for("prod", tier="large").redis, endpoints)

        def run(script: str) -> subprocess.CompletedProcess[str]:
            return _sh(script, timeout_s=300)

        created = run(medium)
        assert created.returncode == 0, created.stderr
        rerun = run(medium)
        assert rerun.returncode == 0 and "nothing to do" in rerun.stdout, rerun.stderr
        grown = run(large)
        assert grown.returncode == 1
        assert "3 of 6 nodes are empty" in grown.stderr and "add-node" in grown.stderr
        for master, replica in zip(ports[:3], ports[3:], strict=True):
            master_id = _cli(master, "cluster", "myid")
            added = subprocess.run(
                ["redis-cli", "--cluster", "add-node", f"127.0.0.1:{replica}", f"127.0.0.1:{ports[0]}",
                 "--cluster-slave", "--cluster-master-id", master_id],
                capture_output=True, text=True, timeout=60, env={**os.environ, "REDISCLI_AUTH": "pw"}, check=False)
            assert added.returncode == 0, added.stdout + added.stderr
        repaired = run(large)
        assert repaired.returncode == 0 and "nothing to do" in repaired.stdout, repaired.stderr
