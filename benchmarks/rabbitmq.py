"""RabbitMQ: publish-with-confirms and consume throughput on a quorum queue over the medium tier's 3 nodes, with our
rabbitmq.conf and with the stock one.

Both sides are the medium dev stack's three nodes booted through our entrypoint (cookie, users, privilege drop)
with our enabled_plugins (the official -management image's own list: management and prometheus), each in a
memory cgroup at the tier's limit. The stock side's rabbitmq.conf holds only what three nodes need to form the
same cluster (classic-config peer discovery of the same node names) and the official image's console logging;
every other setting is the server's default. The clients (benchmarks/amqp_client.py, pika) run on a service
host with the service's RABBITMQ_URLS: a fixed number of publishers and consumers, persistent 1 KiB messages,
the guide's prefetch for I/O-bound consumers.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import datatier
from benchmarks.common import (
    PROJECT_DIR,
    Row,
    Section,
    fmt_int,
    fmt_ratio,
    median,
    paired,
    percentile,
    spread,
)
from model.tiers import PREFETCH_RANGE
from testkit import netns

CONF_PATH = "/etc/rabbitmq/rabbitmq.conf"
DATA_DIR = "/var/lib/rabbitmq"
LOG_DIR = "/var/log/rabbitmq"
BOOT_TIMEOUT_S = 240
MESSAGE_BYTES = 1024
# The guide's prefetch for I/O-bound handlers is 10-20; the resolver gives a service of that kind the low end.
PREFETCH = PREFETCH_RANGE["io"][0]
STOCK_CONF = """\
# benchmarks/rabbitmq.py: the stock configuration, plus only what three nodes need to form one cluster
# (the same peer discovery as ours) and the official image's console logging.
cluster_formation.peer_discovery_backend = classic_config
{nodes}
log.console = true
"""


@dataclass(frozen=True)
class RabbitOptions:
    rounds: int = 3
    duration_s: int = 10
    warmup_s: int = 2
    publishers: int = 2
    consumers: int = 2
    # Unconfirmed messages in flight per publisher.
    window: int = 100


@dataclass
class Run:
    config: str
    round: int
    published: float  # confirmed messages/s
    consumed: float  # acked messages/s
    confirm_p50_ms: float
    confirm_p99_ms: float
    nacked: int
    blocked: int  # connection.blocked notifications (a memory or disk alarm) the publishers got
    blocked_s: float


@dataclass
class Side:
    name: str
    net: netns.Network
    nodes: list[datatier.Node]
    client: netns.Host
    urls: list[str]
    watermark_mib: float = float("nan")


def scripts_dir() -> Path | None:
    """RabbitMQ's own scripts (rabbitmq-server, rabbitmqctl), not Debian's /usr/sbin wrappers."""
    for pattern in ("/usr/lib/rabbitmq/bin/rabbitmq-server",
                    "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"):
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1]).parent
    return None


def stock_conf(ours: str) -> str:
    nodes = [ln for ln in ours.splitlines() if ln.startswith("cluster_formation.classic_config.nodes.")]
    if not nodes:
        raise RuntimeError("our rabbitmq.conf lists no classic_config nodes")
    return STOCK_CONF.format(nodes="\n".join(nodes))


def _client(host: netns.Host, args: dict[str, Any], timeout: float = 120) -> int:
    done = host.run([sys.executable, "-m", "benchmarks.amqp_client", json.dumps(args)],
                    env={"PYTHONPATH": str(PROJECT_DIR)}, timeout=timeout, check=False)
    if done.returncode != 0 and args["mode"] != "probe":
        raise RuntimeError(f"amqp_client {args['mode']} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.returncode


def boot(side: str, workdir: Path, limits: datatier.Limits, stock: str | None, scripts: Path) -> Side:
    net = netns.Network(workdir / side, f"mq{side[0]}")
    net.__enter__()
    try:
        nodes = [datatier.node(net, c, limits, side, replace={CONF_PATH: stock} if stock else {},
                               owned={DATA_DIR: ("rabbitmq", 0o755), LOG_DIR: ("rabbitmq", 0o755)},
                               env={"PATH": f"{scripts}:{datatier.PATH}"})
                 for c in datatier.containers(r"rabbitmq-\d+")]
        service = next(c for c in datatier.containers(r".+-service-\d+") if "RABBITMQ_URLS" in datatier.env_of(c))
        urls = datatier.env_of(service)["RABBITMQ_URLS"].split(",")
        s = Side(name=side, net=net, nodes=nodes, client=net.add(datatier.hostname(service)), urls=urls)
        for n in nodes:  # all together, as `pulumi up` creates them
            n.start()
        targets = [f"{urlsplit(u).hostname}:{urlsplit(u).port}" for u in urls]
        netns.wait_until(lambda: all(n.alive() for n in nodes) and _client(s.client, {"mode": "probe",
                         "targets": targets}) == 0, timeout=BOOT_TIMEOUT_S, what=f"{side}: AMQP listeners",
                         interval=1.0)
        datatier.wait_healthy(nodes, BOOT_TIMEOUT_S)
        # The memory high watermark the node computed: where publishers are blocked.
        done = nodes[0].run(["rabbitmqctl", "-q", "eval", "vm_memory_monitor:get_memory_limit()."], check=False)
        s.watermark_mib = int(done.stdout.strip()) / (1 << 20) if done.stdout.strip().isdigit() else float("nan")
        return s
    except BaseException:
        net.__exit__()
        raise


def measure(s: Side, round_: int, options: RabbitOptions, workdir: Path) -> Run:
    queue = f"bench-{round_}"
    _client(s.client, {"mode": "declare", "url": s.urls[0], "queue": queue})
    out = workdir / f"{s.name}-{round_}"
    out.mkdir()
    start_at = time.time() + 3  # every client connected and waiting by then
    common = {"queue": queue, "start_at": start_at, "warmup_s": options.warmup_s, "duration_s": options.duration_s}
    procs = []
    for i in range(options.consumers):
        args = {"mode": "consume", "url": s.urls[(i + 1) % len(s.urls)], "prefetch": PREFETCH,
                "out": str(out / f"consumer-{i}.json"), **common}
        procs.append(s.client.spawn([sys.executable, "-m", "benchmarks.amqp_client", json.dumps(args)],
                                    env={"PYTHONPATH": str(PROJECT_DIR)}, log=out / f"consumer-{i}.log"))
    for i in range(options.publishers):
        args = {"mode": "publish", "url": s.urls[i % len(s.urls)], "window": options.window,
                "size": MESSAGE_BYTES, "out": str(out / f"publisher-{i}.json"), **common}
        procs.append(s.client.spawn([sys.executable, "-m", "benchmarks.amqp_client", json.dumps(args)],
                                    env={"PYTHONPATH": str(PROJECT_DIR)}, log=out / f"publisher-{i}.log"))
    for p in procs:
        p.wait(timeout=options.warmup_s + options.duration_s + 90)
        s.client.procs.remove(p)
    results = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}
    missing = [f"{kind}-{i}" for kind, n in (("consumer", options.consumers), ("publisher", options.publishers))
               for i in range(n) if f"{kind}-{i}" not in results]
    errors = [f"{k}: {v['error']}" for k, v in results.items() if v.get("error")]
    if missing or errors:
        logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in out.glob("*.log"))
        raise RuntimeError(f"{s.name}: clients failed (missing {missing}, errors {errors})\n{logs}")
    _client(s.client, {"mode": "delete", "url": s.urls[0], "queue": queue})
    pubs = [v for k, v in results.items() if k.startswith("publisher")]
    cons = [v for k, v in results.items() if k.startswith("consumer")]
    latencies = [x for p in pubs for x in p["latencies_ms"]]
    return Run(config=s.name, round=round_, published=sum(p["confirmed"] for p in pubs) / options.duration_s,
               consumed=sum(c["acked"] for c in cons) / options.duration_s,
               confirm_p50_ms=percentile(latencies, 50), confirm_p99_ms=percentile(latencies, 99),
               nacked=sum(p["nacked"] for p in pubs), blocked=sum(p["blocked"] for p in pubs),
               blocked_s=sum(p["blocked_s"] for p in pubs))


def summarize(runs: list[Run], peaks: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
    for name in datatier.SIDES:
        mine = [r for r in runs if r.config == name]
        label = ("ours: the medium tier's rendered rabbitmq.conf" if name == "ours"
                 else "stock: defaults + the same cluster formation")
        rows.append(Row(
            "rabbitmq", label,
            f"published (confirmed) {fmt_int(median([r.published for r in mine]))} msg/s, consumed "
            f"{fmt_int(median([r.consumed for r in mine]))} msg/s; confirm latency p50 "
            f"{median([r.confirm_p50_ms for r in mine]):.1f} ms, "
            f"p99 {median([r.confirm_p99_ms for r in mine]):.1f} ms; "
            f"{sum(r.nacked for r in mine)} nacked; peak memory of the busiest node {peaks[name]:.0f} MiB; "
            f"publishers blocked by a resource alarm {sum(r.blocked for r in mine)} times, "
            f"{sum(r.blocked_s for r in mine):.1f} s in all"))
    for label, attr in (("published (confirmed) messages/s, ours / stock", "published"),
                        ("consumed messages/s, ours / stock", "consumed"),
                        ("confirm latency p99, ours / stock (below 1: ours is faster)", "confirm_p99_ms")):
        values = paired(runs, "ours", "stock", attr)
        rows.append(Row("rabbitmq", label, spread(values), fmt_ratio(median(values)) if values else "n/a"))
    return rows


def run(options: RabbitOptions, progress: bool = True) -> Section:
    section = Section("rabbitmq")
    scripts = scripts_dir()
    why = datatier.unavailable(("rabbitmq-server", "rabbitmq-server"))
    if why or scripts is None:
        section.skipped = why or "RabbitMQ's own scripts (/usr/lib/rabbitmq/bin) are missing (Debian rabbitmq-server)"
        return section
    datatier.sweep_stale()
    first = datatier.containers(r"rabbitmq-\d+")[0]
    ours = datatier.uploads(first)[CONF_PATH][0]
    stock = stock_conf(ours)
    limits = datatier.Limits(f"bnbench{os.getpid()}-mq")

    def boot_side(name: str) -> Side:
        if progress:
            print(f"  rabbitmq {name}: booting 3 nodes", file=sys.stderr, flush=True)
        return boot(name, workdir, limits, None if name == "ours" else stock, scripts)

    def shown(r: Run) -> str:
        return (f"published {r.published:7,.0f} msg/s consumed {r.consumed:7,.0f} msg/s confirm p50 "
                f"{r.confirm_p50_ms:.1f} ms p99 {r.confirm_p99_ms:.1f} ms nacked {r.nacked} blocked {r.blocked}x "
                f"{r.blocked_s:.1f} s")

    with datatier.scratch("banyan-bench-mq-") as workdir, datatier.booted(limits, boot_side) as sides:
        runs = datatier.alternate("rabbitmq", options.rounds,
                                  lambda name, round_: measure(sides[name], round_, options, workdir),
                                  shown if progress else None)
        peaks = {n: max(limits.peak_mib(x.cgroup) for x in s.nodes) for n, s in sides.items()}
    section.notes.append(
        f"rabbitmq {datatier.versions().rabbitmq}: medium tier, {len(sides['ours'].nodes)} nodes per side, our "
        f"entrypoint and enabled_plugins on both; {limits.describe({'each node': datatier.memory_mib(first)})}; CPU "
        f"not limited (the tier's {datatier.cpus(first):g} CPUs per node is the whole machine). The settings ours "
        "adds: " + "; ".join(ln for ln in ours.splitlines()
                             if ln and not ln.startswith(("#", "cluster_formation", "log."))))
    section.notes.append(
        f"rabbitmq: one quorum queue (x-queue-type quorum, declared on the first node) per run; {options.publishers} "
        f"publishers (pika, persistent {MESSAGE_BYTES} B messages, confirms, {options.window} in flight each) and "
        f"{options.consumers} consumers (prefetch {PREFETCH}, one ack per message) on different nodes; "
        f"{options.rounds} rounds, sides alternated, {options.duration_s} s measured after {options.warmup_s} s; "
        "memory high watermark as the nodes computed it (vm_memory_monitor:get_memory_limit()): "
        + ", ".join(f"{n} {s.watermark_mib:,.0f} MiB" for n, s in sides.items()))
    section.rows = summarize(runs, peaks)
    return section
