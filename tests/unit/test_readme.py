"""The README stays true: its config reference, its example error and its test command."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest

from infra.program import load_spec
from model.errors import ConfigError
from model.tiers import TIERS
from testkit import PROJECT_DIR, apply_sets, read_stack_file, to_engine_config
from tooling import docs

README = (PROJECT_DIR / "README.md").read_text()


@pytest.mark.parametrize(("begin", "end", "make"), docs.BLOCKS, ids=["config-reference", "tier-table", "pins"])
def test_generated_blocks_match_the_code(begin: str, end: str, make: Callable[[], str]) -> None:
    start, stop = README.index(begin), README.index(end) + len(end)
    assert README[start:stop] == make(), "README is stale: run `python -m tooling.docs`"


def test_the_tier_table_follows_the_presets() -> None:
    """A preset changed is a README changed: the generated table reads the presets, not a copy."""
    medium = TIERS["medium"]
    moved = dataclasses.replace(medium, postgres_replicas=medium.postgres_replicas + 1)
    row = next(cell for label, cell in docs.TIER_ROWS if label == "PostgreSQL")
    assert row(moved) != row(medium)


def test_every_model_field_is_documented() -> None:
    for path in docs.key_paths():
        title, name = path.rsplit(".", 1)
        section = README[README.index(f"#### `{title}`"):]
        section = section[: section.index("\n####", 1)] if "\n####" in section[1:] else section
        assert f"| `{name}` |" in section, path


def test_every_reference_table_row_is_one_line() -> None:
    """A description wrapped in the source would end its Markdown row early and push the rest out of the table
    (seen for monitoring.enabled); the rows are each one line, however the source wraps them."""
    rendered = docs.render()
    in_table = False
    for line in rendered.splitlines():
        if line.startswith("| key |") or line == "|---|---|---|---|":
            in_table = True
        elif in_table and not line:
            in_table = False
        elif in_table:
            assert line.startswith("| ") and line.endswith(" |") and line.count(" | ") >= 3, line
    assert any("\n" in (f.description or "") for _, model in docs.sections() for f in model.model_fields.values()), \
        "no description is wrapped in the source any more: this test checks nothing"


def test_example_error_is_what_the_program_prints() -> None:
    block = re.search(r"```\n(error: invalid stack configuration.*?)\n```", README, re.S)
    assert block is not None
    raw, secret = to_engine_config(apply_sets(read_stack_file("dev"), {"rabbitmq.nodes": 4,
                                                                       "postgres.max_connections": 50}))
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack="dev", secret_keys=secret)
    assert block.group(1) == f"error: {caught.value}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "| `./scripts/test` |" in README
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    assert re.search(r"^(exec )?\./scripts/test\b", ci, re.M)
