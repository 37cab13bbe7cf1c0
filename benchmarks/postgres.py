"""PostgreSQL: pgbench against the medium tier's primary and replicas, with our postgresql.conf and with the stock one.

Both sides are the medium dev stack's three PostgreSQL containers (primary, two streaming replicas through their
slots) booted through our entrypoint with our pg_hba.conf, each in a memory cgroup at the tier's limit; the
stock side's postgresql.conf is the one initdb writes for this server (what the official image runs), with
`listen_addresses = '*'` as the image sets it. pgbench runs on a service host with the service's own
DATABASE_URL / DATABASE_REPLICA_URLS: TPC-B-like read-write on the primary, select-only on replica 1.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import datatier
from benchmarks.common import Row, Section, fmt_int, fmt_ratio, median, paired, percentile, spread
from testkit import netns, unwrap

PRIMARY = "postgres-primary"
REPLICAS = ("postgres-replica-1", "postgres-replica-2")
CLIENT = "user-service-1"
CONF_PATH = "/etc/postgresql/postgresql.conf"
SOCKET_DIR = "/var/run/postgresql"
BOOT_TIMEOUT_S = 180
# About 300 MB of tables and indexes: more than the stock shared_buffers (128 MB), less than ours (1 GB).
SCALE = 20
LAG_SAMPLE_S = 0.5


@dataclass(frozen=True)
class PostgresOptions:
    rounds: int = 3
    duration_s: int = 10
    warmup_s: int = 2
    clients: int = 8
    threads: int = 2
    scale: int = SCALE


@dataclass
class Run:
    config: str
    round: int
    rw_tps: float
    rw_p99_ms: float
    ro_tps: float
    ro_p99_ms: float
    lag_ms: float  # median over the write run of the larger replica's replay_lag
    lag_max_ms: float
    lag_kib: float  # median WAL not yet replayed on the replica furthest behind


@dataclass
class Side:
    name: str
    net: netns.Network
    primary: datatier.Node
    replicas: list[datatier.Node]
    client: netns.Host
    client_env: dict[str, str]
    init_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def sql(self, query: str) -> str:
        argv = ["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR,
                "-p", self.primary.env["PGPORT"], "-U", "postgres", "-d", "postgres", "-c", query]
        return self.primary.run(argv).stdout.strip()

    def pgbench(self, url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PGCONNECT_TIMEOUT": "10"}
        argv = ["env", "-i", *(f"{k}={v}" for k, v in sorted(env.items())), "pgbench", *args, url]
        done = self.client.run(argv, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: pgbench {' '.join(args)} exited {done.returncode}\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done


def stock_conf(pg_bin: str, workdir: Path) -> str:
    """initdb's own postgresql.conf for this server, with listen_addresses = '*' as the official image sets it
    (its Dockerfile edits postgresql.conf.sample the same way); nothing else changed."""
    data = workdir / "stock-initdb"
    data.mkdir()
    subprocess.run(["chown", "postgres:postgres", str(data)], check=True)
    subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                    f"{pg_bin}/initdb", f"--pgdata={data}", "--username=postgres", "--encoding=UTF8",
                    "--locale=C.UTF-8"], check=True, capture_output=True, timeout=300)
    text = (data / "postgresql.conf").read_text()
    text, n = re.subn(r"^#?(listen_addresses)\s*=\s*\S+.*$", r"\1 = '*'", text, count=1, flags=re.M)
    if n != 1:
        raise RuntimeError("initdb's postgresql.conf has no listen_addresses line")
    return text


def _setting(conf: str, name: str) -> str:
    match = re.search(rf"^{name}\s*=\s*(\S+)", conf, re.M)
    return match.group(1).strip("'") if match else "(default)"


def boot(side: str, workdir: Path, limits: datatier.Limits, stock: str | None) -> Side:
    net = netns.Network(workdir / side, f"pg{side[0]}")
    (workdir / side).mkdir()
    net.__enter__()
    try:
        owned = {"/var/lib/postgresql": ("postgres", 0o755), SOCKET_DIR: ("root", 0o755)}
        nodes = []
        for c in datatier.containers(rf"{PRIMARY}|{'|'.join(REPLICAS)}"):
            # A new named volume takes the image directory's owner and mode (the image makes it postgres, 1777).
            volume = unwrap(c.inputs)["volumes"][0]["containerPath"]
            nodes.append(datatier.node(net, c, limits, side, replace={CONF_PATH: stock} if stock else {},
                                       owned={**owned, volume: ("postgres", 0o1777)}))
        client = datatier.containers(CLIENT)[0]
        s = Side(name=side, net=net, primary=nodes[0], replicas=nodes[1:], client=net.add(CLIENT),
                 client_env=datatier.env_of(client))
        assert s.primary.name == PRIMARY and [r.name for r in s.replicas] == list(REPLICAS)
        for n in nodes:
            n.start()
        datatier.wait_healthy(nodes, BOOT_TIMEOUT_S)
        return s
    except BaseException:
        net.__exit__()
        raise


def caught_up(s: Side) -> bool:
    out = s.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
                "AND replay_lsn = pg_current_wal_lsn()")
    return out == str(len(s.replicas))


def init(s: Side, options: PostgresOptions) -> None:
    start = time.monotonic()
    s.pgbench(s.client_env["DATABASE_URL"], "-i", "-q", "-s", str(options.scale))
    s.init_s = time.monotonic() - start
    netns.wait_until(lambda: caught_up(s), timeout=300, what=f"{s.name}: the replicas replaying pgbench -i")


def _latencies(prefix: Path) -> list[float]:
    """Per-transaction latency (ms) from pgbench's -l logs: `client txn latency_us script epoch epoch_us`."""
    out: list[float] = []
    for path in glob.glob(f"{prefix}*"):
        for line in Path(path).read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6:
                out.append(int(fields[2]) / 1000)
        Path(path).unlink()
    return out


def _tps(output: str) -> float:
    match = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.M)
    if match is None:
        raise RuntimeError(f"no tps line in pgbench's output:\n{output[-2000:]}")
    return float(match.group(1))


def load(s: Side, url: str, options: PostgresOptions, logdir: Path, *extra: str) -> tuple[float, float]:
    """(tps, p99 ms) of one pgbench run after an untimed warm-up."""
    common = ["-c", str(options.clients), "-j", str(options.threads), "-M", "prepared", "-n", *extra]
    if options.warmup_s:
        s.pgbench(url, *common, "-T", str(options.warmup_s))
    prefix = logdir / f"{s.name}-{time.monotonic_ns()}"
    done = s.pgbench(url, *common, "-T", str(options.duration_s), "-l", f"--log-prefix={prefix}")
    return _tps(done.stdout), percentile(_latencies(prefix), 99)


def measure(s: Side, round_: int, options: PostgresOptions, logdir: Path) -> Run:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        query = ("SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0), "
                 "coalesce(max(extract(epoch FROM replay_lag)) * 1000, 0) FROM pg_stat_replication")
        while not stop.wait(LAG_SAMPLE_S):
            try:
                lag_bytes, lag_ms = s.sql(query).split("|")
            except (AssertionError, subprocess.TimeoutExpired, ValueError):
                continue
            samples.append((float(lag_bytes), float(lag_ms)))

    netns.wait_until(lambda: caught_up(s), timeout=120, what=f"{s.name}: replicas caught up before the run")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rw_tps, rw_p99 = load(s, s.client_env["DATABASE_URL"], options, logdir)
    finally:
        stop.set()
        sampler.join()
    replica = s.client_env["DATABASE_REPLICA_URLS"].split(",")[0]
    ro_tps, ro_p99 = load(s, replica, options, logdir, "-S")
    return Run(config=s.name, round=round_, rw_tps=rw_tps, rw_p99_ms=rw_p99, ro_tps=ro_tps, ro_p99_ms=ro_p99,
               lag_ms=median([ms for _, ms in samples]), lag_max_ms=max((ms for _, ms in samples), default=0.0),
               lag_kib=median([b / 1024 for b, _ in samples]))


def summarize(runs: list[Run], sides: dict[str, Side], peaks: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
    for name in datatier.SIDES:
        mine = [r for r in runs if r.config == name]
        label = ("ours: the medium tier's rendered postgresql.conf" if name == "ours"
                 else "stock: initdb's postgresql.conf (listen_addresses = '*')")
        rows.append(Row(
            "postgres", label,
            f"read-write {fmt_int(median([r.rw_tps for r in mine]))} TPS, p99 "
            f"{median([r.rw_p99_ms for r in mine]):.1f} ms; read-only on a replica "
            f"{fmt_int(median([r.ro_tps for r in mine]))} TPS, p99 {median([r.ro_p99_ms for r in mine]):.2f} ms; "
            f"replay lag under the writes {median([r.lag_ms for r in mine]):.1f} ms (max "
            f"{max(r.lag_max_ms for r in mine):.1f} ms, {median([r.lag_kib for r in mine]):.0f} KiB behind); "
            f"pgbench -i {sides[name].init_s:.1f} s; primary's peak memory {peaks[name]:.0f} MiB"))
    for label, attr in (("read-write (TPC-B-like) TPS, ours / stock", "rw_tps"),
                        ("read-write p99 latency, ours / stock (below 1: ours is faster)", "rw_p99_ms"),
                        ("read-only TPS on replica 1, ours / stock", "ro_tps"),
                        ("read-only p99 latency, ours / stock (below 1: ours is faster)", "ro_p99_ms"),
                        ("replica replay lag under the write load, ours / stock (below 1: ours is closer)",
                         "lag_ms")):
        values = paired(runs, "ours", "stock", attr)
        rows.append(Row("postgres", label, spread(values), fmt_ratio(median(values)) if values else "n/a"))
    return rows


def run(options: PostgresOptions, progress: bool = True) -> Section:
    section = Section("postgres")
    why = datatier.unavailable(("/usr/lib/postgresql/*/bin/postgres", "postgresql"),
                               ("pgbench", "postgresql-client (or postgresql-contrib)"), ("psql", "postgresql-client"))
    if why:
        section.skipped = why
        return section
    datatier.sweep_stale()
    v = datatier.versions()
    assert v.postgres_bin
    ours_conf = datatier.uploads(datatier.containers(PRIMARY)[0])[CONF_PATH][0]

    def boot_side(name: str) -> Side:
        if progress:
            print(f"  postgres {name}: booting primary + {len(REPLICAS)} replicas, pgbench -i -s {options.scale}",
                  file=sys.stderr, flush=True)
        side = boot(name, workdir, limits, None if name == "ours" else stock)
        init(side, options)
        return side

    def shown(r: Run) -> str:
        return (f"rw {r.rw_tps:7,.0f} TPS p99 {r.rw_p99_ms:.1f} ms | ro {r.ro_tps:7,.0f} TPS p99 {r.ro_p99_ms:.2f} "
                f"ms | lag {r.lag_ms:.1f} ms ({r.lag_kib:.0f} KiB)")

    with datatier.scratch("banyan-bench-pg-") as workdir:
        stock = stock_conf(v.postgres_bin, workdir)
        limits = datatier.Limits(f"bnbench{os.getpid()}-pg")
        with datatier.booted(limits, boot_side) as sides:
            logdir = workdir / "pgbench-logs"
            logdir.mkdir()
            runs = datatier.alternate("postgres", options.rounds,
                                      lambda name, round_: measure(sides[name], round_, options, logdir),
                                      shown if progress else None)
            peaks = {n: limits.peak_mib(s.primary.cgroup) for n, s in sides.items()}
    primary = datatier.containers(PRIMARY)[0]
    section.notes.append(
        f"postgres {v.postgres}: medium tier, primary + {len(REPLICAS)} streaming replicas per side, our entrypoint "
        f"and pg_hba.conf on both; {limits.describe({PRIMARY: datatier.memory_mib(primary)})} (replicas alike); "
        f"CPU not limited (the tier's {datatier.cpus(primary):g} CPUs per instance is the whole machine). Ours: "
        f"shared_buffers {_setting(ours_conf, 'shared_buffers')}, work_mem {_setting(ours_conf, 'work_mem')}, "
        f"max_connections {_setting(ours_conf, 'max_connections')}; stock: shared_buffers "
        f"{_setting(stock, 'shared_buffers')}, max_connections {_setting(stock, 'max_connections')}")
    section.notes.append(
        f"postgres: pgbench -s {options.scale} (-i once per side), then {options.rounds} rounds, sides alternated; "
        f"each run -c {options.clients} -j {options.threads} -M prepared -T {options.duration_s} after "
        f"{options.warmup_s} s untimed; read-write = built-in tpcb-like on DATABASE_URL, read-only = -S on the "
        f"first DATABASE_REPLICA_URLS; p99 from pgbench's per-transaction log; lag = pg_stat_replication."
        f"replay_lag on the primary every {LAG_SAMPLE_S} s during the write run")
    section.rows = summarize(runs, sides, peaks)
    return section
