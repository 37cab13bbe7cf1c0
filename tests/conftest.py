"""The whole suite: the measured lines the suites report (tests.helpers.report_measured), printed at the end of
the run under one section per suite."""

from __future__ import annotations

import pytest

from tests import helpers

# The section each suite's lines go under, in this order; another suite gets "<suite>: measured".
SECTIONS = {
    "servers": "real-server scenarios: measured",
    "docker-engine": "Docker engine: measured",
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    by_suite: dict[str, list[str]] = {}
    for suite, line in helpers.measured_lines():
        by_suite.setdefault(suite, []).append(line)
    order = [*SECTIONS, *sorted(set(by_suite) - set(SECTIONS))]
    for suite in (s for s in order if s in by_suite):
        terminalreporter.section(SECTIONS.get(suite, f"{suite}: measured"))
        for line in by_suite[suite]:
            terminalreporter.write_line(line)
