"""The layout's one direction: model <- components <- infra (the program) <- testkit <- tooling, with
benchmarks and the policy pack outside it. A forbidden import anywhere in a package fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from testkit import PROJECT_DIR

PROVIDER_SDKS = {"pulumi_docker", "pulumi_kubernetes", "pulumi_random"}
# package -> the top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    "model": PROVIDER_SDKS | {"components", "infra", "testkit", "tooling", "tests", "benchmarks"},
    "components": {"infra", "testkit", "tooling", "tests", "benchmarks"},
    "infra": {"testkit", "tooling", "tests", "benchmarks"},
    "testkit": {"tooling", "tests", "benchmarks"},
    "tooling": {"tests", "benchmarks"},
    "benchmarks": {"tests"},
    "policy": PROVIDER_SDKS | {"components", "infra", "testkit", "tooling", "tests", "benchmarks"},
}


def imported_roots(source: str) -> set[str]:
    """Top-level names of every module a file imports, at any depth (function-level imports too)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def violations(root: Path) -> list[str]:
    found = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            if "venv" in path.relative_to(root).parts:
                continue
            for name in sorted(imported_roots(path.read_text()) & forbidden):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


def test_every_package_imports_only_downstream() -> None:
    assert violations(PROJECT_DIR) == []


@pytest.mark.parametrize(("package", "source", "name"), [
    ("model", "import pulumi_docker as docker", "pulumi_docker"),
    ("model", "from components.target import Target", "components"),
    ("components", "def f():\n    from infra.program import main\n", "infra"),
    ("components", "from tooling.plan import build_plan", "tooling"),
    ("benchmarks", "from tests.helpers import spec_for", "tests"),
])
def test_the_check_sees_a_forbidden_import(tmp_path: Path, package: str, source: str, name: str) -> None:
    (tmp_path / package).mkdir()
    (tmp_path / package / "bad.py").write_text(source + "\n")
    assert violations(tmp_path) == [f"{package}/bad.py imports {name}"]


def test_the_program_package_holds_only_the_program() -> None:
    # preflight.py is the program's own I/O before any resource exists (it reads the Docker engine the stack
    # deploys to, and the provider's `docker:host`); its rules are pure and live in model/preflight.py.
    assert sorted(p.name for p in (PROJECT_DIR / "infra").glob("*.py")) == [
        "__init__.py", "__main__.py", "preflight.py", "program.py"]
