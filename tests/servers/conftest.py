"""Real servers from Debian's packages, booted from the exact files the dev stack would ship.

Each platform instance runs as its own host in a network namespace (testkit/netns.py) under
its own name, with the container paths the files expect bind-mounted in a private mount namespace.
Where Debian's server is another version than the pinned image, the stack is rendered for that
version through its own config (`postgres.version`, `rabbitmq.version`, `redis.version`, the nginx
image tag), never by editing the rendered text.

Without root, namespaces or a server, these tests skip and say why; with BANYAN_REQUIRE_SERVERS=1
(as `.ci/run` sets) they fail instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from testkit import RecordedResource, Rendering, netns, render_stack, version_sets
from tests.helpers import report_measured, uploads


def report(line: str) -> None:
    """A measured result (recovery time, lost messages, failed requests) for the run's summary."""
    report_measured("servers", line)


def _unavailable(what: str) -> None:
    if os.environ.get("BANYAN_REQUIRE_SERVERS") == "1":
        pytest.fail(f"BANYAN_REQUIRE_SERVERS=1 but {what}")
    pytest.skip(what)


def require_netns() -> None:
    why = netns.available()
    if why:
        _unavailable(f"network namespaces unavailable: {why}")


def require_binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or next(iter(sorted(glob.glob(candidate))), None)
        if found:
            return found
    _unavailable(f"{name} is not installed (Debian package needed)")
    raise AssertionError("unreachable")


def _version(argv: list[str], pattern: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ServerVersions:
    postgres: int | None
    postgres_bin: str | None
    rabbitmq: str | None
    redis: str | None
    nginx: str | None

    def stack_sets(self) -> dict[str, object]:
        """What the stack config must say so the files are rendered for these servers."""
        return version_sets(postgres=self.postgres, rabbitmq=self.rabbitmq, redis=self.redis, nginx=self.nginx)


@cache
def server_versions() -> ServerVersions:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    pg_bin = str(Path(bins[-1]).parent) if bins else None
    pg = int(bins[-1].split("/")[4]) if bins else None
    mq = _version(["dpkg-query", "-W", "-f", "${Version}\n", "rabbitmq-server"], r"^(?:\d+:)?(\d+\.\d+\.\d+)")
    rd = _version(["redis-server", "--version"], r"v=(\d+\.\d+\.\d+)")
    ng = _version(["nginx", "-v"], r"nginx/(\d+\.\d+\.\d+)")
    return ServerVersions(postgres=pg, postgres_bin=pg_bin, rabbitmq=mq, redis=rd, nginx=ng)


@cache
def rendered(tier: str) -> Rendering:
    """The dev stack for `tier`, rendered for the servers installed here."""
    return render_stack("dev", set={"tier": tier, **server_versions().stack_sets()})


def container(r: Rendering, name: str) -> RecordedResource:
    for c in r.of_type("docker:index/container:Container"):
        if c.plain_inputs["hostname"] == name:
            return c
    raise KeyError(name)


def clean_env(container_env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """Run with exactly the container's environment (nothing inherited from pytest), in /."""
    return ["env", "-i", "-C", "/", *(f"{k}={v}" for k, v in sorted(container_env.items())), *argv]


def make_dir(host: netns.Host, container_path: str, mode: int, owner: str | None) -> None:
    """A directory of the image's own layer at `container_path` in `host`, with its mode and owner."""
    target = host.path(container_path)
    target.mkdir(parents=True, exist_ok=True)
    if owner:
        shutil.chown(target, owner, owner)
    target.chmod(mode)


def install_uploads(host: netns.Host, c: RecordedResource) -> None:
    for path, (content, executable) in uploads(c).items():
        host.write(path, content, 0o755 if executable else 0o644)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch dir the servers' own users can traverse (they do not run as root)."""
    return netns.traversable(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces() -> None:
    """Namespaces left by a run that was killed (its pid is gone) are removed before a new run."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.match(r"^bn(\d+)-", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
