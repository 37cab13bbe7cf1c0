"""Golden snapshots: every resource of every stack as a readable file, so a PR shows infrastructure changes.

Update after an intended change (then review the diff like code):
    python -m tooling.snapshots
"""

from __future__ import annotations

import difflib

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
    assert "[secret]" in text
    assert "mocksecret" not in text
