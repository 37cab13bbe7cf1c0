"""The helpers users get: the README's example and the modules' docstring examples run as written;
resolve_output fails on unknowns; a component renders alone with what the platform would hand it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest

import testkit.component
import testkit.render
from components.postgres import PostgresCluster
from testkit import PROJECT_DIR, PreviewMocks, render_program, resolve_output
from testkit.component import ROOT_TYPE, render_component, stack_spec


def readme_example() -> str:
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme[readme.index("## Testing your own stacks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    return code.group(1)


def test_the_readme_example_runs_as_written() -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 7
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    tests = [f for name, f in scope.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()


def test_the_readme_example_passes_the_projects_lint_and_type_check(tmp_path: Path) -> None:
    """Pasted into a test file of one's own, as a user would, under this project's ruff and mypy settings."""
    placed = tmp_path / "tests" / "test_my_stack.py"
    placed.parent.mkdir()
    placed.write_text(readme_example())
    config = str(PROJECT_DIR / "pyproject.toml")
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", config, str(placed)],
                          capture_output=True, text=True, check=False, cwd=PROJECT_DIR)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    # Errors in the project itself are the project's own lint step's: only the placed file is judged here.
    mypy = subprocess.run([sys.executable, "-m", "mypy", "--config-file", config, "--follow-imports=silent",
                           str(placed)], capture_output=True, text=True, check=False, cwd=PROJECT_DIR)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr


def test_render_stack_works_inside_a_running_event_loop() -> None:
    """An async test calls it with a loop already running; Pulumi's runtime needs its own, so it moves to a thread."""
    async def inside() -> int:
        return len(testkit.render.render_stack("dev").resources)

    assert asyncio.run(inside()) == len(testkit.render.render_stack("dev").resources) > 0


def docstring_example(module: ModuleType) -> str:
    """The indented block of a module docstring: the example it shows, as code."""
    doc = module.__doc__ or ""
    block = re.search(r"\n\n((?: {4}.*\n|\n)+)", doc)
    assert block is not None, f"{module.__name__} shows no indented example"
    return textwrap.dedent(block.group(1))


@pytest.mark.parametrize("module", [testkit.render, testkit.component], ids=lambda m: m.__name__)
def test_the_module_docstring_example_runs_as_written(module: ModuleType) -> None:
    code = docstring_example(module)
    assert "assert " in code, "an example that checks nothing cannot drift detectably"
    exec(compile(code, f"{module.__name__} docstring", "exec"), {})


def test_a_docstring_example_that_matches_nothing_fails() -> None:
    code = docstring_example(testkit.render).replace('"banyan-gateway-"', '"api-gateway-"')
    with pytest.raises(AssertionError):
        exec(compile(code, "mutated example", "exec"), {})


@pytest.mark.parametrize(("stack", "handle"), [("dev", "docker:index/network:Network"),
                                              ("prod", "kubernetes:core/v1:Namespace")])
def test_a_component_renders_under_one_root_with_the_platform_handles(stack: str, handle: str) -> None:
    rendering, cluster = render_component(stack_spec(stack), lambda s: PostgresCluster(
        "postgres", s.spec.postgres, passwords=s.secrets.postgres, target=s.target, opts=s.child))
    (root,) = rendering.of_type(ROOT_TYPE)
    (target,) = rendering.of_type(handle)
    assert target.parent == root.urn
    assert rendering.get("banyan:index:PlatformSecrets", "secrets").parent == root.urn
    assert rendering.get("banyan:index:PostgresCluster", "postgres").parent == root.urn
    assert cluster.port == 5432


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


def test_a_stack_without_a_file_is_named_with_the_stacks_there() -> None:
    from testkit import NoStackFileError, render_stack

    with pytest.raises(NoStackFileError, match=r"no stack file Pulumi\.staging\.yaml .*the stacks there: dev, prod"):
        render_stack("staging")
