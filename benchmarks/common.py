"""What every benchmark shares: result rows, medians, the machine description and the printed table."""

from __future__ import annotations

import glob
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the printed table."""

    part: str
    measurement: str
    result: str
    ratio: str = ""
    target: str = ""
    # True / False when the row has a target; None when it is informational.
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "**no**", None: ""}[self.met]


@dataclass
class Section:
    """A part's rows, or why it did not run."""

    name: str
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method: a value that was actually measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def rotation(names: Sequence[str], round_: int) -> list[str]:
    """The order of the configs in round `round_`: shifted by one each round, so none always runs first."""
    shift = round_ % len(names)
    return [*names[shift:], *names[:shift]]


class Measured(Protocol):
    """One run of one config in one round (the edge's, the data tier's)."""

    @property
    def config(self) -> str: ...

    @property
    def round(self) -> int: ...


def paired(runs: Sequence[Measured], a: str, b: str, attr: str) -> list[float]:
    """attr of `a` / attr of `b`, per round: the configs of one round ran within seconds of each other, so
    whatever else the machine did then weighs on both. The table reports the median of these."""
    by_round: dict[int, dict[str, Measured]] = {}
    for r in runs:
        by_round.setdefault(r.round, {})[r.config] = r
    return [getattr(rs[a], attr) / getattr(rs[b], attr) for rs in by_round.values()
            if a in rs and b in rs and getattr(rs[b], attr) > 0]


def spread(values: Sequence[float]) -> str:
    return f"median of {len(values)}; runs {min(values):.2f}-{max(values):.2f}" if values else ""


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _cmd_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def _package(name: str) -> str:
    """A Debian package's installed version, or ''."""
    if shutil.which("dpkg-query") is None:
        return ""
    out = _cmd_output(["dpkg-query", "-W", "-f", "${Status}|${Version}", name])
    status, _, version = out.partition("|")
    return version if status.endswith("installed") and "not-installed" not in status else ""


def _dist(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    debian = Path("/etc/debian_version")
    nginx = re.search(r"nginx/(\S+)", _cmd_output(["nginx", "-v"])) if shutil.which("nginx") else None
    wrk = _package("wrk")
    majors = sorted((p.split("/")[4] for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")), key=int)
    try:
        from importlib.metadata import version

        pulumi = version("pulumi")
    except Exception:  # informational only
        pulumi = "?"
    return {
        "CPUs": f"{len(os.sched_getaffinity(0))} (nproc)",
        "CPU model": model.group(1).strip() if model else "?",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "OS": f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
        "kernel": platform.release(),
        "nginx": nginx.group(1) if nginx else "not installed",
        "wrk": wrk or ("installed" if shutil.which("wrk") else "not installed"),
        # The data tier's servers (Debian's packages) and their clients.
        "PostgreSQL": _package(f"postgresql-{majors[-1]}") if majors else "not installed",
        "RabbitMQ": _package("rabbitmq-server") or "not installed",
        "Erlang": _package("erlang-base") or "not installed",
        "Redis": _package("redis-server") or "not installed",
        "pika": _dist("pika"),
        # Other work on the machine while the run ended (the cores are shared): 1, 5 and 15 minute averages.
        "load average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "Python": sys.version.split()[0],
        "pulumi SDK": pulumi,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(sections: Sequence[Section]) -> str:
    """One Markdown table for every part; a part that could not run says why in one row."""
    head = ["part", "measurement", "result", "ratio", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for section in sections:
        if section.skipped is not None:
            lines.append(f"| {section.name} | skipped | {_cell(section.skipped)} |  |  |  |")
            continue
        for row in section.rows:
            cells = [row.part, row.measurement, row.result, row.ratio, row.target, row.verdict]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
