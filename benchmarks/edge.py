"""Edge proxy throughput: our rendered nginx.conf, the Scalability Guide's, and a plain expert baseline.

All three run, one at a time, on Debian's nginx in one network namespace made for the benchmark (its own
loopback, so nothing touches the machine's network or ports). `ip netns exec` bind-mounts the namespace's
/etc/hosts, which names the gateways as the configs do (api-gateway-1..N) at loopback addresses
127.0.0.11.. . Behind them all: the same stub gateways, one nginx answering 200 with a small body on every
gateway address, keep-alive on. In front: wrk from Debian's package, same connections, threads and duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import PROJECT_DIR, Row, Section, fmt_int, fmt_ratio, median, paired, rotation, spread
from testkit.netns import Host, traversable, wait_until

HERE = Path(__file__).resolve().parent
GUIDE_COPY = HERE / "guide_nginx.conf"
GUIDE_SEED = PROJECT_DIR.parent / "shared" / "seeds" / "000_bd56b970dae21654.txt"
BASELINE = HERE / "baseline_nginx.conf"
WRK_SCRIPT = HERE / "wrk_report.lua"
CONF_PATH = "/etc/nginx/nginx.conf"
# Linux reuses a TIME_WAIT port for a new outgoing connection only on loopback by default (value 2).
TW_REUSE = "net.ipv4.tcp_tw_reuse"
# Long enough for the guide's config to run into the TIME_WAIT sockets it leaves (60 s each).
NO_REUSE_S = 30
TIER = "medium"  # 5 gateways: the guide's own upstream has five.
STUB_STATUS = ("127.0.0.2", 8081)
CONFIGS = ("ours", "guide", "baseline")
LABELS = {
    "ours": "ours: the dev stack's rendered nginx.conf",
    "guide": "the guide's config (verbatim, minimal wrapper)",
    "baseline": "plain expert baseline",
}

# The minimum nginx needs around a bare `server` block (the guide's has no `events`/`http`), identical
# for the guide's and the baseline's config. The worker settings are copied from the rendered config,
# so all three run the same number of workers with the same connection limit.
WRAPPER = """\
# benchmarks/edge.py: minimal wrapper; worker settings copied from the rendered nginx.conf.
worker_processes {workers};
events {{
    worker_connections {connections};
}}
http {{
{body}}}
"""

STUB = """\
# The stub gateways: every gateway address answers 200 with a small JSON body, keep-alive without a
# request limit (as Node's http.Server), no access log (the stubs must not be the bottleneck).
worker_processes {workers};
error_log stderr warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
{servers}
    server {{
        listen {status_ip}:{status_port};
        location = /status {{
            stub_status;
        }}
    }}
}}
"""

STUB_SERVER = """\
    server {{
        listen {ip}:{port};
        location / {{
            default_type application/json;
            return 200 '{{"gateway":"{name}"}}';
        }}
    }}
"""

# Run inside the namespace: GET a URL until it answers 200 (bounded), print the body.
CLIENT = r"""
import http.client, sys, time
host, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout
last = ""
while True:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        conn.close()
        if resp.status == 200:
            print(body)
            sys.exit(0)
        last = f"HTTP {resp.status}: {body[:300]}"
    except OSError as exc:
        last = repr(exc)
    if time.monotonic() > deadline:
        print(last, file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
"""


@dataclass(frozen=True)
class EdgeOptions:
    runs: int = 5
    duration_s: int = 10
    warmup_s: int = 2
    connections: int = 64
    threads: int = 2
    stub_workers: int = 1
    # One more pass, in a fresh namespace without TIME_WAIT reuse: what a non-loopback network gets.
    no_reuse_pass: bool = True


@dataclass
class Run:
    config: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    upstream_conns: int
    upstream_requests: int
    proxy_cpu_us_per_req: float
    # Sockets in TIME_WAIT when the run ended, and the local ports there are for them (port range x gateways).
    time_wait: int = 0
    ports: int = 0


@dataclass
class Setup:
    configs: dict[str, str]
    listen_ports: dict[str, int]
    upstreams: list[tuple[str, int]]
    workers: int
    worker_connections: int
    guide_source: str
    notes: list[str] = field(default_factory=list)


def unavailable() -> str | None:
    """None when the edge benchmark can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespace, bind mounts); run as root: sudo /path/to/venv/bin/python -m benchmarks"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("mount", "mount"),
                          ("nginx", "nginx"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package}: apt-get install {package})"
    probe = f"bnbenchprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"cannot make a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def sweep_stale_namespaces() -> None:
    """Namespaces an interrupted earlier run left (its pid is gone): their processes are ended, they are removed."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        match = re.match(r"^(bnbench(\d+))\b", line)
        if match is None or Path(f"/proc/{match.group(2)}").exists():
            continue
        ns = match.group(1)
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"nginx/(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"cannot read nginx's version from {out.stderr!r}")
    return match.group(1)


def nginx_binds() -> tuple[str, ...]:
    """The directories Debian's build writes to (`nginx -V`): conf, pid, log and temp paths."""
    out = subprocess.run(["nginx", "-V"], capture_output=True, text=True, check=True, timeout=30)
    dirs = {"/etc/nginx"}
    for key, value in re.findall(r"--([a-z-]+-path)=(\S+)", out.stdout + out.stderr):
        if key in {"conf-path", "pid-path", "http-log-path"} or key.endswith("-temp-path"):
            dirs.add(str(Path(value).parent))
    return tuple(sorted(dirs))


def guide_config() -> tuple[str, str]:
    """The guide's Load Balancer block, verbatim, and where it came from.

    benchmarks/guide_nginx.conf is a byte-for-byte copy; where the guide itself is beside the checkout
    (../shared/seeds), the block is read from it and the copy is checked against it.
    """
    copy = GUIDE_COPY.read_text()
    if not GUIDE_SEED.exists():
        return copy, f"{GUIDE_COPY.relative_to(PROJECT_DIR)} (the guide is not beside the checkout)"
    text = GUIDE_SEED.read_text()
    section = text[text.index("### Load Balancer"):]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    if match is None:
        raise RuntimeError(f"no nginx block under 'Load Balancer' in {GUIDE_SEED}")
    if match.group(1) != copy:
        raise RuntimeError(f"{GUIDE_COPY} differs from the guide's block in {GUIDE_SEED}: refresh the copy")
    return match.group(1), "the Scalability Guide, section Load Balancer (read from ../shared/seeds)"


def rendered_config() -> tuple[str, int]:
    """The exact /etc/nginx/nginx.conf the medium dev stack uploads, rendered for the nginx installed here."""
    from testkit import render_stack, unwrap

    rendering = render_stack("dev", set={"tier": TIER, "nginx.image": f"nginx:{nginx_version()}-alpine"})
    for c in rendering.of_type("docker:index/container:Container"):
        inputs = unwrap(c.inputs)
        if inputs["hostname"] == "nginx":
            shipped = {u["file"]: u["content"] for u in inputs.get("uploads") or []}
            gateways = sum(1 for g in rendering.of_type("docker:index/container:Container")
                           if re.fullmatch(r"api-gateway-\d+", unwrap(g.inputs)["hostname"]))
            return shipped[CONF_PATH], gateways
    raise RuntimeError("the dev stack has no container named nginx")


def _upstreams(conf: str) -> list[tuple[str, int]]:
    block = re.search(r"upstream\s+\w+\s*\{(.*?)\}", conf, re.S)
    if block is None:
        raise RuntimeError("no upstream block")
    return [(h, int(p)) for h, p in re.findall(r"^\s*server\s+([A-Za-z0-9.-]+):(\d+)", block.group(1), re.M)]


def _directive(conf: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s+([^;]+);", conf, re.M)
    if match is None:
        raise RuntimeError(f"no {name} directive")
    return match.group(1).strip()


def setup() -> Setup:
    ours, gateways = rendered_config()
    upstreams = _upstreams(ours)
    if len(upstreams) != gateways:
        raise RuntimeError(f"the rendered upstream lists {len(upstreams)} servers for {gateways} gateways")
    guide_body, guide_source = guide_config()
    if _upstreams(guide_body) != upstreams:
        raise RuntimeError(f"the guide's upstreams {_upstreams(guide_body)} are not the stack's {upstreams}")
    workers = int(_directive(ours, "worker_processes"))
    connections = int(_directive(ours, "worker_connections"))
    servers = "\n".join(f"    server {h}:{p};" for h, p in upstreams)
    baseline_body = BASELINE.read_text().replace("{servers}", servers)
    configs = {
        "ours": ours,
        "guide": WRAPPER.format(workers=workers, connections=connections, body=guide_body),
        "baseline": WRAPPER.format(workers=workers, connections=connections, body=baseline_body),
    }
    ports = {name: int(_directive(conf, "listen").split()[0].rsplit(":", 1)[-1]) for name, conf in configs.items()}
    notes = [
        f"edge: {len(upstreams)} gateways (dev stack, tier {TIER}); worker_processes {workers} "
        f"(the rendered config derives it from nginx's CPU limit) and worker_connections {connections} "
        "for all three; guide's config from " + guide_source,
    ]
    return Setup(configs=configs, listen_ports=ports, upstreams=upstreams, workers=workers,
                 worker_connections=connections, guide_source=guide_source, notes=notes)


def _cpu_ticks(master: int) -> int:
    """utime + stime of the master's children (nginx workers), in clock ticks."""
    children = Path(f"/proc/{master}/task/{master}/children")
    total = 0
    pids = children.read_text().split() if children.exists() else []
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


class Bench:
    """The namespace, the stub gateways and one proxy at a time."""

    def __init__(self, workdir: Path, upstreams: Sequence[tuple[str, int]], options: EdgeOptions,
                 sysctls: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.ns = f"bnbench{os.getpid()}"
        self.sysctls = tuple(sysctls)
        self.upstreams = list(upstreams)
        self.options = options
        self.binds = nginx_binds()
        self.addresses = {name: f"127.0.0.{11 + i}" for i, (name, _) in enumerate(self.upstreams)}
        self.hosts: list[Host] = []

    def __enter__(self) -> Bench:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"], check=True,
                           capture_output=True)
            for setting in self.sysctls:
                subprocess.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", setting], check=True,
                               capture_output=True)
            etc = Path("/etc/netns") / self.ns
            etc.mkdir(parents=True, exist_ok=True)
            names = [f"{ip} {name}" for name, ip in self.addresses.items()]
            (etc / "hosts").write_text("\n".join(["127.0.0.1 localhost", *names]) + "\n")
            (self.workdir / "client.py").write_text(CLIENT)
            self._start_stubs()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts:
            host.kill_all()
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)
        shutil.rmtree(Path("/etc/netns") / self.ns, ignore_errors=True)
        made = sorted({d for h in self.hosts for d in h.made_dirs}, key=lambda d: -len(d.parts))
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        root = self.workdir / name
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        host = Host(name=name, ns=self.ns, ip="127.0.0.1", root=root)
        self.hosts.append(host)
        return host

    def get(self, host: str, port: int, path: str, timeout: float = 30) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, str(self.workdir / "client.py"),
                               host, str(port), path, str(timeout)],
                              capture_output=True, text=True, timeout=timeout + 30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"GET http://{host}:{port}{path} failed: {done.stderr.strip()}")
        return done.stdout

    def stub_status(self) -> tuple[int, int]:
        """(accepted connections, requests) the stubs have seen, less this query's own."""
        text = self.get(*STUB_STATUS, "/status")
        match = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)
        if match is None:
            raise RuntimeError(f"unexpected stub_status answer: {text!r}")
        return int(match.group(1)) - 1, int(match.group(3)) - 1

    def _start_stubs(self) -> None:
        servers = "".join(STUB_SERVER.format(ip=self.addresses[name], port=port, name=name)
                          for name, port in self.upstreams)
        conf = STUB.format(workers=self.options.stub_workers, servers=servers,
                           status_ip=STUB_STATUS[0], status_port=STUB_STATUS[1])
        stub = self._host("stubs")
        stub.write(CONF_PATH, conf)
        stub.run(["nginx", "-t"], binds=self.binds)
        stub.spawn(["nginx", "-g", "daemon off;"], binds=self.binds, log=stub.root / "nginx.log")
        for name, port in self.upstreams:
            body = self.get(self.addresses[name], port, "/")
            if name not in body:
                raise RuntimeError(f"stub {name} answered {body!r}")

    def wrk(self, url: str, duration_s: int) -> dict[str, int]:
        o = self.options
        argv = ["ip", "netns", "exec", self.ns, "wrk", f"-t{o.threads}", f"-c{o.connections}", f"-d{duration_s}s",
                "--timeout", "5s", "-s", str(WRK_SCRIPT), url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        result: dict[str, int] = json.loads(lines[-1])
        return result

    def stub_direct(self) -> float:
        """requests/s of one stub gateway with no proxy in front: the ceiling the proxies are measured under."""
        name, port = self.upstreams[0]
        url = f"http://{self.addresses[name]}:{port}/"
        self.wrk(url, self.options.warmup_s)
        out = self.wrk(url, self.options.duration_s)
        return out["requests"] / (out["duration_us"] / 1e6)

    @contextlib.contextmanager
    def proxy(self, config: str, conf: str, port: int) -> Iterator[int]:
        """nginx on `conf`, started as the image does (master in the foreground); yields the master's pid."""
        host = self._host(f"proxy-{config}")
        host.write(CONF_PATH, conf)
        log = host.root / "nginx.log"
        check = host.run(["nginx", "-t"], binds=self.binds, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the {config} config:\n{check.stderr}")
        proc = host.spawn(["nginx", "-g", "daemon off;"], binds=self.binds, log=log)
        try:
            body = self.get("127.0.0.1", port, "/")
            if '"gateway"' not in body:
                raise RuntimeError(f"{config}: GET / did not reach a stub: {body!r}")
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            wait_until(lambda: children.read_text().strip() != "", timeout=10, what=f"{config} nginx workers")
            yield proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            host.procs.remove(proc)
            # Access logs grow by megabytes a run: keep only the last run's tail for diagnosis.
            for path in (log, host.path("/var/log/nginx/access.log")):
                if path.exists() and path.stat().st_size > 1 << 20:
                    path.write_bytes(path.read_bytes()[-65536:])

    def time_wait(self) -> tuple[int, int]:
        """(sockets in TIME_WAIT, local ports there are for them: the port range times the gateways)."""
        out = subprocess.run(["ip", "netns", "exec", self.ns, "ss", "-s"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        match = re.search(r"timewait (\d+)", out)
        done = subprocess.run(["ip", "netns", "exec", self.ns, "cat", "/proc/sys/net/ipv4/ip_local_port_range"],
                              capture_output=True, text=True, check=True, timeout=60)
        low, high = done.stdout.split()
        return (int(match.group(1)) if match else 0), (int(high) - int(low) + 1) * len(self.upstreams)

    def measure(self, config: str, conf: str, port: int, round_: int, duration_s: int | None = None) -> Run:
        url = f"http://127.0.0.1:{port}/"
        with self.proxy(config, conf, port) as master:
            self.wrk(url, self.options.warmup_s)
            conns0, reqs0 = self.stub_status()
            cpu0 = _cpu_ticks(master)
            out = self.wrk(url, duration_s or self.options.duration_s)
            cpu1 = _cpu_ticks(master)
            waiting, ports = self.time_wait()
            conns1, reqs1 = self.stub_status()
        seconds = out["duration_us"] / 1e6
        errors = out["connect"] + out["read"] + out["write"] + out["timeout"] + out["status"]
        cpu_us = (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") * 1e6
        return Run(config=config, round=round_, rps=out["requests"] / seconds, p50_ms=out["p50_us"] / 1000,
                   p99_ms=out["p99_us"] / 1000, errors=errors, requests=out["requests"],
                   upstream_conns=conns1 - conns0, upstream_requests=reqs1 - reqs0,
                   proxy_cpu_us_per_req=cpu_us / max(1, out["requests"]), time_wait=waiting, ports=ports)


def summarize(runs: Sequence[Run], stub_rps: float, no_reuse: Sequence[Run]) -> list[Row]:
    rows: list[Row] = []
    per: dict[str, dict[str, float]] = {}
    names = [n for n in CONFIGS if any(r.config == n for r in runs)]
    for name in names:
        mine = [r for r in runs if r.config == name]
        requests = sum(r.requests for r in mine)
        per[name] = {
            "rps": median([r.rps for r in mine]),
            "p50": median([r.p50_ms for r in mine]),
            "p99": median([r.p99_ms for r in mine]),
            "errors": sum(r.errors for r in mine),
            "conns_per_req": sum(r.upstream_conns for r in mine) / max(1, requests),
            "stub_reqs": sum(r.upstream_requests for r in mine),
            "cpu": median([r.proxy_cpu_us_per_req for r in mine]),
        }
        p = per[name]
        rows.append(Row(
            "edge", LABELS[name],
            f"{fmt_int(p['rps'])} req/s; p50 {p['p50']:.2f} ms; p99 {p['p99']:.2f} ms; {p['errors']:.0f} errors; "
            f"{p['conns_per_req']:.3f} new upstream conns/req; proxy CPU {p['cpu']:.0f} µs/req",
        ))
    rows.append(Row("edge", "one stub gateway alone, no proxy (the ceiling)", f"{fmt_int(stub_rps)} req/s"))
    vs_guide = paired(runs, "ours", "guide", "rps")
    vs_base = paired(runs, "ours", "baseline", "rps")
    p99_base = paired(runs, "ours", "baseline", "p99_ms")
    rows.append(Row("edge", "requests/s, ours / guide's", spread(vs_guide), fmt_ratio(median(vs_guide)),
                    ">= 3x", median(vs_guide) >= 3))
    rows.append(Row("edge", "requests/s, ours / baseline", spread(vs_base), fmt_ratio(median(vs_base)),
                    ">= 0.95x", median(vs_base) >= 0.95))
    rows.append(Row("edge", "p99 latency, ours / baseline", spread(p99_base), fmt_ratio(median(p99_base)),
                    "<= 1x (no worse)", median(p99_base) <= 1.0))
    cpu_guide = paired(runs, "guide", "ours", "proxy_cpu_us_per_req")
    cpu_base = paired(runs, "baseline", "ours", "proxy_cpu_us_per_req")
    rows.append(Row("edge", "proxy CPU per request (nginx workers' CPU time / requests), guide's / ours",
                    spread(cpu_guide), fmt_ratio(median(cpu_guide))))
    rows.append(Row("edge", "proxy CPU per request, baseline / ours (above 1: ours is cheaper)",
                    spread(cpu_base), fmt_ratio(median(cpu_base))))
    g, o = per["guide"]["conns_per_req"], per["ours"]["conns_per_req"]
    rows.append(Row("edge", "new upstream connections per request (counted by the stubs)",
                    f"guide's {g:.3f}, ours {o:.3f}, baseline {per['baseline']['conns_per_req']:.3f}", "",
                    "guide's opens one per request; ours reuses", g >= 0.99 and o <= 0.01))
    if no_reuse:
        by = {r.config: r for r in no_reuse}
        ours, guide = by["ours"], by["guide"]
        rows.append(Row(
            "edge", f"{NO_REUSE_S} s of load without TIME_WAIT reuse ({TW_REUSE}=0, as for traffic that is not "
            "loopback, e.g. on a Docker network): requests/s, ours / guide's (one run each)",
            f"guide's {fmt_int(guide.rps)} req/s, p99 {guide.p99_ms:.1f} ms, {guide.errors} errors, proxy CPU "
            f"{guide.proxy_cpu_us_per_req:.0f} µs/req, {fmt_int(guide.time_wait)} sockets left in TIME_WAIT "
            f"(local ports: {fmt_int(guide.ports)}); ours {fmt_int(ours.rps)} req/s, p99 {ours.p99_ms:.1f} ms, "
            f"{ours.errors} errors", fmt_ratio(ours.rps / guide.rps)))
    return rows


def _log(run_: Run, label: str) -> None:
    print(f"  edge {label} {run_.config:8s} {run_.rps:9,.0f} req/s p50 {run_.p50_ms:.2f} ms p99 {run_.p99_ms:.2f} ms "
          f"errors {run_.errors} upstream conns {run_.upstream_conns} for {run_.upstream_requests} req "
          f"cpu {run_.proxy_cpu_us_per_req:.0f} µs/req", file=sys.stderr, flush=True)


def run(options: EdgeOptions, progress: bool = True) -> Section:
    section = Section("edge")
    why = unavailable()
    if why:
        section.skipped = why
        return section
    sweep_stale_namespaces()
    s = setup()
    configs = tuple(s.configs)
    section.notes.extend(s.notes)
    section.notes.append(
        f"edge: wrk -t{options.threads} -c{options.connections} -d{options.duration_s}s (after a {options.warmup_s} s "
        f"warm-up), {options.runs} rounds, configs alternated; stubs: one nginx, {options.stub_workers} worker(s)")
    runs: list[Run] = []
    no_reuse: list[Run] = []
    tmp = tempfile.mkdtemp(prefix="banyan-bench-edge-")
    workdir = traversable(Path(tmp))
    try:
        with Bench(workdir / "loopback", s.upstreams, options) as bench:
            stub_rps = bench.stub_direct()
            for round_ in range(options.runs):
                for name in rotation(configs, round_):
                    runs.append(bench.measure(name, s.configs[name], s.listen_ports[name], round_))
                    if progress:
                        _log(runs[-1], f"round {round_ + 1}/{options.runs}")
        if options.no_reuse_pass:
            # A fresh namespace (no TIME_WAIT sockets left by the rounds above) without TIME_WAIT reuse; ours
            # first, so that it does not start among the guide's TIME_WAIT sockets.
            with Bench(workdir / "no-reuse", s.upstreams, options, sysctls=[f"{TW_REUSE}=0"]) as bench:
                for name in ("ours", "guide"):
                    no_reuse.append(bench.measure(name, s.configs[name], s.listen_ports[name], 0, NO_REUSE_S))
                    if progress:
                        _log(no_reuse[-1], f"{TW_REUSE}=0")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    section.rows = summarize(runs, stub_rps, no_reuse)
    return section
