"""Golden snapshots of every stack (tests/snapshots/<stack>.txt): `python -m tooling.snapshots` rewrites them."""

from __future__ import annotations

from testkit.render import PROJECT_DIR
from tooling.plan import render_for_review, render_snapshot

SNAPSHOT_DIR = PROJECT_DIR / "tests" / "snapshots"


def stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))


def snapshot(stack: str, sets: dict[str, str] | None = None) -> str:
    """The stack as the plan sees it (a preview of the deployed stack), one line per value."""
    return render_snapshot(render_for_review(stack, sets))


def main() -> None:
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for stack in stacks():
        path = SNAPSHOT_DIR / f"{stack}.txt"
        path.write_text(snapshot(stack))
        print(f"wrote {path.relative_to(PROJECT_DIR)}")


if __name__ == "__main__":
    main()
