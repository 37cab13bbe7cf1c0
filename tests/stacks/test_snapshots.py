"""Golden snapshots: every resource of every stack as a readable file, so a PR shows infrastructure changes.

Update after an intended change (then review the diff like code):
    python -m tooling.snapshots
"""

from __future__ import annotations

import difflib
import re

import pytest

from tooling.snapshots import SNAPSHOT_DIR, snapshot, stacks


@pytest.mark.parametrize("stack", stacks())
def test_snapshot_is_current(stack: str) -> None:
    path = SNAPSHOT_DIR / f"{stack}.txt"
    assert path.exists(), f"no snapshot for {stack}: run `python -m tooling.snapshots`"
    expected, actual = path.read_text(), snapshot(stack)
    if expected != actual:
        delta = "".join(list(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                                  f"{stack}.txt (committed)", f"{stack} (rendered)"))[:80])
        pytest.fail(f"the {stack} stack renders differently from its snapshot; if intended, run "
                    f"`python -m tooling.snapshots` and commit the diff:\n{delta}")


def test_snapshots_redact_secrets_and_show_unknowns() -> None:
    text = snapshot("dev")
    assert re.search(r'^envs\[REDIS_PASSWORD\] = "\[secret #[0-9a-f]{8}\]"$', text, re.M)
    assert "mocksecret" not in text


def test_an_env_change_changes_the_snapshot_line_by_line() -> None:
    """Each Docker env variable is its own line, so adding one or changing a workload shows in the diff."""
    base = snapshot("dev").splitlines()
    assert 'envs[BANYAN_STACK] = "dev"' in base
    for sets, line in (({"services[0].env.LOG_LEVEL": "debug"}, 'envs[LOG_LEVEL] = "debug"'),
                       ({"services[0].workload": "cpu"}, 'envs[RABBITMQ_PREFETCH] = "1"')):
        changed = snapshot("dev", sets).splitlines()
        added = [ln for ln in difflib.unified_diff(base, changed, lineterm="", n=0)
                 if ln.startswith("+") and not ln.startswith("+++")]
        assert added.count(f"+{line}") == 3, added  # one line per user-service container


def test_a_changed_secret_changes_its_line() -> None:
    base, changed = snapshot("dev"), snapshot("dev", {"postgres.database": "other"})
    url = re.compile(r'^envs\[DATABASE_URL\] = .*$', re.M)
    assert url.findall(base) and url.findall(base) != url.findall(changed)
    assert "other" not in "".join(url.findall(changed))
