"""The failover test's reader of the writer's log (tests/servers/redis_probe.py): it reads while the writer
runs, so the last line can be half-written; that line waits for the next read instead of failing the test."""

from __future__ import annotations

import json
from pathlib import Path

from tests.servers.redis_probe import read_poll_log

ATTEMPTS = [{"n": 1, "t0": 1.5, "ok": True, "node": "10.231.0.2:6379", "t1": 1.6},
            {"n": 2, "t0": 1.7, "ok": False, "err": "ConnectionError: Connection refused", "t1": 2.7}]


def test_a_half_written_last_line_is_left_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "failover.log"
    whole = "".join(json.dumps(a) + "\n" for a in ATTEMPTS)
    third = json.dumps({"n": 3, "t0": 2.8, "ok": True, "node": "10.231.0.3:6379", "t1": 2.9}) + "\n"
    for cut in range(1, len(third) - 1):
        log.write_text(whole + third[:cut])
        assert read_poll_log(log) == ATTEMPTS, f"cut after {cut} characters"
    log.write_text(whole + third)
    assert [a["n"] for a in read_poll_log(log)] == [1, 2, 3]


def test_stderr_lines_and_a_missing_log_are_no_attempts(tmp_path: Path) -> None:
    log = tmp_path / "failover.log"
    assert read_poll_log(log) == []
    log.write_text("Traceback (most recent call last): ...\n" + json.dumps(ATTEMPTS[0]) + "\nwarning: ä\n")
    assert read_poll_log(log) == ATTEMPTS[:1]
