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


def _free_port(taken: set[int]) -> int:
    """A loopback port that is free, with its cluster bus port (+10000) free too, and neither of them among
    `taken` (the ports and bus ports of the servers started just before, which may not have bound yet: a
    port handed out twice made two node names point at one server, seen in a CI run)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10_000 > 65_535 or {port, port + 10_000} & taken:
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
    taken: set[int] = set()
    try:
        for i in range(count):
            port = _free_port(taken)
            taken |= {port, port + 10_000}
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


CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")


def _keys_on(ports: list[int], count: int) -> list[str]:
    """`count` keys written through the cluster (each to the master of its slot)."""
    keys = [f"grow:{i}" for i in range(count)]
    for key in keys:
        result = subprocess.run(["redis-cli", "-c", "-p", str(ports[0]), "set", key, key], capture_output=True,
                                text=True, timeout=10, env={**os.environ, "REDISCLI_AUTH": "pw"}, check=False)
        assert result.stdout.strip() == "OK", result.stdout + result.stderr
    return keys


def _read_all(ports: list[int], keys: list[str]) -> list[str]:
    """The keys that do not read back through the cluster."""
    return [k for k in keys if subprocess.run(["redis-cli", "-c", "-p", str(ports[0]), "get", k], capture_output=True,
                                              text=True, timeout=10, env={**os.environ, "REDISCLI_AUTH": "pw"},
                                              check=False).stdout.strip() != k]


def _roles(port: int) -> tuple[int, int, int]:
    """(masters with slots, masters without, replicas) in the node's view."""
    lines = _cli(port, "cluster", "nodes").splitlines()
    with_slots = sum(1 for line in lines if "master" in line.split()[2] and len(line.split()) >= 9)
    without = sum(1 for line in lines if "master" in line.split()[2] and len(line.split()) < 9)
    return with_slots, without, sum(1 for line in lines if "slave" in line.split()[2])


@pytest.mark.servers
def test_the_creation_script_reruns_cleanly_and_grows_medium_to_large_with_the_keys(tmp_path: Path) -> None:
    """medium (3 masters) formed and holding keys, then the large script (6 nodes: 3 masters x 1 replica) runs as
    the step does after the tier change: the new nodes join as one replica per master, every key stays."""
    _require_redis()
    with _servers(tmp_path, 6, *CLUSTER_ARGS) as ports:
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        medium = render_cluster_create_script(spec_for("prod", tier="medium").redis, endpoints[:3])
        large = render_cluster_create_script(spec_for("prod", tier="large").redis, endpoints)
        created = _sh(medium, timeout_s=300)
        assert created.returncode == 0, created.stderr
        rerun = _sh(medium, timeout_s=300)
        assert rerun.returncode == 0 and "nothing to do" in rerun.stdout, rerun.stderr
        keys = _keys_on(ports[:3], 300)
        grown = _sh(large, timeout_s=300)
        assert grown.returncode == 0, grown.stdout + grown.stderr
        assert "grown from 3 to 6 nodes" in grown.stdout
        assert grown.stdout.count("as a replica of") == 3
        assert _roles(ports[0]) == (3, 0, 3)
        masters_of = {_cli(p, "cluster", "nodes").split("myself,slave ")[1].split()[0] for p in ports[3:]}
        assert len(masters_of) == 3, "one replica per master"
        assert _read_all(ports, keys) == []
        again = _sh(large, timeout_s=300)
        assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr


@pytest.mark.servers
def test_the_creation_script_adds_masters_and_moves_slots_with_their_keys(tmp_path: Path) -> None:
    """3 masters -> 4 masters: the new one gets its share of the slots (rebalanced), keys move with them."""
    _require_redis()
    with _servers(tmp_path, 4, *CLUSTER_ARGS) as ports:
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        three = spec_for("prod", tier="medium").redis
        four = spec_for("prod", tier="medium", redis__nodes=4).redis
        assert four.masters == 4 and four.replicas_per_master == 0
        assert _sh(render_cluster_create_script(three, endpoints[:3]), timeout_s=300).returncode == 0
        keys = _keys_on(ports[:3], 300)
        grown = _sh(render_cluster_create_script(four, endpoints), timeout_s=300)
        assert grown.returncode == 0, grown.stdout + grown.stderr
        assert "as a master" in grown.stdout and "moving slots" in grown.stdout
        assert _roles(ports[0]) == (4, 0, 0)
        assert _read_all(ports, keys) == []


@pytest.mark.servers
def test_the_creation_script_refuses_to_grow_a_cluster_that_is_not_healthy(tmp_path: Path) -> None:
    _require_redis()
    with _servers(tmp_path, 6, *CLUSTER_ARGS) as ports:
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        large = spec_for("prod", tier="large").redis
        medium = spec_for("prod", tier="medium").redis
        assert _sh(render_cluster_create_script(medium, endpoints[:3]), timeout_s=300).returncode == 0
        # One master's slots unassigned: not one healthy cluster.
        _cli(ports[2], "cluster", "flushslots")
        script = render_cluster_create_script(large, endpoints, settle_timeout_s=3)
        refused = _sh(script, timeout_s=120)
        assert refused.returncode == 1
        assert "3 of 6 nodes are empty and the others are not one healthy cluster" in refused.stderr
        assert all(_cli(p, "cluster", "info").count("cluster_known_nodes:1") for p in ports[3:]), "nothing added"
