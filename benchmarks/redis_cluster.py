"""Redis: redis-benchmark in cluster mode against the medium tier's 3-master cluster, with our redis.conf and with the
stock one of the same persistence class.

Both sides are the medium dev stack's three nodes booted through our start.sh (password from the environment,
privilege drop) and joined by our create-cluster.sh, each node in a memory cgroup at the tier's limit. The
stock side's redis.conf holds only what the same cluster needs (cluster-enabled, the data directory, every
interface) and the same persistence class as ours (append-only file, fsync every second: the stock default once
appendonly is on); every other setting is the server's default (RDB snapshot rules included). redis-benchmark
(Debian's redis-tools) runs on a client host: SET, then GET, on random keys.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import datatier
from benchmarks.common import Row, Section, fmt_int, fmt_ratio, median, paired, spread
from testkit import netns

CONF_PATH = "/usr/local/etc/redis/redis.conf"
CREATE = "redis-cluster-create"
CLIENT = "redis-client"
BOOT_TIMEOUT_S = 60
CREATE_TIMEOUT_S = 120
KEYSPACE = 100_000
VALUE_BYTES = 256
TESTS = ("SET", "GET")
STOCK_CONF = """\
# benchmarks/redis_cluster.py: the stock configuration, plus only what the same cluster needs and the same
# persistence class as ours (AOF; appendfsync everysec is the default).
bind * -::*
dir {data}
cluster-enabled yes
appendonly {appendonly}
"""


@dataclass(frozen=True)
class RedisOptions:
    rounds: int = 3
    duration_s: int = 10
    warmup_s: int = 2
    clients: int = 50
    threads: int = 2


@dataclass
class Run:
    config: str
    round: int
    set_ops: float
    set_p99_ms: float
    get_ops: float
    get_p99_ms: float


@dataclass
class Side:
    name: str
    net: netns.Network
    nodes: list[datatier.Node]
    client: netns.Host
    password: str
    port: int


def stock_conf(ours: str) -> str:
    data = re.search(r"^dir (\S+)$", ours, re.M)
    appendonly = re.search(r"^appendonly (\S+)$", ours, re.M)
    if data is None or appendonly is None:
        raise RuntimeError("our redis.conf has no dir or appendonly line")
    return STOCK_CONF.format(data=data.group(1), appendonly=appendonly.group(1))


def boot(side: str, workdir: Path, limits: datatier.Limits, stock: str | None) -> Side:
    net = netns.Network(workdir / side, f"rd{side[0]}")
    net.__enter__()
    try:
        nodes = [datatier.node(net, c, limits, side, replace={CONF_PATH: stock} if stock else {})
                 for c in datatier.containers(r"redis-node-\d+")]
        create = datatier.node(net, datatier.containers(CREATE)[0], limits, side, limit=False)
        port = int(re.search(r"^port (\d+)$", datatier.uploads(nodes[0].resource)[CONF_PATH][0], re.M).group(1))  # type: ignore[union-attr]
        s = Side(name=side, net=net, nodes=nodes, client=net.add(CLIENT), password=create.env["REDISCLI_AUTH"],
                 port=port)
        for n in nodes:
            n.start()
        datatier.wait_healthy(nodes, BOOT_TIMEOUT_S)
        done = create.run(create.argv, timeout=CREATE_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{side}: create-cluster.sh exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return s
    except BaseException:
        net.__exit__()
        raise


def benchmark(s: Side, requests: int, options: RedisOptions) -> dict[str, tuple[float, float]]:
    """{test: (ops/s, p99 ms)} of one redis-benchmark run."""
    argv = ["redis-benchmark", "--cluster", "-h", s.nodes[0].name, "-p", str(s.port), "-a", s.password,
            "-t", ",".join(t.lower() for t in TESTS), "-n", str(requests), "-r", str(KEYSPACE), "-d", str(VALUE_BYTES),
            "-c", str(options.clients), "--threads", str(options.threads), "--csv", "--precision", "3"]
    done = s.client.run(argv, timeout=options.duration_s * 10 + 120, check=False)
    # In cluster mode the CSV follows a description of the masters it found.
    text = done.stdout[done.stdout.find('"test",'):] if '"test",' in done.stdout else ""
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("test") in TESTS]
    if done.returncode != 0 or len(rows) != len(TESTS):
        raise RuntimeError(f"{s.name}: redis-benchmark exited {done.returncode}\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-2000:]}")
    return {r["test"]: (float(r["rps"]), float(r["p99_latency_ms"])) for r in rows}


def _forks(n: datatier.Node, port: int) -> int:
    """Child processes the node forked (RDB snapshots, AOF rewrites), from INFO stats."""
    done = n.run(["redis-cli", "-p", str(port), "info", "stats"], check=False)
    match = re.search(r"^total_forks:(\d+)", done.stdout.replace("\r", ""), re.M)
    return int(match.group(1)) if match else -1


def measure(s: Side, round_: int, requests: dict[str, int], options: RedisOptions) -> Run:
    if options.warmup_s:
        benchmark(s, max(1000, requests["SET"] * options.warmup_s // options.duration_s), options)
    got = benchmark(s, requests["SET"], options)
    return Run(config=s.name, round=round_, set_ops=got["SET"][0], set_p99_ms=got["SET"][1], get_ops=got["GET"][0],
               get_p99_ms=got["GET"][1])


def summarize(runs: list[Run], peaks: dict[str, float], forks: dict[str, int]) -> list[Row]:
    rows: list[Row] = []
    for name in datatier.SIDES:
        mine = [r for r in runs if r.config == name]
        label = ("ours: the medium tier's rendered redis.conf" if name == "ours"
                 else "stock: defaults + cluster-enabled, the same AOF persistence")
        rows.append(Row(
            "redis", label,
            f"SET {fmt_int(median([r.set_ops for r in mine]))} ops/s, "
            f"p99 {median([r.set_p99_ms for r in mine]):.2f} ms; "
            f"GET {fmt_int(median([r.get_ops for r in mine]))} ops/s, "
            f"p99 {median([r.get_p99_ms for r in mine]):.2f} ms; "
            f"peak memory of the busiest node {peaks[name]:.0f} MiB; {forks[name]} forks for persistence "
            "(RDB snapshots, AOF rewrites) over the whole part"))
    for label, attr in (("SET ops/s, ours / stock", "set_ops"),
                        ("SET p99 latency, ours / stock (below 1: ours is faster)", "set_p99_ms"),
                        ("GET ops/s, ours / stock", "get_ops"),
                        ("GET p99 latency, ours / stock (below 1: ours is faster)", "get_p99_ms")):
        values = paired(runs, "ours", "stock", attr)
        rows.append(Row("redis", label, spread(values), fmt_ratio(median(values)) if values else "n/a"))
    return rows


def run(options: RedisOptions, progress: bool = True) -> Section:
    section = Section("redis")
    why = datatier.unavailable(("redis-server", "redis-server"), ("redis-cli", "redis-tools"),
                               ("redis-benchmark", "redis-tools"), ("getent", "libc-bin"))
    if why:
        section.skipped = why
        return section
    datatier.sweep_stale()
    first = datatier.containers(r"redis-node-\d+")[0]
    ours = datatier.uploads(first)[CONF_PATH][0]
    stock = stock_conf(ours)
    limits = datatier.Limits(f"bnbench{os.getpid()}-rd")

    def boot_side(name: str) -> Side:
        if progress:
            print(f"  redis {name}: booting 3 nodes, creating the cluster", file=sys.stderr, flush=True)
        return boot(name, workdir, limits, None if name == "ours" else stock)

    def shown(r: Run) -> str:
        return (f"SET {r.set_ops:9,.0f} ops/s p99 {r.set_p99_ms:.2f} ms | GET {r.get_ops:9,.0f} ops/s p99 "
                f"{r.get_p99_ms:.2f} ms")

    with datatier.scratch("banyan-bench-rd-") as workdir, datatier.booted(limits, boot_side) as sides:
        # redis-benchmark counts requests, not seconds: a short calibration on our side sizes every run
        # (the same count for both sides) to about --data-duration seconds per test.
        calibrated = benchmark(sides["ours"], 20_000, options)
        requests = {t: max(10_000, int(min(ops for ops, _ in calibrated.values()) * options.duration_s))
                    for t in TESTS}
        runs = datatier.alternate("redis", options.rounds,
                                  lambda name, round_: measure(sides[name], round_, requests, options),
                                  shown if progress else None)
        peaks = {n: max(limits.peak_mib(x.cgroup) for x in s.nodes) for n, s in sides.items()}
        forks = {n: sum(_forks(x, s.port) for x in s.nodes) for n, s in sides.items()}
    section.notes.append(
        f"redis {datatier.versions().redis}: medium tier, a cluster of {len(sides['ours'].nodes)} masters per side, "
        f"our start.sh and create-cluster.sh on both; {limits.describe({'each node': datatier.memory_mib(first)})}; "
        f"CPU not limited (the tier's {datatier.cpus(first):g} CPU per node; Redis serves commands on one thread). "
        "Ours sets: " + "; ".join(ln for ln in ours.splitlines()
                                  if ln and not ln.startswith(("#", "cluster-announce"))))
    section.notes.append(
        f"redis: redis-benchmark --cluster -t set,get -n {requests['SET']:,} -r {KEYSPACE:,} -d {VALUE_BYTES} "
        f"-c {options.clients} --threads {options.threads} (the count from a calibration run on ours, about "
        f"{options.duration_s} s per test), after an untimed run of {options.warmup_s}/{options.duration_s} of "
        f"that; {options.rounds} rounds, sides alternated")
    section.rows = summarize(runs, peaks, forks)
    return section
