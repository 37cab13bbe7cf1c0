"""Our readers of stack files (the offline plan, testkit, the snapshots): a YAML syntax error, a duplicated key or
a malformed file is one line naming the file and the line, never a traceback or a silently kept last value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit import PROJECT_DIR, apply_sets, read_stack_file
from testkit.render import StackFileError
from tooling import plan


def project(tmp_path: Path, stack_text: str, stack: str = "dev") -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(stack_text)
    return tmp_path


DEV = (PROJECT_DIR / "Pulumi.dev.yaml").read_text()


def test_a_duplicated_top_level_key_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    text = DEV.replace("  banyan:tier: small\n", "  banyan:tier: small\n  banyan:tier: large\n")
    line = DEV.splitlines().index("  banyan:tier: small") + 2
    with pytest.raises(StackFileError) as caught:
        read_stack_file("dev", project(tmp_path, text))
    assert str(caught.value) == f"Pulumi.dev.yaml:{line}: duplicate key banyan:tier (first at line {line - 1})"


def test_a_duplicated_nested_key_names_its_path(tmp_path: Path) -> None:
    text = DEV.replace("    management_host_port: 15672\n",
                       "    management_host_port: 15672\n    management_host_port: 15673\n")
    with pytest.raises(StackFileError, match=r"^Pulumi\.dev\.yaml:\d+: duplicate key "
                                             r"banyan:rabbitmq\.management_host_port \(first at line \d+\)$"):
        read_stack_file("dev", project(tmp_path, text))
    text = DEV.replace("      workload: io\n", "      workload: io\n      workload: cpu\n", 1)
    with pytest.raises(StackFileError, match=r"duplicate key banyan:services\[0\]\.workload "):
        read_stack_file("dev", project(tmp_path, text))


@pytest.mark.parametrize(("text", "line", "what"), [
    ("config:\n  banyan:tier: [small\n", 3, "expected ',' or ']'"),
    ("config:\n  banyan:tier: small\n   banyan:target: docker\n", 3, "mapping values are not allowed here"),
    ("config:\n\tbanyan:tier: small\n", 2, "found character '\\t'"),
    ("- config\n", 1, "must be a mapping with a config: section"),
    ("config:\n  - banyan:tier\n", 2, "config: must be a mapping of keys to values"),
])
def test_a_syntax_error_is_one_line_with_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    with pytest.raises(StackFileError) as caught:
        read_stack_file("dev", project(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(f"Pulumi.dev.yaml:{line}: ") and what in message and "\n" not in message, message


def test_the_plan_prints_it_as_one_line_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = DEV.replace("  banyan:tier: small\n", "  banyan:tier: small\n  banyan:tier: large\n")
    # The plan reads the checkout's stack files; point its reader at a copy with the mistake in it.
    monkeypatch.setattr(plan.build_plan, "__defaults__", (None, project(tmp_path, text)))
    assert plan.main(["dev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Pulumi.dev.yaml:") and "duplicate key banyan:tier" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_set_value_that_is_not_yaml_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^--set tier=\[small: not a YAML value \(.*\)$"):
        apply_sets({}, {"tier": "[small"})
