"""The README stays true: its config reference, its example error and its test command."""

from __future__ import annotations

import re

import pytest

from infra.program import load_spec
from model.errors import ConfigError
from testkit import PROJECT_DIR, apply_sets, read_stack_file, to_engine_config
from tooling import docs

README = (PROJECT_DIR / "README.md").read_text()


def test_config_reference_matches_the_models() -> None:
    start, end = README.index(docs.BEGIN), README.index(docs.END) + len(docs.END)
    assert README[start:end] == docs.render(), "README is stale: run `python -m tooling.docs` and paste it"


def test_every_model_field_is_documented() -> None:
    for path in docs.key_paths():
        title, name = path.rsplit(".", 1)
        section = README[README.index(f"#### `{title}`"):]
        section = section[: section.index("\n####", 1)] if "\n####" in section[1:] else section
        assert f"| `{name}` |" in section, path


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
