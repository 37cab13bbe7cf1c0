"""What the data-tier benchmarks share: the medium dev stack rendered for the servers installed here, its
containers booted as hosts in network namespaces (testkit/netns, as the real-server suite boots them), and a
memory cgroup per container at the tier's memory limit, the same for our config and the stock one.

Each part (postgres.py, rabbitmq.py, redis_cluster.py) runs two copies of the same topology side by side, each on
its own network with the same host names: "ours" with every file as the stack ships it, "stock" with the same
entrypoint, users and passwords but the server's stock configuration file in place of ours (plus what the
server needs to form the same cluster at all). Only the configuration differs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

from benchmarks.common import rotation
from testkit import RecordedResource, Rendering, netns, render_stack, unwrap, version_sets

TIER = "medium"
SIDES = ("ours", "stock")
CGROUP_V1_ROOT = Path("/sys/fs/cgroup/memory")
CGROUP_V2_ROOT = Path("/sys/fs/cgroup")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


@dataclass(frozen=True)
class Versions:
    postgres: int | None
    postgres_bin: str | None
    rabbitmq: str | None
    redis: str | None

    def stack_sets(self) -> dict[str, object]:
        """What the stack config must say so the files are rendered for these servers (as tests/servers does)."""
        return {"tier": TIER, **version_sets(postgres=self.postgres, rabbitmq=self.rabbitmq, redis=self.redis)}


@cache
def versions() -> Versions:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    mq = re.search(r"^(?:\d+:)?(\d+\.\d+\.\d+)", _run(["dpkg-query", "-W", "-f", "${Version}\n", "rabbitmq-server"]))
    rd = re.search(r"v=(\d+\.\d+\.\d+)", _run(["redis-server", "--version"])) if shutil.which("redis-server") else None
    return Versions(postgres=int(bins[-1].split("/")[4]) if bins else None,
                    postgres_bin=str(Path(bins[-1]).parent) if bins else None,
                    rabbitmq=mq.group(1) if mq else None, redis=rd.group(1) if rd else None)


@cache
def rendered() -> Rendering:
    """The medium dev stack, rendered for the servers installed here (the same sets as the real-server suite)."""
    return render_stack("dev", set=versions().stack_sets())


def containers(pattern: str) -> list[RecordedResource]:
    """The rendered Docker containers whose host name matches `pattern`, by host name."""
    found = [c for c in rendered().of_type("docker:index/container:Container")
             if re.fullmatch(pattern, str(unwrap(c.inputs)["hostname"]))]
    return sorted(found, key=lambda c: str(unwrap(c.inputs)["hostname"]))


def hostname(c: RecordedResource) -> str:
    return str(unwrap(c.inputs)["hostname"])


def env_of(c: RecordedResource) -> dict[str, str]:
    return dict(item.split("=", 1) for item in unwrap(c.inputs).get("envs") or [])


def uploads(c: RecordedResource) -> dict[str, tuple[str, bool]]:
    """Every file a container ships: path -> (content, executable)."""
    return {u["file"]: (u["content"], bool(u.get("executable"))) for u in unwrap(c.inputs).get("uploads") or []}


def memory_mib(c: RecordedResource) -> int:
    return int(unwrap(c.inputs)["memory"])


def cpus(c: RecordedResource) -> float:
    return float(unwrap(c.inputs).get("cpus") or 0)


def unavailable(*tools: tuple[str, str]) -> str | None:
    """None when a data-tier part can run here, else why not. `tools`: (binary or glob, Debian package)."""
    why = netns.available()
    if why:
        return f"network namespaces unavailable: {why}; run as root: sudo .venv/bin/python -m benchmarks"
    for tool, package in (("setpriv", "util-linux"), *tools):
        if not (shutil.which(tool) or glob.glob(tool)):
            return f"{tool} is not installed (Debian package {package}: apt-get install {package})"
    return None


# ---- memory limits ------------------------------------------------------------------------------------


def _own_cgroup() -> tuple[int, str] | None:
    """(1, path) in the v1 memory hierarchy, or (2, path) in the unified one, of this process."""
    lines = Path("/proc/self/cgroup").read_text().splitlines() if Path("/proc/self/cgroup").exists() else []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return 1, path
    for line in lines:
        if line.startswith("0::"):
            return 2, line[3:]
    return None


@dataclass
class Limits:
    """Memory cgroups, one per container, below this process's own cgroup; removed on exit. `why_not` says why
    there are none (then both sides run without a limit, which is also equal)."""

    tag: str
    made: list[Path] = field(default_factory=list)
    why_not: str | None = None
    version: int = 0

    def __post_init__(self) -> None:
        own = _own_cgroup()
        if own is None:
            self.why_not = "no cgroup of this process found"
            return
        self.version, path = own
        base = (CGROUP_V1_ROOT if own[0] == 1 else CGROUP_V2_ROOT) / path.lstrip("/")
        self._base = base
        probe = base / f"{self.tag}-probe"
        try:
            probe.mkdir()
            limit = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
            (probe / limit).write_text(str(64 << 20))
        except OSError as e:
            self.why_not = f"cannot make a memory cgroup under {base}: {e}"
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()

    def make(self, name: str, mib: int) -> Path | None:
        if self.why_not:
            return None
        group = self._base / f"{self.tag}-{name}"
        group.mkdir(exist_ok=True)
        if self.version == 1:
            (group / "memory.limit_in_bytes").write_text(str(mib << 20))
        else:
            (group / "memory.max").write_text(str(mib << 20))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
        self.made.append(group)
        return group

    def peak_mib(self, group: Path | None) -> float:
        """The most memory the container's processes used at once (page cache included)."""
        if group is None:
            return float("nan")
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        path = group / name
        return int(path.read_text()) / (1 << 20) if path.exists() else float("nan")

    def describe(self, mib: Mapping[str, int]) -> str:
        if self.why_not:
            return f"no memory limit on either side ({self.why_not})"
        kind = "cgroup v1 memory.limit_in_bytes" if self.version == 1 else "cgroup v2 memory.max"
        sizes = ", ".join(f"{n} {m} MiB" for n, m in mib.items())
        return f"each container in its own memory cgroup at the tier's limit ({kind}): {sizes}, both sides"

    def close(self) -> None:
        """Removes the cgroups once their processes (already killed) have left them."""
        for group in reversed(self.made):
            procs = group / "cgroup.procs"
            with contextlib.suppress(AssertionError, OSError):
                netns.wait_until(lambda: not procs.read_text().strip(), timeout=10, what=f"{group} empty")  # noqa: B023
            with contextlib.suppress(OSError):
                group.rmdir()
        self.made.clear()


# ---- containers as hosts --------------------------------------------------------------------------------


@dataclass
class Node:
    """One rendered container booted as a host: its uploads, env, entrypoint and command, its memory cgroup."""

    host: netns.Host
    resource: RecordedResource
    env: dict[str, str]
    binds: list[str]
    cgroup: Path | None
    log: Path
    argv: list[str] = field(default_factory=list)  # the entrypoint and command

    @property
    def name(self) -> str:
        return self.host.name

    def _clean(self, argv: Sequence[str]) -> list[str]:
        """`argv` with exactly the container's environment (nothing inherited), in /."""
        return ["env", "-i", "-C", "/", *(f"{k}={v}" for k, v in sorted(self.env.items())), *argv]

    def start(self) -> None:
        """The container's entrypoint and command, as root, as the container starts."""
        self.host.spawn(self._clean(self.argv), binds=self.binds, log=self.log, cgroup=self.cgroup)

    def run(self, argv: Sequence[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in the container, as root (as `docker exec` would run it)."""
        return self.host.run(self._clean(argv), binds=self.binds, timeout=timeout, check=check)

    def healthy(self) -> bool:
        """The container's rendered health check (CMD-SHELL), run as Docker runs it."""
        test = unwrap(self.resource.inputs)["healthcheck"]["tests"]
        return self.run(["sh", "-c", test[1]], timeout=60, check=False).returncode == 0

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.host.procs)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return f"--- {self.name}\n" + "\n".join(text.splitlines()[-lines:])


def node(net: netns.Network, c: RecordedResource, limits: Limits, side: str, *, replace: Mapping[str, str] = {},
         owned: Mapping[str, tuple[str, int]] = {}, extra_binds: Sequence[str] = (),
         env: Mapping[str, str] = {}, limit: bool = True) -> Node:
    """A host for container `c`: its uploads (the file at a path in `replace` with that text instead: the stock
    side), directories the image owns (`owned`: path -> (user, mode)), its cgroup at the container's limit."""
    name = hostname(c)
    host = net.add(name)
    files = uploads(c)
    for path, (content, executable) in files.items():
        # Docker's upload: root-owned, 0744 when executable, else 0644 (pulumi-docker's tar header).
        host.write(path, replace.get(path, content), 0o744 if executable else 0o644)
    for path, (user, mode) in owned.items():
        target = host.path(path)
        target.mkdir(parents=True, exist_ok=True)
        shutil.chown(target, user, user)
        target.chmod(mode)
    inputs: dict[str, Any] = unwrap(c.inputs)
    volumes = [v["containerPath"] for v in inputs.get("volumes") or []]
    binds = sorted({*(str(Path(p).parent) for p in files), *owned, *volumes, *extra_binds})
    container_env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "HOSTNAME": name, **env_of(c), **env}
    argv = [*(inputs.get("entrypoints") or []), *(inputs.get("command") or [])]
    return Node(host=host, resource=c, env=container_env, binds=binds,
                cgroup=limits.make(f"{side}-{name}", memory_mib(c)) if limit else None, log=host.root / "container.log",
                argv=argv)


def wait_healthy(nodes: Sequence[Node], timeout: float) -> None:
    """Every node's own health check passes (bounded); a node whose process exited fails at once."""
    pending = list(nodes)

    def check() -> bool:
        dead = [n.name for n in pending if not n.alive()]
        if dead:
            raise RuntimeError(f"exited while booting: {dead}\n" + "\n".join(n.log_tail() for n in pending))
        for n in list(pending):
            if n.healthy():
                pending.remove(n)
        return not pending

    try:
        netns.wait_until(check, timeout=timeout, what="every node's health check", interval=0.5)
    except AssertionError as e:
        raise RuntimeError(f"{e}: {[n.name for n in pending]}\n" + "\n".join(n.log_tail() for n in pending)) from None


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    import tempfile

    path = netns.traversable(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class BootedSide(Protocol):
    """A side's servers, in the network it boots them in (each part's own Side)."""

    @property
    def net(self) -> netns.Network: ...


SideT = TypeVar("SideT", bound=BootedSide)
RunT = TypeVar("RunT")


@contextlib.contextmanager
def booted(limits: Limits, boot: Callable[[str], SideT]) -> Iterator[dict[str, SideT]]:
    """Every side booted (`boot(name)`, in SIDES order), by name; afterwards, whatever happened, every booted side's
    network is taken down and the memory limits are removed. The dict stays readable after the block."""
    sides: dict[str, SideT] = {}
    try:
        for name in SIDES:
            sides[name] = boot(name)
        yield sides
    finally:
        for side in sides.values():
            side.net.__exit__()
        limits.close()


def alternate(part: str, rounds: int, measure: Callable[[str, int], RunT],
              shown: Callable[[RunT], str] | None) -> list[RunT]:
    """`rounds` rounds in which every side runs once (`measure(name, round)`), the side that goes first rotating;
    `shown`: a run's progress line (stderr), or None for none."""
    runs: list[RunT] = []
    for round_ in range(rounds):
        for name in rotation(SIDES, round_):
            runs.append(measure(name, round_))
            if shown is not None:
                print(f"  {part} round {round_ + 1}/{rounds} {name:5s} {shown(runs[-1])}", file=sys.stderr, flush=True)
    return runs


def sweep_stale() -> None:
    """Namespaces and cgroups left by an interrupted earlier run (its pid is gone) are removed."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.match(r"^bn(\d+)-", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    own = _own_cgroup()
    if own is not None:
        base = (CGROUP_V1_ROOT if own[0] == 1 else CGROUP_V2_ROOT) / own[1].lstrip("/")
        for group in base.glob("bnbench*-*"):
            match = re.match(r"^bnbench(\d+)-", group.name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                with contextlib.suppress(OSError):  # a cgroup still holding a process stays
                    group.rmdir()
