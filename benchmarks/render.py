"""Rendering cost: time and peak memory to render the stacks under mocks, against a flat floor, and growth.

Every measurement is a fresh process (benchmarks/render_worker.py); ours and the floor alternate, and each
figure is the median of `runs` processes.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import PROJECT_DIR, Row, Section, fmt_ratio, median

STACKS = ("dev", "prod")
TIERS = ("small", "medium", "large")
# The tier each stack file names: the growth runs keep it.
STACK_TIER = {"dev": "small", "prod": "large"}
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class RenderOptions:
    runs: int = 3
    # Renders timed within each process (the median is taken): the per-tier figures only; growth renders once.
    repeat: int = 3
    growth: tuple[int, ...] = (1, 10, 100)


@dataclass
class Pair:
    """Median time and peak RSS of ours and of the floor for one configuration."""

    resources: int
    ours_s: float
    floor_s: float
    ours_mb: float
    floor_mb: float

    @property
    def ratio(self) -> float:
        return self.ours_s / self.floor_s


def _worker(request: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.render_worker", json.dumps(request)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"render worker {request} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(stack: str, sets: dict[str, Any], services: int | None, runs: int, tmp: Path, repeat: int) -> Pair:
    dump = tmp / f"{stack}-{'-'.join(f'{k}={v}' for k, v in sorted(sets.items()))}-{services}.json"
    ours: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    for i in range(runs):
        ours.append(_worker({"kind": "ours", "stack": stack, "sets": sets, "services": services, "repeat": repeat,
                             "dump": str(dump) if i == 0 else None}))
        floor.append(_worker({"kind": "floor", "stack": stack, "floor": str(dump), "repeat": repeat}))
    counts = {r["resources"] for r in ours + floor}
    if len(counts) != 1:
        raise RuntimeError(f"ours and the floor registered different counts: {counts}")
    return Pair(
        resources=counts.pop(),
        ours_s=median([r["seconds"] for r in ours]),
        floor_s=median([r["seconds"] for r in floor]),
        ours_mb=median([r["peak_rss_bytes"] / 1e6 for r in ours]),
        floor_mb=median([r["peak_rss_bytes"] / 1e6 for r in floor]),
    )


def _progress(text: str) -> None:
    print(f"  render {text}", file=sys.stderr, flush=True)


def run(options: RenderOptions, progress: bool = True) -> Section:
    section = Section("render")
    section.notes.append(
        f"render: median of {options.runs} fresh processes each (per tier: each the median of {options.repeat} "
        "renders; "
        "growth: one render each); time of the render call after imports and one untimed render; peak = the "
        "process's peak RSS (VmHWM: interpreter, SDK and providers included); floor = the same count of plain "
        "resources with the same inputs, registered flat under the same mocks")
    with tempfile.TemporaryDirectory(prefix="banyan-bench-render-") as tmp:
        for stack in STACKS:
            for tier in TIERS:
                p = measure(stack, {"tier": tier}, None, options.runs, Path(tmp), options.repeat)
                if progress:
                    _progress(f"{stack} {tier}: {p}")
                big = stack == "prod" and tier == "large"
                section.rows.append(Row(
                    "render", f"{stack} stack, tier {tier} ({p.resources} resources): time, ours / floor",
                    f"{p.ours_s:.3f} s vs {p.floor_s:.3f} s; peak {p.ours_mb:.0f} MB vs {p.floor_mb:.0f} MB",
                    fmt_ratio(p.ratio), "<= 1.5x" if big else "", p.ratio <= 1.5 if big else None))
                if big:
                    section.rows.append(Row(
                        "render", f"{stack} stack, tier {tier}: peak memory, ours / floor", f"{p.ours_mb:.0f} MB",
                        fmt_ratio(p.ours_mb / p.floor_mb), "< 300 MB", p.ours_mb < 300))
        for stack in STACKS:
            tier = STACK_TIER[stack]
            pairs = []
            for n in options.growth:
                p = measure(stack, {"tier": tier}, n, options.runs, Path(tmp), 1)
                pairs.append(p)
                if progress:
                    _progress(f"{stack} {tier} {n} services: {p}")
            steps = list(zip(options.growth, pairs, strict=True))
            result = "; ".join(f"{n}: {p.ours_s:.2f} s ({p.resources} res.)" for n, p in steps)
            floors = ", ".join(f"{p.floor_s:.2f}" for p in pairs)
            growth = [b.ours_s / a.ours_s for a, b in itertools.pairwise(pairs)]
            floor_growth = [b.floor_s / a.floor_s for a, b in itertools.pairwise(pairs)]
            labels = [f"{a}->{b}" for a, b in itertools.pairwise(options.growth)]
            ratio = ", ".join(f"{label}: {g:.1f}x" for label, g in zip(labels, growth, strict=True))
            floor_ratio = ", ".join(f"{g:.1f}x" for g in floor_growth)
            last = growth[-1] if growth else float("nan")
            checked = options.growth[-2:] == (10, 100)
            section.rows.append(Row(
                "render", f"{stack} stack, tier {tier}, business services {' / '.join(map(str, options.growth))}",
                f"{result}; floor {floors} s (growth {floor_ratio})", ratio,
                "10->100 <= 11x" if checked else "", last <= 11 if checked else None))
    return section

