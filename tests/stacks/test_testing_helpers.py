"""The helpers users get: the README's example runs as written; resolve_output fails on unknowns."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pytest

from testkit import PROJECT_DIR, PreviewMocks, render_program, resolve_output


def test_the_readme_example_runs_as_written() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme[readme.index("## Testing your own stacks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 6
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    tests = [f for name, f in scope.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()


def test_resolve_output_gives_plain_values_and_refuses_unknowns() -> None:
    seen: dict[str, Any] = {}

    def program() -> None:
        seen["plain"] = resolve_output(pulumi.Output.from_input("a").apply(lambda v: v + "b"))
        seen["secret"] = resolve_output(pulumi.Output.secret("s"))
        unknown = pulumi.Output.from_input(1).apply(lambda v: v)
        resource = pulumi.CustomResource("test:index:Thing", "thing", {"value": None})
        with pytest.raises(ValueError, match="unknown"):
            resolve_output(pulumi.Output.all(unknown, resource.id))

    render_program(program, {}, project="banyan", stack="t", preview=True, mocks=PreviewMocks())
    assert seen == {"plain": "ab", "secret": "s"}
