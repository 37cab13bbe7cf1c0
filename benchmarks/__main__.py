"""`python -m benchmarks`: run every benchmark and print one table (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence

from benchmarks import common, edge, postgres, rabbitmq, redis_cluster, render, suite

PARTS = ("edge", "postgres", "rabbitmq", "redis", "render", "suite")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 short edge round, 1 render each, no real-server suite (not for the record)")
    p.add_argument("--edge-runs", type=int, default=8, help="edge rounds (each runs every config once)")
    p.add_argument("--duration", type=int, default=6, help="seconds of load per edge run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of untimed load before each edge run")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--render-runs", type=int, default=3, help="fresh processes per rendering figure")
    p.add_argument("--render-repeat", type=int, default=3, help="timed renders per process (per-tier figures)")
    p.add_argument("--no-servers", action="store_true", help="skip timing the real-server suite")
    p.add_argument("--data-rounds", type=int, default=3,
                   help="data-tier rounds (postgres, rabbitmq, redis; each runs our config and the stock one)")
    p.add_argument("--data-duration", type=int, default=10, help="seconds of load per data-tier run")
    p.add_argument("--data-warmup", type=int, default=2, help="seconds of untimed load before each data-tier run")
    p.add_argument("--json", metavar="PATH", help="also write the rows, notes and machine as JSON")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if args.quick:
        args.edge_runs, args.duration, args.warmup, args.render_runs, args.no_servers = 1, 3, 1, 1, True
        args.render_repeat, args.no_reuse_pass = 1, False
        args.data_rounds, args.data_duration, args.data_warmup = 1, 3, 1
    else:
        args.no_reuse_pass = True
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    started = time.monotonic()
    sections: list[common.Section] = []
    if "edge" in args.parts:
        print("== edge proxy (nginx + wrk)", file=sys.stderr, flush=True)
        sections.append(edge.run(edge.EdgeOptions(runs=args.edge_runs, duration_s=args.duration,
                                                  warmup_s=args.warmup, connections=args.connections,
                                                  threads=args.threads, no_reuse_pass=args.no_reuse_pass)))
    data = {"rounds": args.data_rounds, "duration_s": args.data_duration, "warmup_s": args.data_warmup}
    if "postgres" in args.parts:
        print("== postgres (pgbench): ours vs stock postgresql.conf", file=sys.stderr, flush=True)
        sections.append(postgres.run(postgres.PostgresOptions(**data)))
    if "rabbitmq" in args.parts:
        print("== rabbitmq (quorum queue, confirms): ours vs stock rabbitmq.conf", file=sys.stderr, flush=True)
        sections.append(rabbitmq.run(rabbitmq.RabbitOptions(**data)))
    if "redis" in args.parts:
        print("== redis cluster (redis-benchmark): ours vs stock redis.conf", file=sys.stderr, flush=True)
        sections.append(redis_cluster.run(redis_cluster.RedisOptions(**data)))
    if "render" in args.parts:
        print("== rendering cost", file=sys.stderr, flush=True)
        sections.append(render.run(render.RenderOptions(runs=args.render_runs, repeat=args.render_repeat)))
    if "suite" in args.parts:
        print("== test suite cost", file=sys.stderr, flush=True)
        sections.append(suite.run(suite.SuiteOptions(servers=not args.no_servers)))
    elapsed = time.monotonic() - started
    machine = common.machine()
    print()
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
    for section in sections:
        for note in section.notes:
            print(f"- {note}")
    print(f"- whole run: {elapsed / 60:.1f} min")
    print()
    print(common.table(sections))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "elapsed_s": elapsed,
                       "sections": [dataclasses.asdict(s) for s in sections]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
