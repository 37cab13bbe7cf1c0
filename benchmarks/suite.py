"""Test suite cost: wall time of the unit and stack tests, and of the real-server suite, each as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.common import PROJECT_DIR, Row, Section, fmt_seconds

SUITES = (
    ("unit and stack tests", ("tests/unit", "tests/stacks"), 60.0),
    ("real-server suite", ("tests/servers",), None),
)
SUITE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class SuiteOptions:
    servers: bool = True


def _summary(output: str) -> str:
    """pytest's last line (`583 passed, 1 skipped in 56.56s`), without the time it reports itself."""
    lines = [ln.strip("= ") for ln in output.splitlines() if re.search(r"\b(passed|failed|skipped|error)", ln)]
    return re.sub(r"\s+in [\d.]+s.*$", "", lines[-1]) if lines else "no summary"


def run(options: SuiteOptions, progress: bool = True) -> Section:
    section = Section("suite")
    env = dict(os.environ)
    # The real-server suite skips what this machine cannot run, unless told to fail instead.
    env.pop("BANYAN_REQUIRE_SERVERS", None)
    for name, paths, target in SUITES:
        if name == "real-server suite" and not options.servers:
            section.rows.append(Row("suite", name, "not run (--no-servers)"))
            continue
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                              timeout=SUITE_TIMEOUT_S, check=False)
        seconds = time.perf_counter() - start
        summary = _summary(done.stdout)
        if progress:
            print(f"  suite {name}: {seconds:.1f} s, {summary}", file=sys.stderr, flush=True)
        if name == "real-server suite" and os.geteuid() != 0:
            summary += " (not root: the server tests skip)"
        status = "" if done.returncode == 0 else f"; exit {done.returncode}"
        section.rows.append(Row(
            "suite", f"{name}: `pytest {' '.join(paths)}`, wall time", f"{fmt_seconds(seconds)} ({summary}{status})",
            "", f"< {target:.0f} s" if target else "", seconds < target if target else None))
    return section
