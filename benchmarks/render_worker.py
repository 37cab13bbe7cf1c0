"""One rendering measurement in a fresh process: `python -m benchmarks.render_worker <request JSON>`.

Prints one JSON line: the seconds the render took (the median of `repeat` renders in the process), the
process's peak RSS and the resources registered.
Both kinds import the same modules and render once untimed first (the SDK and provider packages load
some modules lazily), so the timed render measures rendering, not imports: ours renders the same
stack and tier with one service first, the floor its first five resources.

- ours: the real stack program (testkit.render_stack) on Pulumi.<stack>.yaml plus `sets`.
- floor: a flat program registering, under the same mocks (BanyanMocks, testkit.render_program),
  one plain pulumi.CustomResource of a fake type per resource ours registered, each with that resource's
  own inputs as plain values (read from `floor`, a file written by an earlier `ours` run with `dump`).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import pulumi

import components.platform  # noqa: F401 (imported by both kinds, so both pay for the same modules)
import infra.program  # noqa: F401
from testkit import Rendering, render_program, render_stack

FLOOR_TYPE = "floor:index:Plain"


def generated_services(count: int) -> list[dict[str, Any]]:
    """`count` business services like the stack files' examples, with distinct names. Each pools one database
    connection: at 100 services of the large tier the connection budget (80 % of max_connections, at most
    10000) would otherwise refuse the stack, as it should for a real one."""
    return [
        {"name": f"svc-{i:03d}", "image": "python:3.12.8-alpine",
         "command": ["python", "-m", "http.server", "3000"], "health_path": "/", "workload": "io",
         "pool": {"max": 1}}
        for i in range(1, count + 1)
    ]


def floor_program(items: Sequence[dict[str, Any]]) -> Callable[[], None]:
    def program() -> None:
        for i, item in enumerate(items):
            pulumi.CustomResource(FLOOR_TYPE, f"plain-{i}", dict(item["inputs"]))

    return program


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that across exec, so a worker started from a large parent
    would report the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(request: dict[str, Any]) -> dict[str, Any]:
    stack: str = request["stack"]
    sets: dict[str, Any] = dict(request.get("sets") or {})
    if request.get("services"):
        sets["services"] = generated_services(int(request["services"]))
    render: Callable[[], Rendering]
    if request["kind"] == "floor":
        with open(request["floor"]) as f:
            items: list[dict[str, Any]] = json.load(f)
        render_program(floor_program(items[:5]), {}, project="banyan", stack=stack)

        def render() -> Rendering:
            return render_program(floor_program(items), {}, project="banyan", stack=stack)
    else:
        # The same tier with one service loads every module the timed render uses (pulumi_kubernetes
        # imports its resource modules on first use: 0.1 s for batch/v1 alone).
        render_stack(stack, set={**sets, "services": generated_services(1)})

        def render() -> Rendering:
            return render_stack(stack, set=sets)
    times = []
    for _ in range(int(request.get("repeat") or 1)):
        gc.collect()
        start = time.perf_counter()
        rendering = render()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    # Read before anything else is allocated (the dump below).
    peak_bytes = peak_rss_bytes()
    if request["kind"] == "ours" and request.get("dump"):
        with open(request["dump"], "w") as f:
            json.dump([{"type": r.type, "inputs": r.plain_inputs} for r in rendering.resources], f, default=str)
    return {"seconds": seconds, "peak_rss_bytes": peak_bytes, "resources": len(rendering.resources)}


def main(argv: Sequence[str]) -> None:
    out = measure(json.loads(argv[0]))
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: nothing is left to flush, and the SDK's closed event loops complain at exit.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
