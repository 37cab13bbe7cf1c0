"""The real API server suite's summary: every refusal and warning the server gave in this run."""

from __future__ import annotations

import pytest

from tests.e2e.apiserver.apiserver import REFUSALS, WARNED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The same object refused (or warned about) the same way in several tiers is listed once.
    if REFUSALS:
        terminalreporter.section("kube-apiserver: refused objects")
        for line in dict.fromkeys(f"{test}: {refused}" for test, refused in REFUSALS):
            terminalreporter.write_line(line)
    if WARNED:
        terminalreporter.section("kube-apiserver: warnings on accepted objects")
        for line in dict.fromkeys(f"{what}: {warning}" for what, warning in WARNED):
            terminalreporter.write_line(line)
