"""Test hosts in network namespaces: each platform instance runs as its own host with its own name.

A bridge lives in a namespace of its own, so nothing touches the machine's network; each host gets
a veth into it, an address in 10.231.0.0/24 and an /etc/hosts (ip netns exec bind-mounts
/etc/netns/<ns>/hosts) naming every host. Processes start in a private mount namespace where the
container paths the rendered files expect (/etc/postgresql, /data, ...) are bind-mounted from a
temporary directory, so the shipped files run unmodified.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231.0"


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns, mount)"
    for tool in ("ip", "unshare", "runuser", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"bnprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Mount points made on the machine for container paths it lacked; the Network removes them at exit.
    made_dirs: list[Path] = field(default_factory=list)

    def path(self, container_path: str) -> Path:
        """Where a container path of this host lives on the machine."""
        return self.root / container_path.lstrip("/")

    def write(self, container_path: str, content: str, mode: int = 0o644) -> Path:
        target = self.path(container_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
        return target

    def _wrap(self, argv: Sequence[str], binds: Sequence[str], user: str | None,
              env: Mapping[str, str] | None) -> list[str]:
        mounts = []
        for container_path in binds:
            src = self.path(container_path)
            src.mkdir(parents=True, exist_ok=True)
            self._mount_point(Path(container_path))
            mounts.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(container_path)}")
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted((env or {}).items()))
        run_as = f"runuser -u {shlex.quote(user)} -- " if user else ""
        command = " ".join(shlex.quote(a) for a in argv)
        # Like a container: its own host name (RabbitMQ and Erlang derive node names from it) and its own
        # System V IPC (PostgreSQL keys its shared memory by port, and every instance listens on 5432).
        set_name = f"echo {shlex.quote(self.name)} > /proc/sys/kernel/hostname"
        script = " && ".join([set_name, *mounts, f"exec env {exports} {run_as}{command}"])
        return ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--uts", "--ipc", "--propagation", "private",
                "sh", "-c", script]

    def _mount_point(self, path: Path) -> None:
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for made in reversed(missing):
            made.mkdir()
            self.made_dirs.append(made)

    def run(self, argv: Sequence[str], *, binds: Sequence[str] = (), user: str | None = None,
            env: Mapping[str, str] | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._wrap(argv, binds, user, env), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(argv)} exited {done.returncode}\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def spawn(self, argv: Sequence[str], *, binds: Sequence[str] = (), user: str | None = None,
              env: Mapping[str, str] | None = None, log: Path | None = None,
              cgroup: Path | None = None) -> subprocess.Popen[bytes]:
        """`cgroup`: a cgroup directory (its cgroup.procs) the process joins before anything else runs, so
        that every process it starts is limited by it too (`ip netns exec` hides /sys/fs/cgroup later)."""
        out = open(log or self.root / f"{argv[0].rsplit('/', 1)[-1]}.log", "ab")  # noqa: SIM115
        wrapped = self._wrap(argv, binds, user, env)
        if cgroup is not None:
            wrapped = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", str(cgroup / "cgroup.procs"),
                       *wrapped]
        proc = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def kill_all(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Every process in this host's namespace, as a crash would."""
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), sig)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()


class Network:
    """A set of hosts on one bridge. Use as a context manager: everything is removed on exit."""

    def __init__(self, workdir: Path, tag: str) -> None:
        self.workdir = workdir
        self.tag = f"bn{os.getpid()}-{tag}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._names: dict[str, str] = {}

    def __enter__(self) -> Network:
        _run("ip", "netns", "add", self.switch)
        _run("ip", "netns", "exec", self.switch, "ip", "link", "add", "br0", "type", "bridge")
        _run("ip", "netns", "exec", self.switch, "ip", "link", "set", "br0", "up")
        return self

    def add(self, name: str, aliases: Sequence[str] = ()) -> Host:
        index = len(self.hosts) + 1
        ns = f"{self.tag}-h{index}"
        ip = f"{SUBNET}.{index + 1}"
        _run("ip", "netns", "add", ns)
        host_if, sw_if = f"v{index}h", f"v{index}s"
        _run("ip", "link", "add", host_if, "netns", ns, "type", "veth", "peer", "name", sw_if,
             "netns", self.switch)
        _run("ip", "netns", "exec", self.switch, "ip", "link", "set", sw_if, "master", "br0", "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", host_if)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", host_if, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        root = self.workdir / name
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        host = Host(name=name, ns=ns, ip=ip, root=root)
        self.hosts[name] = host
        for alias in (name, *aliases):
            self._names[alias] = ip
        self._write_hosts_files()
        return host

    def _write_hosts_files(self) -> None:
        lines = ["127.0.0.1 localhost", *(f"{ip} {n}" for n, ip in sorted(self._names.items()))]
        for host in self.hosts.values():
            etc = Path("/etc/netns") / host.ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(lines) + "\n")

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.kill_all()
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.ns], check=False, capture_output=True)
            shutil.rmtree(Path("/etc/netns") / host.ns, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.switch], check=False, capture_output=True)
        made = sorted({d for host in self.hosts.values() for d in host.made_dirs}, key=lambda d: -len(d.parts))
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()


def traversable(path: Path) -> Path:
    """`path` made reachable by the servers' own users (postgres, redis, rabbitmq, nginx's workers): mode 0755,
    and every parent below /tmp searchable (pytest's temporary directories are private to the user running
    it). Returns `path`, for scratch directories made with tmp_path_factory or tempfile."""
    path.chmod(0o755)
    for parent in path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    return path


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll a readiness check (never a fixed sleep); returns the seconds it took."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def network(workdir: Path, tag: str) -> Iterator[Network]:
    with Network(workdir, tag) as net:
        yield net
